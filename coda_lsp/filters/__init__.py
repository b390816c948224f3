"""The Filter type and the ordered FILTERS tuple: the only place the order of the post-filters lives."""

from __future__ import annotations

from collections.abc import Callable

from coda_lsp.context import CompletionContext
from coda_lsp.filters.dedent_scope import stop_at_dedent
from coda_lsp.filters.indentation import normalize_indentation
from coda_lsp.filters.parse_clean import keep_parse_clean
from coda_lsp.filters.repeated_lines import drop_repeated_lines
from coda_lsp.filters.suffix_overlap import cut_suffix_overlap

# A filter maps a completion to a shorter or re-indented one, or to None to discard it.
Filter = Callable[[str, CompletionContext], "str | None"]

# Repetition first (it shortens everything after it), then indentation so that the scope cut compares
# widths in the document's own style, then the suffix check on the final lines, and the costly parse last.
FILTERS: tuple[Filter, ...] = (
    drop_repeated_lines,
    normalize_indentation,
    stop_at_dedent,
    cut_suffix_overlap,
    keep_parse_clean,
)


def run_filters(text: str, ctx: CompletionContext, filters: tuple[Filter, ...] = FILTERS) -> str | None:
    """`text` through `filters` in order; None as soon as one discards it or only whitespace is left."""
    current: str | None = text.rstrip()
    for keep in filters:
        current = keep(current, ctx)
        if current is None or not current.strip():
            return None
    return current.rstrip()
