"""worker: one thread, jobs in order, cancelled callers stop their job; LatestWins cancels the older task."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from coda_lsp.worker import EngineWorker, LatestWins, StopCheck


def _steps(num_steps: int, step_s: float, log: list[str], name: str):
    """A job shaped like a denoising loop: `num_steps` steps, should_stop checked between them."""
    def run(should_stop: StopCheck) -> str:
        for _ in range(num_steps):
            if should_stop():
                log.append(f"{name} stopped")
                raise RuntimeError("stopped")
            time.sleep(step_s)
        log.append(f"{name} done on {threading.current_thread().name}")
        return name
    return run


async def test_jobs_run_in_order_on_one_thread() -> None:
    worker, log = EngineWorker(), []
    results = await asyncio.gather(*(worker.run(_steps(2, 0.001, log, f"job{i}")) for i in range(3)))
    assert results == ["job0", "job1", "job2"]
    assert [entry.split(" on ")[0] for entry in log] == ["job0 done", "job1 done", "job2 done"]
    assert len({entry.split(" on ")[1] for entry in log}) == 1
    worker.close()


async def test_cancelled_caller_stops_its_job_within_a_step() -> None:
    worker, log = EngineWorker(), []
    task = asyncio.create_task(worker.run(_steps(1000, 0.01, log, "long")))
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await worker.run(_steps(1, 0.0, log, "next")) == "next"
    assert time.perf_counter() - started < 0.5  # one 10 ms step, not the 10 s job
    assert log[0] == "long stopped"


async def test_queued_job_of_a_cancelled_caller_never_runs() -> None:
    worker, log = EngineWorker(), []
    first = asyncio.create_task(worker.run(_steps(5, 0.01, log, "first")))
    queued = asyncio.create_task(worker.run(_steps(1, 0.0, log, "queued")))
    await asyncio.sleep(0.01)
    queued.cancel()
    assert await first == "first"
    assert await worker.run(_steps(1, 0.0, log, "last")) == "last"
    assert not any(entry.startswith("queued") for entry in log)


async def test_errors_reach_the_caller() -> None:
    worker = EngineWorker()

    def fail(should_stop: StopCheck) -> None:
        raise ValueError("prompt too long")

    with pytest.raises(ValueError, match="prompt too long"):
        await worker.run(fail)


async def test_latest_wins_cancels_the_previous_request_for_the_same_key() -> None:
    latest = LatestWins()

    async def request(key: str, duration_s: float) -> str:
        latest.claim(key)
        await asyncio.sleep(duration_s)
        return key

    older = asyncio.create_task(request("doc-a", 1.0))
    other = asyncio.create_task(request("doc-b", 0.05))
    await asyncio.sleep(0.01)
    newer = asyncio.create_task(request("doc-a", 0.05))
    assert await newer == "doc-a" and await other == "doc-b"
    with pytest.raises(asyncio.CancelledError):
        await older


async def test_close_cancels_jobs_and_stops_the_running_one() -> None:
    worker, log = EngineWorker(), []
    running = asyncio.create_task(worker.run(_steps(1000, 0.01, log, "long")))
    queued = asyncio.create_task(worker.run(_steps(1, 0.0, log, "queued")))
    await asyncio.sleep(0.05)
    worker.close()
    for task in (running, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=1.0)
    await asyncio.sleep(0.05)  # one step for the engine thread to see the stop
    assert log == ["long stopped"]
