"""End to end, bad input: unknown documents, positions past the end, garbage params, non-UTF-8 bytes, a 5 MB
document, a flood of 1,000 requests with cancellations, and a model that fails to load. Every request gets a
result or a JSON-RPC error, and the server stays up."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.server.e2e.conftest import (
    FAST_SETTINGS,
    Session,
    inline,
    inline_params,
    insert,
    start_session,
    status,
    wait_until_settled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

INVALID_PARAMS, REQUEST_CANCELLED, CONTENT_MODIFIED = -32602, -32800, -32801
TEXT = "def f(x):\n    y = \n    return y\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tiny_checkpoint: Path):
    started = await start_session(tiny_checkpoint, "vscode", configuration=FAST_SETTINGS)
    assert (await wait_until_settled(started.client))["state"] == "ready"
    yield started
    await started.client.shutdown_session()


def _rss_kib(session: Session) -> int:
    pid = session.client._server.pid  # the server process pytest-lsp started
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _write_raw(session: Session, body: bytes) -> None:
    """One message exactly as given, bypassing the client's typed encoding."""
    session.client._server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def _raw_request(session: Session, msg_id: str, method: str, params: object) -> object:
    """A request whose params the typed client would refuse to send; its answer arrives as usual."""
    answer: Future[object] = Future()
    session.client.protocol._request_futures[msg_id] = answer
    _write_raw(session, json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode())
    return await asyncio.wait_for(asyncio.wrap_future(answer), timeout=10)


async def test_unknown_document_is_invalid_params(session: Session) -> None:
    with pytest.raises(JsonRpcException) as error:
        await inline(session.client, "file:///never-opened.py", types.Position(0, 0))
    assert error.value.code == INVALID_PARAMS and "unknown document" in str(error.value)


async def test_positions_past_the_end_clamp_to_the_end(session: Session) -> None:
    uri = session.open(TEXT)
    for position in (types.Position(1, 500), types.Position(90, 3)):
        items = await inline(session.client, uri, position)
        end = types.Position(1, 8) if position.line == 1 else types.Position(3, 0)
        assert all(item.range == types.Range(end, end) for item in items)


async def test_garbage_params_get_invalid_params(session: Session) -> None:
    requests = [
        {"textDocument": {"uri": "file:///a.py"}},                                   # no position
        {"textDocument": {"uri": "file:///a.py"}, "position": {"line": -1, "character": 0},
         "context": {"triggerKind": 1}},                                             # negative line
        {"textDocument": 7, "position": "here", "context": None},                    # wrong types
    ]
    for number, params in enumerate(requests):
        with pytest.raises(JsonRpcException) as error:
            await _raw_request(session, f"garbage-{number}", types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
        assert error.value.code == INVALID_PARAMS
    with pytest.raises(JsonRpcException) as error:
        await session.client.protocol.send_request_async("coda/noSuchMethod", {})
    assert error.value.code == -32601
    assert (await status(session.client))["state"] == "ready"


async def test_non_utf8_bytes_are_replaced_not_fatal(session: Session) -> None:
    uri = "file:///latin1.py"
    did_open = {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "s = 'caf\udce9'\nt = \n"}}}
    body = json.dumps(did_open, ensure_ascii=False).encode("utf-8", "surrogateescape")  # a raw \xe9 byte
    assert b"caf\xe9" in body
    _write_raw(session, body)
    items = await inline(session.client, uri, types.Position(1, 4))
    assert all(item.range.start == types.Position(1, 4) for item in items)


async def test_five_megabyte_document(session: Session) -> None:
    line = "value_{0} = compute(value_{0}, 'padding to make the line longer')\n"
    text = "".join(line.format(number) for number in range(75_000)) + "total = \n"
    assert len(text) > 5_000_000
    uri = session.open(text)
    last = types.Position(text.count("\n") - 1, len("total = "))
    started = time.perf_counter()
    items = await inline(session.client, uri, last)
    insert(session.client, uri, 2, types.Position(35_000, 0), "# a change in the middle\n")
    moved = types.Position(last.line + 1, last.character)
    items_after = await inline(session.client, uri, moved)
    assert all(item.range.start == last for item in items)
    assert all(item.range.start == moved for item in items_after)
    assert time.perf_counter() - started < 20
    session.client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))


async def test_flood_of_requests_with_cancellations(session: Session) -> None:
    uri = session.open(TEXT)
    await inline(session.client, uri, types.Position(1, 8))  # warm: the first infill allocates the engine's buffers
    rss_before = _rss_kib(session)
    started = time.perf_counter()
    tasks = []
    for number in range(1000):
        msg_id = f"flood-{number}"
        position = types.Position(number % 3, 20)
        tasks.append(asyncio.ensure_future(session.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, position), msg_id=msg_id)))
        await asyncio.sleep(0)
        if number % 2 == 0:  # the last (odd) request stays: it must win
            session.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
    elapsed = time.perf_counter() - started
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert all(isinstance(error, JsonRpcException) and error.code in (REQUEST_CANCELLED, CONTENT_MODIFIED)
               for error in errors), [e for e in errors if not (isinstance(e, JsonRpcException) and e.code in (REQUEST_CANCELLED, CONTENT_MODIFIED))][:3]
    assert not isinstance(outcomes[-1], BaseException)  # the newest request wins
    assert elapsed < 30
    assert (await status(session.client))["state"] == "ready"
    assert _rss_kib(session) - rss_before < 50 * 1024


async def test_model_that_fails_to_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    # settings layer: initializationOptions under the pulled configuration
    session = await start_session(broken, "neovim", configuration={"maxTokens": 12},
                                  initialization_options={"coda": {"maxTokens": 20, "debounceMs": 7}})
    try:
        current = await wait_until_settled(session.client)
        assert current["state"] == "error" and "config.json" in current["error"]
        assert current["settings"]["generation"]["max_tokens"] == 12
        assert current["settings"]["trigger"]["debounce_ms"] == 7
        assert any(message.type == types.MessageType.Error and "failed to load" in message.message
                   for message in session.client.messages)
        uri = session.open(TEXT)
        assert await inline(session.client, uri, types.Position(1, 8)) == []
        completion = await session.client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(1, 8)))
        assert list(completion.items) == []
        assert (await status(session.client))["state"] == "error"  # still up and answering
    finally:
        await session.client.shutdown_session()


async def test_cursor_at_the_start_of_a_file_and_an_empty_file(session: Session) -> None:
    """The model cannot write position 0 of a canvas; the server still answers both."""
    for text in ("x = 1\n", ""):
        uri = session.open(text)
        items = await inline(session.client, uri, types.Position(0, 0),
                             kind=types.InlineCompletionTriggerKind.Invoked)
        assert all(item.range.start == types.Position(0, 0) for item in items)
