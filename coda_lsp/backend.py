"""The Backend protocol: what both front ends (the language server, the HTTP server) ask of a model.

Every infill is one coda_engine.jobs.InfillJob, answered by one InfillOutcome. Three backends implement it:
backends.local (the scheduler in this process), backends.http (a `coda-lsp serve`, for `coda-lsp --remote`) and
backends.ray (Ray Serve replicas, for `coda-lsp serve --ray`). A job cancelled while it is awaited stops within
one pass, wherever it runs."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Protocol

from coda_engine.jobs import InfillJob, InfillOutcome
from coda_engine.tokenizer import Tokenizer

JOB_DONE = object()  # the end of a progress queue (start_streamed): the job's task is done


class BackendUnavailable(Exception):
    """The backend cannot answer now (`--remote`: the server is down or failed); the request gets no completion,
    and the user hears of it once, not per keystroke."""


class Backend(Protocol):
    tokenizer: Tokenizer   # the model's: context budgets and truncation count tokens as the model does
    max_positions: int     # canvas positions the model takes (prefix + span + suffix)
    model_name: str
    device: str            # where the model runs: "cpu", "cuda:0", a server's URL
    works_ahead: bool      # whether it runs Priority.AHEAD jobs below requests (otherwise none are sent)

    async def infill(self, job: InfillJob) -> InfillOutcome: ...
    def describe(self) -> dict[str, Any]: ...  # weights, kernels, queue and work ahead: coda/status, GET /props
    def close(self) -> None: ...


def start_streamed(backend: Backend, job: InfillJob) -> tuple[asyncio.Task[InfillOutcome], asyncio.Queue[Any]]:
    """Start `job` on the event loop's side; each pass's decided texts, sent from the engine's thread, arrive in
    the queue, then JOB_DONE once the task is done."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def progress(texts: tuple[str, ...]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, texts)
        except RuntimeError:  # the loop closed: the server is stopping
            pass

    task = asyncio.ensure_future(backend.infill(replace(job, on_progress=progress)))
    task.add_done_callback(lambda _: queue.put_nowait(JOB_DONE))
    return task, queue
