"""python -m coda_lsp.tools.context_bench REPO...: cross-file context hit rate, tokens, index cost and per-request time.

On each repository (a folder, copied to a temporary folder first: a package inside an ignored virtual
environment is invisible to its enclosing repository's `git ls-files`): build the workspace index as the server does, then
sample lines whose code uses a name defined at top level in exactly one other file of the repository and not
in the line's own file (tree-sitter identifiers outside strings and comments; import and definition lines left
out). For each, the line is emptied and the cursor put
at its start; the file is opened with --tabs other files of its language as tabs, and the server's CrossFile
builds the snippets. A case is a hit when the prompt holds that definition: a snippet of the defining file whose
lines include the definition's first line. Tokens are counted with the model's tokenizer. No edit history exists
here, so the recent-edits source stays empty."""

from __future__ import annotations

import argparse
import gc
import logging
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean, quantiles
from typing import Any

from lsprotocol import types

from coda_engine.tools.files import CODA_V0_DIR
from coda_lsp.context import TokenCounter
from coda_lsp.crossfile.discovery import list_source_files
from coda_lsp.crossfile.index import IndexedFile, build_batch
from coda_lsp.crossfile.outline import Definition
from coda_lsp.crossfile.service import CrossFile
from coda_lsp.documents import DocumentStore
from coda_lsp.settings import Settings
from coda_lsp.syntax import parse

logger = logging.getLogger("coda_lsp.tools.context_bench")
_LANGUAGE_IDS = {"python": "python", "javascript": "javascript", "typescript": "typescript",
                 "tsx": "typescriptreact", "go": "go", "rust": "rust"}
_IDENTIFIERS = frozenset({"identifier", "type_identifier", "field_identifier", "property_identifier"})
_IMPORTS = frozenset({"import_statement", "import_from_statement", "import_declaration", "use_declaration"})
_NOT_CODE = _IMPORTS | {"string", "comment", "line_comment", "block_comment", "template_string",
                        "interpreted_string_literal", "raw_string_literal", "string_literal"}
# node type -> (field of the attribute's name, field of its object), per grammar
_ATTRIBUTE_FIELDS = {"attribute": ("attribute", "object"), "member_expression": ("property", "object"),
                     "selector_expression": ("field", "operand"), "field_expression": ("field", "value"),
                     "scoped_identifier": ("name", "path")}
_DEFINITIONS = frozenset({"function_definition", "class_definition", "function_declaration", "class_declaration",
                          "method_definition", "method_declaration", "function_item", "struct_item", "type_spec",
                          "variable_declarator", "interface_declaration", "type_alias_declaration"})
MAX_CASES_PER_FILE = 3


@dataclass(frozen=True)
class Case:
    file: IndexedFile
    line: int               # 0-based line that is emptied
    name: str
    target: tuple[IndexedFile, Definition]


@dataclass(frozen=True)
class RepoResult:
    repo: Path
    languages: str
    num_files: int
    num_cases: int
    num_hits: int
    tokens: list[int]
    build_s: float
    memory_mb: float
    first_ms: list[float]     # the first request after the tabs were opened
    context_ms: list[float]   # a request once the tabs' windows are known: what each keystroke costs


def build(cross_file: CrossFile, repo: Path, max_files: int, max_bytes: int) -> tuple[float, float]:
    """Index `repo` with the server's own discovery and parsing: (seconds, MB the index keeps). The memory is
    traced in a second build (tracing slows the first one down): Python objects only, since tree-sitter's
    trees are dropped once a file's outline is read."""
    started = time.perf_counter()
    _index_into(cross_file, repo, max_files, max_bytes)
    elapsed = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    traced = CrossFile(DocumentStore())
    _index_into(traced, repo, max_files, max_bytes)
    gc.collect()
    kept_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    return elapsed, kept_mb


def _index_into(cross_file: CrossFile, repo: Path, max_files: int, max_bytes: int) -> None:
    cross_file.set_folders([repo])
    discovery = list_source_files(repo, max_files)
    if discovery.is_truncated:
        logger.warning("%s: indexing only the first %d files", repo, max_files)
    for file in build_batch(discovery.files, repo.resolve(), max_bytes):
        cross_file.index.add(file)


