"""Shared passes: packed windows against one canvas at a time, and runs decoded together against each alone."""

from __future__ import annotations

import pytest
import torch

from coda_engine import Engine
from coda_engine.batching import invariant_rows, shared_pass
from coda_engine.cache import KVCache
from coda_engine.jobs import InfillJob
from coda_engine.model import Window
from coda_engine.params import CachePolicy, InfillParams

PROMPTS = [
    ("def total(values):\n    result = 0\n    for value in values:\n", "\n    return result\n"),
    ("import os\n\n\ndef read(path):\n", "\n\nprint(read('a.txt'))\n"),
    ("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n", "\n"),
    ("x = [", "]\nprint(x)\n"),
]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint)


def random_windows(engine: Engine, seed: int) -> list[Window]:
    generator = torch.Generator().manual_seed(seed)
    windows = []
    for length, batch, start, rows in [(90, 1, 0, slice(None)), (60, 2, 20, slice(3, 9)), (150, 1, 30, slice(10, 40)),
                                       (70, 3, 40, slice(0, 5))]:
        ids = torch.randint(0, engine.config.vocab_size - 8, (batch, length - start), generator=generator)
        windows.append(Window(ids, KVCache.allocate(engine.config, batch, length, engine.device, engine.dtype), start,
                              rows))
    return windows


def test_packed_windows_match_each_canvas_computed_alone(engine):
    packed = random_windows(engine, 0)
    alone = random_windows(engine, 0)
    with torch.inference_mode():
        together = engine.model(packed)
        for window, states in zip(alone, together):
            expected = engine.model([window])[0]
            assert states.shape == expected.shape
            assert torch.allclose(states, expected, atol=1e-5)
    for a, b in zip(packed, alone):
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a.cache.keys + a.cache.values,
                                                                     b.cache.keys + b.cache.values))


def test_fixed_shape_products_make_a_window_independent_of_its_neighbours(engine):
    together = random_windows(engine, 1)
    with torch.inference_mode():
        packed = engine.model(together, row_chunk=32)
        for index, window in enumerate(random_windows(engine, 1)):
            alone = engine.model([window], row_chunk=32)[0]
            assert torch.equal(alone, packed[index])


def test_invariant_rows_fit_the_fast_paths_window():
    assert invariant_rows(32, 32) == 80
    assert invariant_rows(8, 0) == 16


def decode_together(engine: Engine, prompts, temperatures=(0.0,), seed=None, chunk=80) -> list[list[list[int]]]:
    runs = [engine.start(InfillJob(prefix, suffix, 12, InfillParams(), temperatures, seed)) for prefix, suffix in prompts]
    passes = 0
    while not all(run.done for run in runs):
        running = sum(not run.done for run in runs)
        assert shared_pass(engine.model, runs, chunk).runs == running
        passes += 1
    assert passes == max(run.passes for run in runs)
    return [run.span_rows() for run in runs]


def test_runs_decoded_in_shared_passes_equal_each_run_decoded_alone(engine):
    alone = [decode_together(engine, [prompt])[0] for prompt in PROMPTS]
    assert decode_together(engine, PROMPTS) == alone
    # Sampled rows too: each run draws from its own generators.
    sampled_alone = [decode_together(engine, [prompt], (0.0, 0.8), seed=3)[0] for prompt in PROMPTS]
    assert decode_together(engine, PROMPTS, (0.0, 0.8), seed=3) == sampled_alone


def test_a_run_alone_in_shared_passes_writes_what_engine_infill_writes(engine):
    prefix, suffix = PROMPTS[0]
    assert decode_together(engine, [PROMPTS[0]], chunk=None)[0][0] == engine.infill(prefix, suffix, 12).token_ids


def test_a_warm_run_shares_a_pass_and_keeps_the_canvas_fresh(engine):
    prefix, suffix = PROMPTS[1]
    warm = engine.start(InfillJob(prefix, suffix, 0, InfillParams(cache=CachePolicy(margin=16, reuse=1))))
    infill = engine.start(InfillJob(*PROMPTS[0], 12))
    shared_pass(engine.model, [warm, infill], 80)
    assert warm.done and warm.next_window() is None
    kept = warm.kept()
    ids, _ = engine.layout(prefix, suffix, engine.options.warm_span)
    assert kept.is_fresh_for(ids)
