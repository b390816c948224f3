"""`coda-lsp serve --ray`: the HTTP app over two engine replicas on a local Ray Serve (2 CPUs, no dashboard) on the
tiny checkpoint. Requests are answered, streamed, kept with the replica that holds their client's cache, refused
with 503 when the replicas are full, and the whole of Ray stops with the server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from coda_engine.params import EngineOptions  # noqa: E402
from coda_lsp.backends.ray import ClusterOptions, backend_factory  # noqa: E402
from coda_lsp.serve.settings import ServeSettings  # noqa: E402
from tests.serve.conftest import RunningServer, start_server  # noqa: E402

pytestmark = pytest.mark.slow

PROMPT = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n\nprint(add(1, 2))\n"}
# Small on purpose: a replica holds one 2-row request in its batch and one in its queue, so a burst overflows.
OPTIONS = ClusterOptions(replicas=2, cpus_per_replica=0.5,
                         engine=EngineOptions(device="cpu", dtype="fp32", max_rows=2, max_queue=1, cache_mb=16,
                                              warm_span=12))


@pytest.fixture(scope="module")
def cluster(short_checkpoint) -> Iterator[RunningServer]:
    factory = backend_factory(short_checkpoint, OPTIONS, num_cpus=2)
    running = start_server(factory, ServeSettings(max_tokens=32, extra_tokens=64))
    try:
        running.wait_ready(timeout_s=120)
        assert running.app.state.host.state == "ready", running.app.state.host.error
        yield running
    finally:
        running.stop()
    # The app's shutdown closed the backend: the replicas are deleted and the Ray this process started is gone.
    assert not ray.is_initialized()


def post(server: RunningServer, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/infill", json=body, timeout=60)


def test_infill_is_answered_by_a_replica(cluster: RunningServer) -> None:
    reply = post(cluster, {**PROMPT, "n_predict": 8})
    assert reply.status_code == 200
    body = reply.json()
    assert isinstance(body["content"], str) and body["tokens_predicted"] >= 1 and body["tokens_evaluated"] > 0
    assert sum(cluster.backend.answers_by_replica.values()) >= 1


def test_a_stream_sends_the_replicas_progress_then_the_result(cluster: RunningServer) -> None:
    whole = post(cluster, {**PROMPT, "n_predict": 12}).json()
    with httpx.stream("POST", cluster.url + "/infill", json={**PROMPT, "n_predict": 12, "stream": True},
                      timeout=60) as reply:
        assert reply.status_code == 200
        events = [json.loads(line[len("data: "):]) for line in reply.iter_lines() if line]
    assert len(events) > 2 and [e["stop"] for e in events][-1] is True
    assert "".join(e["content"] for e in events) == whole["content"]


def test_a_clients_requests_go_to_the_replica_holding_its_cache(cluster: RunningServer) -> None:
    # Six clients (one address, six slots), each warming its cache and then typing. Sent at random, each second
    # request would miss half the time.
    for slot in range(6):
        prefix = f"# client {slot}\n" + PROMPT["input_prefix"]
        warm = post(cluster, {**PROMPT, "input_prefix": prefix, "n_predict": 0, "id_slot": slot})
        assert warm.status_code == 200
        typed = post(cluster, {**PROMPT, "input_prefix": prefix + "a", "n_predict": 12, "id_slot": slot}).json()
        assert typed["tokens_cached"] > 0, slot
    assert len(cluster.backend.answers_by_replica) == 2  # and the clients are spread over both replicas


def test_a_burst_past_the_replicas_room_gets_503_with_retry_after(cluster: RunningServer) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {**PROMPT, "n_predict": 12, "n_cmpl": 2, "cache_prompt": False}
            return await asyncio.gather(*(client.post(cluster.url + "/infill", json=body) for _ in range(10)))

    replies = asyncio.run(burst())
    refused = [r for r in replies if r.status_code == 503]
    assert {r.status_code for r in replies} == {200, 503}
    # The ingress lets through what the replicas hold in batch and queue (6 requests); of those, each replica
    # refuses its third 2-row request itself, and that Overloaded crosses the hop intact.
    assert len(refused) > len(replies) - OPTIONS.replicas * (OPTIONS.engine.max_rows + OPTIONS.engine.max_queue)
    for reply in refused:
        assert reply.headers["retry-after"] == "1"
        assert reply.json()["error"]["message"] == "the server is busy; retry in 1 s"



def test_a_client_that_goes_away_stops_its_rows_on_the_replica(cluster: RunningServer) -> None:
    # Two rows fill a replica's batch (max_rows 2), so the same client's next request, sent to the same replica,
    # waits until those rows leave: at once if the first request's rows were stopped, else when they are done.
    full = {**PROMPT, "n_predict": 32, "n_cmpl": 2, "id_slot": 9}
    started = time.perf_counter()
    assert post(cluster, full).status_code == 200
    whole_s = time.perf_counter() - started
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(cluster.url + "/infill", json=full, timeout=httpx.Timeout(5, read=0.05))
    started = time.perf_counter()
    assert post(cluster, {**full, "n_predict": 1, "n_cmpl": 1}).status_code == 200
    assert time.perf_counter() - started < whole_s / 2
