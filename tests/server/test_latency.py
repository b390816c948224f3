"""latency: p50 / p95 of total, engine and outside-engine time over a window of recent requests."""

from __future__ import annotations

from coda_lsp.latency import LatencyTracker


def test_empty_and_single() -> None:
    tracker = LatencyTracker()
    assert tracker.summary()["totalP50Ms"] is None
    tracker.record(10.0, 8.0)
    assert tracker.summary() == {"count": 1, "totalP50Ms": 10.0, "totalP95Ms": 10.0, "engineP50Ms": 8.0,
                                 "engineP95Ms": 8.0, "overheadP50Ms": 2.0, "overheadP95Ms": 2.0}


def test_percentiles_over_the_window() -> None:
    tracker = LatencyTracker(window=100)
    for value in range(1, 201):  # only the last 100 (101..200) stay
        tracker.record(float(value), float(value) - 1.0)
    summary = tracker.summary()
    assert summary["count"] == 100
    assert summary["totalP50Ms"] == 150.5 and summary["totalP95Ms"] == 195.05
    assert summary["overheadP50Ms"] == 1.0
