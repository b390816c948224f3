"""The server's states and failures: health while the model loads and after a failed load, a busy backend (503 +
Retry-After), a backend that raises (500, one line, the server stays up), and clients that go away (their job is
cancelled). The backends here are stubs around the real tokenizer: what they test is the HTTP plumbing."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from coda_lsp.serve.settings import ServeSettings
from tests.serve.conftest import RunningServer, StubBackend, start_server

PLAIN = {"input_prefix": "x = ", "input_suffix": "\n"}


@pytest.fixture
def stub_server(engine: Any, request: pytest.FixtureRequest) -> Any:
    running = start_server(lambda observer: StubBackend(engine.tokenizer, request.param), ServeSettings())
    running.wait_ready()
    yield running
    running.stop()


def test_health_is_503_while_the_model_loads(engine: Any) -> None:
    release = threading.Event()

    def slow_factory(observer: Any) -> StubBackend:
        release.wait(10)
        return StubBackend(engine.tokenizer, "hang")

    running = start_server(slow_factory, ServeSettings())
    try:
        loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        reply = httpx.get(running.url + "/health")
        assert (reply.status_code, reply.json()) == (503, loading)
        assert httpx.post(running.url + "/infill", json=PLAIN).json() == loading
        assert httpx.get(running.url + "/metrics").status_code == 200  # metrics work before the model
        release.set()
        running.wait_ready()
        assert httpx.get(running.url + "/health").json() == {"status": "ok"}
    finally:
        release.set()
        running.stop()


def test_a_failed_load_is_reported_by_health(engine: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    from coda_engine import CheckpointError

    def failing_factory(observer: Any) -> Any:
        raise CheckpointError(tmp_path / "config.json", "not valid JSON (Expecting value)")

    running = start_server(failing_factory, ServeSettings())
    try:
        running.wait_ready()
        reply = httpx.get(running.url + "/health")
        message = reply.json()["error"]["message"]
        assert reply.status_code == 503 and "config.json: not valid JSON" in message and "\n" not in message
        assert any("did not load" in record.message for record in caplog.records)
    finally:
        running.stop()


@pytest.mark.parametrize("stub_server", ["overloaded"], indirect=True)
def test_a_busy_backend_is_a_503_with_retry_after(stub_server: RunningServer) -> None:
    for path, body in (("/infill", PLAIN), ("/v1/completions", {"prompt": "x"}),
                       ("/infill", {**PLAIN, "stream": True})):
        reply = httpx.post(stub_server.url + path, json=body)
        assert reply.status_code == 503 and reply.headers["retry-after"] == "3", path
        assert "busy" in reply.json()["error"]["message"]


@pytest.mark.parametrize("stub_server", ["crash"], indirect=True)
def test_a_backend_error_is_a_one_line_500_and_the_server_stays_up(stub_server: RunningServer) -> None:
    for _ in range(2):
        reply = httpx.post(stub_server.url + "/infill", json=PLAIN)
        assert reply.status_code == 500
        assert reply.json()["error"] == {"code": 500, "message": "RuntimeError: the device fell over",
                                         "type": "server_error"}
    assert httpx.post(stub_server.url + "/v1/completions", json={"prompt": "x", "stream": True}).json()["error"][
        "type"] == "server_error"
    assert httpx.get(stub_server.url + "/health").status_code == 200


@pytest.mark.parametrize("stub_server", ["hang"], indirect=True)
def test_a_client_that_goes_away_cancels_its_job(stub_server: RunningServer) -> None:
    backend = stub_server.backend
    for body in (PLAIN, {**PLAIN, "stream": True}):
        backend.started.clear()
        backend.cancelled.clear()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(stub_server.url + "/infill", json=body, timeout=httpx.Timeout(5, read=0.3))
        assert backend.started.is_set() and backend.cancelled.wait(5)


@pytest.mark.parametrize("stub_server", ["progress-then-hang"], indirect=True)
def test_a_client_that_leaves_mid_stream_cancels_its_job(stub_server: RunningServer) -> None:
    with httpx.stream("POST", stub_server.url + "/v1/completions", json={"prompt": "x", "stream": True},
                      timeout=10) as reply:
        first = next(reply.iter_lines())
        assert first.startswith("data: {") and '"text":"first"' in first
    assert stub_server.backend.cancelled.wait(5)
    text = httpx.get(stub_server.url + "/metrics").text
    assert 'coda_requests_total{endpoint="completions",status="499"} 1.0' in text
