"""Small pure helpers on source text shared by context, syntax and the filters: indentation and lines."""

from __future__ import annotations

import re
from collections import Counter

TAB_WIDTH = 4  # columns a tab counts for when comparing indentation; only the order of widths matters
_OPENERS = "([{"
_CLOSERS = ")]}"


def leading_whitespace(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(line: str) -> int:
    """Columns of a line's leading whitespace, tabs counted as TAB_WIDTH."""
    return len(leading_whitespace(line).expandtabs(TAB_WIDTH))


def detect_indent_unit(text: str, default: str) -> str:
    """The document's indentation unit: a tab when most indented lines start with one, else the most common
    step between successive indentations (in spaces)."""
    num_tab_lines = num_space_lines = 0
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.splitlines()[:2000]:
        if not line.strip():
            continue
        num_tab_lines += line.startswith("\t")
        num_space_lines += line.startswith(" ")
        width = indent_width(line)
        if width > previous:
            steps[width - previous] += 1
        previous = width
    if num_tab_lines > num_space_lines:
        return "\t"
    if not num_space_lines:
        return default
    return " " * steps.most_common(1)[0][0]


def bracket_balance(text: str) -> int:
    """Openers minus closers of (), [] and {}; strings and comments are not excluded, this is a heuristic."""
    return sum(text.count(c) for c in _OPENERS) - sum(text.count(c) for c in _CLOSERS)


def is_closers_only(text: str) -> bool:
    """True for text like `)`, `"]);`, `}` or whitespace: what editors auto-insert after the cursor."""
    return re.fullmatch(r"""\s*[)\]}>"'`]*\s*[:;,]?\s*""", text) is not None
