"""textDocument/inlineCompletion (LSP 3.18): ghost text from the pipeline, newest request per document wins."""

from __future__ import annotations

import time

from lsprotocol import types

from coda_lsp.documents import Document
from coda_lsp.features import ensure_current, snapshot
from coda_lsp.items import inline_item
from coda_lsp.server import CodaServer


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CodaServer,
                                params: types.InlineCompletionParams) -> types.InlineCompletionList:
        started = time.perf_counter()
        ls.latest.claim((types.TEXT_DOCUMENT_INLINE_COMPLETION, params.text_document.uri))
        doc, offset = snapshot(ls, params.text_document.uri, params.position)
        selected = params.context.selected_completion_info
        view, cursor = (doc, offset) if selected is None else _with_selection(ls, doc, selected)
        is_invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        completion = await ls.pipeline.complete(view, cursor, ls.settings, is_invoked=is_invoked)
        ensure_current(ls, doc)
        if completion is None:
            return types.InlineCompletionList(items=[])
        if completion.engine_ms:
            ls.latency.record((time.perf_counter() - started) * 1000, completion.engine_ms)
        return types.InlineCompletionList(items=[inline_item(text, completion.ctx, doc, ls.encoding, selected)
                                                 for text in completion.texts])


def _with_selection(server: CodaServer, doc: Document, selected: types.SelectedCompletionInfo) -> tuple[Document, int]:
    """The document as it will read once the suggest widget's selected item is accepted, and the cursor after
    it: the inline item must continue that text."""
    start = doc.offset_at(selected.range.start, server.encoding)
    end = max(start, doc.offset_at(selected.range.end, server.encoding))
    text = doc.text[:start] + selected.text + doc.text[end:]
    return Document(doc.uri, doc.language_id, doc.version, text), start + len(selected.text)
