"""Never duplicate the text after the cursor: cut where the completion starts repeating the suffix."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.text import bracket_balance

_MIN_MATCH_CHARS = 4  # a lone `}` or `)` line is matched only as part of a tail that equals the suffix


def cut_suffix_overlap(text: str, ctx: CompletionContext) -> str | None:
    """Three cuts, in order: lines that equal the lines below the cursor; a first line equal to the next line;
    closing characters at the end that the rest of the line already has."""
    text = _cut_repeated_suffix_lines(text, ctx.suffix)
    return _cut_line_suffix_overlap(text, ctx.line_suffix.strip())


def _cut_repeated_suffix_lines(text: str, suffix: str) -> str:
    """Cut from the first completion line whose tail (non-blank lines, stripped) equals the suffix's next
    lines, or that equals the next line and is long enough not to match by chance."""
    lines = text.split("\n")
    stripped = [line.strip() for line in lines]
    below = [line.strip() for line in suffix.split("\n")[1:] if line.strip()][:len(lines)]  # the lines after
    if not below:
        return text
    for index in range(len(lines)):
        tail = [line for line in stripped[index:] if line]
        if not stripped[index]:
            continue
        if tail == below[:len(tail)] or (stripped[index] == below[0] and len(below[0]) >= _MIN_MATCH_CHARS):
            return "\n".join(lines[:index]).rstrip(" \t")
    return text


def _cut_line_suffix_overlap(text: str, closers: str) -> str:
    """Drop the longest start of the closers after the cursor that the completion ends with, when the
    completion closes more than it opens (so `print(foo(x)` keeps its own `)`)."""
    if not closers or "\n" in text:
        return text
    body = text.rstrip()
    for size in range(len(closers), 0, -1):
        overlap = closers[:size]
        if body.endswith(overlap) and bracket_balance(body) < 0:
            return body[: len(body) - size]
        if body.endswith(overlap) and not any(c in "()[]{}" for c in overlap):
            return body[: len(body) - size]
    return text
