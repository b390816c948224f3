"""Thin LSP handlers, one module per method group; helpers shared by the request handlers."""

from __future__ import annotations

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInvalidParams

from coda_lsp.documents import Document
from coda_lsp.server import CodaServer


def snapshot(server: CodaServer, uri: str, position: types.Position) -> tuple[Document, int]:
    """The document as it is now and the cursor's offset in it; InvalidParams (-32602) for a document that was
    never opened. Positions past the end clamp to the end (negative ones never get here: lsprotocol rejects
    them while parsing, and CodaProtocol answers InvalidParams)."""
    doc = server.documents.get(uri)
    if doc is None:
        raise JsonRpcInvalidParams(f"unknown document {uri}: it was not opened with textDocument/didOpen")
    return doc, doc.offset_at(position, server.encoding)


def ensure_current(server: CodaServer, doc: Document) -> None:
    """Raise ContentModified (-32801) when the document changed while the request ran: a completion computed
    for an older version would land in the wrong place."""
    current = server.documents.get(doc.uri)
    if current is None or current.version != doc.version:
        raise JsonRpcContentModified(f"{doc.uri} changed (version {doc.version} -> "
                                     f"{current.version if current else 'closed'}) while completing")
