"""Loads golden filter cases: one TOML file each, the raw completion marked ├ ┤ at the cursor in the document."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from coda_lsp.context import CompletionContext, build_context
from coda_lsp.documents import Document
from coda_lsp.settings import ContextSettings

GOLDEN_DIR = Path(__file__).parent / "golden"
_EXTENSIONS = {"python": ".py", "javascript": ".js", "typescript": ".ts", "go": ".go", "rust": ".rs"}


@dataclass(frozen=True)
class GoldenCase:
    path: Path
    description: str
    ctx: CompletionContext
    raw: str
    expected: str | None   # None: the filter must discard the completion
    xfail: str | None

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}: {self.description}"


def load_case(path: Path) -> GoldenCase:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    marked = data["document"]
    start, end = marked.index("├"), marked.index("┤")
    raw = marked[start + 1:end]
    text = marked[:start] + marked[end + 1:]
    language = data.get("language", "python")
    doc = Document(f"file:///golden{_EXTENSIONS[language]}", language, 1, text)
    # characters stand in for tokens: goldens test filters, not the budget
    ctx = build_context(doc, start, ContextSettings(context_tokens=100_000), len)
    outcomes = [key for key in ("expected", "unchanged", "discard") if key in data]
    if len(outcomes) != 1:
        raise ValueError(f"{path}: exactly one of expected / unchanged / discard, got {outcomes}")
    expected = raw if data.get("unchanged") else data.get("expected")
    return GoldenCase(path, data["description"], ctx, raw, expected, data.get("xfail"))


def load_cases(folder: str) -> list[GoldenCase]:
    return [load_case(path) for path in sorted((GOLDEN_DIR / folder).glob("*.toml"))]
