"""CursorQuery: what the context sources know about a cursor, computed once per request.

The cursor's own line is left out of everything here: while the user types on one line the query, and so the
snippet set, stays the same, and the engine keeps reusing its cache across keystrokes."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coda_lsp.crossfile.identifiers import identifier_set, line_attributes, line_identifier_set, line_identifiers
from coda_lsp.documents import Document
from coda_lsp.languages import LanguageInfo

NEAR_LINES_BEFORE, NEAR_LINES_AFTER = 10, 3   # names "used near the cursor" (Continue: 5 + 3)
WINDOW_LINES_BEFORE = 20                      # the code before the cursor that similar windows are matched to
NEIGHBOURHOOD_LINES = 150                     # lines either side searched for uses of imported names
# A use `d` lines from the cursor weighs 1 / (1 + d / USE_DECAY_LINES): a name used often nearby is the likeliest
# to be used again at the cursor.
USE_DECAY_LINES = 1


@dataclass(frozen=True)
class CursorQuery:
    uri: str
    path: Path | None          # resolved file path, None for a non-file uri
    language: LanguageInfo
    line: int                  # the cursor's line, 0-based
    near_names: tuple[str, ...]      # identifiers near the cursor, nearest first, each once
    neighbour_names: tuple[str, ...]  # identifiers of the neighbourhood, nearest first, each once
    use_weights: dict[str, float]    # identifier -> its uses in the neighbourhood, weighted by closeness
    attribute_bases: dict[str, frozenset[str]]  # name -> what it is an attribute of (`nx` of `nx.path`)
    window_ids: frozenset[str]       # identifier set of the code just before (and after) the cursor
    local_lines: frozenset[str]      # stripped non-blank lines of the neighbourhood, for deduplication
    # identifiers of the neighbourhood's lines that follow a line naming what the line above the cursor names:
    # code repeats itself (a sync and an async method, a test per case), and what followed there may follow here
    echo_names: frozenset[str]


def cursor_query(doc: Document, offset: int, language: LanguageInfo, path: Path | None) -> CursorQuery:
    starts = doc.line_starts
    line = bisect_right(starts, offset) - 1
    num_lines = len(starts)

    def text_of(number: int) -> str:
        end = starts[number + 1] if number + 1 < num_lines else len(doc.text)
        return doc.text[starts[number]:end]

    def nearest_first(before: int, after: int) -> list[int]:
        """Line numbers around the cursor line, nearest first, the cursor line itself left out."""
        order = []
        for distance in range(1, max(before, after) + 1):
            if distance <= before and line - distance >= 0:
                order.append(line - distance)
            if distance <= after and line + distance < num_lines:
                order.append(line + distance)
        return order

    near = nearest_first(NEAR_LINES_BEFORE, NEAR_LINES_AFTER)
    window = [text_of(n) for n in range(max(0, line - WINDOW_LINES_BEFORE), line)]
    window += [text_of(n) for n in range(line + 1, min(num_lines, line + 1 + NEAR_LINES_AFTER))]
    # one pass over the neighbourhood, nearest line first: the weights' keys are then in nearest-use order
    weights: dict[str, float] = {}
    local_lines = set()
    bases: dict[str, set[str]] = {}
    above = line_identifier_set(text_of(line - 1)) if line > 0 else frozenset()
    echo: set[str] = set()
    for number in nearest_first(NEIGHBOURHOOD_LINES, NEIGHBOURHOOD_LINES):
        text = text_of(number)
        if stripped := text.strip():
            local_lines.add(stripped)
        weight = 1.0 / (1.0 + abs(number - line) / USE_DECAY_LINES)
        names = line_identifiers(text)
        for name in names:
            weights[name] = weights.get(name, 0.0) + weight
        if above and number - 1 != line and number > 0 and line_identifier_set(text_of(number - 1)) == above:
            echo.update(names)
        for base, name in line_attributes(text):
            bases.setdefault(name, set()).add(base)
    return CursorQuery(
        uri=doc.uri, path=path, language=language, line=line,
        near_names=_ordered_names(text_of(n) for n in near),
        neighbour_names=tuple(weights), use_weights=weights,
        attribute_bases={name: frozenset(found) for name, found in bases.items()},
        window_ids=identifier_set(window), local_lines=frozenset(local_lines), echo_names=frozenset(echo))


def _ordered_names(lines: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for line in lines for name in line_identifiers(line)))

