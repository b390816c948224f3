"""Snippets -> the prompt part before the prefix: per-source budgets, deduplication, format, best last."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from coda_lsp.crossfile.snippets import SOURCE_KINDS, Snippet, SourceKind
from coda_lsp.settings import CrossFileFormat
# A snippet whose non-blank lines are mostly already around the cursor adds nothing and makes the model
# repeat itself (llama.vim evicts chunks over 0.5 similar to the cursor's).
NEAR_DUPLICATE_SHARE = 0.5
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
    """Where the current file starts, and how each snippet is written."""

    format: CrossFileFormat
    current_path: str          # workspace-relative path of the file being completed
    comment: str               # its line-comment token
    repo_name: str             # the workspace folder's name (Qwen format)

    def snippet(self, snippet: Snippet) -> str:
        if self.format == "qwen":
            return f"{FILE_SEP}{snippet.path}\n{snippet.text}\n"
        return f"{snippet.comment} Path: {snippet.path}\n{snippet.text}\n"

    def opening(self) -> str:
        return f"{REPO_NAME}{self.repo_name}\n" if self.format == "qwen" else ""

    def current_file(self) -> str:
        if self.format == "qwen":
            return f"{FILE_SEP}{self.current_path}\n"
        return f"{self.comment} Path: {self.current_path}\n"


def assemble(candidates: Mapping[SourceKind, Sequence[Snippet]], source_budgets: Mapping[SourceKind, int],
             budget: int, layout: Layout, local_lines: frozenset[str],
             count_tokens: Callable[[str], int]) -> CrossFilePrompt:
    """Fill `budget` tokens source by source in priority order, each source within its own budget and best
    snippet first; skip snippets that overlap one already chosen or mostly repeat the cursor's code."""
    def cost(text: str) -> int:
        return sum(count_tokens(line) for line in text.splitlines(keepends=True))

    frame = cost(layout.opening() + layout.current_file())
    left = budget - frame
    chosen: list[tuple[int, PlacedSnippet]] = []
    for priority, kind in enumerate(SOURCE_KINDS):
        source_left = min(source_budgets.get(kind, 0), left)
        for snippet in sorted(candidates.get(kind, ()), key=lambda s: -s.score):
            if any(snippet.overlaps(placed.snippet) for _, placed in chosen) or \
                    _repeats_local_code(snippet, local_lines):
                continue
            tokens = cost(layout.snippet(snippet))
            if tokens <= source_left:
                chosen.append((priority, PlacedSnippet(snippet, tokens)))
                source_left -= tokens
                left -= tokens
    if not chosen:
        return CrossFilePrompt("", (), 0, budget)
    # Best last, right before the current file: lower priority and lower score come first.
    ordered = tuple(placed for _, placed in sorted(chosen, key=lambda item: (-item[0], item[1].snippet.score)))
    text = layout.opening() + "".join(layout.snippet(p.snippet) for p in ordered) + layout.current_file()
    return CrossFilePrompt(text, ordered, frame + sum(p.tokens for p in ordered), budget)


def _repeats_local_code(snippet: Snippet, local_lines: frozenset[str]) -> bool:
    lines = [stripped for line in snippet.text.split("\n") if (stripped := line.strip())]
    return bool(lines) and sum(line in local_lines for line in lines) > NEAR_DUPLICATE_SHARE * len(lines)
