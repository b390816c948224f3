"""The block-wise loop with the Triton kernels (interpreted on CPU) against its torch path, on the shipped model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coda_engine import Engine, blockwise
from coda_engine.blockwise import denoise_blockwise
from coda_engine.kernels import choice
from coda_engine.params import CachePolicy, EngineOptions
from coda_engine.generate import PadTail, SamplingParams

SHIPPED_MODEL = Path(__file__).resolve().parents[3] / "models" / "coda-tiny"
PREFIX = "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n    return "
SUFFIX = "\n\n\nprint(mean([1, 2, 3]))\n"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_pretrained(SHIPPED_MODEL)


def run(engine: Engine, alg: str, use_kernels: bool, temperatures: tuple[float, ...] = (0.0,),
        seed: int | None = None) -> list[list[int]]:
    prefix_ids = engine.tokenizer.encode(PREFIX)
    span = 12
    canvas = torch.tensor([prefix_ids + [engine.mask_token_id] * span + engine.tokenizer.encode(SUFFIX)])
    fillers = tuple(sorted(engine.tokenizer.filler_token_ids))
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    trace = denoise_blockwise(engine.model, canvas.repeat(len(temperatures), 1), (len(prefix_ids),
                              len(prefix_ids) + span), engine.mask_token_id, SamplingParams(6, alg), 8,
                              CachePolicy(), reveal_bar=0.9, row_temperatures=temperatures, generator=generator,
                              pad_tail=PadTail(fillers, engine.tokenizer.pad_token_id), use_kernels=use_kernels)
    return trace.canvas[:, len(prefix_ids):len(prefix_ids) + span].tolist()


@pytest.mark.parametrize("alg", ["threshold", "entropy"])
def test_greedy_kernels_write_what_the_torch_path_writes(triton_interpreter, engine, alg):
    assert run(engine, alg, use_kernels=True) == run(engine, alg, use_kernels=False)


def test_sampled_rows_follow_the_seed_and_keep_the_greedy_row(triton_interpreter, engine):
    first = run(engine, "threshold", True, (0.0, 1.0, 1.0), seed=3)
    assert first == run(engine, "threshold", True, (0.0, 1.0, 1.0), seed=3)
    assert first[0] == run(engine, "threshold", False)[0]
    assert first[1] != first[2]


def test_kernels_asked_for_where_triton_cannot_run_raise(engine, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="Triton kernels asked for on cpu"):
        run(engine, "threshold", use_kernels=True)


def record_sampled_draws(monkeypatch) -> list[tuple[int, int, int]]:
    """(seed, first counter, end of counters) of every sampled confidence_stats launch the loop makes."""
    draws: list[tuple[int, int, int]] = []
    launch = blockwise.confidence_stats

    def recording(logits, temperature=0.0, seed=0, offset=0, **kwargs):
        if temperature > 0:
            draws.append((seed, offset, offset + logits.shape[0] * logits.shape[1]))
        return launch(logits, temperature=temperature, seed=seed, offset=offset, **kwargs)

    monkeypatch.setattr(blockwise, "confidence_stats", recording)
    return draws


def test_every_pass_draws_from_fresh_philox_counters(triton_interpreter, engine, monkeypatch):
    draws = record_sampled_draws(monkeypatch)
    run(engine, "threshold", True, (0.0, 1.0, 1.0), seed=3)  # two blocks (8 + 4 positions), three rows
    assert len(draws) >= 4  # two sampled rows, at least one pass per block
    # Per seed, no two launches share a counter: block 1's first pass does not repeat block 0's noise.
    for seed in {seed for seed, _, _ in draws}:
        ranges = sorted((first, end) for s, first, end in draws if s == seed)
        assert all(end <= next_first for (_, end), (next_first, _) in zip(ranges, ranges[1:])), ranges


def test_rows_without_a_generator_sample_from_torch_s_global_seed(triton_interpreter, engine, monkeypatch):
    draws = record_sampled_draws(monkeypatch)
    tokens = {}
    for name, global_seed in [("a", 1), ("again", 1), ("other", 2)]:
        torch.manual_seed(global_seed)
        tokens[name] = run(engine, "threshold", True, (0.0, 1.0))
        tokens[name + " seeds"] = {seed for seed, _, _ in draws}
        draws.clear()
    assert len(tokens["a seeds"]) == 1  # one seed a call, drawn once
    assert tokens["a seeds"] == tokens["again seeds"] and tokens["a"] == tokens["again"]
    assert tokens["a seeds"] != tokens["other seeds"]
    # A greedy call draws nothing: torch's global generator is where it was.
    torch.manual_seed(5)
    run(engine, "threshold", True)
    after_greedy = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after_greedy, torch.rand(1))


def test_warm_up_launches_every_variant_a_completion_uses(triton_interpreter, monkeypatch):
    engine = Engine.from_pretrained(SHIPPED_MODEL, kernels="triton")
    confidences: set[tuple[bool, int]] = set()
    reveal_widths: set[int] = set()
    confidence, reveal = blockwise.confidence_stats, blockwise.reveal_by_confidence

    def recording_confidence(logits, temperature=0.0, **kwargs):
        confidences.add((temperature > 0, logits.shape[0]))
        return confidence(logits, temperature=temperature, **kwargs)

    def recording_reveal(canvas, *args, **kwargs):
        reveal_widths.add(canvas.shape[1])
        return reveal(canvas, *args, **kwargs)

    monkeypatch.setattr(blockwise, "confidence_stats", recording_confidence)
    monkeypatch.setattr(blockwise, "reveal_by_confidence", recording_reveal)
    engine.warm_up((24, 64), candidate_temperature=0.8)
    # A single-line span is one 24-position block, a multi-line one two 32-position blocks: greedy and sampled
    # scoring of each width (all of a block's positions are masked at its first pass), and its reveal.
    assert {(False, 24), (True, 24), (False, 32), (True, 32)} <= confidences
    assert {24, 32} <= reveal_widths


def test_a_kernel_failing_during_a_call_turns_the_kernels_off_and_the_call_still_answers(
        triton_interpreter, engine, monkeypatch, caplog):
    monkeypatch.setattr(choice, "runs_compiled", lambda device: True)  # auto takes the kernels here, as on CUDA
    choice._choose.cache_clear()
    kernel_engine = Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(kernels="auto"))
    assert kernel_engine.kernels.use_triton
    expected = Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(kernels="torch")).infill(PREFIX, SUFFIX, 8)

    def failing_launch(*args, **kwargs):
        raise RuntimeError("PTX JIT compilation failed\nptxas fatal: details")

    monkeypatch.setattr(blockwise, "reveal_by_confidence", failing_launch)
    forced = Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(kernels="triton"))
    with pytest.raises(RuntimeError, match="PTX JIT"):
        forced.infill(PREFIX, SUFFIX, 8)  # forced kernels are never silently replaced
    with caplog.at_level("WARNING", logger="coda_engine"):
        assert kernel_engine.infill(PREFIX, SUFFIX, 8).token_ids == expected.token_ids
        assert kernel_engine.infill(PREFIX, SUFFIX, 8).token_ids == expected.token_ids
    assert not kernel_engine.kernels.use_triton
    assert kernel_engine.kernels.reason == ("a kernel failed during a call: RuntimeError: PTX JIT compilation "
                                            "failed")
    assert len([r for r in caplog.records if "turned off" in r.getMessage()]) == 1
    choice._choose.cache_clear()
