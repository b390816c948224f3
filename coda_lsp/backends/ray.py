"""RayBackend (`coda-lsp serve --ray`): the same HTTP app and uvicorn in this process, each InfillJob forwarded
over a DeploymentHandle to an EngineReplica (a Ray Serve replica holding a LocalBackend); ClientAffinityRouter
sends a client's requests to the replica that holds its cache. Why not `@serve.ingress(app)`: docs/cluster.md,
"What runs where"."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.config import RequestRouterConfig
from ray.serve.exceptions import ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle
from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from coda_engine.config import load_config
from coda_engine.tokenizer import load_tokenizer
from coda_engine.errors import Overloaded, one_line
from coda_engine.jobs import InfillJob, InfillOutcome, PassObserver, ProgressCallback
from coda_engine.params import EngineOptions
from coda_lsp.backend import JOB_DONE, start_streamed
from coda_lsp.backends.local import LocalBackend

logger = logging.getLogger(__name__)

APP_NAME = "coda-lsp"  # the Serve application; one `coda-lsp serve --ray` per Ray cluster
_RETRY_BACKOFF_S = 0.2  # a killed replica leaves the router's set within a few hundred ms


@dataclass(frozen=True)
class ClusterOptions:
    """The replicas' shape: how many, what each holds, and each one's engine."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None  # (min, max) replicas instead of a fixed number
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0             # Ray sets each replica's OMP_NUM_THREADS from it
    # The device is resolved in each replica: its GPUs are the ones Ray gave it.
    engine: EngineOptions = EngineOptions(device="auto", dtype="auto")
    retries: int = 3                          # re-sends of a job whose replica died

    @property
    def max_replicas(self) -> int:
        return self.autoscale[1] if self.autoscale is not None else self.replicas


# ---- the replica ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaAnswer:
    """A job's outcome, or the exception it raised, and what the replica's PassObserver saw since its previous
    answer: metrics.py lives in the ingress, so the replica's counters travel back with the answers and are
    replayed there. An exception travels as a value: raised, Ray would wrap it (its message a traceback) and log
    each one, an Overloaded under load included."""

    outcome: InfillOutcome | None
    error: Exception | None
    replica: str                              # Serve's replica id (a new one after a restart)
    passes: tuple[tuple[int, int], ...]       # (rows, tokens) of each batched pass
    lookups: tuple[tuple[bool, int], ...]     # (hit, reused tokens) of each cache lookup
    queue: tuple[int, int]                    # (waiting, rows in flight) when it answered


class _Recorder:
    """The replica's PassObserver: keeps what it is told until the next answer takes it (from the engine thread
    and the replica's event loop, hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes: list[tuple[int, int]] = []
        self._lookups: list[tuple[bool, int]] = []
        self._queue = (0, 0)

    def pass_done(self, rows: int, tokens: int) -> None:
        with self._lock:
            self._passes.append((rows, tokens))

    def cache_lookup(self, hit: bool, reused_tokens: int) -> None:
        with self._lock:
            self._lookups.append((hit, reused_tokens))

    def queue_depth(self, waiting: int, rows_in_flight: int) -> None:
        with self._lock:
            self._queue = (waiting, rows_in_flight)

    def answer(self, outcome: InfillOutcome | None, error: Exception | None, replica: str) -> ReplicaAnswer:
        with self._lock:
            passes, lookups = tuple(self._passes), tuple(self._lookups)
            self._passes.clear()
            self._lookups.clear()
            return ReplicaAnswer(outcome, error, replica, passes, lookups, self._queue)


class EngineReplica:
    """One engine and its scheduler in a Ray Serve replica. Jobs arrive without their progress callback
    (callables stay in their process) and with their deadline on the wall clock (time.monotonic() is per
    machine)."""

    def __init__(self, model: str, options: EngineOptions) -> None:
        self.recorder = _Recorder()
        self.backend = LocalBackend.load(model, options, self.recorder)
        self.replica = serve.get_replica_context().replica_id.unique_id

    async def infill(self, job: InfillJob, deadline_at: float | None) -> ReplicaAnswer:
        try:
            outcome = await self.backend.infill(_local_deadline(job, deadline_at))
        except Exception as exc:
            return self.recorder.answer(None, exc, self.replica)
        return self.recorder.answer(outcome, None, self.replica)

    async def infill_stream(self, job: InfillJob,
                            deadline_at: float | None) -> AsyncIterator[tuple[str, ...] | ReplicaAnswer]:
        """Each pass's decided texts (as the callback would have had them), then the answer."""
        task, queue = start_streamed(self.backend, _local_deadline(job, deadline_at))
        try:
            while (item := await queue.get()) is not JOB_DONE:
                yield item
            error = task.exception()
            yield self.recorder.answer(None if error else task.result(), error, self.replica)
        finally:  # the caller went away (Serve cancels the generator): stop the rows within one pass
            task.cancel()

    def __del__(self) -> None:  # Serve calls it when it stops the replica, also one whose __init__ failed
        if hasattr(self, "backend"):
            self.backend.close()


