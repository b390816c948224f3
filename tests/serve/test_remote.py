"""`coda-lsp --remote URL`: the real language server process, driven by pytest-lsp, sending its infills to a
running `coda-lsp serve` (uvicorn in this process, a real backend on the tiny checkpoint); a server that is
down at startup or goes down later costs one message, not a crash, and completions resume when it is back."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from coda_lsp.serve.settings import ServeSettings
from tests.serve.conftest import RunningServer, StubBackend, real_backend, start_server
from tests.server.e2e.conftest import (WORKSPACE, as_dict, inline, open_document, status, vscode_capabilities)

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
SETTINGS = {"maxTokens": 8, "singleLineTokens": 6, "debounceMs": 0, "contextTokens": 256, "crossFile": False}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _start_lsp(url: str, *extra: str) -> LanguageClient:
    config = ClientServerConfig(server_command=[sys.executable, "-m", "coda_lsp", "--remote", url, *extra,
                                                "--log-level", "WARNING"])
    client = await config.start()
    assert isinstance(client, LanguageClient)
    client.set_configuration({"coda": SETTINGS})
    await client.initialize_session(types.InitializeParams(
        capabilities=vscode_capabilities(), root_uri=WORKSPACE.as_uri(), initialization_options={"coda": SETTINGS},
        workspace_folders=[types.WorkspaceFolder(uri=WORKSPACE.as_uri(), name=WORKSPACE.name)]))
    return client


async def _state(client: LanguageClient, wanted: str, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = await status(client)
        if current["state"] == wanted or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


def _warnings(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Warning]


def _serve(engine: Any, port: int, key: str | None = None) -> RunningServer:
    running = start_server(lambda observer: real_backend(engine, observer), ServeSettings(max_tokens=16, api_key=key),
                           port=port)
    running.wait_ready()
    return running


async def test_remote_completions_come_from_the_server(engine: Any, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("team-key\n")
    served = _serve(engine, 0, key="team-key")
    client = await _start_lsp(served.url, "--api-key-file", str(key_file))
    try:
        current = await _state(client, "ready")
        assert current["state"] == "ready" and current["remote"] == served.url and current["modelPath"] == served.url
        assert current["device"] == "cpu" and current["dtype"] == "remote"  # where the server's engine runs
        uri = (WORKSPACE / "remote-1.py").as_uri()
        open_document(client, uri, TEXT)
        position = types.Position(line=1, character=len("    return "))
        items = await inline(client, uri, position, kind=types.InlineCompletionTriggerKind.Invoked)
        job = served.backend.jobs[-1]
        # the language server built the context and sent it; the filters ran on what came back
        assert job.prefix.endswith("def add(a, b):\n    return ") and job.suffix.startswith("\n\nprint(add(1, 2))")
        assert job.max_tokens == 6 and job.client is not None and job.client.endswith("|127.0.0.1|0")
        assert all(isinstance(item.insert_text, str) for item in items)
        assert as_dict(await status(client))["numEngineCalls"] == 1
    finally:
        await client.shutdown_session()
        served.stop()


async def test_a_server_that_is_down_costs_one_message_and_completions_resume(engine: Any) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    client = await _start_lsp(url)
    served: RunningServer | None = None
    try:
        down = await _state(client, "error")
        assert down["state"] == "error" and "ConnectError" in down["error"]
        documents = iter(range(100))

        async def complete() -> list[types.InlineCompletionItem]:
            """An inline completion in a new document each time: the completion cache never answers."""
            number = next(documents)
            uri = (WORKSPACE / f"remote-down-{number}.py").as_uri()
            open_document(client, uri, TEXT.replace("add", f"add_{number}"))
            return await inline(client, uri, types.Position(line=1, character=len("    return ")))

        for _ in range(3):  # the editor keeps working: empty answers, no error responses, no new message
            assert await complete() == []
        assert len(_warnings(client)) == 1 and "does not answer" in _warnings(client)[0]

        served = _serve(engine, port)  # the server comes up: the language server connects on its own
        assert (await _state(client, "ready", timeout_s=15))["state"] == "ready"
        await complete()
        assert served.backend.jobs, "the completion went to the server"

        served.stop()  # and goes down again: one more message, however many keystrokes
        for _ in range(3):
            assert await complete() == []
        assert len(_warnings(client)) == 2 and (await status(client))["error"] is not None

        served = _serve(engine, port)
        await asyncio.sleep(1.1)  # remote.FAIL_FAST_S: the next request asks the server again
        await complete()
        assert served.backend.jobs and (await status(client))["error"] is None
        assert any("answers again" in m.message for m in client.log_messages)
    finally:
        await client.shutdown_session()
        if served is not None:
            served.stop()


async def test_a_superseded_completion_aborts_its_request(engine: Any) -> None:
    """A newer keystroke cancels the request in flight: its connection closes and the server cancels the job."""
    served = start_server(lambda observer: StubBackend(engine.tokenizer, "hang"), ServeSettings())
    served.wait_ready()
    client = await _start_lsp(served.url)
    try:
        assert (await _state(client, "ready"))["state"] == "ready"
        uri = (WORKSPACE / "remote-cancel.py").as_uri()
        open_document(client, uri, TEXT)
        position = types.Position(line=1, character=len("    return "))
        first = asyncio.ensure_future(inline(client, uri, position))
        assert await asyncio.to_thread(served.backend.started.wait, 10)
        served.backend.started.clear()
        second = asyncio.ensure_future(inline(client, uri, types.Position(line=1, character=4)))
        assert await asyncio.to_thread(served.backend.cancelled.wait, 5), "the server never saw the abort"
        with pytest.raises(Exception, match="cancel"):  # pygls answers the superseded request RequestCancelled
            await first
        second.cancel()
    finally:
        await client.shutdown_session()
        served.stop()
