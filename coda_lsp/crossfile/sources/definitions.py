"""Source (a): definitions, in other files, of the names used near the cursor; the file's imports first.

A name is resolved through the current file's imports (a named import, then the modules it imports whole,
then, in Go, the files of the same package), and only then by name anywhere in the index."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from coda_lsp.crossfile.index import IndexedFile, WorkspaceIndex
from coda_lsp.crossfile.outline import Definition
from coda_lsp.crossfile.query import CursorQuery
from coda_lsp.crossfile.snippets import Snippet

MAX_BY_NAME = 2  # a name resolved only by name may be defined in many files: the nearest few are shown
MAX_AMBIGUOUS_FILES = 8  # a name defined in more files than this is not resolved by name
MAX_SNIPPETS = 24
MAX_REEXPORT_DEPTH = 3  # package __init__ -> subpackage __init__ -> module: deeper chains are rare  # more than a share of a few hundred tokens can hold; resolving stops there


def definition_snippets(query: CursorQuery, index: WorkspaceIndex) -> list[Snippet]:
    """Snippets in two tiers: first the imported names used in the neighbourhood and the names near the cursor
    that the imports resolve (`mod.name` of a whole-module import, a Go package's own names), most and nearest
    uses first; then names near the cursor found only by name (an attribute or method: a guess the imports
    cannot confirm)."""
    current = index.get(query.path) if query.path is not None else None
    if current is None:
        return []
    own_names = {definition.name for definition in current.outline.definitions}
    imported = {name for imp in current.outline.imports for name in (imp.alias, imp.name) if name}
    near = [name for name in query.near_names if name not in own_names]
    weights = query.use_weights
    near_set = set(near)
    modules = current.outline.module_aliases
    of_module = {name for name, bases in query.attribute_bases.items() if bases & modules}
    through_imports = sorted((name for name in query.neighbour_names if name not in own_names and
                              (name in imported or name in near_set or name in of_module)),
                             key=lambda name: -weights.get(name, 0.0))
    tiers = [
        [(name, _through_imports(name, current, index, is_module_attribute=name in of_module))
         for name in through_imports],
        [(name, lambda name=name: _by_name(name, current, index)) for name in near if name not in imported],
    ]
    snippets: list[Snippet] = []
    seen: set[tuple[str, int]] = set()
    for tier in tiers:
        for name, resolve in tier:
            for file, definition in resolve():
                if (file.relative, definition.start_line) in seen:
                    continue
                seen.add((file.relative, definition.start_line))
                snippets.append(Snippet("definition", file.relative, definition.start_line, definition.end_line,
                                        round(1.0 / (1 + len(snippets)), 4), definition.text,
                                        file.language.line_comment))
                if len(snippets) >= MAX_SNIPPETS:
                    return snippets
    return snippets


def _by_name(name: str, current: IndexedFile, index: WorkspaceIndex) -> list[tuple[IndexedFile, Definition]]:
    """Definitions of `name` in other files of the language, files sharing more folders with this one first;
    none for a name that many files define (`forward`, `run`): any pick would be a guess, and sorting them
    would cost more than the rest of the request."""
    if index.num_files_defining(name) > MAX_AMBIGUOUS_FILES:
        return []
    found = [(file, d) for file, d in index.definitions_named(name, current.family) if file.path != current.path]
    found.sort(key=lambda item: (-_shared_folders(item[0].relative, current.relative), item[0].relative,
                                 item[1].container is not None))
    return found[:MAX_BY_NAME]


def _through_imports(name: str, current: IndexedFile, index: WorkspaceIndex, *,
                     is_module_attribute: bool) -> Callable[[], list[tuple[IndexedFile, Definition]]]:
    """A lazy resolution of `name` through the file's imports (resolving costs lookups; most names are not
    needed once the budget is full). `mod.name` of a module the index cannot place (the workspace's own
    package imported by its name, a re-exporting __init__) falls back to top-level definitions by name."""
    def resolve() -> list[tuple[IndexedFile, Definition]]:
        found = list(_imported_definitions(name, current, index))
        if not found and is_module_attribute:
            found = [(file, d) for file, d in _by_name(name, current, index) if d.container is None]
        return found
    return resolve


def _imported_definitions(name: str, current: IndexedFile,
                          index: WorkspaceIndex) -> Iterator[tuple[IndexedFile, Definition]]:
    for imp in current.outline.imports:
        # `from m import a as b`: b is a's local name; `a` itself, seen on the import line, means the same
        if imp.name is not None and name in (imp.alias or imp.name, imp.name):
            for file in index.module_files(current, imp.module):
                yield from _exported(file, imp.name, current, index)
            return
    whole = [imp for imp in current.outline.imports if imp.name is None]
    for imp in whole:
        for file in index.module_files(current, imp.module):
            yield from _exported(file, name, current, index)
    if current.language.grammar == "go":  # a Go package is its folder: its files see each other unimported
        folder = current.relative.rpartition("/")[0]
        for file, definition in index.definitions_named(name, current.family):
            if file.path != current.path and file.relative.rpartition("/")[0] == folder:
                yield file, definition


def _exported(file: IndexedFile, name: str, current: IndexedFile, index: WorkspaceIndex,
              depth: int = 0) -> Iterator[tuple[IndexedFile, Definition]]:
    """`file`'s top-level definitions of `name`, or, when it only re-exports the name (a package's
    `__init__.py` importing it from a submodule), the definitions behind its imports, MAX_REEXPORT_DEPTH deep."""
    if file.path == current.path:
        return
    found = [definition for definition in file.named(name) if definition.container is None]
    if found or depth >= MAX_REEXPORT_DEPTH:
        yield from ((file, definition) for definition in found)
        return
    key = ("exported", file.path, name, depth)
    if key not in index.memo:  # star imports fan out; the answer holds until the index changes
        index.memo[key] = [hit for imp in file.outline.imports
                           if imp.name is None or (imp.alias or imp.name) == name  # a star import, or the name
                           for source in index.module_files(file, imp.module)
                           for hit in _exported(source, imp.name or name, current, index, depth + 1)]
    yield from (hit for hit in index.memo[key] if hit[0].path != current.path)


def _shared_folders(a: str, b: str) -> int:
    count = 0
    for left, right in zip(a.split("/")[:-1], b.split("/")[:-1]):
        if left != right:
            break
        count += 1
    return count
