"""textDocument/didOpen, didChange, didClose: keep the document store in sync (incremental), and tell the
cross-file index and edit log (coda_lsp.features.workspace) what changed."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.features import workspace
from coda_lsp.server import CodaServer


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodaServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = ls.documents.open(params.text_document)
        workspace.document_opened(ls, doc)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodaServer, params: types.DidChangeTextDocumentParams) -> None:
        before = ls.documents.get(params.text_document.uri)
        after = ls.documents.change(params, ls.encoding)
        if before is not None and after is not None:
            workspace.document_changed(ls, before, after, params.content_changes)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodaServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.close(params.text_document.uri)
        workspace.document_closed(ls, params.text_document.uri)
