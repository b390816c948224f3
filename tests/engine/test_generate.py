"""Generation: token parity with CoDA's reference loop, every algorithm, infill, batches, seeds, callbacks."""

from __future__ import annotations

import pytest
import torch

from coda_engine import Cancelled, Engine
from coda_engine.generate import SamplingParams
from coda_engine.params import InfillParams
from tests.engine.oracle import reference_generate

PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
ALGS = ["origin", "maskgit_plus", "topk_margin", "entropy", "threshold"]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint)


def prompt_ids(engine: Engine, batch: int = 1) -> torch.Tensor:
    return torch.tensor([engine.tokenizer.encode(PROMPT)] * batch)


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("new_tokens,steps", [(12, 12), (12, 5), (7, 1)])
def test_greedy_output_equals_reference_loop(engine, alg, new_tokens, steps):
    prompt = prompt_ids(engine, batch=2)
    prompt[1, 3] = 42  # rows differ, mask counts stay equal
    expected = reference_generate(engine.model.logits, prompt, engine.mask_token_id, new_tokens, steps, alg)
    fast = engine.generate(prompt, new_tokens, SamplingParams(steps=steps, alg=alg))
    plain = engine.generate(prompt, new_tokens, SamplingParams(steps=steps, alg=alg), reference=True)
    assert torch.equal(fast, expected)
    assert torch.equal(plain, expected)


def test_origin_in_one_step_reveals_the_argmax_everywhere(engine):
    prompt = prompt_ids(engine)
    expected = reference_generate(engine.model.logits, prompt, engine.mask_token_id, 9, 1, "origin")
    assert torch.equal(engine.generate(prompt, 9, SamplingParams(steps=1, alg="origin")), expected)


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_fills_the_canvas_and_keeps_the_prompt(engine, alg):
    prompt = prompt_ids(engine)
    out = engine.generate(prompt, 10, SamplingParams(steps=5, alg=alg), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, prompt.shape[1] + 10)
    assert torch.equal(out[:, : prompt.shape[1]], prompt)
    # A revealed token may itself be <|mask|> under random weights; count positions never written instead.
    fresh = engine.generate(prompt, 10, SamplingParams(steps=5, alg=alg), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, fresh)


def test_masks_inside_the_prompt_are_filled_and_the_rest_is_kept(engine):
    prefix = engine.tokenizer.encode("x = [1, 2, 3]\ny = ")
    suffix = engine.tokenizer.encode("\nprint(y)\n")
    mask = engine.mask_token_id
    prompt = torch.tensor([prefix + [mask] * 6 + suffix])
    out = engine.generate(prompt, 1, SamplingParams(steps=7, alg="entropy"))
    hole = out[0, len(prefix): len(prefix) + 6]
    assert torch.equal(out[0, : len(prefix)], prompt[0, : len(prefix)])
    assert torch.equal(out[0, len(prefix) + 6: -1], prompt[0, len(prefix) + 6:])
    assert engine.generate(prompt, 1, SamplingParams(steps=7, alg="entropy")).tolist() == out.tolist()
    assert hole.numel() == 6


def test_batch_rows_match_single_row_runs(engine):
    single = engine.generate(prompt_ids(engine), 8, SamplingParams(steps=4, alg="maskgit_plus"))
    batched = engine.generate(prompt_ids(engine, batch=3), 8, SamplingParams(steps=4, alg="maskgit_plus"))
    for row in batched:
        assert torch.equal(row, single[0])


