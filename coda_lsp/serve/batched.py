"""BatchedBackend: every request's rows decoded in shared forward passes on one engine thread (continuous batching).

Requests that arrive while others decode join at the next pass boundary and leave when done; each keeps its own
canvas, cache and sampling state, so a greedy answer is the same whatever else shares its passes (see
coda_engine.batching for why the products have fixed shapes on the CPU). Admission control keeps at most
`max_rows` rows in flight and `max_queue` requests waiting; past that a request is refused (Overloaded: 503).
Each client's finished canvases are kept (CanvasStore) so its next request, which mostly shares the prompt
(llama.vim warms the cache with `n_predict: 0`, then types), starts from their keys and values.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from coda_engine.batching import default_row_chunk, shared_pass
from coda_engine.cache import CanvasCache, common_length, shared_prefix
from coda_engine.engine import FAST, Engine, InfillRun, WarmRun
from coda_engine.errors import Cancelled
from coda_lsp.serve.backend import InfillJob, InfillOutcome, Overloaded, PassObserver

logger = logging.getLogger(__name__)

# The cache policy of served requests: the fast path's, reusing a client's canvas up to this many times in a
# row before one request computes its whole canvas again (the language server's default, settings.cache_reuse).
SERVED_CACHE = replace(FAST.cache, reuse=8)
_CANVASES_PER_CLIENT = 4  # llama.vim keeps a few cursor positions warm; more would let one client crowd out others
_IDLE_WAIT_S = 0.5


@dataclass
class _Request:
    """A job on its way through the engine thread; `stop` is set when its caller went away."""

    job: InfillJob
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[InfillOutcome]
    stop: threading.Event = field(default_factory=threading.Event)
    run: InfillRun | WarmRun | None = None
    started_from: tuple[str, int] | None = None  # the store entry its cache came from
    reused: int = 0
    evaluated: int = 0
    admitted: float = 0.0
    first_pass_ms: float = 0.0
    rows: int = 1

    @property
    def passes(self) -> int:
        return self.run.blockwise.trace.num_forward_passes if isinstance(self.run, InfillRun) else 1


class CanvasStore:
    """Finished canvases and their keys and values, by client, within a byte budget, least recently used out
    first. A request starts from the client's canvas that shares the most tokens with its own."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, int], CanvasCache] = OrderedDict()
        self._next_id = 0

    @property
    def num_bytes(self) -> int:
        return sum(entry.cache.num_bytes for entry in self._entries.values())

    def best(self, client: str, ids: list[int], span: tuple[int, int]) -> tuple[tuple[str, int], CanvasCache] | None:
        """The client's entry sharing the most prefix and suffix tokens with canvas `ids`, marked recently used."""
        best, best_shared = None, 0
        for key, entry in self._entries.items():
            if key[0] != client:
                continue
            shared = shared_prefix(entry.ids[:entry.span[0]], ids[:span[0]])[1] + common_length(
                entry.ids[entry.span[1]:], ids[span[1]:])
            if shared > best_shared:
                best, best_shared = key, shared
        if best is None:
            return None
        self._entries.move_to_end(best)
        return best, self._entries[best]

    def put(self, client: str, canvas: CanvasCache, replacing: tuple[str, int] | None) -> None:
        """Keep `canvas` for `client`, in place of the entry its request started from (its successor)."""
        if replacing is not None:
            self._entries.pop(replacing, None)
        key = (client, self._next_id)
        self._next_id += 1
        self._entries[key] = canvas
        own = [k for k in self._entries if k[0] == client]
        for old in own[:-_CANVASES_PER_CLIENT]:
            del self._entries[old]
        while self._entries and self.num_bytes > self.budget_bytes:
            self._entries.popitem(last=False)


