"""python -m coda_lsp.tools.context_bench REPO...: cross-file context hit rate, tokens, index cost and per-request time.

On each repository (a folder, copied into a temporary workspace folder first, as a checkout holds its package: a
package inside an ignored virtual environment is invisible to its enclosing repository's `git ls-files`): build
the workspace index as the server does, then sample two sets of lines.
- "All uses": lines whose code uses a name defined at top level in exactly one other file of the repository and
  not in the line's own file (tree-sitter identifiers outside strings and comments; import and definition lines
  left out; not a name the file binds itself, such as a local `data` or a keyword argument `data=`, which only
  shares its name with another file's definition).
- "Imported calls": call sites whose callee is such a name, imported by name at the top of the file (`from m
  import f`, `import { f }`, `use m::f`) and not named again on the 30 lines above or the 10 below.
For each, the line is emptied and the cursor put at its start; the file is opened with --tabs other files of its
language as tabs, and the server's CrossFile builds the snippets. A case is a hit when the prompt holds that
definition: a snippet of the defining file whose lines include the definition's first line; rates come with
Wilson 95 % intervals. The line is then typed back in thirds, the index re-read at each (as after a pause in
typing): the case is stable when the cross-file text never changes. Tokens are counted with the model's
tokenizer. No edit history exists here, so the recent-edits source stays empty.

--held-out N adds the N largest pure-Python packages (no compiled extension; most .py files) of this interpreter's
site-packages that the context sources were never tuned on (all but TUNED_ON), so no one picks them."""

from __future__ import annotations

import argparse
import gc
import logging
import math
import random
import re
import shutil
import sys
import sysconfig
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
from coda_lsp.crossfile.identifiers import line_identifiers
from coda_lsp.crossfile.index import IndexedFile, build_batch
from coda_lsp.crossfile.outline import Definition, FileOutline, outline
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
_CALLS = {"call": "function", "call_expression": "function", "new_expression": "constructor"}
# An identifier in these places (parent node type -> its field, None: any child) binds a local name, or names
# a keyword argument: not a use of another file's definition, and a local binding shadows one in the whole file.
_BINDINGS: dict[str, str | None] = {
    "assignment": "left", "augmented_assignment": "left", "for_statement": "left", "for_in_clause": "left",
    "named_expression": "name", "pattern_list": None, "tuple_pattern": None, "list_pattern": None,
    "parameters": None, "lambda_parameters": None, "typed_parameter": None, "default_parameter": "name",
    "typed_default_parameter": "name", "as_pattern_target": None, "keyword_argument": "name",
    "variable_declarator": "name", "formal_parameters": None, "required_parameter": "pattern",
    "optional_parameter": "pattern", "assignment_expression": "left", "for_in_statement": "left",
    "arrow_function": "parameter", "parameter_declaration": "name", "let_declaration": "pattern",
    "parameter": "pattern", "closure_parameters": None}
MAX_CASES_PER_FILE = 3
# The packages the context sources were built and tuned against (issue 20's table); --held-out never picks them.
TUNED_ON = frozenset({"rich", "huggingface_hub", "transformers", "networkx"})
# "Not otherwise used in the window": the lines a reader of the cursor's code sees (the static reading).
WINDOW_ABOVE, WINDOW_BELOW = 30, 10
TYPING_STEPS = 3            # the emptied line is typed back in this many pieces for the stability check
WILSON_Z = 1.959964         # 95 %


@dataclass(frozen=True)
class Case:
    file: IndexedFile
    line: int               # 0-based line that is emptied
    name: str
    target: tuple[IndexedFile, Definition]


@dataclass(frozen=True)
class CaseResult:
    is_hit: bool
    is_stable: bool         # the cross-file text stayed the same while the line was typed back
    tokens: int
    first_ms: float         # the first request after the tabs were opened
    context_ms: float       # the fastest of --repeat requests once the tabs' windows are known: a keystroke's cost
    miss: str = ""          # for --misses: where a missed case was, what it used, and what the prompt held instead


@dataclass(frozen=True)
class RepoResult:
    repo: Path
    languages: str
    num_files: int
    uses: list[CaseResult]      # "all uses" cases
    imported: list[CaseResult]  # imported call sites not named nearby
    build_s: float
    memory_mb: float

    @property
    def all_results(self) -> list[CaseResult]:
        return self.uses + self.imported


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


@dataclass(frozen=True)
class Use:
    name: str
    base: str | None      # `base` of `base.name`; None for a plain name
    is_call: bool         # a plain name called: `f(...)`, `new F(...)`


