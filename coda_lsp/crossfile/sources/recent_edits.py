"""Source (b): ranges the user edited recently in other files, newest first; and the log of edits it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coda_lsp.crossfile.query import CursorQuery
from coda_lsp.crossfile.snippets import Snippet, trimmed_lines
from coda_lsp.documents import Document
from coda_lsp.languages import language_for

MAX_RANGES = 16        # edited ranges remembered, across files (Copilot keeps ~8 edits; two per file here)
MERGE_LINES = 3        # an edit this close to a remembered range extends it instead of adding one
CONTEXT_LINES = 3      # lines shown around an edited range (the research note: +-3-10)
MAX_SNIPPET_LINES = 12


@dataclass
class EditedRange:
    uri: str
    start_line: int
    end_line: int      # inclusive, in the document's current text


class RecentEdits:
    """Edited line ranges, oldest first. Typing on one line keeps extending one range, so it never pushes
    another file's ranges out."""

    def __init__(self) -> None:
        self.ranges: list[EditedRange] = []

    def record(self, uri: str, start_line: int, end_line: int) -> None:
        for index, known in enumerate(self.ranges):
            if known.uri == uri and known.start_line - MERGE_LINES <= end_line and \
                    start_line <= known.end_line + MERGE_LINES:
                known.start_line = min(known.start_line, start_line)
                known.end_line = max(known.end_line, end_line)
                if index != len(self.ranges) - 1:
                    self.ranges.append(self.ranges.pop(index))
                return
        self.ranges.append(EditedRange(uri, start_line, end_line))
        del self.ranges[:-MAX_RANGES]

    def forget(self, uri: str) -> None:
        self.ranges = [known for known in self.ranges if known.uri != uri]


def changed_lines(old: str, new: str) -> tuple[int, int] | None:
    """The first and last line of `new` that differ from `old` (for whole-document changes), or None."""
    if old == new:
        return None
    old_lines, new_lines = old.split("\n"), new.split("\n")
    start = 0
    while start < min(len(old_lines), len(new_lines)) and old_lines[start] == new_lines[start]:
        start += 1
    end_old, end_new = len(old_lines) - 1, len(new_lines) - 1
    while end_old >= start and end_new >= start and old_lines[end_old] == new_lines[end_new]:
        end_old, end_new = end_old - 1, end_new - 1
    return start, max(start, end_new)


def recent_edit_snippets(query: CursorQuery, edits: RecentEdits, document: Callable[[str], Document | None],
                         relative: Callable[[str], str | None]) -> list[Snippet]:
    """The newest edited ranges of other open documents in the workspace, with a few lines around each."""
    snippets = []
    for age, known in enumerate(reversed(edits.ranges)):
        doc = document(known.uri)
        path = relative(known.uri) if known.uri != query.uri else None
        if doc is None or path is None:
            continue
        lines = doc.text.split("\n")
        start = max(0, known.start_line - CONTEXT_LINES)
        end = min(len(lines) - 1, known.end_line + CONTEXT_LINES, start + MAX_SNIPPET_LINES - 1)
        shown, start = trimmed_lines(lines[start:end + 1], start)
        language = language_for(doc.language_id, doc.uri)
        if shown and language is not None:
            snippets.append(Snippet("recentEdit", path, start, start + len(shown) - 1, round(1.0 / (1 + age), 4),
                                    "\n".join(shown), language.line_comment))
    return snippets