def sample_cases(cross_file: CrossFile, num_cases: int, rng: random.Random) -> list[Case]:
    files = sorted(cross_file.index.files.values(), key=lambda f: f.relative)
    rng.shuffle(files)
    cases: list[Case] = []
    for file in files:
        own = {d.name for d in file.outline.definitions}
        found = []
        for number, names in code_uses(file).items():
            for name in names:
                target = _unique_definition(cross_file, file, name) if name not in own else None
                if target is not None:
                    found.append(Case(file, number, name, target))
                    break
        rng.shuffle(found)
        cases.extend(found[:MAX_CASES_PER_FILE])
        if len(cases) >= num_cases:
            break
    return cases[:num_cases]


def code_uses(file: IndexedFile) -> dict[int, list[str]]:
    """Line -> the names its code uses (tree-sitter identifiers outside strings, comments and imports; a
    definition's own name is no use). Lines holding an import or a definition header are left out."""
    source = file.path.read_bytes()
    modules = file.outline.module_aliases
    uses: dict[int, list[str]] = {}
    skipped_lines: set[int] = set()
    stack = [parse(file.language, source).root_node]
    while stack:
        node = stack.pop()
        if node.type in _NOT_CODE:
            if node.type in _IMPORTS:
                skipped_lines.update(range(node.start_point[0], node.end_point[0] + 1))
            continue
        if node.type in _IDENTIFIERS:
            parent = node.parent
            if parent is not None and parent.type in _DEFINITIONS and parent.child_by_field_name("name") == node:
                skipped_lines.add(node.start_point[0])
            elif _is_use(node, source, modules):
                uses.setdefault(node.start_point[0], []).append(source[node.start_byte:node.end_byte].decode())
            continue
        stack.extend(node.children)
    return {line: names for line, names in sorted(uses.items()) if line not in skipped_lines}


def _is_use(node: Any, source: bytes, modules: frozenset[str]) -> bool:
    """An identifier names something of another file unless it is the attribute of an object: `G.nodes` is
    G's `nodes`, not a top-level `nodes` elsewhere; `nx.path_graph` of a module alias is a use."""
    parent = node.parent
    fields = _ATTRIBUTE_FIELDS.get(parent.type) if parent is not None else None
    if fields is None or parent.child_by_field_name(fields[0]) != node:
        return True
    base = parent.child_by_field_name(fields[1])
    return base is not None and source[base.start_byte:base.end_byte].decode() in modules


def _unique_definition(cross_file: CrossFile, file: IndexedFile, name: str) -> tuple[IndexedFile, Definition] | None:
    found = [(other, d) for other, d in cross_file.index.definitions_named(name, file.family)
             if d.container is None]
    others = [item for item in found if item[0].path != file.path]
    return others[0] if len(others) == 1 and len(found) == 1 else None


def run_case(cross_file: CrossFile, store: DocumentStore, case: Case, tabs: list[IndexedFile],
             settings: Settings, counter: TokenCounter) -> tuple[bool, int, float, float]:
    """(hit, cross-file tokens, ms for the first request after opening the tabs, ms for the next one) for one
    emptied line."""
    lines = case.file.path.read_text(encoding="utf-8").split("\n")
    lines[case.line] = ""
    text = "\n".join(lines)
    store.documents.clear()
    for tab in tabs:
        store.open(_item(tab, tab.path.read_text(encoding="utf-8")))
    doc = store.open(_item(case.file, text))
    max_bytes = settings.cross_file.max_file_kb * 1024
    cross_file.reindex_text(doc.uri, text, max_bytes)  # didOpen: the buffer replaces the disk's outline
    offset = sum(len(line) + 1 for line in lines[:case.line])
    total = settings.context.context_tokens
    budget = int(total * settings.cross_file.share)
    timings = []
    for _ in range(2):  # the first request after the tabs open also cuts them into windows (once per version)
        started = time.perf_counter()
        prompt = cross_file.prompt(doc, offset, settings.cross_file, budget, counter)
        timings.append((time.perf_counter() - started) * 1000)
    store.documents.clear()
    cross_file.reindex_disk(doc.uri, max_bytes)  # closed again: back to the file on disk
    target_file, definition = case.target
    is_hit = any(p.snippet.path == target_file.relative and
                 p.snippet.start_line <= definition.start_line <= p.snippet.end_line for p in prompt.snippets)
    return is_hit, prompt.tokens, timings[0], timings[1]


