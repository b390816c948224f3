"""textDocument/completion: the same pipeline as inline completion, for clients without it (items with textEdit)."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.features import complete
from coda_lsp.items import completion_item
from coda_lsp.server import CodaServer


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(ls: CodaServer, params: types.CompletionParams) -> types.CompletionList:
        is_invoked = params.context is not None and \
            params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        doc, result = await complete(ls, types.TEXT_DOCUMENT_COMPLETION, params.text_document.uri, params.position,
                                     is_invoked=is_invoked)
        # isIncomplete: every keystroke asks again, so the items follow the text (cache hits cost nothing)
        items = [] if result is None else [completion_item(text, result.ctx, doc, ls.encoding, rank)
                                           for rank, text in enumerate(result.texts)]
        return types.CompletionList(is_incomplete=True, items=items)
