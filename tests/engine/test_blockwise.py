"""The fast path: cached forward passes against full ones, the block-wise loop against the exact loop, bad input."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import torch

from coda_engine import Engine, blockwise
from coda_engine.blockwise import denoise_blockwise
from coda_engine.cache import CanvasCache, KVCache, plan_blocks, prefill_from, shared_prefix
from coda_engine.generate import PadTail, SamplingParams
from coda_engine.model import Window
from coda_engine.jobs import InfillJob
from coda_engine.params import CachePolicy, InfillParams

PREFIX = "def total(values):\n    result = 0\n    for value in values:\n"
SUFFIX = "\n    return result\n\n\nprint(total([1, 2, 3]))\n"
FAST_ALGS = ["threshold", "maskgit_plus", "topk_margin", "entropy"]
EVERY_PASS = CachePolicy(refresh="steps", every=1)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint)


def canvas_ids(engine: Engine, span: int) -> torch.Tensor:
    ids = engine.tokenizer.encode(PREFIX) + [engine.mask_token_id] * span + engine.tokenizer.encode(SUFFIX)
    return torch.tensor([ids])


def states(engine: Engine, ids: torch.Tensor, cache: KVCache | None = None, start: int = 0,
           rows: slice = slice(None)) -> torch.Tensor:
    """The model's states at window `ids[:, rows]` sitting at `start` of `cache` (a fresh whole-canvas cache when
    None)."""
    window = engine.model.whole(ids) if cache is None else Window(ids, cache, start, rows)
    with torch.inference_mode():
        return engine.model([window])[0]


def test_a_pass_over_two_rows_equals_each_row_alone_and_caches_every_position(engine):
    ids = canvas_ids(engine, 12)
    other = ids.clone()
    other[0, 3] = 100
    both = torch.cat([ids, other])
    cache = KVCache.allocate(engine.config, 2, ids.shape[1], engine.device, engine.dtype)
    together = states(engine, both, cache)
    assert torch.allclose(together[:1], states(engine, ids), atol=1e-5)
    assert torch.allclose(together[1:], states(engine, other), atol=1e-5)
    layers, kv_heads, head_dim = engine.config.num_hidden_layers, engine.config.num_key_value_heads, engine.config.head_dim
    assert cache.num_bytes == 2 * layers * 2 * kv_heads * ids.shape[1] * head_dim * 4


def test_a_window_over_an_unchanged_canvas_equals_the_full_pass(engine):
    ids = canvas_ids(engine, 12)
    cache = KVCache.allocate(engine.config, 1, ids.shape[1], engine.device, engine.dtype)
    full = states(engine, ids, cache)
    window = states(engine, ids[:, 9:23], cache, 9)
    assert torch.allclose(window, full[:, 9:23], atol=1e-5)


def test_asking_for_some_rows_gives_those_rows_and_still_writes_every_key(engine):
    ids = canvas_ids(engine, 12)
    everything = KVCache.allocate(engine.config, 1, ids.shape[1], engine.device, engine.dtype)
    some = KVCache.allocate(engine.config, 1, ids.shape[1], engine.device, engine.dtype)
    full = states(engine, ids, everything)
    part = states(engine, ids, some, 0, slice(15, 27))
    assert part.shape[1] == 12 and torch.allclose(part, full[:, 15:27], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(some.keys + some.values,
                                                              everything.keys + everything.values))


def test_a_window_sees_the_changed_tokens_and_reuses_the_rest(engine):
    ids = canvas_ids(engine, 12)
    cache = KVCache.allocate(engine.config, 1, ids.shape[1], engine.device, engine.dtype)
    states(engine, ids, cache)
    changed = ids.clone()
    changed[0, 12:15] = torch.tensor(engine.tokenizer.encode(" result += value")[:3])
    window = states(engine, changed[:, 11:24], cache, 11)
    exact = states(engine, changed)[:, 11:24]
    stale = states(engine, ids)[:, 11:24]
    # Only the prefix and suffix keys are stale, so the window is close to the exact states, and moved by the edit.
    assert (window - exact).abs().max() < (stale - exact).abs().max()
    assert (window - stale).abs().max() > 1e-3


@pytest.mark.parametrize("alg", FAST_ALGS)
@pytest.mark.parametrize("span,steps,variable_length", [(12, 12, True), (12, 4, True), (10, 5, False)])
def test_one_block_refreshed_every_pass_equals_the_exact_loop(engine, alg, span, steps, variable_length):
    exact = engine.infill(PREFIX, SUFFIX, span, InfillParams(steps=steps, alg=alg, exact=True, variable_length=variable_length))
    fillers = tuple(sorted(engine.tokenizer.filler_token_ids))
    params = SamplingParams(steps, alg)
    start = len(engine.tokenizer.encode(PREFIX))
    # The exact loop has no parallel reveals but the threshold rule's own.
    trace = denoise_blockwise(engine.model, canvas_ids(engine, span), (start, start + span), engine.mask_token_id,
                              params, span, EVERY_PASS,
                              reveal_bar=params.confidence_bar if alg == "threshold" else None,
                              suppressed_token_ids=() if variable_length else fillers,
                              pad_tail=PadTail(fillers, engine.tokenizer.pad_token_id) if variable_length else None)
    assert trace.canvas[0, start:start + span].tolist() == exact.token_ids
    assert trace.num_forward_passes == exact.num_forward_passes == trace.num_refreshes
    assert trace.tokens_per_step == exact.tokens_per_step


def test_the_fast_threshold_path_with_a_refresh_every_pass_equals_the_exact_one(engine):
    exact = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, alg="threshold", exact=True))
    fast = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, alg="threshold", cache=EVERY_PASS))
    assert fast.token_ids == exact.token_ids and fast.tokens_per_step == exact.tokens_per_step


def test_a_margin_over_the_whole_canvas_recomputes_everything_like_a_refresh(engine):
    every_pass = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, cache=EVERY_PASS))
    margin = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, cache=CachePolicy(margin=10_000)))
    assert margin.token_ids == every_pass.token_ids


def test_skipping_settled_positions_recomputes_each_one_the_pass_after_it_was_revealed(engine, monkeypatch):
    start, span, margin = len(engine.tokenizer.encode(PREFIX)), 8, 2
    windows, masks = [], []
    forward = engine.model.forward

    def record(passed, row_chunk=None, should_stop=None):
        windows.append((passed[0].start, passed[0].start + passed[0].ids.shape[1]))
        return forward(passed, row_chunk, should_stop)

    monkeypatch.setattr(engine.model, "forward", record)
    # window=1 reveals the leftmost mask each pass, so the settled positions grow from the block's start.
    result = engine.infill(PREFIX, SUFFIX, span, InfillParams(steps=span, threshold=1.0, window=1, variable_length=False, cache=CachePolicy(margin=margin, skip_settled=True)), on_step=lambda step, canvas: masks.append(canvas[0, start:start + span].tolist()))
    assert result.num_forward_passes == span and len(windows) == span
    block_window = (start - 1 - margin, start + span + margin)
    assert windows[1] == block_window  # before the first pass every position was masked
    for index in range(2, span):
        # The positions still masked before the previous pass: the one it revealed is among them.
        unsettled = [i for i, token in enumerate(masks[index - 2]) if token == engine.mask_token_id]
        assert windows[index] == (start + unsettled[0] - 1 - margin, start + unsettled[-1] + 1 + margin)
    assert windows[-1][1] - windows[-1][0] < block_window[1] - block_window[0]


def test_skipping_settled_positions_under_a_margin_wider_than_the_canvas_changes_nothing(engine):
    wide = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, cache=CachePolicy(margin=10_000)))
    skipping = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, cache=CachePolicy(margin=10_000, skip_settled=True)))
    assert skipping.token_ids == wide.token_ids


def test_a_window_of_scattered_positions_equals_those_positions_in_a_full_pass(engine):
    ids = canvas_ids(engine, 12)
    cache = KVCache.allocate(engine.config, 1, ids.shape[1], engine.device, engine.dtype)
    full = states(engine, ids, cache)
    positions = torch.tensor([2, 5, 6, 7, ids.shape[1] - 1])
    with torch.inference_mode():
        scattered = engine.model([Window(ids[:, positions], cache, 2, slice(None), positions)])[0]
    assert torch.allclose(scattered, full[:, positions], atol=1e-5)


def test_drifted_positions_everywhere_recompute_everything_like_a_refresh(engine):
    every_pass = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, cache=EVERY_PASS))
    drifted = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6, cache=CachePolicy(drifted=10_000, reach=10_000)))
    assert drifted.token_ids == every_pass.token_ids
    assert len(drifted.window_rows) == drifted.num_forward_passes - 1
    assert set(drifted.window_rows) == {len(canvas_ids(engine, 12)[0])}


def test_drifted_positions_are_the_nearest_to_the_reveals_within_reach(engine, monkeypatch):
    start, span, near, extra = len(engine.tokenizer.encode(PREFIX)), 8, 1, 3
    windows = []
    forward = engine.model.forward

    def record(passed, row_chunk=None, should_stop=None):
        windows.append(passed[0].canvas_positions().tolist())
        return forward(passed, row_chunk, should_stop)

    monkeypatch.setattr(engine.model, "forward", record)
    result = engine.infill(PREFIX, SUFFIX, span, InfillParams(steps=span, threshold=1.0, variable_length=False,
                                                               cache=CachePolicy(near=near, drifted=extra)))
    block = list(range(start - 1 - near, start + span + near))
    assert result.window_rows == tuple(len(block) + extra for _ in range(span - 1))
    outside = [sorted(set(positions) - set(block)) for positions in windows[1:]]
    # Drift falls with distance from the reveals: the first window pass takes the block's nearest neighbours.
    assert all(block[0] - extra <= p < block[-1] + 1 + extra for p in outside[0])
    # Later passes take the ones that have gone longest without, never beyond the reach.
    reach = CachePolicy().reach
    assert all(len(o) == extra and all(block[0] - reach <= p < block[-1] + 1 + reach for p in o) for o in outside)
    assert len({p for o in outside for p in o}) > extra


def test_blocks_are_decoded_left_to_right(engine):
    start = len(engine.tokenizer.encode(PREFIX))
    seen = []

    def record(step, canvas):
        seen.append((canvas[0, start:start + 20] != engine.mask_token_id).tolist())

    result = engine.infill(PREFIX, SUFFIX, 20, InfillParams(steps=10, block_size=8, threshold=1.0, variable_length=False), on_step=record)
    assert result.num_forward_passes == 10 and engine.mask_token_id not in result.token_ids
    for written in seen:
        for block_start in (8, 16):
            if any(written[block_start:block_start + 8]):
                assert all(written[:block_start])  # a block starts once every earlier one is full


@pytest.mark.parametrize("policy,refreshes", [
    (CachePolicy(refresh="none"), 1),
    (CachePolicy(refresh="block"), 3),
    (CachePolicy(refresh="steps", every=3), 4),
    (CachePolicy(refresh="revealed", revealed_share=0.5), 2),
])
def test_refresh_rules_decide_the_full_passes(engine, policy, refreshes):
    counted = []
    original = engine.model.forward

    def spy(windows, row_chunk=None, should_stop=None):
        counted.append(windows[0].ids.shape[1] == windows[0].cache.length)
        return original(windows, row_chunk, should_stop)

    engine.model.forward = spy
    try:
        result = engine.infill(PREFIX, SUFFIX, 24, InfillParams(steps=12, block_size=8, threshold=1.0, variable_length=False, cache=policy))
    finally:
        del engine.model.forward
    assert result.num_forward_passes == 12 and len(counted) == 12
    assert sum(counted) == refreshes


def test_the_default_path_uses_the_cache_and_fills_the_span(engine):
    result = engine.infill(PREFIX, SUFFIX, max_new_tokens=16)
    assert result.cache_bytes > 0
    assert engine.mask_token_id not in result.token_ids and len(result.token_ids) == 16
    assert result.num_forward_passes <= 16
    exact = engine.infill(PREFIX, SUFFIX, 16, InfillParams(exact=True))
    assert exact.cache_bytes == 0 and exact.num_forward_passes == 16


def test_candidates_decode_as_one_batch(engine):
    single = engine.infill(PREFIX, SUFFIX, 12, InfillParams(steps=6))
    job = InfillJob(PREFIX, SUFFIX, 12, InfillParams(steps=6), (0.0, 0.8, 0.8), seed=1)
    batch = engine.run(job)
    assert len(batch) == 3
    assert batch[0].token_ids == single.token_ids  # the greedy row is not disturbed by its neighbours
    assert batch[1].token_ids != batch[2].token_ids  # the sampled rows draw their own noise
    again = engine.run(job)
    assert [r.token_ids for r in again] == [r.token_ids for r in batch]


def test_done_when_stops_once_the_text_so_far_is_enough(engine):
    full = engine.infill(PREFIX, SUFFIX, 16, InfillParams(steps=16, threshold=1.0))
    seen: list[str] = []

    def enough(text: str) -> bool:
        seen.append(text)
        return len(text) >= 2

    stopped = engine.infill(PREFIX, SUFFIX, 16, InfillParams(steps=16, threshold=1.0), done_when=enough)
    # Revealed tokens never change, so every text the check saw, and the answer, start the full run's text.
    assert seen and all(full.text.startswith(text) for text in seen)
    assert stopped.text == seen[-1] and len(stopped.text) >= 2
    assert stopped.num_forward_passes < full.num_forward_passes
    assert engine.mask_token_id in stopped.token_ids and engine.mask_token_id not in full.token_ids
    assert stopped.token_ids[:stopped.token_ids.index(engine.mask_token_id)] == \
        full.token_ids[:stopped.token_ids.index(engine.mask_token_id)]


def test_done_when_waits_for_every_candidate(engine):
    job = InfillJob(PREFIX, SUFFIX, 12, InfillParams(steps=12), (0.0, 0.8), seed=3)
    full = engine.run(job)
    first_pass = engine.run(replace(job, done_when=lambda text: True))
    assert all(r.num_forward_passes == 1 for r in first_pass)  # on the CPU the check sees every pass at once
    started = engine.run(replace(job, done_when=bool))
    assert all(r.text and f.text.startswith(r.text) for r, f in zip(started, full))  # every row, not just one


def test_shifted_keys_equal_keys_computed_at_the_new_positions(engine):
    ids = canvas_ids(engine, 4)
    shifted_ids = torch.cat([ids[:, :1].repeat(1, 5), ids], dim=1)  # the same tokens, 5 positions later
    here = KVCache.allocate(engine.config, 1, ids.shape[1], engine.device, engine.dtype)
    later = KVCache.allocate(engine.config, 1, shifted_ids.shape[1], engine.device, engine.dtype)
    states(engine, ids, here)
    states(engine, shifted_ids, later)
    # Layer 0's keys depend on the token and its position only.
    assert torch.allclose(engine.model.shift_keys(here.keys[0], 5), later.keys[0][:, :, 5:], atol=1e-5)
    assert engine.model.shift_keys(here.keys[0], 0) is here.keys[0]


def test_shared_prefix_finds_lines_that_left_the_top_of_the_window():
    old = list(range(100))
    assert shared_prefix(old, old[:60] + [7, 7]) == (0, 60)
    assert shared_prefix(old, old[12:70] + [1]) == (12, 58)
    assert shared_prefix(old, [5, 4, 3]) == (0, 0)


def test_a_prefilled_cache_holds_the_shared_prefix_and_the_shifted_suffix(engine):
    old_ids = canvas_ids(engine, 8)[0].tolist()
    start = len(engine.tokenizer.encode(PREFIX))
    cache = KVCache.allocate(engine.config, 1, len(old_ids), engine.device, engine.dtype)
    states(engine, torch.tensor([old_ids]), cache)
    previous = CanvasCache(tuple(old_ids), (start, start + 8), cache, (start - 3, start + 10), 0)
    typed = engine.tokenizer.encode(" total += value")[:2]  # two tokens typed: the span moves right by 2
    assert len(typed) == 2
    new_ids = old_ids[:start] + typed + old_ids[start:]
    new_span = (start + 2, start + 10)
    prefill = prefill_from(previous, new_ids, new_span, 2, engine.model.shift_keys)
    # Not reused: what the old call rewrote after its first pass (3 before its span, 2 after), and the new tokens.
    assert prefill.window == (start - 3, new_span[1] + 2) and prefill.reused == len(new_ids) - (3 + 2 + 8 + 2)
    full = KVCache.allocate(engine.config, 1, len(new_ids), engine.device, engine.dtype)
    states(engine, torch.tensor([new_ids]), full)
    reused = [*range(prefill.window[0]), *range(prefill.window[1], len(new_ids))]
    for row in range(2):  # layer 0 depends on each token and position alone: there the reuse is exact
        assert torch.allclose(prefill.cache.keys[0][row][:, reused], full.keys[0][0][:, reused], atol=1e-5)
        assert torch.allclose(prefill.cache.values[0][row][:, reused], full.values[0][0][:, reused], atol=1e-6)
    assert prefill_from(previous, engine.tokenizer.encode("x = 1\n") + [engine.mask_token_id] * 8, (6, 14), 1,
                        engine.model.shift_keys) is None  # nothing in common: a full pass


def test_plan_blocks_shares_the_steps():
    assert [(b.start, b.end, b.steps) for b in plan_blocks(5, 25, 8, 7)] == [(5, 13, 3), (13, 21, 2), (21, 25, 2)]


@pytest.mark.parametrize("kwargs,message", [
    (dict(block_size=0), "block_size must be a whole number >= 1"),
    (dict(block_size=2, steps=3), r"steps \(3\) must be at least the number of blocks \(6\)"),
    (dict(alg="origin"), "runs only on the exact path"),
    (dict(alg="entropy", alg_temp=0.5), "runs only on the exact path"),
    (dict(steps=13), "must not exceed the span"),
])
def test_bad_fast_path_arguments_raise_value_error(engine, kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.infill(PREFIX, SUFFIX, 12, InfillParams(**kwargs))


@pytest.mark.parametrize("kwargs,message", [
    (dict(refresh="sometimes"), "unknown cache refresh rule"),
    (dict(refresh="steps", every=0), "every must be a whole number >= 1"),
    (dict(refresh="revealed", revealed_share=1.5), r"revealed_share must be in \(0, 1\]"),
    (dict(margin=-1), "margin must be a whole number >= 0"),
    (dict(skip_settled=1), "skip_settled must be True or False"),
    (dict(drifted=-1), "drifted must be a whole number >= 0"),
    (dict(near=-1), "near must be a whole number >= 0"),
])
def test_bad_cache_policies_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CachePolicy(**kwargs)


def test_flags_read_one_step_late_cost_at_most_one_pass_more(engine, monkeypatch):
    # CUDA's reading order on the CPU: each step's done flags and span tokens reach the host a step late. Block
    # 0 (8 masks, 4 steps, no threshold reveals) fills at its last step; read at block 1's first step, its
    # tokens end the call there, one pass after the immediate reading does.
    ids = canvas_ids(engine, 24)
    start = len(engine.tokenizer.encode(PREFIX))

    def first_block_full(span_tokens: torch.Tensor) -> bool:
        return not bool((span_tokens[:, :8] == engine.mask_token_id).any())

    def passes(deferred: bool) -> int:
        monkeypatch.setattr(blockwise, "DoneFlags", functools.partial(blockwise.DoneFlags, deferred=deferred))
        return denoise_blockwise(engine.model, ids, (start, start + 24), engine.mask_token_id,
                                 SamplingParams(12, "entropy"), 8, CachePolicy(),
                                 is_finished=first_block_full).num_forward_passes

    assert passes(deferred=False) == 4
    assert passes(deferred=True) == 5
