"""Keep a completion inside its scope: one line for a statement, or the lines above the block's indentation."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.filters.indentation import normalize_indentation
from coda_lsp.filters.repeated_lines import drop_repeated_lines
from coda_lsp.text import bracket_balance, indent_width, is_closers_only


def stop_at_dedent(text: str, ctx: CompletionContext) -> str | None:
    """Single-line scope: cut at the first line break. Multi-line scope: cut before the first line that is
    indented less than the block floor; a closing-bracket line for a block the completion itself opened is
    kept, since it belongs to the completion."""
    lines = text.split("\n")
    if not ctx.scope.is_multiline:
        return lines[0]
    end = _scope_end(lines, ctx)
    if end is None:
        return text
    number, keeps_closer = end
    return "\n".join(lines[:number + keeps_closer])


def _scope_end(lines: list[str], ctx: CompletionContext) -> tuple[int, bool] | None:
    """The first line after the first that starts below the block floor, and whether the completion keeps it
    (a closing-bracket line for a bracket the lines above it opened); None when every line stays in scope."""
    for number, line in enumerate(lines[1:], start=1):
        if line.strip() and indent_width(line) < ctx.scope.indent_floor:
            return number, is_closers_only(line) and bracket_balance("\n".join(lines[:number])) > 0
    return None


def scope_is_complete(text: str, ctx: CompletionContext) -> bool:
    """Whether `text`, the beginning of a raw completion, already holds everything the filters will keep of it,
    so the engine can stop writing: the line has ended (single-line scope), or the repeat filter has cut inside
    the finished lines, or a line has started below the block floor (multi-line scope). A closing-bracket line
    that may still be kept decides only once it ends. The filters see these lines as the whole pipeline does:
    repeats dropped, indentation normalised."""
    if "\n" not in text:
        return False
    if not ctx.scope.is_multiline:
        return True
    finished, _, current = text.rpartition("\n")
    if drop_repeated_lines(finished, ctx).count("\n") < finished.count("\n"):
        return True
    lines = normalize_indentation(f"{finished}\n{current}", ctx).split("\n")
    end = _scope_end(lines, ctx)
    if end is None:
        return False
    number, keeps_closer = end
    return not keeps_closer or number < len(lines) - 1