def _local_deadline(job: InfillJob, deadline_at: float | None) -> InfillJob:
    if deadline_at is None:
        return job
    return replace(job, deadline=time.monotonic() + (deadline_at - time.time()))


# ---- cache affinity -------------------------------------------------------------------------------------------


class ClientAffinityRouter(RequestRouter):
    """Each client's requests to the replica its rendezvous hash picks, unless that one has `spill_at` requests
    in flight (docs/cluster.md, "Cache affinity"); jobs without a client to the least loaded replica."""

    def initialize_state(self, spill_at: int = 16) -> None:
        self.spill_at = spill_at

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        args = pending_request.args if pending_request is not None else ()
        client = next((arg.client for arg in args if isinstance(arg, InfillJob)), None)
        if client is None or len(candidate_replicas) < 2:
            return [candidate_replicas]
        ranked = sorted(candidate_replicas, key=lambda r: _affinity(client, r.replica_id.unique_id), reverse=True)
        load = self.replica_queue_len_cache.get(ranked[0].replica_id)
        if load is not None and load >= self.spill_at:
            return [ranked]
        # Ranks are tried in order; within a rank Serve picks the shortest queue that is not full.
        return [ranked[:1], ranked[1:]]


def _affinity(client: str, replica: str) -> int:
    # A stable hash: Python's hash() of a str differs between processes.
    return int.from_bytes(hashlib.blake2b(f"{client}\0{replica}".encode(), digest_size=8).digest(), "big")


# ---- the ingress side -----------------------------------------------------------------------------------------


def backend_factory(model: Path, options: ClusterOptions,
                    num_cpus: int | None = None) -> Callable[[PassObserver], RayBackend]:
    """Connect to Ray now, in the calling (main) thread: the handles of a Ray started from another thread never
    reach their replicas. The factory, which create_app calls in its loading thread, deploys the replicas and
    waits until each has loaded the model. ValueError with one line when Ray cannot be joined or the replicas
    would wait for GPUs this machine does not have."""
    owns_ray = connect(num_cpus)
    try:
        if owns_ray:
            # On this machine alone (a cluster may add nodes), replicas that ask for more GPUs than it has would
            # wait for them forever.
            needed = options.gpus_per_replica * (options.autoscale[0] if options.autoscale else options.replicas)
            available = ray.cluster_resources().get("GPU", 0)
            if needed > available:
                raise ValueError(f"the replicas need {needed:g} GPUs (--gpus-per-replica x replicas); this machine "
                                 f"has {available:g}")
        elif APP_NAME in serve.status().applications:
            raise ValueError(f"the Ray cluster already runs a Serve application {APP_NAME!r} (another `coda-lsp "
                             "serve --ray`, or what a killed one left): stop that server, or delete the "
                             "application (docs/cluster.md, \"Leftovers\")")
    except ValueError:
        ray.shutdown()  # of a joined cluster: disconnects this process only
        raise
    return lambda observer: RayBackend.start(model, options, observer, owns_ray)


def connect(num_cpus: int | None = None) -> bool:
    """Join the cluster at RAY_ADDRESS (one started with `ray start --head`), else start a local Ray instance
    without its dashboard. True when this process started Ray (and so stops it at close)."""
    if ray.is_initialized():
        return False
    if address := os.environ.get("RAY_ADDRESS"):
        try:
            ray.init(address="auto")
        except ConnectionError as exc:
            raise ValueError(f"cannot join the Ray cluster at RAY_ADDRESS={address}: {one_line(exc)}") from None
        return False
    # "local": a new instance, never one that `ray start` left on this machine (Ray's default would join it).
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    return True


