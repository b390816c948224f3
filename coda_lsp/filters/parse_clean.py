"""Prefer completions that keep a parse-clean file parse-clean (tree-sitter)."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.syntax import has_errors

_MAX_TRIES = 8  # parses per completion; each is ~1 ms on the budgeted window


def keep_parse_clean(text: str, ctx: CompletionContext) -> str | None:
    """If the window around the cursor parses without errors, return the longest line-prefix of the completion
    that keeps it so, or discard the completion; a window that already has errors (the user is mid-edit)
    tells us nothing, and the completion passes unchanged."""
    if ctx.language is None or has_errors(ctx.language, ctx.prefix + ctx.suffix):
        return text
    lines = text.split("\n")
    for size in range(len(lines), max(0, len(lines) - _MAX_TRIES), -1):
        candidate = "\n".join(lines[:size])
        if candidate.strip() and not has_errors(ctx.language, ctx.prefix + candidate + ctx.suffix):
            return candidate
    return None
