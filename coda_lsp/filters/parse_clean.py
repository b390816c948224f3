"""Prefer completions that keep a parse-clean file parse-clean (tree-sitter)."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.syntax import first_error_row, has_errors

_MAX_TRIES = 8  # parses per completion; each is ~1 ms on the budgeted window


def keep_parse_clean(text: str, ctx: CompletionContext) -> str | None:
    """If the window around the cursor parses without errors, return the longest line-prefix of the completion
    that keeps it so (searched back from the first syntax error), or discard the completion; a window that
    already has errors (the user is mid-edit) tells us nothing, and the completion passes unchanged."""
    if ctx.language is None or has_errors(ctx.language, ctx.prefix + ctx.suffix):
        return text
    error_row = first_error_row(ctx.language, ctx.prefix + text + ctx.suffix)
    if error_row is None:
        return text
    lines = text.split("\n")
    # Lines after the first error cannot help; the search starts at the line holding it, which may still be
    # clean on its own when the error comes from what follows (a block left open). An error above the
    # completion (it closed something of the prefix) says nothing about which lines to try.
    error_line = error_row - ctx.prefix.count("\n")
    longest = len(lines) - 1 if error_line < 0 else min(len(lines) - 1, error_line + 1)
    for size in range(longest, max(0, longest - _MAX_TRIES), -1):
        candidate = "\n".join(lines[:size])
        if candidate.strip() and not has_errors(ctx.language, ctx.prefix + candidate + ctx.suffix):
            return candidate
    return None