@dataclass(frozen=True)
class CodeUses:
    uses: dict[int, list[Use]]    # line -> the names its code uses, in source order
    import_lines: frozenset[int]  # lines of import statements


def sample_cases(cross_file: CrossFile, num_cases: int, rng: random.Random) -> tuple[list[Case], list[Case]]:
    """(all-uses cases, imported-call cases), at most MAX_CASES_PER_FILE of each per file, files in random order."""
    files = sorted(cross_file.index.files.values(), key=lambda f: f.relative)
    rng.shuffle(files)
    uses: list[Case] = []
    imported: list[Case] = []
    for file in files:
        if len(uses) >= num_cases and len(imported) >= num_cases:
            break
        text = file.path.read_text(encoding="utf-8")
        imports = _Imports(cross_file, file, outline(file.language, text, with_uses=True), text)
        code = code_uses(file)
        found = []
        for number, line_uses in code.uses.items():
            target = next((target for use in line_uses if (target := imports.target(use)) is not None), None)
            if target is not None:
                found.append(Case(file, number, target[1].name, target))
        rng.shuffle(found)
        uses.extend(found[:MAX_CASES_PER_FILE])
        calls = imported_calls(imports, text.split("\n"), code)
        rng.shuffle(calls)
        imported.extend(calls[:MAX_CASES_PER_FILE])
    return uses[:num_cases], imported[:num_cases]


def imported_calls(imports: _Imports, lines: list[str], code: CodeUses) -> list[Case]:
    """Call sites of a name the file imports by that name at its top, defined at top level in exactly one other
    file and not named again on the WINDOW_ABOVE lines above or WINDOW_BELOW below: nothing near the cursor points
    at it."""
    cases = []
    for number, line_uses in code.uses.items():
        window = [n for n in range(max(0, number - WINDOW_ABOVE), min(len(lines), number + 1 + WINDOW_BELOW))
                  if n != number and n not in code.import_lines]
        nearby = {word for n in window for word in line_identifiers(lines[n])}
        for use in line_uses:
            target = imports.target(use) if use.is_call and use.name in imports.top_named else None
            if target is not None and use.name not in nearby:
                cases.append(Case(imports.file, number, use.name, target))
                break
    return cases


class _Imports:
    """Which uses of a file are cases: a name defined at top level in exactly one other file, in the module (or
    package) that the file's import of it names: `f` of `from m import f`, `nx.f` of `import networkx as nx`,
    `core.f` of `from jax._src import core`; in Go, a name of the file's own package; in Python, a plain name
    of a star import's module. A name the file binds otherwise (a local, a module alias, a submodule imported by
    name such as `config` of `from jax._src import config` beside a `config` object in it, an import from outside
    the repository that shares a name with one of its definitions, such as `np.nan` beside a `nan` stub) is no
    case."""

    def __init__(self, cross_file: CrossFile, file: IndexedFile, buffer: FileOutline, text: str) -> None:
        self.cross_file, self.file = cross_file, file
        self.own = {d.name for d in file.outline.definitions}
        self.named = {imp.alias or imp.name: imp for imp in buffer.all_imports if imp.name is not None}
        self.top_named = {imp.alias or imp.name for imp in buffer.imports
                          if imp.name is not None and imp.alias in (None, imp.name)}
        self.whole = {local: imp.module for imp in buffer.all_imports for local in imp.module_names}
        self.submodules = {local for local, imp in self.named.items()
                           if (module := imp.submodule(file.language.grammar)) is not None
                           and cross_file.index.module_files(file, module)}
        # `import m` and `from m import *` read alike in the outline; only the star brings m's plain names
        self.starred = [imp.module for imp in buffer.all_imports if imp.name is None and imp.alias is None and
                        (file.language.grammar != "python" or
                         re.search(rf"from\s+{re.escape(imp.module)}\s+import\s+\*", text))]

    def target(self, use: Use) -> tuple[IndexedFile, Definition] | None:
        if use.name in self.own or (use.base is None and (use.name in self.whole or use.name in self.submodules)):
            return None
        found = _unique_definition(self.cross_file, self.file, use.name)
        if found is None:
            return None
        places = self.places(use)
        return found if any(_holds(place, found[0].relative) for place in places) else None

    def places(self, use: Use) -> list[str]:
        """Where `use` may be defined: module files (`a/b.py`) and packages (`a/`, `` for the whole folder)."""
        if use.base is not None and use.base in self.whole:
            return self.module_places(self.whole[use.base])
        if use.base is not None and use.base in self.named:
            imp = self.named[use.base]
            separator = "::" if self.file.language.grammar == "rust" else "."
            prefix = imp.module if imp.module.endswith(".") else imp.module + separator
            return self.module_places(prefix + str(imp.name))
        if use.base is not None:
            return []
        if use.name in self.named:
            return self.module_places(self.named[use.name].module)
        if self.file.language.grammar == "go":
            return [self.file.relative.rpartition("/")[0] + "/"]
        if self.file.language.grammar == "python":
            return [place for module in self.starred for place in self.module_places(module)]
        return []

    def module_places(self, module: str) -> list[str]:
        places = []
        for found in self.cross_file.index.module_files(self.file, module):
            folder, _, name = found.relative.rpartition("/")
            is_package = name.rsplit(".", 1)[0] in ("__init__", "index", "mod") or found.language.grammar == "go"
            places.append(f"{folder}/" if is_package and folder else "" if is_package else found.relative)
        return places