def engine_application(model: Path, options: ClusterOptions) -> serve.Application:
    """The Serve application of the engine replicas, shaped by `options`."""
    scaling: dict[str, Any] = {"num_replicas": options.replicas}
    if options.autoscale is not None:
        # Scale out once a replica has more than a full batch in flight on average.
        scaling = {"autoscaling_config": {"min_replicas": options.autoscale[0], "max_replicas": options.autoscale[1],
                                          "target_ongoing_requests": options.engine.max_rows}}
    deployment = serve.deployment(
        name="EngineReplica",
        # What a replica's scheduler holds, a batch and its queue (RayBackend refuses what all replicas cannot hold;
        # Serve keeps the rest in the ingress while a replica restarts or the autoscaler adds one).
        max_ongoing_requests=options.engine.max_rows + options.engine.max_queue,
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.gpus_per_replica},
        request_router_config=RequestRouterConfig(request_router_class=ClientAffinityRouter,
                                                  request_router_kwargs={"spill_at": options.engine.max_rows}),
        # A folder missing on a node, a CUDA error: fail the deployment after a few tries, not twenty.
        max_constructor_retry_count=3,
        **scaling,
    )(EngineReplica)
    # Absolute: a replica's working directory is its raylet's, not this process's.
    return deployment.bind(str(model.resolve()), options.engine)


