"""End to end under a VS Code-like and a Neovim-like client: inline completion, completion fallback, fill block,
typing-through, stale versions, cancellation, configuration, progress and status.

The tiny checkpoint has random weights, so these tests check behaviour (ranges, scopes, versions, timing),
not the quality of the code it writes. workspace/*.py end mid-edit on purpose (an open bracket), like a file
being typed: parse_clean then leaves the random text alone instead of discarding it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.server.e2e.conftest import (
    FAST_SETTINGS,
    PROFILES,
    WORKSPACE,
    Session,
    apply_text_edits,
    inline,
    inline_params,
    insert,
    start_session,
    status,
    wait_until_settled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SHAPES = (WORKSPACE / "shapes.py.txt").read_text()
FILL_PY = (WORKSPACE / "fill.py.txt").read_text()
FILL_JS = (WORKSPACE / "fill.js.txt").read_text()
REQUEST_CANCELLED, CONTENT_MODIFIED = -32800, -32801


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=sorted(PROFILES))
async def session(request: pytest.FixtureRequest, tiny_checkpoint: Path):
    started = await start_session(tiny_checkpoint, request.param, configuration=FAST_SETTINGS)
    yield started
    await started.client.shutdown_session()


async def test_a_request_during_loading_waits_for_the_model(session: Session) -> None:
    """First in the module: the server has just started, and importing torch alone takes over a second."""
    assert (await status(session.client))["state"] == "loading"
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "    name = ")
    items = await inline(session.client, uri, cursor)
    assert len(items) == 1 and items[0].range.start == cursor
    assert (await status(session.client))["state"] == "ready"


async def test_initialize_advertises_features_and_negotiates_encoding(session: Session) -> None:
    capabilities = session.result.capabilities
    assert capabilities.inline_completion_provider is not None
    assert capabilities.completion_provider is not None
    assert capabilities.code_action_provider.resolve_provider is True
    assert list(capabilities.code_action_provider.code_action_kinds) == [types.CodeActionKind.RefactorRewrite]
    assert "coda.fillBlock" in capabilities.execute_command_provider.commands
    assert capabilities.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert session.encoding == {"vscode": "utf-16", "neovim": "utf-8"}[session.profile]


async def test_model_load_is_reported_through_progress_and_log(session: Session) -> None:
    assert (await wait_until_settled(session.client))["state"] == "ready"
    # the workspace index reports under its own token (tests/server/e2e/test_cross_file.py)
    reports = [report for token, values in session.client.progress_reports.items() for report in values
               if str(token).startswith("coda-load-")]
    assert [type(report) for report in reports] == [types.WorkDoneProgressBegin, types.WorkDoneProgressEnd]
    assert reports[0].title.startswith("Loading CoDA model") and reports[1].message == "ready"
    assert any(message.message.startswith("model ready") for message in session.client.log_messages)


async def test_status_names_model_device_dtype_kernels(session: Session, tiny_checkpoint: Path) -> None:
    current = await status(session.client)
    assert (current["modelPath"], current["device"], current["dtype"]) == (str(tiny_checkpoint), "cpu", "float32")
    assert current["dtypeReason"] == "asked for"
    assert (current["kernels"], current["kernelsReason"]) == ("torch", "Triton kernels are compiled for CUDA only, "
                                                                       "not cpu")
    assert current["settings"]["generation"]["max_tokens"] == FAST_SETTINGS["maxTokens"]  # pulled from the client


async def test_int8_weights_load_and_serve_completions(tiny_checkpoint: Path) -> None:
    session = await start_session(tiny_checkpoint, "vscode", configuration=FAST_SETTINGS, dtype="int8")
    try:
        current = await wait_until_settled(session.client)
        assert (current["state"], current["dtype"], current["dtypeReason"]) == ("ready", "int8", "asked for")
        uri = session.open(SHAPES)
        cursor = session.end_of(SHAPES, "    name = ")
        items = await inline(session.client, uri, cursor, kind=types.InlineCompletionTriggerKind.Invoked)
        assert all(item.range.start == cursor for item in items)
        assert (await status(session.client))["numEngineCalls"] >= 1
    finally:
        await session.client.shutdown_session()


async def test_inline_completion_mid_statement_is_one_line_at_the_cursor(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "    name = ")
    items = await inline(session.client, uri, cursor)
    assert len(items) == 1
    assert items[0].range == types.Range(cursor, cursor)
    assert items[0].insert_text.strip() and "\n" not in items[0].insert_text
    latency = (await status(session.client))["latency"]
    assert latency["count"] >= 1 and latency["overheadP50Ms"] < latency["totalP50Ms"]


async def test_no_request_in_the_middle_of_a_word(session: Session) -> None:
    uri = session.open("value = compute_total(x)\n")
    before = (await status(session.client))["numEngineCalls"]
    assert await inline(session.client, uri, session.end_of("value = compute_total(x)\n", "compute")) == []
    assert (await status(session.client))["numEngineCalls"] == before


async def test_positions_after_non_ascii_text(session: Session) -> None:
    """The cursor after `😀é` is 4 utf-16 units but 6 utf-8 bytes further right; both come back exactly."""
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, 'tag = "😀é" + shap')
    items = await inline(session.client, uri, cursor)
    assert [item.range.start for item in items] == [cursor]
    completion = await session.client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=cursor,
        context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked)))
    edit = completion.items[0].text_edit
    # the edit replaces the typed word `shap`: 4 units left of the cursor in every encoding
    assert edit.range == types.Range(types.Position(cursor.line, cursor.character - 4), cursor)
    assert edit.new_text.startswith("shap")


async def test_completion_fallback_items_have_single_line_text_edits(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "    name = ")
    result = await session.client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=cursor))
    assert result.is_incomplete and len(result.items) == 1
    item = result.items[0]
    assert item.text_edit.range.start.line == item.text_edit.range.end.line == cursor.line
    assert item.text_edit.range.end == cursor and item.label and item.sort_text == "00"


async def test_invoked_request_offers_distinct_candidates_to_cycle(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "    name = ")
    automatic = await inline(session.client, uri, cursor)
    one = await inline(session.client, uri, cursor, kind=types.InlineCompletionTriggerKind.Invoked)
    assert [item.insert_text for item in one] == [automatic[0].insert_text]  # the CPU's default: 1 candidate
    await _configure(session, {**FAST_SETTINGS, "invokedCandidates": 3})
    try:
        invoked = await inline(session.client, uri, cursor, kind=types.InlineCompletionTriggerKind.Invoked)
    finally:
        await _configure(session, FAST_SETTINGS)
    texts = [item.insert_text for item in invoked]
    assert 1 <= len(texts) <= 3 and len(set(texts)) == len(texts)
    assert texts[0] == automatic[0].insert_text  # the first is the greedy one the automatic request showed
    assert all(item.range == types.Range(cursor, cursor) for item in invoked)


async def test_typing_through_the_suggestion_needs_no_model_call(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "    name = ")
    [first] = await inline(session.client, uri, cursor)
    calls = (await status(session.client))["numEngineCalls"]
    typed = first.insert_text[:2]
    insert(session.client, uri, 2, cursor, typed)
    moved = types.Position(cursor.line, cursor.character + len(typed.encode("utf-8" if session.encoding == "utf-8"
                                                                             else "utf-16-le")) //
                           (1 if session.encoding == "utf-8" else 2))
    [rest] = await inline(session.client, uri, moved)
    assert rest.insert_text == first.insert_text[2:]
    assert (await status(session.client))["numEngineCalls"] == calls


async def test_result_for_a_stale_version_is_never_returned(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "def area(radius):")
    # pytest-lsp sends a request when its coroutine first runs: as a task, it goes out before the change
    pending = asyncio.ensure_future(session.client.text_document_inline_completion_async(inline_params(uri, cursor)))
    await asyncio.sleep(0)
    insert(session.client, uri, 2, types.Position(0, 0), "# edited\n")
    with pytest.raises(JsonRpcException) as error:
        await pending
    assert error.value.code == CONTENT_MODIFIED


async def test_a_newer_request_for_the_document_cancels_the_older(session: Session) -> None:
    uri = session.open(SHAPES)
    older = asyncio.ensure_future(session.client.text_document_inline_completion_async(
        inline_params(uri, session.end_of(SHAPES, "def describe(shape):"))))
    await asyncio.sleep(0)
    newer = asyncio.ensure_future(session.client.text_document_inline_completion_async(
        inline_params(uri, session.end_of(SHAPES, "    name = "))))
    with pytest.raises(JsonRpcException) as error:
        await older
    assert error.value.code == REQUEST_CANCELLED
    assert len((await newer).items) == 1


async def _configure(session: Session, values: dict[str, Any]) -> None:
    session.client.set_configuration({"coda": values})
    session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    for _ in range(100):
        if (await status(session.client))["settings"]["generation"]["max_tokens"] == values["maxTokens"]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"configuration {values} was not pulled")


async def test_cancel_request_stops_the_engine_within_a_step(session: Session) -> None:
    # 128 steps of ~0.18 s each on this context: over 20 s of work if the cancel did not reach the engine
    await _configure(session, {**FAST_SETTINGS, "maxTokens": 128, "singleLineTokens": 128, "steps": 128})
    try:
        uri = session.open(SHAPES)
        msg_id = f"cancel-me-{session.profile}"
        long = asyncio.ensure_future(session.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, session.end_of(SHAPES, "    name = ")),
            msg_id=msg_id))
        await asyncio.sleep(0.3)
        cancelled_at = time.perf_counter()
        session.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        with pytest.raises(JsonRpcException) as error:
            await long
        assert error.value.code == REQUEST_CANCELLED
        await _configure(session, FAST_SETTINGS)
        items = await inline(session.client, uri, session.end_of(SHAPES, "def area(radius):"))
        # the next request ran on a free engine: one small infill, not the rest of the 128-step one (the bound
        # leaves room for the seconds-long stalls a shared 2-core machine shows)
        assert time.perf_counter() - cancelled_at < 8.0
        assert len(items) <= 1
    finally:
        await _configure(session, FAST_SETTINGS)


async def test_debounce_drops_a_request_superseded_while_it_waits(session: Session) -> None:
    await _configure(session, {**FAST_SETTINGS, "maxTokens": 13, "debounceMs": 300})
    try:
        uri = session.open(SHAPES)
        before = await status(session.client)
        first = asyncio.ensure_future(session.client.text_document_inline_completion_async(
            inline_params(uri, session.end_of(SHAPES, "def describe(shape):"))))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(session.client.text_document_inline_completion_async(
            inline_params(uri, session.end_of(SHAPES, "    name = "))))
        with pytest.raises(JsonRpcException) as error:
            await first
        assert error.value.code == REQUEST_CANCELLED
        await second
        after = await status(session.client)
        # Both computed their canvas while they waited; only the second went on to decode.
        assert after["numEngineCalls"] == before["numEngineCalls"] + 1
        assert after["numWarms"] == before["numWarms"] + 2
    finally:
        await _configure(session, FAST_SETTINGS)


async def test_configuration_problems_are_shown(session: Session) -> None:
    session.client.messages.clear()
    session.client.set_configuration({"coda": {**FAST_SETTINGS, "maxTokens": "many"}})
    session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    for _ in range(100):
        if session.client.messages:
            break
        await asyncio.sleep(0.02)
    await _configure(session, FAST_SETTINGS)
    assert any("coda.maxTokens" in message.message and message.type == types.MessageType.Warning
               for message in session.client.messages)


async def test_selected_completion_item_is_extended_with_its_range(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, 'tag = "😀é" + shap')
    start = types.Position(cursor.line, cursor.character - 4)
    selected = types.SelectedCompletionInfo(range=types.Range(start, cursor), text="shape")
    items = await inline(session.client, uri, cursor, selected=selected)
    assert all(item.range == selected.range and item.insert_text.startswith("shape") for item in items)


async def _fill_by_resolve(session: Session, text: str, needle: str, language_id: str,
                           suffix: str) -> tuple[str, str]:
    uri = session.open(text, language_id, suffix)
    cursor = session.end_of(text, needle)
    actions = await session.client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(cursor, cursor),
        context=types.CodeActionContext(diagnostics=[])))
    assert [action.title for action in actions] == ["Fill this block with CoDA"]
    assert actions[0].edit is None  # listing stays instant: the infill waits for resolve
    resolved = await session.client.code_action_resolve_async(actions[0])
    return uri, apply_text_edits(text, resolved.edit.changes[uri], session.encoding)


async def test_fill_python_block(session: Session) -> None:
    _, filled = await _fill_by_resolve(session, FILL_PY, "def mean(values):", "python", ".py")
    head, rest = filled.split("def mean(values):\n", 1)
    body, after = rest.split("\n\n\ndef spread", 1)
    assert head == "" and "pass" not in body.split("\n")[0]
    assert all(line.startswith("    ") for line in body.split("\n") if line.strip())
    assert after == FILL_PY.split("\n\n\ndef spread", 1)[1]  # the code after the block is untouched


async def test_fill_javascript_block(session: Session) -> None:
    _, filled = await _fill_by_resolve(session, FILL_JS, "function mean(values) {", "javascript", ".js")
    body, after = filled.split("function mean(values) {\n", 1)[1].split("\n}\n", 1)
    assert "// TODO" not in body and body.strip()
    assert all(line.startswith("  ") for line in body.split("\n") if line.strip())
    assert after == FILL_JS.split("\n}\n", 1)[1]


async def test_fill_command_applies_the_edit_through_the_client(session: Session) -> None:
    uri = session.open(FILL_PY)
    cursor = session.end_of(FILL_PY, "def spread(values):")
    session.applied_edits.clear()
    result = await session.client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="coda.fillBlock", arguments=[uri, {"start": {"line": cursor.line, "character": cursor.character},
                                                   "end": {"line": cursor.line, "character": cursor.character}}]))
    assert result["applied"] is True
    [edit] = session.applied_edits
    filled = apply_text_edits(FILL_PY, edit.changes[uri], session.encoding)
    assert '"""Largest minus smallest."""' in filled and "raise NotImplementedError" not in filled


async def test_no_fill_action_on_a_real_body(session: Session) -> None:
    uri = session.open(SHAPES)
    cursor = session.end_of(SHAPES, "def area(radius):")
    actions = await session.client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(cursor, cursor),
        context=types.CodeActionContext(diagnostics=[])))
    assert not actions


async def test_fill_a_selection(session: Session) -> None:
    text = "def double(x):\n    result = x + x\n    return result\n\nbroken = (\n"
    uri = session.open(text)
    selection = types.Range(session.end_of(text, "    result = "), session.end_of(text, "    result = x + x"))
    actions = await session.client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=selection,
        context=types.CodeActionContext(diagnostics=[], only=[types.CodeActionKind.Refactor])))
    [action] = actions
    resolved = await session.client.code_action_resolve_async(action)
    [edit] = resolved.edit.changes[uri]
    assert edit.range == selection and "x + x" not in edit.new_text
    filled = apply_text_edits(text, [edit], session.encoding)
    assert filled.startswith("def double(x):\n    result = ") and filled.endswith("\n    return result\n\nbroken = (\n")


async def test_code_action_kinds_filter(session: Session) -> None:
    uri = session.open(FILL_PY)
    cursor = session.end_of(FILL_PY, "def mean(values):")
    actions = await session.client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(cursor, cursor),
        context=types.CodeActionContext(diagnostics=[], only=[types.CodeActionKind.QuickFix])))
    assert not actions
