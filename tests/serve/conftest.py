"""Fixtures for the HTTP server: a tiny checkpoint with few positions (so truncation is cheap to reach), the local
backend on it, and the real uvicorn server on a free loopback port in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from coda_engine.errors import Overloaded
from coda_engine.jobs import InfillJob, InfillOutcome, PassObserver
from coda_lsp.serve.settings import ServeSettings

MAX_POSITIONS = 256  # canvas positions of the test model: a 300-token prompt already needs cutting


@pytest.fixture(scope="session")
def short_checkpoint(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """The `tiny` preset with MAX_POSITIONS positions and the real tokenizer."""
    from coda_engine.presets import PRESETS, random_state_dict, write_checkpoint

    config = replace(PRESETS["tiny"], max_position_embeddings=MAX_POSITIONS)
    return write_checkpoint(tmp_path_factory.mktemp("short") / "ckpt", config, random_state_dict(config, seed=0),
                            reference_dir)


@pytest.fixture(scope="session")
def engine(short_checkpoint: Path) -> Any:
    from coda_engine import Engine

    return Engine.from_pretrained(short_checkpoint, device="cpu", dtype="fp32")


class Recording:
    """A backend as the app sees it, plus the jobs it was given and how many of them were cancelled."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.tokenizer = inner.tokenizer
        self.max_positions = inner.max_positions
        self.model_name = inner.model_name
        self.device = inner.device
        self.works_ahead = inner.works_ahead
        self.jobs: list[InfillJob] = []
        self.cancelled = 0

    async def infill(self, job: InfillJob) -> InfillOutcome:
        self.jobs.append(job)
        try:
            return await self.inner.infill(job)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


def real_backend(engine: Any, observer: PassObserver, warm_span: int = 12) -> Recording:
    from coda_engine import Engine
    from coda_engine.params import EngineOptions
    from coda_lsp.backends.local import LocalBackend

    return Recording(LocalBackend(Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(warm_span=warm_span)),
                                  observer))


class StubBackend:
    """Answers by `behaviour`: "overloaded", "crash", "hang" (until cancelled), "progress-then-hang"."""

    def __init__(self, tokenizer: Any, behaviour: str) -> None:
        self.tokenizer = tokenizer
        self.max_positions = 256
        self.model_name = "stub"
        self.device = "cpu"
        self.works_ahead = False
        self.behaviour = behaviour
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def infill(self, job: InfillJob) -> InfillOutcome:
        if self.behaviour == "overloaded":
            raise Overloaded(retry_after_s=3)
        if self.behaviour == "crash":
            raise RuntimeError("the device fell over\nsecond line of a traceback-like message")
        self.started.set()
        try:
            if self.behaviour == "progress-then-hang" and job.on_progress is not None:
                job.on_progress(("first",))
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")

    def describe(self) -> dict[str, Any]:
        return {"device": self.device}

    def close(self) -> None:
        pass


@dataclass
class RunningServer:
    url: str
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def backend(self) -> Any:
        return self.app.state.host.backend

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.app.state.host.state == "loading":
            if time.monotonic() > deadline:
                raise AssertionError("the model never loaded")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(factory: Callable[[PassObserver], Any], settings: ServeSettings, port: int = 0) -> RunningServer:
    """create_app's app under a real uvicorn on a loopback port (0: a free one), in a thread."""
    import uvicorn

    from coda_lsp.serve.app import create_app

    app = create_app(factory, settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted server takes its port back
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn never started")
        time.sleep(0.01)
    return RunningServer(f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture(scope="module")
def server(engine: Any) -> Iterator[RunningServer]:
    """The server with no API key and the defaults of `coda-lsp serve`, span cap 16."""
    running = start_server(lambda observer: real_backend(engine, observer),
                           ServeSettings(max_tokens=12, extra_tokens=64))
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keyed_server(engine: Any) -> Iterator[RunningServer]:
    running = start_server(lambda observer: real_backend(engine, observer),
                           ServeSettings(max_tokens=8, api_key="s3cret", max_body_bytes=4096))
    running.wait_ready()
    yield running
    running.stop()
