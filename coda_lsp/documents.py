"""Open documents as immutable versioned snapshots, kept in sync from didOpen / didChange / didClose."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from lsprotocol import types

from coda_lsp import positions
from coda_lsp.positions import Encoding


@dataclass(frozen=True)
class Document:
    """One version of one document. A request keeps the snapshot it started with, so a didChange that lands
    while the engine runs cannot change the text under it."""

    uri: str
    language_id: str
    version: int
    text: str

    @cached_property
    def line_starts(self) -> list[int]:
        return positions.line_starts(self.text)

    def offset_at(self, position: types.Position, encoding: Encoding) -> int:
        return positions.offset_at(self.text, self.line_starts, position, encoding)

    def position_at(self, offset: int, encoding: Encoding) -> types.Position:
        return positions.position_at(self.text, self.line_starts, offset, encoding)

    def with_changes(self, version: int, changes: Sequence[types.TextDocumentContentChangeEvent],
                     encoding: Encoding) -> Document:
        """The next version: incremental changes apply in order, each against the text the previous one left."""
        doc = self
        for change in changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start = doc.offset_at(change.range.start, encoding)
                end = max(start, doc.offset_at(change.range.end, encoding))
                text = doc.text[:start] + change.text + doc.text[end:]
            else:
                text = change.text
            doc = Document(self.uri, self.language_id, version, text)
        return Document(self.uri, self.language_id, version, doc.text)


@dataclass
class DocumentStore:
    """The server's view of the client's open documents, by uri."""

    documents: dict[str, Document] = field(default_factory=dict)

    def open(self, item: types.TextDocumentItem) -> Document:
        doc = Document(item.uri, item.language_id, item.version, item.text)
        self.documents[item.uri] = doc
        return doc

    def change(self, params: types.DidChangeTextDocumentParams, encoding: Encoding) -> Document | None:
        """Apply a didChange; a change to a document that was never opened is ignored (None)."""
        doc = self.documents.get(params.text_document.uri)
        if doc is None:
            return None
        doc = doc.with_changes(params.text_document.version, params.content_changes, encoding)
        self.documents[doc.uri] = doc
        return doc

    def close(self, uri: str) -> None:
        self.documents.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self.documents.get(uri)
