"""Snippets -> the prompt part before the prefix: per-source budgets, deduplication, format, best last."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from coda_lsp.crossfile.snippets import SOURCE_KINDS, Snippet, SourceKind
from coda_lsp.settings import CrossFileFormat
# A snippet whose non-blank lines are mostly already around the cursor adds nothing and makes the model
# repeat itself (llama.vim evicts chunks over 0.5 similar to the cursor's).
NEAR_DUPLICATE_SHARE = 0.5
# What the sources left goes first to the imported names: the definitions source shows names the code near the
# cursor already uses, the imports source what the file may call next and nothing nearby shows (context_bench:
# all sets as good or better, jax's imported calls 64.0 -> 67.5 %; docs/cross-file.md).
SPILL_ORDER: tuple[SourceKind, ...] = ("import", "definition", "recentEdit", "similar", "inputExtra")
# Qwen's repository-level layout names the repository first; the workspace folder's name stands in for it.
REPO_NAME, FILE_SEP = "<|repo_name|>", "<|file_sep|>"


@dataclass(frozen=True)
class PlacedSnippet:
    snippet: Snippet
    tokens: int       # of its rendered form, header included


@dataclass(frozen=True)
class CrossFilePrompt:
    text: str                             # goes before the current file's prefix; "" without snippets
    snippets: tuple[PlacedSnippet, ...]   # in prompt order: best last
    tokens: int                           # of `text`, headers included
    budget: int                           # what the cross-file share allowed


EMPTY = CrossFilePrompt("", (), 0, 0)


@dataclass(frozen=True)
class Layout:
    """Where the current file starts, and how snippets are written: one header per file, its snippets under it."""

    format: CrossFileFormat
    current_path: str          # workspace-relative path of the file being completed
    comment: str               # its line-comment token
    repo_name: str             # the workspace folder's name (Qwen format)

    def header(self, path: str, comment: str) -> str:
        return f"{FILE_SEP}{path}\n" if self.format == "qwen" else f"{comment} Path: {path}\n"

    def opening(self) -> str:
        return f"{REPO_NAME}{self.repo_name}\n" if self.format == "qwen" else ""

    def current_file(self) -> str:
        return self.header(self.current_path, self.comment)


def assemble(candidates: Mapping[SourceKind, Sequence[Snippet]], source_budgets: Mapping[SourceKind, int],
             budget: int, layout: Layout, local_lines: frozenset[str],
             count_tokens: Callable[[str], int]) -> CrossFilePrompt:
    """Fill `budget` tokens in two passes over the sources, best snippet first: the first, in priority order,
    keeps each source within its own budget, the second lets the sources use what the others left, in
    SPILL_ORDER. Snippets that overlap one already chosen or mostly repeat the cursor's code are skipped. A
    snippet of a file that already has one costs only its own lines: the file's header is written once."""
    def cost(text: str) -> int:
        return sum(count_tokens(line) for line in text.splitlines(keepends=True))

    frame = cost(layout.opening() + layout.current_file())
    left = budget - frame
    chosen: list[tuple[int, PlacedSnippet]] = []
    ranked = {kind: sorted(candidates.get(kind, ()), key=lambda s: -s.score) for kind in SOURCE_KINDS}
    for is_spill in (False, True):
        for kind in SPILL_ORDER if is_spill else SOURCE_KINDS:
            priority = SOURCE_KINDS.index(kind)
            source_left = left if is_spill else min(source_budgets.get(kind, 0), left)
            if is_spill and not source_budgets.get(kind, 0):
                continue  # a source turned off (budget 0) stays off
            for snippet in ranked[kind]:
                if any(snippet is placed.snippet or snippet.overlaps(placed.snippet) for _, placed in chosen) or \
                        _repeats_local_code(snippet, local_lines):
                    continue
                is_new_file = all(placed.snippet.path != snippet.path for _, placed in chosen)
                tokens = cost(snippet.text + "\n") + (cost(layout.header(snippet.path, snippet.comment))
                                                      if is_new_file else 0)
                if tokens <= source_left:
                    chosen.append((priority, PlacedSnippet(snippet, tokens)))
                    source_left -= tokens
                    left -= tokens
    if not chosen:
        return CrossFilePrompt("", (), 0, budget)
    ordered = _best_last(chosen)
    return CrossFilePrompt(_render(ordered, layout), ordered, frame + sum(p.tokens for p in ordered), budget)


def _best_last(chosen: list[tuple[int, PlacedSnippet]]) -> tuple[PlacedSnippet, ...]:
    """Files ordered by their best snippet and snippets within a file likewise, best last, so the best of all
    sits right before the current file; a higher priority source beats any score of a lower one."""
    def key(item: tuple[int, PlacedSnippet]) -> tuple[int, float]:
        return -item[0], item[1].snippet.score

    by_path: dict[str, list[tuple[int, PlacedSnippet]]] = {}
    for item in chosen:
        by_path.setdefault(item[1].snippet.path, []).append(item)
    groups = sorted(by_path.values(), key=lambda items: max(key(item) for item in items))
    return tuple(placed for items in groups for _, placed in sorted(items, key=key))


def _render(ordered: tuple[PlacedSnippet, ...], layout: Layout) -> str:
    parts = [layout.opening()]
    for index, placed in enumerate(ordered):
        snippet = placed.snippet
        if index == 0 or ordered[index - 1].snippet.path != snippet.path:
            parts.append(layout.header(snippet.path, snippet.comment))
        parts.append(snippet.text + "\n")
    parts.append(layout.current_file())
    return "".join(parts)


def _repeats_local_code(snippet: Snippet, local_lines: frozenset[str]) -> bool:
    lines = [stripped for line in snippet.text.split("\n") if (stripped := line.strip())]
    return bool(lines) and sum(line in local_lines for line in lines) > NEAR_DUPLICATE_SHARE * len(lines)
