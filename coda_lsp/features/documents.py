"""textDocument/didOpen, didChange, didClose: keep the document store in sync (incremental)."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.server import CodaServer


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodaServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.documents.open(params.text_document)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodaServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.documents.change(params, ls.encoding)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodaServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.close(params.text_document.uri)