def _holds(place: str, relative: str) -> bool:
    return place == "" or relative == place or (place.endswith("/") and relative.startswith(place))


def code_uses(file: IndexedFile) -> CodeUses:
    """The names each line's code uses: tree-sitter identifiers outside strings, comments and imports, plain or
    as the attribute of a plain name (`nx.path_graph`; `G.nodes` too, which no import explains); a definition's
    own name is no use, nor a name the file binds itself (a local variable, parameter or keyword argument that
    shares its name with another file's definition). Lines holding an import or a definition header are left
    out."""
    source = file.path.read_bytes()
    uses: dict[int, list[Use]] = {}
    skipped_lines: set[int] = set()
    import_lines: set[int] = set()
    bound: set[str] = set()
    stack = [parse(file.language, source).root_node]
    while stack:
        node = stack.pop()
        if node.type in _NOT_CODE:
            if node.type in _IMPORTS:
                import_lines.update(range(node.start_point[0], node.end_point[0] + 1))
            continue
        if node.type in _IDENTIFIERS:
            parent = node.parent
            name = source[node.start_byte:node.end_byte].decode()
            if parent is not None and parent.type in _DEFINITIONS and parent.child_by_field_name("name") == node:
                skipped_lines.add(node.start_point[0])
            elif parent is not None and parent.type in _BINDINGS and \
                    (_BINDINGS[parent.type] is None or parent.child_by_field_name(_BINDINGS[parent.type]) == node):
                bound.add(name)
            elif (use := _use(node, name, source)) is not None:
                uses.setdefault(node.start_point[0], []).append(use)
            continue
        stack.extend(reversed(node.children))  # source order: a line's first use is its first name
    kept = {line: [use for use in line_uses if use.name not in bound and use.base not in bound]
            for line, line_uses in sorted(uses.items()) if line not in skipped_lines | import_lines}
    return CodeUses({line: line_uses for line, line_uses in kept.items() if line_uses}, frozenset(import_lines))


def _use(node: Any, name: str, source: bytes) -> Use | None:
    parent = node.parent
    fields = _ATTRIBUTE_FIELDS.get(parent.type) if parent is not None else None
    if fields is None or parent.child_by_field_name(fields[0]) != node:
        is_call = parent is not None and parent.type in _CALLS and \
            parent.child_by_field_name(_CALLS[parent.type]) == node
        return Use(name, None, is_call)
    base = parent.child_by_field_name(fields[1])
    if base is None or base.type != "identifier":
        return None  # `a.b.name`, `f().name`: what it is an attribute of is no name the imports explain
    return Use(name, source[base.start_byte:base.end_byte].decode(), False)


def _unique_definition(cross_file: CrossFile, file: IndexedFile, name: str) -> tuple[IndexedFile, Definition] | None:
    found = [(other, d) for other, d in cross_file.index.definitions_named(name, file.family)
             if d.container is None]
    others = [item for item in found if item[0].path != file.path]
    return others[0] if len(others) == 1 and len(found) == 1 else None