def _item(file: IndexedFile, text: str) -> types.TextDocumentItem:
    return types.TextDocumentItem(uri=file.path.as_uri(), language_id=_LANGUAGE_IDS[file.language.grammar],
                                  version=1, text=text)


def bench_repo(repo: Path, settings: Settings, counter: TokenCounter, num_cases: int, num_tabs: int,
               seed: int) -> RepoResult:
    store = DocumentStore()
    cross_file = CrossFile(store)
    build_s, memory_mb = build(cross_file, repo, settings.cross_file.max_files,
                               settings.cross_file.max_file_kb * 1024)
    rng = random.Random(seed)
    cases = sample_cases(cross_file, num_cases, rng)
    if not cases:
        raise SystemExit(f"coda-lsp context_bench: {repo}: no line uses a name defined in exactly one other file")
    results = []
    for case in cases:
        same_family = [f for f in cross_file.index.files.values() if f.family == case.file.family and f is not case.file]
        tabs = rng.sample(sorted(same_family, key=lambda f: f.relative), min(num_tabs, len(same_family)))
        results.append(run_case(cross_file, store, case, tabs, settings, counter))
    languages = sorted({f.language.grammar for f in cross_file.index.files.values()})
    return RepoResult(repo, "/".join(languages), len(cross_file.index), len(cases), sum(r[0] for r in results),
                      [r[1] for r in results], build_s, memory_mb, [r[2] for r in results], [r[3] for r in results])


def _p(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_table(results: list[RepoResult], settings: Settings) -> None:
    cross = settings.cross_file
    print(f"context_bench: contextTokens {settings.context.context_tokens}, crossFileShare {cross.share} "
          f"({int(settings.context.context_tokens * cross.share)} tokens), format {cross.format}, source budgets "
          f"definitions {cross.definition_tokens} / edits {cross.edit_tokens} / similar {cross.similar_tokens}")
    header = ("repository", "languages", "files", "cases", "hit rate", "cross-file tokens (mean)",
              "index build s", "index memory MB (traced)", "context ms p50", "context ms p95", "first request ms p95")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        row = (r.repo.as_posix(), r.languages, str(r.num_files), str(r.num_cases), f"{100 * r.num_hits / r.num_cases:.1f} %",
               f"{mean(r.tokens):.0f}", f"{r.build_s:.2f}", f"{r.memory_mb:.1f}", f"{_p(r.context_ms, 50):.2f}",
               f"{_p(r.context_ms, 95):.2f}", f"{_p(r.first_ms, 95):.2f}")
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.context_bench", description=__doc__.split("\n")[0])
    parser.add_argument("repos", nargs="+", type=Path, metavar="REPO", help="repository folders to measure on")
    parser.add_argument("--cases", type=int, default=200, help="sampled lines per repository (default 200)")
    parser.add_argument("--tabs", type=int, default=3, help="other files open as tabs per case (default 3)")
    parser.add_argument("--context-tokens", type=int, default=1024, help="coda.contextTokens (default 1024)")
    parser.add_argument("--share", type=float, default=0.25, help="coda.crossFileShare (default 0.25)")
    parser.add_argument("--format", choices=["comment", "qwen"], default="comment", help="coda.crossFileFormat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer-dir", type=Path, default=CODA_V0_DIR,
                        help="the model's tokenizer files (default: CoDA-v0's, shipped with coda_engine.tools)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for repo in args.repos:
        if not repo.is_dir():
            raise SystemExit(f"coda-lsp context_bench: {repo} is not a folder")
    settings, problems = Settings().merged({"contextTokens": args.context_tokens, "crossFileShare": args.share,
                                            "crossFileFormat": args.format})
    if problems:
        raise SystemExit(f"coda-lsp context_bench: {problems[0]}")
    from coda_engine.tokenizer import load_tokenizer

    try:
        counter = TokenCounter(load_tokenizer(args.tokenizer_dir))
    except Exception as exc:  # a missing or broken tokenizer folder: one line, not a traceback
        raise SystemExit(f"coda-lsp context_bench: cannot load the tokenizer from {args.tokenizer_dir}: {exc}")
    results = []
    for repo in args.repos:
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / repo.resolve().name
            shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            logger.info("indexing %s (copied to %s)", repo, copy)
            result = bench_repo(copy, settings, counter, args.cases, args.tabs, args.seed)
            results.append(replace(result, repo=Path(*repo.resolve().parts[-2:])))  # e.g. npm/lib, not lib
    print_table(results, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
