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


def default_invariant(device: torch.device) -> bool:
    """Batch-invariant passes on the CPU, where packing windows shares little (a pass is bound by arithmetic);
    on CUDA the windows are packed, since a pass costs about one read of the weights whatever its rows."""
    return device.type == "cpu"


def shared_pass(model: CodaModel, runs: Sequence[PassRun], invariant: bool,
                should_stop: Callable[[PassRun], bool] | None = None) -> PassShape:
    """One forward pass for every run not done, then each run's reveal. `invariant`: each run's window is a
    forward of its own, as it would be alone. A BLAS sums a product's rows in an order it picks by the
    product's shape, so packing another run's rows in could change a greedy answer (docs/engine.md,
    Batch-invariant products). Otherwise the windows are packed into one forward. `should_stop(run)` is asked
    between layers, of a run's own forward for it, of the packed windows for all of theirs. A run stopped there
    is left as before the pass and reported in `interrupted`."""
    active = [run for run in runs if not run.done]
    windows = [run.next_window() for run in active]
    pairs = [(run, window) for run, window in zip(active, windows) if window is not None]
    if not pairs:
        return PassShape(0, 0, 0)
    device = pairs[0][1].ids.device
    alone = [invariant] * len(pairs)
    packed = [pair for pair, by_itself in zip(pairs, alone) if not by_itself]
    interrupted: set[int] = set()
    with on_device(device), torch.inference_mode():
        for (run, window), by_itself in zip(pairs, alone):
            if not by_itself:
                continue
            stop = None if should_stop is None else functools.partial(should_stop, run)
            try:
                hidden = model([window], stop)[0]
            except Cancelled:
                interrupted.add(id(run))
                continue
            run.apply(hidden)
        if packed:
            stop = None if should_stop is None else (lambda: all(should_stop(run) for run, _ in packed))
            try:
                states = model([w for _, w in packed], stop)
            except Cancelled:
                interrupted.update(id(run) for run, _ in packed)
                states = []
            for (run, _), hidden in zip(packed, states):
                run.apply(hidden)
    done = [(run, w) for run, w in pairs if id(run) not in interrupted]
    return PassShape(len(done), sum(w.ids.shape[0] for _, w in done), sum(w.ids.numel() for _, w in done),
                     frozenset(interrupted))
