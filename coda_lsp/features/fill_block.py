"""textDocument/codeAction + codeAction/resolve + command coda.fillBlock: "Fill this block with CoDA".

Listing is instant (a tree-sitter lookup); the infill runs only when the action is resolved or executed."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import default_converter

from coda_lsp.documents import Document
from coda_lsp.features import ensure_current, settings, show_message, snapshot
from coda_lsp.items import fill_edit, replace_edit
from coda_lsp.languages import language_for
from coda_lsp.server import CodaServer
from coda_lsp.syntax import BlockSlot, find_block_slot
from coda_lsp.text import detect_indent_unit

TITLE = "Fill this block with CoDA"
COMMAND = "coda.fillBlock"
KIND = types.CodeActionKind.RefactorRewrite
# Parsing is linear in the document; past this size a code-action request would stall the event loop (chars).
_MAX_PARSE_CHARS = 2_000_000
_CONVERTER = default_converter()


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[KIND], resolve_provider=True))
    def code_action(ls: CodaServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        if params.context.only and not any(KIND.value.startswith(kind) for kind in params.context.only):
            return None
        doc, start = snapshot(ls, params.text_document.uri, params.range.start)
        end = max(start, doc.offset_at(params.range.end, ls.encoding))
        if start == end and _slot(doc, start) is None:
            return None
        arguments = [doc.uri, _CONVERTER.unstructure(params.range)]
        action = types.CodeAction(title=TITLE, kind=KIND, data={"arguments": arguments, "version": doc.version})
        text_document = ls.client_capabilities.text_document
        resolve = text_document.code_action.resolve_support if text_document and text_document.code_action else None
        if not (resolve and "edit" in resolve.properties):
            # no lazy edits: the client runs the command, which applies the edit itself
            action.command = types.Command(title=TITLE, command=COMMAND, arguments=arguments)
        return [action]

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: CodaServer, action: types.CodeAction) -> types.CodeAction:
        data = action.data if isinstance(action.data, dict) else {}
        uri, range_ = _arguments(data.get("arguments"))
        action.edit = await fill(ls, uri, range_)
        return action

    @server.command(COMMAND)
    async def fill_command(ls: CodaServer, *arguments: Any) -> dict[str, Any]:
        uri, range_ = _arguments(list(arguments))
        edit = await fill(ls, uri, range_)
        if edit is None:
            return {"applied": False}
        result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=TITLE))
        return {"applied": result.applied}


async def fill(server: CodaServer, uri: str, range_: types.Range) -> types.WorkspaceEdit | None:
    """The edit that fills the block at `range_.start` (or replaces the selection `range_`), None with a
    message when there is nothing to fill or the model wrote nothing usable."""
    server.latest.claim((COMMAND, uri))
    doc, start = snapshot(server, uri, range_.start)
    end = max(start, doc.offset_at(range_.end, server.encoding))
    slot = _slot(doc, start) if start == end else None
    if start == end and slot is None:
        raise JsonRpcInvalidParams("no empty or placeholder block here to fill")
    if slot is not None:
        view, cursor = _slot_view(doc, slot)
    else:
        view, cursor = Document(doc.uri, doc.language_id, doc.version, doc.text[:start] + doc.text[end:]), start
    # An explicit request for a whole block: sample alternatives and keep the first that survives the filters.
    completion = await server.pipeline.complete(view, cursor, await settings(server), is_invoked=True)
    ensure_current(server, doc)
    if completion is None or not completion.texts:
        show_message(server, types.MessageType.Warning, "the model wrote nothing usable here")
        return None
    if slot is not None:
        return fill_edit(completion.texts[0], slot, doc, server.encoding)
    return replace_edit(doc, start, end, completion.texts[0], server.encoding)


def _slot(doc: Document, offset: int) -> BlockSlot | None:
    language = language_for(doc.language_id, doc.uri)
    if language is None or len(doc.text) > _MAX_PARSE_CHARS:
        return None
    return find_block_slot(language, doc.text, offset, detect_indent_unit(doc.text, language.default_indent))


def _slot_view(doc: Document, slot: BlockSlot) -> tuple[Document, int]:
    """The document with the placeholder replaced by an empty indented line, and the cursor on it: infilling
    there sees the code after the block as suffix and gets the body's scope and indentation from the context."""
    closer = "" if slot.closer_indent is None else "\n" + slot.closer_indent
    head = doc.text[:slot.start] + "\n" + slot.body_indent
    return Document(doc.uri, doc.language_id, doc.version, head + closer + doc.text[slot.end:]), len(head)


def _arguments(arguments: Any) -> tuple[str, types.Range]:
    """[uri, range] as sent in the action's data or the command's arguments; InvalidParams otherwise."""
    try:
        uri, raw_range = arguments
        return str(uri), _CONVERTER.structure(raw_range, types.Range)
    except Exception as exc:
        raise JsonRpcInvalidParams(f"{COMMAND} expects [uri, range]: {exc}") from exc
