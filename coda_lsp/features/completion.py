"""textDocument/completion: the same pipeline as inline completion, for clients without it (items with textEdit)."""

from __future__ import annotations

import time

from lsprotocol import types

from coda_lsp.features import ensure_current, snapshot
from coda_lsp.items import completion_item
from coda_lsp.server import CodaServer


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(ls: CodaServer, params: types.CompletionParams) -> types.CompletionList:
        started = time.perf_counter()
        ls.latest.claim((types.TEXT_DOCUMENT_COMPLETION, params.text_document.uri))
        doc, offset = snapshot(ls, params.text_document.uri, params.position)
        is_invoked = params.context is not None and \
            params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        result = await ls.pipeline.complete(doc, offset, ls.settings, is_invoked=is_invoked)
        ensure_current(ls, doc)
        # isIncomplete: every keystroke asks again, so the items follow the text (cache hits cost nothing)
        if result is None:
            return types.CompletionList(is_incomplete=True, items=[])
        if result.engine_ms:
            ls.latency.record((time.perf_counter() - started) * 1000, result.engine_ms)
        return types.CompletionList(is_incomplete=True, items=[
            completion_item(text, result.ctx, doc, ls.encoding, rank) for rank, text in enumerate(result.texts)])
