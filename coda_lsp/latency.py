"""Latency of recent requests, for coda/status: total request time and the part spent outside the engine."""

from __future__ import annotations

from collections import deque
from statistics import quantiles


class LatencyTracker:
    """The last `window` engine-backed requests' times in ms (cache hits and skipped requests are not timed:
    they would hide how slow the model is)."""

    def __init__(self, window: int = 200) -> None:
        self._total_ms: deque[float] = deque(maxlen=window)
        self._engine_ms: deque[float] = deque(maxlen=window)
        self._overhead_ms: deque[float] = deque(maxlen=window)

    def record(self, total_ms: float, engine_ms: float) -> None:
        self._total_ms.append(total_ms)
        self._engine_ms.append(engine_ms)
        self._overhead_ms.append(max(0.0, total_ms - engine_ms))

    def summary(self) -> dict[str, float | int | None]:
        """Count and p50 / p95 of the request's time in the server (total), in the engine, and outside it."""
        return {"count": len(self._total_ms), **_percentiles("total", self._total_ms),
                **_percentiles("engine", self._engine_ms), **_percentiles("overhead", self._overhead_ms)}


def _percentiles(name: str, values: deque[float]) -> dict[str, float | None]:
    if not values:
        return {f"{name}P50Ms": None, f"{name}P95Ms": None}
    if len(values) == 1:
        return {f"{name}P50Ms": values[0], f"{name}P95Ms": values[0]}
    cuts = quantiles(values, n=100, method="inclusive")
    return {f"{name}P50Ms": round(cuts[49], 3), f"{name}P95Ms": round(cuts[94], 3)}
