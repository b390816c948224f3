"""CrossFile: the server's cross-file state (index, edit log, window cache) and the per-request prompt part."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from coda_lsp.crossfile.assemble import EMPTY, CrossFilePrompt, Layout, assemble
from coda_lsp.crossfile.index import IndexedFile, WorkspaceIndex, index_file, uri_to_path
from coda_lsp.crossfile.query import cursor_query
from coda_lsp.crossfile.snippets import SourceKind
from coda_lsp.crossfile.sources.definitions import definition_snippets
from coda_lsp.crossfile.sources.imports import import_snippets
from coda_lsp.crossfile.sources.input_extra import input_extra_snippets
from coda_lsp.crossfile.sources.recent_edits import RecentEdits, changed_lines, recent_edit_snippets
from coda_lsp.crossfile.sources.similar_windows import WindowCache, similar_snippets
from coda_lsp.documents import Document, DocumentStore
from coda_lsp.languages import language_for
from coda_lsp.settings import CrossFileSettings

logger = logging.getLogger(__name__)


class CrossFile:
    """Everything cross-file context reads, kept current by the document and workspace notifications."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents
        self.index = WorkspaceIndex(())
        self.edits = RecentEdits()
        self.windows = WindowCache()
        self.state = "pending"      # pending (until `initialized`) | building | ready | off
        self.is_truncated = False   # the file cap was hit
        self.build_ms = 0.0
        self._paths: dict[str, Path | None] = {}  # uri -> resolved path inside a folder, or None
        self._relatives: dict[str, str | None] = {}

    def set_folders(self, folders: Sequence[Path]) -> None:
        self.index = WorkspaceIndex(folders)
        self._paths.clear()
        self._relatives.clear()

    def path_of(self, uri: str) -> Path | None:
        """The resolved file path of `uri` when it lies in a workspace folder; None otherwise (never read)."""
        if uri not in self._paths:
            path = uri_to_path(uri)
            resolved = path.resolve() if path is not None else None
            self._paths[uri] = resolved if resolved is not None and self.index.folder_of(resolved) else None
        return self._paths[uri]

    def has_open_buffer(self, path: Path) -> bool:
        return any(self.path_of(uri) == path for uri in self.documents.documents)

    def relative(self, uri: str) -> str | None:
        """`uri`'s workspace-relative path, None outside the folders (cached: a request asks for every tab)."""
        if uri not in self._relatives:
            path = self.path_of(uri)
            self._relatives[uri] = self.index.relative(path) if path is not None else None
        return self._relatives[uri]

    # ---- keeping current -------------------------------------------------------------------------------------

    def reindex_text(self, uri: str, text: str, max_bytes: int) -> None:
        """Index an open document's buffer (the editor's text wins over the disk's), against the outline known
        for its file: a buffer with more syntax errors keeps that outline (see outline)."""
        path = self.path_of(uri)
        folder = self.index.folder_of(path) if path is not None else None
        if path is None or folder is None:
            return
        known = self.index.get(path)
        result = index_file(path, folder, max_bytes, text, known.outline if known is not None else None)
        if isinstance(result, IndexedFile):
            self.index.add(result)
        else:
            logger.debug("not indexed: %s (%s)", path, result.reason)

    def reindex_disk(self, uri: str, max_bytes: int) -> None:
        """A file changed on disk: re-read it unless the editor has it open (then its buffer is the truth)."""
        path = self.path_of(uri)
        folder = self.index.folder_of(path) if path is not None else None
        if path is None or folder is None or self.documents.get(uri) is not None:
            return
        result = index_file(path, folder, max_bytes)
        if isinstance(result, IndexedFile):
            self.index.add(result)
        else:
            self.index.remove(path)

    def remove(self, uri: str) -> None:
        path = self.path_of(uri)
        if path is not None:
            self.index.remove(path)

    def record_change(self, before: Document, after: Document, changes: Sequence[Any]) -> None:
        """Log the lines a didChange touched, from its ranges, or by comparing texts for a whole-document one."""
        ranges = []
        for change in changes:
            change_range = getattr(change, "range", None)
            if change_range is None:
                ranges = None
                break
            ranges.append((change_range.start.line, change_range.start.line + change.text.count("\n")))
        if ranges is None:
            lines = changed_lines(before.text, after.text)
            ranges = [lines] if lines else []
        for start, end in ranges:
            self.edits.record(after.uri, start, end)

    def forget_document(self, uri: str) -> None:
        self.windows.forget(uri)

    # ---- per request -----------------------------------------------------------------------------------------

    def prompt(self, doc: Document, offset: int, settings: CrossFileSettings, budget: int,
               count_tokens: Callable[[str], int],
               input_extra: Sequence[Mapping[str, Any]] = ()) -> CrossFilePrompt:
        """The snippets for a cursor within `budget` tokens; EMPTY for a document outside the workspace."""
        language = language_for(doc.language_id, doc.uri)
        path = self.path_of(doc.uri)
        relative = self.relative(doc.uri)
        if language is None or relative is None or budget <= 0:
            return EMPTY
        query = cursor_query(doc, offset, language, path)
        open_docs = list(self.documents.documents.values())
        candidates: dict[SourceKind, list[Any]] = {
            "definition": definition_snippets(query, self.index) if settings.definition_tokens else [],
            "import": import_snippets(query, self.index) if settings.import_tokens else [],
            "recentEdit": recent_edit_snippets(query, self.edits, self.documents.get, self.relative)
            if settings.edit_tokens else [],
            "similar": similar_snippets(query, open_docs, self.windows, self.relative)
            if settings.similar_tokens else [],
            "inputExtra": input_extra_snippets(query, input_extra, relative) if input_extra else [],
        }
        budgets: dict[SourceKind, int] = {"definition": settings.definition_tokens, "import": settings.import_tokens,
                                          "recentEdit": settings.edit_tokens, "similar": settings.similar_tokens,
                                          "inputExtra": settings.extra_tokens}
        folder = self.index.folder_of(path) if path is not None else None
        layout = Layout(settings.format, relative, language.line_comment, folder.name if folder else "workspace")
        return assemble(candidates, budgets, budget, layout, query.local_lines, count_tokens)
