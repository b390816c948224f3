"""Normalise a completion's indentation to the document's style: unit (tabs or spaces) and block level."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.text import TAB_WIDTH, indent_width, leading_whitespace


def normalize_indentation(text: str, ctx: CompletionContext) -> str | None:
    """Re-indent lines 2.. in the document's unit; on an already indented blank line drop the first line's own
    indentation (the cursor is there already); in a block, shift an under-indented body up to the floor."""
    lines = text.split("\n")
    if ctx.line_prefix and not ctx.line_prefix.strip():
        lines[0] = lines[0].lstrip(" \t")
    lines = [lines[0], *(_in_unit(line, ctx.indent_unit) for line in lines[1:])]
    if ctx.scope.is_multiline:
        lines = _lift_to_floor(lines, ctx)
    return "\n".join(lines)


def _in_unit(line: str, unit: str) -> str:
    """The same indentation width written with the document's unit (tabs, or spaces)."""
    if not line.strip():
        return line
    width = indent_width(line)
    body = line[len(leading_whitespace(line)):]
    if unit == "\t":
        return "\t" * (width // TAB_WIDTH) + " " * (width % TAB_WIDTH) + body
    return " " * width + body


def _lift_to_floor(lines: list[str], ctx: CompletionContext) -> list[str]:
    """When the first body line is indented less than the block floor (the model ignored the editor's
    indentation), shift every following line right by the difference, keeping their relative structure."""
    first_body = 0 if not ctx.line_prefix.strip() else 1
    body = [line for line in lines[first_body:] if line.strip()]
    if not body or first_body >= len(lines):
        return lines
    cursor_width = indent_width(ctx.line_prefix) if first_body == 0 else 0
    missing = ctx.scope.indent_floor - (cursor_width + indent_width(body[0]) if first_body == 0
                                        else indent_width(body[0]))
    if missing <= 0:
        return lines
    pad = _in_unit(" " * missing + "x", ctx.indent_unit)[:-1]
    start = max(first_body, 1)
    return [*lines[:start], *(pad + line if line.strip() else line for line in lines[start:])]
