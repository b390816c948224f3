"""Drop repeated lines: a diffusion model that runs out of ideas fills its span with copies."""

from __future__ import annotations

import re

from coda_lsp.context import CompletionContext

_MAX_CYCLE = 4  # lines; longer cycles are rare and usually legitimate (similar cases of a switch)
# a 2+ character unit repeated 4+ times at the end of a line: `)))))))`-like or `foo.foo.foo.foo.` noise
_LINE_END_REPEAT = re.compile(r"(.{2,}?)\1{3,}$")


def drop_repeated_lines(text: str, ctx: CompletionContext) -> str | None:
    """Cut at the first line (or cycle of up to 4 lines) that repeats the one just before it, keeping one copy;
    then cut a line that ends in a run of one repeated unit back to that unit's first copy. The first line
    is compared as it will stand in the document, after the text before the cursor."""
    lines = text.split("\n")
    full = [ctx.line_prefix + lines[0], *lines[1:]]
    return "\n".join(_LINE_END_REPEAT.sub(r"\1", line) for line in lines[:_end_of_first_cycle(full)])


def _end_of_first_cycle(lines: list[str]) -> int:
    """Number of lines to keep: everything before the second copy of the first repeated block."""
    for start in range(len(lines)):
        for size in range(1, _MAX_CYCLE + 1):
            block = lines[start:start + size]
            if len(block) == size and any(line.strip() for line in block) \
                    and block == lines[start + size:start + 2 * size]:
                return start + size
    return len(lines)
