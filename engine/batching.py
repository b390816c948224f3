"""Shared forward passes for many infill calls at once (continuous batching across requests).

Each call keeps its own canvas, cache and block-wise state (engine.InfillRun, engine.WarmRun); a shared pass
runs the model over every run's next window together and hands each run its own states to reveal from. The
vocabulary head and the sampling stay per run, at the shapes a call has alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from .errors import Cancelled
from .kernels.runtime import on_device
from .model import CodaModel, Window
from .params import CachePolicy

# A BLAS sums a product's rows in an order it picks by the product's shape, so a greedy answer could change with
# what else shares the pass; products of exactly these many rows keep it (docs/engine.md, Batch-invariant
# products). The fast path's window (block + a margin each side + 1) rounded up to 16: alone, it pads little.
def invariant_rows(block_size: int, extra_rows: int) -> int:
    """The block, the position before it and `extra_rows` more, in whole 16-row products."""
    return -(-(block_size + extra_rows + 1) // 16) * 16


class PassRun(Protocol):
    """What a shared pass drives: engine.InfillRun and engine.WarmRun."""

    done: bool

    @property
    def first_pass(self) -> bool: ...  # whether the next pass is the run's first (a whole canvas, or its window)

    def next_window(self) -> Window | None: ...
    def apply(self, hidden: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class PassShape:
    """What one shared pass computed: the runs in it, their rows and the canvas positions computed, and the runs
    whose first pass was stopped between layers (by id)."""

    runs: int
    rows: int
    positions: int
    interrupted: frozenset[int] = frozenset()


def default_row_chunk(device: torch.device, block_size: int, policy: CachePolicy) -> int | None:
    """invariant_rows on the CPU; None (one product per layer) on CUDA, where a shared pass pays because the
    weights are read once for all rows, and fixed-shape products would read them once per chunk."""
    return invariant_rows(block_size, policy.extra_rows(device.type)) if device.type == "cpu" else None


def shared_pass(model: CodaModel, runs: Sequence[PassRun], row_chunk: int | None,
                should_stop: Callable[[PassRun], bool] | None = None) -> PassShape:
    """One forward pass for every run not done, then each run's reveal. With `row_chunk` (batch-invariant mode)
    a run's first pass, a whole canvas, runs as its own products, as it would alone (chunking it costs: see
    docs/engine.md, Batch-invariant products); the later, narrow windows are packed. `should_stop(run)` is
    asked between layers, of a first pass for its run, of the packed windows for all of theirs. A run stopped
    there is left as before the pass and reported in `interrupted`."""
    active = [run for run in runs if not run.done]
    windows = [run.next_window() for run in active]
    pairs = [(run, window) for run, window in zip(active, windows) if window is not None]
    if not pairs:
        return PassShape(0, 0, 0)
    device = pairs[0][1].ids.device
    alone = [row_chunk is not None and run.first_pass for run, _ in pairs]
    packed = [pair for pair, by_itself in zip(pairs, alone) if not by_itself]
    interrupted: set[int] = set()
    with on_device(device), torch.inference_mode():
        for (run, window), by_itself in zip(pairs, alone):
            if not by_itself:
                continue
            stop = None if should_stop is None else functools.partial(should_stop, run)
            try:
                hidden = model([window], None, stop)[0]
            except Cancelled:
                interrupted.add(id(run))
                continue
            run.apply(hidden)
        if packed:
            stop = None if should_stop is None else (lambda: all(should_stop(run) for run, _ in packed))
            try:
                states = model([w for _, w in packed], row_chunk, stop)
            except Cancelled:
                interrupted.update(id(run) for run, _ in packed)
                states = []
            for (run, _), hidden in zip(packed, states):
                run.apply(hidden)
    done = [(run, w) for run, w in pairs if id(run) not in interrupted]
    return PassShape(len(done), sum(w.ids.shape[0] for _, w in done), sum(w.ids.numel() for _, w in done),
                     frozenset(interrupted))