def test_sampling_follows_the_seed(engine):
    def run(seed: int) -> torch.Tensor:
        return engine.generate(prompt_ids(engine), 12, SamplingParams(steps=6, alg="entropy", temperature=1.0, top_p=0.95, top_k=50, alg_temp=0.5), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_threshold_reveals_at_least_the_schedule_and_exits_early(engine):
    seen: list[int] = []
    result = engine.infill("def f(x):\n    return", "\n", 16, InfillParams(steps=16, alg="threshold", threshold=1e-9), on_step=lambda step, canvas: seen.append(step))
    # A bar every token clears reveals the whole span in one pass; the loop then stops.
    assert result.num_forward_passes == 1
    assert result.tokens_per_step == [16]
    assert seen == [0]
    strict = engine.infill("def f(x):\n    return", "\n", 16, InfillParams(steps=8, alg="threshold", threshold=1.0))
    assert strict.num_forward_passes == 8 and sum(strict.tokens_per_step) == 16


def test_infill_reports_passes_steps_and_drops_filler_tokens(engine):
    result = engine.infill("import os\n", "\n", 12, InfillParams(steps=4))
    assert result.num_forward_passes == 4
    assert sum(result.tokens_per_step) == 12
    assert len(result.token_ids) == 12
    kept = [t for t in result.token_ids if t not in engine.tokenizer.filler_token_ids]
    assert result.text == engine.tokenizer.decode(kept)
    assert result.elapsed_ms > 0


def test_fixed_length_infill_never_writes_filler_tokens(engine):
    fixed = engine.infill("x = 1\n", "\n", 48, InfillParams(steps=6, variable_length=False), temperature=1.0, seed=3)
    assert not engine.tokenizer.filler_token_ids.intersection(fixed.token_ids)
    assert len(fixed.token_ids) == 48 and fixed.num_forward_passes == 6


def test_should_stop_cancels_between_steps(engine):
    calls = []

    def stop_after_two_passes() -> bool:
        calls.append(1)
        # Asked before each pass and, in the first pass only, between its layers (the tiny model has 2).
        return len(calls) > 1 + (engine.config.num_hidden_layers - 1) + 1

    with pytest.raises(Cancelled) as caught:
        engine.infill("a = 1\n", "", 16, InfillParams(steps=16), should_stop=stop_after_two_passes)
    assert caught.value.num_forward_passes == 2


def test_on_step_sees_the_canvas_fill_up(engine):
    remaining = []
    engine.infill("a = 1\n", "\n", 8, InfillParams(steps=4), on_step=lambda step, canvas: remaining.append(int((canvas == engine.mask_token_id).sum())))
    assert len(remaining) == 4
    assert remaining == sorted(remaining, reverse=True)


@pytest.mark.parametrize("alg", ["entropy", "maskgit_plus", "threshold"])
def test_window_of_one_reveals_left_to_right(engine, alg):
    prefix = "def f(x):\n    return "
    start = len(engine.tokenizer.encode(prefix))
    revealed = []

    def record(step, canvas):
        span = canvas[0, start:start + 10] != engine.mask_token_id
        revealed.append(int(span.sum()))
        assert bool(span[:revealed[-1]].all())  # what is written is always a prefix of the span

    result = engine.infill(prefix, "\n", 10, InfillParams(steps=10, alg=alg, window=1), on_step=record)
    assert revealed[-1] == 10 and result.num_forward_passes <= 10


def test_window_wider_than_the_span_changes_nothing(engine):
    plain = engine.infill("x = [1, 2]\ny = ", "\nprint(y)\n", 9, InfillParams(steps=4))
    wide = engine.infill("x = [1, 2]\ny = ", "\nprint(y)\n", 9, InfillParams(steps=4, window=9))
    assert wide.token_ids == plain.token_ids


def test_window_narrower_than_the_quota_still_fills_the_span(engine):
    result = engine.infill("a = 1\n", "\n", 12, InfillParams(steps=3, window=1))
    assert engine.mask_token_id not in result.token_ids and result.num_forward_passes == 3


@pytest.mark.parametrize("call,params,message", [
    (dict(max_new_tokens=0), {}, "at least one token"),
    (dict(max_new_tokens=4), dict(steps=5), "must not exceed the span"),
    ({}, dict(alg="beam"), "unknown alg"),
    ({}, dict(alg="entropy", threshold=0.5, exact=True), "only used with alg='threshold'"),
    ({}, dict(threshold=1.5), r"threshold must be in \(0, 1\]"),
    (dict(temperature=-1.0), {}, "temperature"),
    ({}, dict(window=0), "window must be a positive integer"),
    ({}, dict(alg="origin", window=2, exact=True), "not used with alg='origin'"),
])
def test_bad_infill_arguments_raise_value_error(engine, call, params, message):
    with pytest.raises(ValueError, match=message):
        engine.infill("a", "", **{"max_new_tokens": 8, **call}, params=InfillParams(**params))


def test_an_empty_prefix_starts_the_canvas_with_a_newline(engine):
    ids, span = engine.layout("", "x = 1\n", 4)
    assert ids[:span[0]] == engine.tokenizer.encode("\n") and span == (span[0], span[0] + 4)
    assert engine.mask_token_id not in engine.infill("", "x = 1\n", 4).token_ids


def test_prompt_longer_than_the_context_raises(engine):
    too_long = "x " * (engine.config.max_position_embeddings + 10)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        engine.infill(too_long, "", max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        engine.generate(prompt_ids(engine), 0, SamplingParams(steps=1))
