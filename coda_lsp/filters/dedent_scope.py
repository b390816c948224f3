"""Keep a completion inside its scope: one line for a statement, or the lines above the block's indentation."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.text import bracket_balance, indent_width, is_closers_only


def stop_at_dedent(text: str, ctx: CompletionContext) -> str | None:
    """Single-line scope: cut at the first line break. Multi-line scope: cut before the first line that is
    indented less than the block floor; a closing-bracket line for a block the completion itself opened is
    kept, since it belongs to the completion."""
    lines = text.split("\n")
    if not ctx.scope.is_multiline:
        return lines[0]
    kept = [lines[0]]
    for line in lines[1:]:
        if line.strip() and indent_width(line) < ctx.scope.indent_floor:
            if is_closers_only(line) and bracket_balance("\n".join(kept)) > 0:
                kept.append(line)
            break
        kept.append(line)
    return "\n".join(kept)
