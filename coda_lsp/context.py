"""Document + cursor -> CompletionContext: the prefix and suffix the model sees, within a token budget."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from coda_lsp.crossfile.assemble import EMPTY, CrossFilePrompt
from coda_lsp.documents import Document
from coda_lsp.languages import LanguageInfo, language_for
from coda_lsp.settings import ContextSettings
from coda_lsp.syntax import Scope, analyse_scope
from coda_lsp.text import detect_indent_unit, leading_whitespace

CountTokens = Callable[[str], int]

# A single line longer than this many characters per budgeted token is cut mid-line (minified code, a 5 MB
# one-line file); real code averages 3-4 characters per token, so whole lines are kept in practice.
_MAX_CHARS_PER_TOKEN = 8


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


class TokenCounter:
    """Counts tokens per line with the model's tokenizer and remembers each line's count, so a keystroke
    re-encodes only the line that changed (a Python call per line costs ~20 us; the budget walks hundreds)."""

    def __init__(self, tokenizer: Tokenizer, max_entries: int = 50_000) -> None:
        self._tokenizer = tokenizer
        self._counts: dict[str, int] = {}
        self._max_entries = max_entries

    def __call__(self, text: str) -> int:
        count = self._counts.get(text)
        if count is None:
            if len(self._counts) >= self._max_entries:
                self._counts.clear()
            count = self._counts[text] = len(self._tokenizer.encode(text))
        return count


@dataclass(frozen=True)
class CompletionContext:
    """Everything the pipeline knows about one cursor, computed once; filters and items read it."""

    uri: str
    version: int
    language_id: str
    language: LanguageInfo | None
    offset: int          # cursor, in code points into the document
    prefix: str          # what the model sees before the cursor; starts at a line boundary unless cut mid-line
    suffix: str          # what the model sees after the cursor; ends at a line boundary unless cut mid-line
    line_prefix: str     # the cursor's line before the cursor
    line_suffix: str     # the cursor's line after the cursor, without the line break
    indent_unit: str     # the document's indentation unit ("\t", "    ", ...)
    scope: Scope
    prefix_budget: int = 0   # tokens the prefix and suffix were allowed (what is left after cross-file context)
    suffix_budget: int = 0
    cross_file: CrossFilePrompt = EMPTY  # snippets of other files; the engine sees cross_file.text + prefix

    @property
    def line_indent(self) -> str:
        return leading_whitespace(self.line_prefix)


def build_context(doc: Document, offset: int, settings: ContextSettings, count_tokens: CountTokens,
                  max_context_tokens: int | None = None) -> CompletionContext:
    """The context for a cursor at `offset`. Whole lines are added outward from the cursor while they fit:
    the suffix is guaranteed its share of the budget and either side's unused share goes to the other."""
    text, starts = doc.text, doc.line_starts
    line = bisect_right(starts, offset) - 1
    line_end = starts[line + 1] if line + 1 < len(starts) else len(text)
    line_prefix = text[starts[line]:offset]
    line_suffix = text[offset:line_end].rstrip("\r\n")

    total = settings.context_tokens if max_context_tokens is None else min(settings.context_tokens,
                                                                           max_context_tokens)
    suffix_share = int(total * settings.suffix_share)
    before = _Side(_lines_before(text, starts, line, offset), count_tokens, total, from_end=True)
    after = _Side(_lines_after(text, starts, line, offset), count_tokens, total, from_end=False)
    suffix_budget = min(after.available, suffix_share)
    prefix_budget = min(before.available, total - suffix_budget)
    suffix_budget = total - prefix_budget

    language = language_for(doc.language_id, doc.uri)
    prefix, suffix = before.take(prefix_budget), after.take(suffix_budget)
    window = prefix + suffix
    indent_unit = detect_indent_unit(window, language.default_indent if language else "    ")
    scope = analyse_scope(language, prefix, suffix, line_prefix, line_suffix, indent_unit)
    return CompletionContext(uri=doc.uri, version=doc.version, language_id=doc.language_id, language=language,
                             offset=offset, prefix=prefix, suffix=suffix, line_prefix=line_prefix,
                             line_suffix=line_suffix, indent_unit=indent_unit, scope=scope,
                             prefix_budget=prefix_budget, suffix_budget=suffix_budget)


def _lines_before(text: str, starts: list[int], line: int, offset: int) -> Iterator[str]:
    """The cursor line's prefix, then whole lines upward (nearest first)."""
    yield text[starts[line]:offset]
    for number in range(line - 1, -1, -1):
        yield text[starts[number]:starts[number + 1]]


def _lines_after(text: str, starts: list[int], line: int, offset: int) -> Iterator[str]:
    """The cursor line's suffix (with its line break), then whole lines downward (nearest first)."""
    for number in range(line, len(starts)):
        yield text[max(offset, starts[number]):starts[number + 1] if number + 1 < len(starts) else len(text)]


class _Side:
    """One side of the cursor: the pieces nearest the cursor that fit in `limit` tokens, counted lazily so a
    5 MB document costs no more than the lines the budget can reach."""

    def __init__(self, pieces: Iterable[str], count_tokens: CountTokens, limit: int, *, from_end: bool) -> None:
        self._from_end = from_end
        self._kept: list[tuple[str, int]] = []
        used = 0
        for index, piece in enumerate(pieces):
            if index == 0 and len(piece) > limit * _MAX_CHARS_PER_TOKEN:
                piece = piece[-limit * _MAX_CHARS_PER_TOKEN:] if from_end else piece[:limit * _MAX_CHARS_PER_TOKEN]
            cost = count_tokens(piece) if piece else 0
            if index > 0 and used + cost > limit:
                break
            self._kept.append((piece, cost))
            used += cost
        self.available = used

    def take(self, budget: int) -> str:
        """The nearest pieces within `budget` tokens; the cursor line's own piece is always kept (trimmed
        by characters if it alone is over budget)."""
        chosen, used = [], 0
        for index, (piece, cost) in enumerate(self._kept):
            if index > 0 and used + cost > budget:
                break
            if index == 0 and cost > budget > 0:
                keep = max(1, len(piece) * budget // cost)
                piece = piece[-keep:] if self._from_end else piece[:keep]
            chosen.append(piece)
            used += cost
        if self._from_end:
            chosen.reverse()
        return "".join(chosen)
