"""Loads golden cross-file cases: one TOML file each, a small workspace whose current file marks the cursor ║,
and runs them through the server's own CrossFile with the real tokenizer's counts."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types

from coda_lsp.crossfile.assemble import CrossFilePrompt
from coda_lsp.crossfile.discovery import list_source_files
from coda_lsp.crossfile.index import build_batch
from coda_lsp.crossfile.service import CrossFile
from coda_lsp.documents import Document, DocumentStore
from coda_lsp.languages import language_for
from coda_lsp.settings import Settings

GOLDEN_DIR = Path(__file__).parents[1] / "golden_crossfile"
CURSOR = "║"
_LANGUAGE_IDS = {"python": "python", "typescript": "typescript", "tsx": "typescriptreact", "javascript": "javascript",
                 "go": "go", "rust": "rust"}


@dataclass
class Workspace:
    """A golden case laid out on disk, indexed, with its tabs open."""

    cross_file: CrossFile
    documents: DocumentStore
    current: Document
    offset: int
    settings: Settings
    budget: int
    input_extra: list[dict[str, Any]]
    count_tokens: Callable[[str], int]

    def prompt(self, doc: Document | None = None, offset: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> CrossFilePrompt:
        return self.cross_file.prompt(doc or self.current, self.offset if offset is None else offset,
                                      self.settings.cross_file, self.budget, count_tokens or self.count_tokens,
                                      self.input_extra)


def language_id(path: str) -> str:
    info = language_for("", path)
    assert info is not None, path
    return _LANGUAGE_IDS[info.grammar]


def open_doc(store: DocumentStore, root: Path, relative: str, text: str, version: int = 1) -> Document:
    return store.open(types.TextDocumentItem(uri=(root / relative).as_uri(), language_id=language_id(relative),
                                             version=version, text=text))


def load_workspace(case: dict[str, Any], tmp_path: Path, count_tokens: Callable[[str], int]) -> Workspace:
    root = tmp_path / "shop"  # the folder's name is the repository name of the Qwen format
    current_marked = case["files"][case["current"]]
    offset = current_marked.index(CURSOR)
    files = {**case["files"], case["current"]: current_marked.replace(CURSOR, "")}
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    settings, problems = Settings().merged(case.get("settings", {}))
    assert not problems, problems
    store = DocumentStore()
    cross_file = CrossFile(store)
    cross_file.set_folders([root])
    for file in build_batch(list_source_files(root, 1000).files, root.resolve(), 1 << 20):
        cross_file.index.add(file)
    for relative in case.get("open", []):
        open_doc(store, root, relative, files[relative])
    for edit in case.get("edits", []):
        before = store.get((root / edit["file"]).as_uri())
        assert before is not None, f"edit of a file that is not open: {edit['file']}"
        after = Document(before.uri, before.language_id, before.version + 1, edit["text"])
        store.documents[after.uri] = after
        cross_file.record_change(before, after, [types.TextDocumentContentChangeWholeDocument(text=edit["text"])])
    current = open_doc(store, root, case["current"], files[case["current"]])
    cross_file.reindex_text(current.uri, current.text, 1 << 20)
    return Workspace(cross_file, store, current, offset, settings, case["budget"], case.get("input_extra", []),
                     count_tokens)


def summary(prompt: CrossFilePrompt) -> list[str]:
    """One line per snippet in prompt order: kind, path, 1-based line range, tokens, score."""
    return [f"{p.snippet.kind} {p.snippet.path}:{p.snippet.start_line + 1}-{p.snippet.end_line + 1} "
            f"tokens={p.tokens} score={p.snippet.score}" for p in prompt.snippets]


def load_case(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def case_paths() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.toml"))
