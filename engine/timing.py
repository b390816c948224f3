"""How long a kernel takes here: what the load-time choices (int8 kernel, weight format) compare."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

# The fastest of at least this many runs, and of as many as fit this long: a busy machine's runs vary several
# fold (other processes take the cores), its fastest ones far less.
TIMING_REPEATS, TIMING_BUDGET_S = 10, 0.05
# A candidate whose first two timed runs both take this many times the time to beat has lost (a scalar
# fallback): timing it further would only make loading slow. Two, because one run can lose its core to another
# process.
LOSING_FACTOR = 4.0


def fastest_ms(run: Callable[[torch.Tensor], object], x: torch.Tensor, to_beat_ms: float = math.inf) -> float:
    """The fastest of repeated runs of run(x), in ms, after an untimed one (a kernel's first call may compile or
    allocate); of two timed runs only where both are over LOSING_FACTOR times `to_beat_ms` (the fastest rival's)."""
    with torch.inference_mode():
        run(x)
        times: list[float] = []
        deadline = time.perf_counter() + TIMING_BUDGET_S
        while len(times) < TIMING_REPEATS or time.perf_counter() < deadline:
            begun = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - begun)
            if len(times) == 2 and min(times) * 1000 > LOSING_FACTOR * to_beat_ms:
                break
    return min(times) * 1000
