"""The scheduler: every job's rows decoded in shared forward passes on one thread (continuous batching), requests
before work ahead of the user.

Jobs join at the next pass and leave when done, each with its own canvas, cache and sampling state, so a greedy
answer is the same whatever else shares its passes (batching.py). Admission keeps at most `max_rows` rows in
flight and `max_queue` jobs waiting, then refuses (Overloaded). Work ahead of the user (Priority.AHEAD) runs only
while no request waits or decodes; an arriving request stops its pass between layers (it runs again later). A
job whose `key` equals one in flight joins it at the higher priority, so a request for what is being prepared
ahead waits for that work. Each client's finished canvases, and those of jobs stopped after their first pass,
are kept (CanvasStore): its next job, which mostly shares the prompt, starts from their keys and values.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch

from .batching import default_row_chunk, shared_pass
from .canvas_store import CanvasStore, StoreKey
from .engine import Engine, Run
from .errors import Overloaded, one_line
from .jobs import InfillJob, InfillOutcome, PassObserver, Priority
from .params import SERVED

log = logging.getLogger("coda_engine.scheduler")

_IDLE_WAIT_S = 0.5


class Ticket:
    """A submitted job's answer, and the way to withdraw from it: once every ticket of a job is withdrawn, the
    job stops before its next pass (its cold first pass, between layers)."""

    def __init__(self, scheduler: Scheduler, entry: _Entry) -> None:
        self.future: Future[InfillOutcome] = Future()
        self._scheduler, self._entry = scheduler, entry

    def cancel(self) -> None:
        self._scheduler._withdraw(self, self._entry)


@dataclass(eq=False)
class _Entry:
    """A job on its way through the scheduler, with every ticket waiting for it."""

    job: InfillJob
    priority: Priority
    order: int                                      # arrival, first come first served within a priority
    tickets: list[Ticket] = field(default_factory=list)
    run: Run | None = None
    started_from: StoreKey | None = None            # the kept canvas its cache came from
    evaluated: int = 0
    admitted: float = 0.0
    first_pass_ms: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.job.temperatures)

    @property
    def stopped(self) -> bool:
        return not self.tickets


@dataclass
class AheadCounts:
    """What work ahead of the user came to (coda/status)."""

    submitted: int = 0
    finished: int = 0
    joined: int = 0      # requests that found their answer being prepared ahead, and waited for it
    preempted: int = 0   # times a request stopped or paused it


class Scheduler:
    """Runs an Engine's jobs on a thread of its own; `submit` may be called from any thread."""

    def __init__(self, engine: Engine, observer: PassObserver | None = None) -> None:
        options = engine.options
        self.engine, self.observer = engine, observer
        self.max_rows, self.max_queue = options.max_rows, options.max_queue
        self.row_chunk = (default_row_chunk(engine.device, SERVED.block_size, SERVED.cache)
                          if options.row_chunk == "auto" else options.row_chunk)
        self.store = CanvasStore(int(options.cache_mb * 2**20))
        self.num_passes = 0
        self.ahead = AheadCounts()
        self._waiting: list[_Entry] = []
        self._active: list[_Entry] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="coda-scheduler", daemon=True)
        self._thread.start()

    def submit(self, job: InfillJob) -> Ticket:
        """Queue `job` (or join the job in flight with its key); Overloaded when the queue is full."""
        with self._wake:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            entry = self._in_flight(job.key)
            if entry is not None:
                if job.priority > entry.priority:
                    entry.priority = job.priority
                    self.ahead.joined += 1
            else:
                # Withdrawn jobs leave the queue here too, not only between passes: a flood of requests that are
                # cancelled as fast as they come must not fill it while a long pass runs.
                self._waiting = [waiting for waiting in self._waiting if not waiting.stopped]
                if len(self._waiting) >= self.max_queue:
                    raise Overloaded(self._retry_after_s())
                entry = _Entry(job, job.priority, next(self._order))
                self._waiting.append(entry)
                self.ahead.submitted += job.priority == Priority.AHEAD
            ticket = Ticket(self, entry)
            entry.tickets.append(ticket)
            self._report_queue()
            self._wake.notify()
        return ticket

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    @property
    def rows_in_flight(self) -> int:
        return sum(entry.rows for entry in self._active)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def _in_flight(self, key: str | None) -> _Entry | None:
        if key is None:
            return None
        return next((e for e in (*self._active, *self._waiting) if e.job.key == key and not e.stopped), None)

    def _withdraw(self, ticket: Ticket, entry: _Entry) -> None:
        with self._wake:
            if ticket in entry.tickets:
                entry.tickets.remove(ticket)
            self._wake.notify()
        ticket.future.cancel()

    def _retry_after_s(self) -> int:
        """A guess at when a queue slot frees up: the jobs ahead, a batch of them at a time."""
        return max(1, min(30, len(self._waiting) // max(1, self.max_rows)))

    def _report_queue(self) -> None:
        if self.observer is not None:
            self.observer.queue_depth(len(self._waiting), self.rows_in_flight)

    def _requests_pending(self) -> bool:
        return any(e.priority == Priority.REQUEST and not e.stopped for e in (*self._active, *self._waiting))

    # The scheduler's thread.

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._active:
                    self._wake.wait(_IDLE_WAIT_S)
                if self._closed:
                    break
                admitted = self._admit()
            try:
                for entry in admitted:
                    self._start(entry)
                self._drop_stopped()
                runnable = self._runnable()
                if runnable:  # none: a request was queued since admission, and the work ahead waits for it
                    self._pass(runnable)
            except Exception as exc:  # a bug of ours: fail what is in flight, keep serving
                log.exception("the scheduler failed; %d jobs fail with it", len(self._active))
                for entry in self._active:
                    self._fail(entry, exc)
                self._active.clear()
        for entry in [*self._active, *self._waiting]:
            self._fail(entry, RuntimeError("the server is shutting down"))

    def _admit(self) -> list[_Entry]:
        """Waiting jobs that fit beside the rows in flight: requests first come first served (one wider than
        max_rows runs once nothing else does, so it cannot starve), work ahead only while no request is waiting
        or decoding."""
        admitted: list[_Entry] = []
        self._waiting = [entry for entry in self._waiting if not entry.stopped]
        for priority in (Priority.REQUEST, Priority.AHEAD):
            if priority == Priority.AHEAD and self._requests_pending():
                break
            rows = sum(e.rows for e in self._active if e.priority == priority)
            for entry in sorted((e for e in self._waiting if e.priority == priority), key=lambda e: e.order):
                if rows + entry.rows > self.max_rows and (rows or admitted):
                    break
                admitted.append(entry)
                rows += entry.rows
        self._waiting = [entry for entry in self._waiting if entry not in admitted]
        self._report_queue()
        return admitted

    def _runnable(self) -> list[_Entry]:
        """The jobs the next pass decodes: the requests, or while there are none, the work ahead."""
        requests = [e for e in self._active if e.priority == Priority.REQUEST]
        return requests if requests or self._requests_pending() else list(self._active)

    def _start(self, entry: _Entry) -> None:
        """Set the job's run up: its canvas, its cache from the client's best kept canvas."""
        job, engine = entry.job, self.engine
        entry.admitted = time.perf_counter()
        if job.params.exact:
            self._run_exact(entry)
            return
        try:
            ids, positions = engine.layout(job.prefix, job.suffix, job.max_tokens or engine.options.warm_span)
            found = self.store.best(job.client, ids, positions) if job.client is not None else None
            entry.started_from = found[0] if found is not None else None
            entry.run = engine.start(job, found[1] if found is not None else None)
        except Exception as exc:  # the job's own problem (a canvas too long, ...): its caller reports it
            self._fail(entry, exc)
            return
        reused = entry.run.reused if entry.run is not None else 0
        entry.evaluated = len(ids) - reused
        if self.observer is not None and job.client is not None:
            self.observer.cache_lookup(reused > 0, reused)
        if entry.run is None:  # a warm-up of a canvas already kept fresh
            self._answer(entry, InfillOutcome((), (), (), len(ids), 0, 0.0, 0.0, 0))
            return
        self._active.append(entry)

    def _run_exact(self, entry: _Entry) -> None:
        """CoDA's reference loop, one row after another, alone: it has no pass-by-pass form (it is for checks)."""
        try:
            results = self.engine.run(entry.job, should_stop=lambda: entry.stopped)
        except Exception as exc:
            self._fail(entry, exc)
            return
        elapsed_ms = (time.perf_counter() - entry.admitted) * 1000.0
        self._answer(entry, InfillOutcome(tuple(r.text for r in results), (True,) * len(results),
                                          tuple(len(self.engine.tokenizer.encode(r.text)) for r in results), 0,
                                          0, 0.0, elapsed_ms, sum(r.num_forward_passes for r in results)))

    def _drop_stopped(self) -> None:
        """Jobs whose every caller went away leave before the next pass (their cache is kept, as far as a pass
        computed it); those past their deadline are answered with what is decided."""
        now = time.monotonic()
        for entry in list(self._active):
            if entry.stopped:
                self._active.remove(entry)
                self._keep(entry)
            elif entry.job.deadline is not None and now >= entry.job.deadline and entry.run.passes > 0:
                self._active.remove(entry)
                self._finish(entry, deadline=True)

    def _pass(self, runnable: list[_Entry]) -> None:
        by_run = {id(entry.run): entry for entry in runnable}

        def should_stop(run: Run) -> bool:
            # A withdrawn job stops within its cold first pass (nothing is kept of it); later passes are short,
            # and finishing one keeps a cache its client's next job can start from. Work ahead yields to a
            # request in any pass: its state is as before the pass, which runs again later.
            entry = by_run[id(run)]
            if entry.priority == Priority.AHEAD and self._requests_pending():
                return True
            return entry.stopped and run.first_pass

        try:
            shape = shared_pass(self.engine.model, [entry.run for entry in runnable], self.row_chunk, should_stop)
        except Exception as exc:
            self._pass_failed(exc, runnable)
            return
        self.num_passes += 1
        if self.observer is not None and shape.rows:
            self.observer.pass_done(shape.rows, shape.positions)
        for entry in runnable:
            if id(entry.run) in shape.interrupted:
                # Its caller went away (nothing half-computed is kept), or a request preempted the work ahead,
                # whose pass runs again later.
                if entry.stopped:
                    self._active.remove(entry)
                else:
                    self.ahead.preempted += 1
                continue
            if entry.run.passes == 1 and not entry.first_pass_ms:
                entry.first_pass_ms = (time.perf_counter() - entry.admitted) * 1000.0
            if entry.run.done:
                self._active.remove(entry)
                self._finish(entry, deadline=False)
            elif entry.job.on_progress is not None:
                entry.job.on_progress(self._texts(entry)[0])

    def _pass_failed(self, error: Exception, runnable: list[_Entry]) -> None:
        """A shared pass raised: in the kernels' `auto` mode the runs start again on the torch path; otherwise
        every job in the pass fails with the error (out of memory included) and the scheduler goes on."""
        if self.engine.fall_back(error):
            for entry in self._active:
                entry.run = entry.run.again(self.engine)
            return
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
            error = MemoryError(f"out of memory on {self.engine.device} with {self.rows_in_flight} rows in "
                                f"flight; retry, or lower --max-rows")
        log.error("a shared pass failed (%d jobs): %s", len(runnable), one_line(error))
        for entry in runnable:
            self._active.remove(entry)
            self._fail(entry, error)

    def _texts(self, entry: _Entry) -> tuple[tuple[str, ...], tuple[int, ...]]:
        decoded = [self.engine.span_text(row) for row in entry.run.span_rows()]
        return tuple(text for text, _ in decoded), tuple(count for _, count in decoded)

    def _finish(self, entry: _Entry, deadline: bool) -> None:
        self._keep(entry)
        self.ahead.finished += entry.priority == Priority.AHEAD
        now_ms = (time.perf_counter() - entry.admitted) * 1000.0
        reused = entry.run.reused
        if entry.job.is_warm_up:
            self._answer(entry, InfillOutcome((), (), (), reused, entry.evaluated, now_ms, 0.0, 1))
            return
        texts, counts = self._texts(entry)
        mask = self.engine.mask_token_id
        # A row stopped by its stop string or its line is finished; one cut by the deadline with masks left is not.
        finished = tuple(not deadline or mask not in row for row in entry.run.span_rows())
        self._answer(entry, InfillOutcome(texts, finished, counts, reused, entry.evaluated, entry.first_pass_ms,
                                          max(0.0, now_ms - entry.first_pass_ms), entry.run.passes))

    def _keep(self, entry: _Entry) -> None:
        """Keep the job's canvas for its client's next job (never one whose first pass did not finish)."""
        if entry.job.client is None or entry.run is None:
            return
        kept = entry.run.kept()
        if kept is not None:
            self.store.put(entry.job.client, kept, entry.started_from)

    def _answer(self, entry: _Entry, outcome: InfillOutcome) -> None:
        for ticket in list(entry.tickets):
            with contextlib.suppress(InvalidStateError):  # its caller cancelled it meanwhile
                ticket.future.set_result(outcome)

    def _fail(self, entry: _Entry, error: BaseException) -> None:
        for ticket in list(entry.tickets):
            with contextlib.suppress(InvalidStateError):
                ticket.future.set_exception(error)

    def describe(self) -> dict[str, object]:
        """What coda/status and GET /props show of the queue and of the work ahead."""
        return {"maxRows": self.max_rows, "rowsInFlight": self.rows_in_flight, "waiting": len(self._waiting),
                "passes": self.num_passes,
                "keptCanvases": len(self.store), "keptMiB": round(self.store.num_bytes / 2**20, 1),
                "ahead": vars(self.ahead).copy()}