class BatchedBackend:
    """coda_lsp.serve.backend.Backend over one Engine, decoding every request in shared passes."""

    def __init__(self, engine: Engine, observer: PassObserver | None = None, *, max_rows: int = 16,
                 max_queue: int = 64, cache_mb: float = 512, warm_span: int = 64,
                 row_chunk: int | None | str = "auto") -> None:
        if max_rows < 1 or max_queue < 0:
            raise ValueError(f"max_rows must be >= 1 and max_queue >= 0, got {max_rows} and {max_queue}")
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.max_positions = engine.config.max_position_embeddings
        self.model_name = engine.path.name
        self.device = str(engine.device)
        self.observer = observer
        self.max_rows, self.max_queue, self.warm_span = max_rows, max_queue, warm_span
        self.row_chunk = (default_row_chunk(engine.device, FAST.block_size, SERVED_CACHE.margin)
                          if row_chunk == "auto" else row_chunk)
        self.store = CanvasStore(int(cache_mb * 2**20))
        self.num_passes = 0
        self._waiting: deque[_Request] = deque()
        self._active: list[_Request] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="coda-batch", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, model: str, device: str = "auto", dtype: str | None = "auto",
             observer: PassObserver | None = None, **options: Any) -> "BatchedBackend":
        """Load the model (coda_engine's one-line CheckpointError on a bad folder) and warm it up."""
        engine = Engine.from_pretrained(model, device=device, dtype=dtype)
        engine.warm_up((24, 64))
        return cls(engine, observer, **options)

    async def infill(self, job: InfillJob) -> InfillOutcome:
        """The job's outcome, decoded with whatever else is in flight. Raises Overloaded when the queue is full;
        cancelling the awaiting task stops the job's rows before the next pass."""
        if job.max_tokens < 0 or not job.temperatures or any(t < 0 for t in job.temperatures):
            raise ValueError("a job needs max_tokens >= 0 and at least one temperature >= 0")
        loop = asyncio.get_running_loop()
        request = _Request(job, loop, loop.create_future(), rows=len(job.temperatures))
        with self._wake:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise Overloaded(self._retry_after_s())
            self._waiting.append(request)
            self._report_queue()
            self._wake.notify()
        try:
            return await request.future
        except asyncio.CancelledError:
            request.stop.set()
            with self._wake:
                self._wake.notify()
            raise

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    @property
    def rows_in_flight(self) -> int:
        return sum(r.rows for r in self._active)

    def _retry_after_s(self) -> int:
        """A guess at when a queue slot frees up: the requests ahead times a recent request's passes."""
        return max(1, min(30, len(self._waiting) // max(1, self.max_rows)))

    def _report_queue(self) -> None:
        if self.observer is not None:
            self.observer.queue_depth(len(self._waiting), self.rows_in_flight)

    # The engine thread.

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._active:
                    self._wake.wait(_IDLE_WAIT_S)
                if self._closed:
                    break
                admitted = self._admit()
            try:
                for request in admitted:
                    self._start(request)
                self._drop_stopped()
                if self._active:
                    self._pass()
            except Exception as exc:  # a bug of ours: fail what is in flight, keep serving
                logger.exception("the batch loop failed; %d requests fail with it", len(self._active))
                for request in self._active:
                    self._fail(request, exc)
                self._active.clear()
        for request in [*self._active, *self._waiting]:
            self._fail(request, RuntimeError("the server is shutting down"))

    def _admit(self) -> list[_Request]:
        """Waiting requests that fit beside the rows in flight, first come first served (a request wider than
        max_rows runs once nothing else does, so it cannot starve)."""
        admitted: list[_Request] = []
        rows = self.rows_in_flight
        while self._waiting:
            request = self._waiting[0]
            if request.stop.is_set():
                self._waiting.popleft()
                continue
            if rows + request.rows > self.max_rows and (rows or admitted):
                break
            admitted.append(self._waiting.popleft())
            rows += request.rows
        self._report_queue()
        return admitted

    def _start(self, request: _Request) -> None:
        """Set the request's run up (its canvas, its cache from the client's best kept canvas)."""
        job, engine = request.job, self.engine
        span = job.max_tokens or self.warm_span
        try:
            ids, positions = engine.layout(job.prefix, job.suffix, span)
            found = self.store.best(job.client, ids, positions) if job.client is not None else None
            previous = found[1] if found is not None else None
            request.started_from = found[0] if found is not None else None
            if job.max_tokens == 0:
                request.run = engine.start_warm(job.prefix, job.suffix, span, SERVED_CACHE, previous)
            else:
                done_when = (lambda text: any(stop in text for stop in job.stop)) if job.stop else None
                request.run = engine.start_infill(job.prefix, job.suffix, job.temperatures, span, seed=job.seed,
                                                  cache=SERVED_CACHE, done_when=done_when,
                                                  previous=previous if job.client is not None else None)
        except Exception as exc:  # the request's own problem (a canvas too long, ...): its caller reports it
            self._fail(request, exc)
            return
        prefill = request.run.prefill if isinstance(request.run, WarmRun) else (
            request.run.blockwise.prefill if request.run is not None else None)
        request.reused = prefill.reused if prefill is not None else 0
        request.evaluated = len(ids) - request.reused
        if self.observer is not None and job.client is not None:
            self.observer.cache_lookup(request.reused > 0, request.reused)
        request.admitted = time.perf_counter()
        if request.run is None:  # a warm-up of a canvas already kept fresh
            self._answer(request, InfillOutcome((), (), (), len(ids), 0, 0.0, 0.0, 0))
            return
        self._active.append(request)

    def _drop_stopped(self) -> None:
        """Requests whose caller went away leave before the next pass (their cache is kept, as the language
        server keeps a stopped call's); those past their deadline are answered with what is decided."""
        now = time.monotonic()
        for request in list(self._active):
            if request.stop.is_set():
                self._active.remove(request)
                self._keep(request)
                self._cancel(request)
            elif request.job.deadline is not None and now >= request.job.deadline and request.passes > 0:
                self._active.remove(request)
                self._finish(request, deadline=True)

    def _pass(self) -> None:
        runs = [r.run.blockwise if isinstance(r.run, InfillRun) else r.run for r in self._active]
        try:
            shape = shared_pass(self.engine.model, runs, self.row_chunk)
        except Exception as exc:
            self._pass_failed(exc)
            return
        self.num_passes += 1
        if self.observer is not None:
            self.observer.pass_done(shape.rows, shape.positions)
        for request in list(self._active):
            if request.passes == 1 and not request.first_pass_ms:
                request.first_pass_ms = (time.perf_counter() - request.admitted) * 1000.0
            if request.run.done:
                self._active.remove(request)
                self._finish(request, deadline=False)
            elif request.job.on_progress is not None:
                texts = self._texts(request)[0]
                request.job.on_progress(texts)

    def _pass_failed(self, error: Exception) -> None:
        """A shared pass raised: in the kernels' `auto` mode the runs start again on the torch path; otherwise
        every request in the pass fails with the error (out of memory included) and the server goes on."""
        if self.engine._fall_back_from(error):
            for request in self._active:
                if isinstance(request.run, InfillRun):
                    request.run = request.run.again(self.engine)
                else:
                    request.run.done = False
            return
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
            error = MemoryError(f"out of memory on {self.engine.device} with {self.rows_in_flight} rows in "
                                f"flight; retry, or lower --max-rows")
        logger.error("a shared pass failed (%d requests): %s", len(self._active), error)
        for request in self._active:
            self._fail(request, error)
        self._active.clear()

    def _texts(self, request: _Request) -> tuple[tuple[str, ...], tuple[int, ...]]:
        assert isinstance(request.run, InfillRun)
        start, end = request.run.span
        texts, counts = [], []
        for row in request.run.blockwise.trace.canvas[:, start:end].tolist():
            text, count = self.engine.span_text(row)
            texts.append(text)
            counts.append(count)
        return tuple(texts), tuple(counts)

    def _finish(self, request: _Request, deadline: bool) -> None:
        self._keep(request)
        now_ms = (time.perf_counter() - request.admitted) * 1000.0
        if isinstance(request.run, WarmRun):
            self._answer(request, InfillOutcome((), (), (), request.reused, request.evaluated, now_ms, 0.0, 1))
            return
        texts, counts = self._texts(request)
        mask = self.engine.mask_token_id
        start, end = request.run.span
        rows = request.run.blockwise.trace.canvas[:, start:end]
        # A row stopped by its stop string or its line is finished; one cut by the deadline with masks left is not.
        finished = tuple(not deadline or not bool((row == mask).any()) for row in rows)
        self._answer(request, InfillOutcome(texts, finished, counts, request.reused, request.evaluated,
                                            request.first_pass_ms, max(0.0, now_ms - request.first_pass_ms),
                                            request.passes))

    def _keep(self, request: _Request) -> None:
        """Keep the request's canvas for its client's next request (never one whose first pass did not finish)."""
        job, run = request.job, request.run
        if job.client is None or run is None:
            return
        if isinstance(run, WarmRun):
            if run.done:
                self.store.put(job.client, run.kept(), request.started_from)
            return
        trace = run.blockwise.trace
        if trace.num_forward_passes:
            self.store.put(job.client, run.kept(trace), request.started_from)

    def _answer(self, request: _Request, outcome: InfillOutcome) -> None:
        request.loop.call_soon_threadsafe(_settle, request.future, outcome, None)

    def _fail(self, request: _Request, error: BaseException) -> None:
        request.loop.call_soon_threadsafe(_settle, request.future, None, error)

    def _cancel(self, request: _Request) -> None:
        self._fail(request, Cancelled(request.passes))


def _settle(future: asyncio.Future[InfillOutcome], outcome: InfillOutcome | None,
            error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert outcome is not None
        future.set_result(outcome)
