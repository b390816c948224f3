"""textDocument/inlineCompletion (LSP 3.18): ghost text from the pipeline, newest request per document wins."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.documents import Document
from coda_lsp.features import complete
from coda_lsp.items import inline_item
from coda_lsp.server import CodaServer


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CodaServer,
                                params: types.InlineCompletionParams) -> types.InlineCompletionList:
        selected = params.context.selected_completion_info
        is_invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked

        def with_selection(doc: Document, offset: int) -> tuple[Document, int]:
            """The document as it will read once the suggest widget's selected item is accepted, and the cursor
            after it: the inline item must continue that text."""
            start = doc.offset_at(selected.range.start, ls.encoding)
            end = max(start, doc.offset_at(selected.range.end, ls.encoding))
            text = doc.text[:start] + selected.text + doc.text[end:]
            return Document(doc.uri, doc.language_id, doc.version, text), start + len(selected.text)

        doc, completion = await complete(ls, types.TEXT_DOCUMENT_INLINE_COMPLETION, params.text_document.uri,
                                         params.position, is_invoked=is_invoked,
                                         view=None if selected is None else with_selection)
        items = [] if completion is None else [inline_item(text, completion.ctx, doc, ls.encoding, selected)
                                               for text in completion.texts]
        return types.InlineCompletionList(items=items)
