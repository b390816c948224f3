"""Snippet: one piece of another file offered to the prompt, with where it came from and how good it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SourceKind = Literal["definition", "import", "recentEdit", "similar", "inputExtra"]
# Priority order of the sources: a higher one fills its budget first and its snippets sit nearer the prefix.
SOURCE_KINDS: tuple[SourceKind, ...] = ("definition", "import", "recentEdit", "similar", "inputExtra")


def trimmed_lines(lines: list[str], start_line: int) -> tuple[list[str], int]:
    """`lines` (which start at `start_line`) without blank lines at either end, and the new start line."""
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip()), -1)
    return [line.rstrip() for line in lines[first:last + 1]], start_line + first


@dataclass(frozen=True)
class Snippet:
    kind: SourceKind
    path: str            # workspace-relative, '/'-separated (an input_extra chunk: its filename as sent)
    start_line: int      # 0-based, inclusive: the lines of the file the snippet shows or summarises
    end_line: int
    score: float         # within its source: higher is better
    text: str            # without a trailing line break
    comment: str         # the line-comment token of the snippet's language, for its header

    def overlaps(self, other: Snippet) -> bool:
        return self.path == other.path and self.start_line <= other.end_line and other.start_line <= self.end_line