def run_case(cross_file: CrossFile, store: DocumentStore, case: Case, tabs: list[IndexedFile],
             settings: Settings, counter: TokenCounter, repeat: int) -> CaseResult:
    """One emptied line: its prompt, the time to build it, and whether typing the line back changes it."""
    lines = case.file.path.read_text(encoding="utf-8").split("\n")
    original = lines[case.line]
    lines[case.line] = ""
    text = "\n".join(lines)
    store.documents.clear()
    for tab in tabs:
        store.open(_item(tab, tab.path.read_text(encoding="utf-8")))
    doc = store.open(_item(case.file, text))
    max_bytes = settings.cross_file.max_file_kb * 1024
    cross_file.reindex_text(doc.uri, text, max_bytes)  # didOpen: the buffer replaces the disk's outline
    offset = sum(len(line) + 1 for line in lines[:case.line])
    budget = int(settings.context.context_tokens * settings.cross_file.share)
    timings = []
    for _ in range(1 + repeat):  # the first request after the tabs open also cuts them into windows (once per version)
        started = time.perf_counter()
        prompt = cross_file.prompt(doc, offset, settings.cross_file, budget, counter)
        timings.append((time.perf_counter() - started) * 1000)
    is_stable = True
    for step in range(1, TYPING_STEPS + 1):
        typed = original[:len(original) * step // TYPING_STEPS]
        typed_text = text[:offset] + typed + text[offset:]
        typed_doc = store.open(_item(case.file, typed_text, version=1 + step))
        cross_file.reindex_text(typed_doc.uri, typed_text, max_bytes)  # a pause in typing: the buffer re-read
        later = cross_file.prompt(typed_doc, offset + len(typed), settings.cross_file, budget, counter)
        is_stable = is_stable and later.text == prompt.text
    store.documents.clear()
    cross_file.reindex_disk(doc.uri, max_bytes)  # closed again: back to the file on disk
    target_file, definition = case.target
    is_hit = any(p.snippet.path == target_file.relative and
                 p.snippet.start_line <= definition.start_line <= p.snippet.end_line for p in prompt.snippets)
    miss = "" if is_hit else (
        f"{case.file.relative}:{case.line + 1}: {case.name} -> {target_file.relative}:{definition.start_line + 1}"
        f" | {original.strip()} | " + ", ".join(f"{p.snippet.kind} {p.snippet.path}:{p.snippet.start_line + 1}"
                                                for p in prompt.snippets))
    return CaseResult(is_hit, is_stable, prompt.tokens, timings[0], min(timings[1:]), miss)


def _item(file: IndexedFile, text: str, version: int = 1) -> types.TextDocumentItem:
    return types.TextDocumentItem(uri=file.path.as_uri(), language_id=_LANGUAGE_IDS[file.language.grammar],
                                  version=version, text=text)


def bench_repo(repo: Path, settings: Settings, counter: TokenCounter, num_cases: int, num_tabs: int,
               seed: int, repeat: int) -> RepoResult:
    store = DocumentStore()
    cross_file = CrossFile(store)
    build_s, memory_mb = build(cross_file, repo, settings.cross_file.max_files,
                               settings.cross_file.max_file_kb * 1024)
    rng = random.Random(seed)
    uses, imported = sample_cases(cross_file, num_cases, rng)
    if not uses:
        raise SystemExit(f"coda-lsp context_bench: {repo}: no line uses a name defined in exactly one other file")

    def run(cases: list[Case]) -> list[CaseResult]:
        results = []
        for case in cases:
            same_family = [f for f in cross_file.index.files.values()
                           if f.family == case.file.family and f is not case.file]
            tabs = rng.sample(sorted(same_family, key=lambda f: f.relative), min(num_tabs, len(same_family)))
            results.append(run_case(cross_file, store, case, tabs, settings, counter, repeat))
        return results
    languages = sorted({f.language.grammar for f in cross_file.index.files.values()})
    return RepoResult(repo, "/".join(languages), len(cross_file.index), run(uses), run(imported), build_s, memory_mb)


def held_out_packages(site_packages: Path, count: int) -> list[Path]:
    """The `count` largest pure-Python packages of `site_packages` outside TUNED_ON: folders with an
    __init__.py and no compiled extension, by their number of .py files (ties by name)."""
    sizes = []
    for folder in sorted(site_packages.iterdir()):
        if not (folder / "__init__.py").is_file() or folder.name in TUNED_ON:
            continue
        files = [path for path in folder.rglob("*") if path.suffix in (".py", ".so", ".pyd")]
        if all(path.suffix == ".py" for path in files):
            sizes.append((-len(files), folder.name, folder))
    return [folder for _, _, folder in sorted(sizes)[:count]]


def wilson(hits: int, total: int) -> tuple[float, float]:
    """The Wilson score interval of a rate at 95 %: sound at rates near 0 or 1, unlike p +- 1.96 sd."""
    if total == 0:
        return 0.0, 1.0
    rate = hits / total
    centre = rate + WILSON_Z ** 2 / (2 * total)
    spread = WILSON_Z * math.sqrt(rate * (1 - rate) / total + WILSON_Z ** 2 / (4 * total ** 2))
    scale = 1 + WILSON_Z ** 2 / total
    return (centre - spread) / scale, (centre + spread) / scale


def _rate(results: list[CaseResult]) -> str:
    if not results:
        return "-"
    hits = sum(r.is_hit for r in results)
    low, high = wilson(hits, len(results))
    return f"{100 * hits / len(results):.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def _p(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_table(results: list[RepoResult], settings: Settings) -> None:
    cross = settings.cross_file
    print(f"context_bench: contextTokens {settings.context.context_tokens}, crossFileShare {cross.share} "
          f"({int(settings.context.context_tokens * cross.share)} tokens), format {cross.format}, source budgets "
          f"definitions {cross.definition_tokens} / imports {cross.import_tokens} / edits {cross.edit_tokens} / "
          f"similar {cross.similar_tokens}; hit rates with Wilson 95 % intervals")
    header = ("repository", "languages", "files", "cases", "hit rate", "imported-call cases",
              "imported-call hit rate", "stable while typing", "cross-file tokens (mean)", "index build s",
              "index memory MB (traced)", "context ms p50", "context ms p95", "first request ms p95")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        every = r.all_results
        row = (r.repo.as_posix(), r.languages, str(r.num_files), str(len(r.uses)), _rate(r.uses),
               str(len(r.imported)), _rate(r.imported), f"{100 * mean(x.is_stable for x in every):.1f} %",
               f"{mean(x.tokens for x in every):.0f}", f"{r.build_s:.2f}", f"{r.memory_mb:.1f}",
               f"{_p([x.context_ms for x in every], 50):.2f}", f"{_p([x.context_ms for x in every], 95):.2f}",
               f"{_p([x.first_ms for x in every], 95):.2f}")
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_lsp.tools.context_bench", description=__doc__.split("\n")[0])
    parser.add_argument("repos", nargs="*", type=Path, metavar="REPO", help="repository folders to measure on")
    parser.add_argument("--held-out", type=int, default=0, metavar="N",
                        help="also measure the N largest pure-Python packages of site-packages outside "
                             f"{', '.join(sorted(TUNED_ON))} (default 0)")
    parser.add_argument("--site-packages", type=Path, default=Path(sysconfig.get_paths()["purelib"]),
                        help="where --held-out looks (default: this interpreter's)")
    parser.add_argument("--cases", type=int, default=200, help="sampled lines per repository and set (default 200)")
    parser.add_argument("--tabs", type=int, default=3, help="other files open as tabs per case (default 3)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed requests per case once its tabs are open; the fastest counts (default 3)")
    parser.add_argument("--context-tokens", type=int, default=1024, help="coda.contextTokens (default 1024)")
    parser.add_argument("--share", type=float, default=0.25, help="coda.crossFileShare (default 0.25)")
    parser.add_argument("--format", choices=["comment", "qwen"], default="comment", help="coda.crossFileFormat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--misses", type=Path, metavar="FILE",
                        help="write each missed case to FILE, a line each: the emptied line, the definition it "
                             "uses, and the snippets the prompt held instead")
    parser.add_argument("--tokenizer-dir", type=Path, default=CODA_V0_DIR,
                        help="the model's tokenizer files (default: CoDA-v0's, shipped with coda_engine.tools)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if args.repeat < 1 or args.cases < 1 or args.held_out < 0:
        raise SystemExit("coda-lsp context_bench: --repeat and --cases must be at least 1, --held-out at least 0")
    for repo in args.repos:
        if not repo.is_dir():
            raise SystemExit(f"coda-lsp context_bench: {repo} is not a folder")
    repos = list(args.repos)
    if args.held_out:
        if not args.site_packages.is_dir():
            raise SystemExit(f"coda-lsp context_bench: {args.site_packages} is not a folder")
        chosen = held_out_packages(args.site_packages, args.held_out)
        logger.info("held out: %s", ", ".join(folder.name for folder in chosen))
        repos += chosen
    if not repos:
        raise SystemExit("coda-lsp context_bench: name a REPO folder or --held-out N")
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
    for repo in repos:
        with tempfile.TemporaryDirectory() as scratch:
            # the workspace holds the folder, as a checkout holds its package: `import pkg` names pkg/
            workspace = Path(scratch) / repo.resolve().name
            copy = workspace / repo.resolve().name
            shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            logger.info("indexing %s (copied to %s)", repo, copy)
            result = bench_repo(workspace, settings, counter, args.cases, args.tabs, args.seed, args.repeat)
            results.append(replace(result, repo=Path(*repo.resolve().parts[-2:])))  # e.g. npm/lib, not lib
    print_table(results, settings)
    if args.misses is not None:
        args.misses.write_text("".join(f"{r.repo.as_posix()} {kind}: {x.miss}\n" for r in results
                                       for kind, cases in (("all", r.uses), ("imported", r.imported))
                                       for x in cases if x.miss), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
