"""Source (c): windows of open documents most like the code before the cursor (Copilot's neighbour tabs).

Each document is cut into windows of WINDOW_LINES lines every STRIDE_LINES lines; a window's identifier set
is compared with the cursor's by Jaccard similarity, and each document offers its best window."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from coda_lsp.crossfile.identifiers import identifier_set, jaccard
from coda_lsp.crossfile.index import family_of
from coda_lsp.crossfile.query import CursorQuery
from coda_lsp.crossfile.snippets import Snippet, trimmed_lines
from coda_lsp.documents import Document
from coda_lsp.languages import language_for

# 20-line windows with stride 10 (RepoCoder); Copilot's 60 lines would not fit a 256-token share.
WINDOW_LINES, STRIDE_LINES = 20, 10
MAX_SNIPPETS = 4       # Copilot's limit
MIN_SCORE = 0.05       # below this the window shares only a common word or two with the cursor's code
MAX_DOCUMENTS = 20     # the most recently opened documents that are searched


@dataclass(frozen=True)
class _Windows:
    version: int
    lines: tuple[str, ...]
    sets: tuple[frozenset[str], ...]   # identifier set of the window starting at line i * STRIDE_LINES


class WindowCache:
    """Identifier sets of each open document's windows, rebuilt only when its version changes."""

    def __init__(self) -> None:
        self._by_uri: dict[str, _Windows] = {}

    def windows(self, doc: Document) -> _Windows:
        known = self._by_uri.get(doc.uri)
        if known is None or known.version != doc.version:
            lines = tuple(doc.text.split("\n"))
            starts = range(0, max(1, len(lines) - WINDOW_LINES + STRIDE_LINES), STRIDE_LINES)
            known = _Windows(doc.version, lines,
                             tuple(identifier_set(lines[s:s + WINDOW_LINES]) for s in starts))
            self._by_uri[doc.uri] = known
        return known

    def forget(self, uri: str) -> None:
        self._by_uri.pop(uri, None)


def similar_snippets(query: CursorQuery, documents: Iterable[Document], cache: WindowCache,
                     relative: Callable[[str], str | None]) -> list[Snippet]:
    family = family_of(query.language)
    scored = []
    for doc in list(documents)[-MAX_DOCUMENTS:]:
        language = language_for(doc.language_id, doc.uri)
        if doc.uri == query.uri or language is None or family_of(language) != family:
            continue
        path = relative(doc.uri)
        if path is None:
            continue
        windows = cache.windows(doc)
        score, best = max((jaccard(query.window_ids, ids), -i) for i, ids in enumerate(windows.sets))
        best = -best  # the first of equally good windows
        if score < MIN_SCORE:
            continue
        start = best * STRIDE_LINES
        shown, start = trimmed_lines(list(windows.lines[start:start + WINDOW_LINES]), start)
        if shown:
            scored.append(Snippet("similar", path, start, start + len(shown) - 1, round(score, 4),
                                  "\n".join(shown), language.line_comment))
    scored.sort(key=lambda snippet: (-snippet.score, snippet.path))
    return scored[:MAX_SNIPPETS]