class RayBackend:
    """coda_lsp.backend.Backend over EngineReplicas: jobs go out over a DeploymentHandle, their errors come back
    as the replica raised them, and a job whose replica died is sent again (to another one). Like a scheduler it
    refuses a job (Overloaded) once every replica's batch and queue would be full."""

    works_ahead = False  # behind the HTTP server, which never sends work ahead

    def __init__(self, handle: DeploymentHandle, model: Path, options: ClusterOptions,
                 observer: PassObserver | None = None, owns_ray: bool = False) -> None:
        self.tokenizer = load_tokenizer(model)
        self.max_positions = load_config(model).max_position_embeddings
        self.model_name = model.name
        engine = options.engine
        self.device = f"{engine.device} in each of {options.max_replicas} Ray Serve replicas (at most)"
        self.max_rows = engine.max_rows * options.max_replicas  # GET /props' total_slots
        self.handle = handle
        self.retries = options.retries
        self.observer = observer
        self.capacity = options.max_replicas * (engine.max_rows + engine.max_queue)
        self.retry_after_s = max(1, min(30, engine.max_queue // engine.max_rows))  # as a full scheduler's
        self.num_retried = 0
        self.jobs_in_flight = 0
        self.answers_by_replica: Counter[str] = Counter()  # what each replica answered (a restarted one is new)
        self._streams = handle.options(stream=True)
        self._owns_ray = owns_ray
        self._queues: dict[str, tuple[int, int]] = {}  # each replica's (waiting, rows in flight), summed

    @classmethod
    def start(cls, model: Path, options: ClusterOptions, observer: PassObserver | None = None,
              owns_ray: bool = False) -> RayBackend:
        """Deploy the replicas (Ray connected: see backend_factory) and wait until each has loaded the model;
        `owns_ray`: stop Ray at close."""
        try:
            serve.start(proxy_location="Disabled")  # no HTTP proxy: our own uvicorn is the entry
            handle = serve.run(engine_application(model, options), name=APP_NAME, route_prefix=None,
                               logging_config={"log_level": "WARNING", "enable_access_log": False})
        except RuntimeError as exc:  # the replicas' constructors failed: say why, leave nothing deployed
            reason = _deploy_failure(exc)
            _stop(owns_ray)
            raise reason from None
        except BaseException:
            _stop(owns_ray)
            raise
        return cls(handle, model, options, observer, owns_ray)

    async def infill(self, job: InfillJob) -> InfillOutcome:
        if self.jobs_in_flight >= self.capacity:  # on the event loop's thread only: no lock
            raise Overloaded(self.retry_after_s)
        self.jobs_in_flight += 1
        try:
            return await self._send(job)
        finally:
            self.jobs_in_flight -= 1

    async def _send(self, job: InfillJob) -> InfillOutcome:
        sent = replace(job, on_progress=None)
        # on the wall clock: time.monotonic() is per machine
        deadline_at = None if job.deadline is None else time.time() + (job.deadline - time.monotonic())
        attempt = 0
        while True:
            forwarded: list[tuple[str, ...]] = []
            try:
                if job.on_progress is None:
                    answer = await self._call(sent, deadline_at)
                else:
                    answer = await self._stream(sent, deadline_at, job.on_progress, forwarded)
            except Exception as exc:
                # A stream that has sent text is not sent again: a second run could decide other text.
                lost = _replica_lost(exc)
                if not lost or forwarded or attempt >= self.retries:
                    if lost:  # in one line, not Ray's traceback
                        raise RuntimeError(f"the replica decoding this request died ({type(exc).__name__})") from None
                    raise exc from None
                attempt += 1
                self.num_retried += 1
                self._queues.clear()  # the dead replica's gauges; the others report again with their next answer
                logger.warning("a replica died under a request (%s); sending it again (%d/%d)",
                               type(exc).__name__, attempt, self.retries)
                await asyncio.sleep(_RETRY_BACKOFF_S * attempt)
                continue
            self.answers_by_replica[answer.replica] += 1
            self._replay(answer)
            if answer.error is not None:
                raise answer.error
            assert answer.outcome is not None
            return answer.outcome

    async def _call(self, job: InfillJob, deadline_at: float | None) -> ReplicaAnswer:
        response = self.handle.infill.remote(job, deadline_at)
        try:
            return await response
        except asyncio.CancelledError:  # the HTTP client went away: Serve cancels the replica's task
            response.cancel()
            raise

    async def _stream(self, job: InfillJob, deadline_at: float | None, on_progress: ProgressCallback,
                      forwarded: list[tuple[str, ...]]) -> ReplicaAnswer:
        """The replica's answer; each pass's texts go to `on_progress` and are noted in `forwarded`."""
        responses = self._streams.infill_stream.remote(job, deadline_at)
        try:
            async for item in responses:
                if isinstance(item, ReplicaAnswer):
                    return item
                forwarded.append(item)
                on_progress(item)
        except asyncio.CancelledError:
            responses.cancel()
            raise
        raise RuntimeError("the replica's stream ended without an answer")

    def _replay(self, answer: ReplicaAnswer) -> None:
        if self.observer is None:
            return
        for rows, tokens in answer.passes:
            self.observer.pass_done(rows, tokens)
        for hit, reused in answer.lookups:
            self.observer.cache_lookup(hit, reused)
        self._queues[answer.replica] = answer.queue
        self.observer.queue_depth(sum(q[0] for q in self._queues.values()),
                                  sum(q[1] for q in self._queues.values()))

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "maxRows": self.max_rows, "replicasAnswered": dict(self.answers_by_replica),
                "retried": self.num_retried}

    def close(self) -> None:
        _stop(self._owns_ray)


def _stop(owns_ray: bool) -> None:
    """Delete the replicas (others' applications on a shared cluster stay); stop Ray if we started it."""
    try:
        serve.delete(APP_NAME)
    finally:
        if owns_ray:
            serve.shutdown()
            ray.shutdown()


def _deploy_failure(exc: RuntimeError) -> RuntimeError:
    """serve.run's error names no reason; the deployment's status message ends with the replica's exception
    (`coda_engine.errors.CheckpointError: …: model folder not found`)."""
    try:
        message = serve.status().applications[APP_NAME].deployments["EngineReplica"].message
    except KeyError:
        return exc
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return RuntimeError(f"the replicas did not start: {lines[-1]}") if lines else exc


def _replica_lost(exc: BaseException) -> bool:
    """The replica's process died or cannot be reached (and Serve will start another), not the job's fault."""
    if isinstance(exc, RayTaskError):
        return isinstance(exc.cause, RayActorError)
    return isinstance(exc, (RayActorError, ReplicaUnavailableError))
