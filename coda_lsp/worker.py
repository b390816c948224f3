"""One engine thread behind an asyncio queue; the newest request per document wins; cancel via should_stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
StopCheck = Callable[[], bool]


@dataclass
class _Job:
    run: Callable[[StopCheck], Any]
    future: asyncio.Future[Any]
    stop: threading.Event = field(default_factory=threading.Event)


class EngineWorker:
    """Runs engine calls one at a time on a single thread (the engine is not thread-safe and one forward pass
    already uses every core). Jobs wait in an asyncio queue; a job whose caller went away is skipped, and one
    that is running sees `should_stop()` turn True, which the engine checks between denoising steps."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coda-engine")
        self._queue: asyncio.Queue[_Job] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._running: _Job | None = None

    async def run(self, fn: Callable[[StopCheck], T]) -> T:
        """`fn(should_stop)` on the engine thread, after the jobs queued before it. Cancelling the awaiting task
        stops the job: skipped if still queued, stopped within one denoising step if running."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.create_task(self._consume())
        job = _Job(fn, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.stop.set()
            raise

    async def _consume(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            if job.stop.is_set() or job.future.done():
                continue
            self._running = job
            try:
                result = await loop.run_in_executor(self._executor, job.run, job.stop.is_set)
            except Exception as exc:  # the job's caller decides what an engine error means
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(result)
            finally:
                self._running = None

    def close(self) -> None:
        """Cancel every job, stopping the running one at its next step: the interpreter joins the engine thread
        at exit, so an unstopped infill would keep a shut-down server alive."""
        jobs = [] if self._running is None else [self._running]
        while self._queue is not None and not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        for job in jobs:
            job.stop.set()
            job.future.cancel()
        if self._consumer is not None:
            self._consumer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


class LatestWins:
    """The newest request per key (method and document) wins: registering a request cancels the task of the
    one it replaces, which pygls then answers with RequestCancelled (-32800). Neovim never cancels a superseded
    automatic request itself, so without this every keystroke would queue an infill."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def claim(self, key: Hashable) -> None:
        """Make the current task the newest for `key`, cancelling the previous one if it is still running."""
        task = asyncio.current_task()
        assert task is not None, "claim() runs inside a request handler's task"
        previous = self._tasks.get(key)
        if previous is not None and previous is not task and not previous.done():
            previous.cancel()
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
