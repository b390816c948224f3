"""Where a name the current file uses is defined: through its imports (named, whole-module, re-exports, a Go
package's own files), or, as a guess the imports cannot confirm, by name anywhere in the index."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from coda_lsp.crossfile.index import IndexedFile, WorkspaceIndex
from coda_lsp.crossfile.outline import Definition, Import

MAX_BY_NAME = 2  # a name resolved only by name may be defined in many files: the nearest few are shown
MAX_AMBIGUOUS_FILES = 8  # a name defined in more files than this is not resolved by name
MAX_REEXPORT_DEPTH = 3  # package __init__ -> subpackage __init__ -> module: deeper chains are rare

Found = tuple[IndexedFile, Definition]


def imported_definitions(name: str, current: IndexedFile, index: WorkspaceIndex) -> Iterator[Found]:
    """`name` through the file's imports: a named import of it, else the modules the file imports whole, else
    (Go) the other files of its package."""
    for imp in current.outline.all_imports:
        # `from m import a as b`: b is a's local name; `a` itself, seen on the import line, means the same
        if imp.name is not None and name in (imp.alias or imp.name, imp.name):
            for file in index.module_files(current, imp.module):
                yield from exported(file, _source_name(imp), current, index)
            return
    whole = [imp for imp in current.outline.all_imports if imp.name is None]
    for imp in whole:
        for file in index.module_files(current, imp.module):
            yield from exported(file, name, current, index)
    if current.language.grammar == "go":  # a Go package is its folder: its files see each other unimported
        folder = current.relative.rpartition("/")[0]
        for file, definition in index.definitions_named(name, current.family):
            if file.path != current.path and file.relative.rpartition("/")[0] == folder:
                yield file, definition


def attribute_definitions(base: str, name: str, current: IndexedFile, index: WorkspaceIndex) -> Iterator[Found]:
    """`base.name` where `base` is what the file imports: a module imported whole (`nx` of `import networkx
    as nx`) or a submodule imported by name (`core` of `from jax._src import core`, `b` of `use crate::a::b`)."""
    for module in _modules_by_base(current).get(base, ()):
        for file in index.module_files(current, module):
            yield from exported(file, name, current, index)


def one_each(found: list[Found]) -> list[Found]:
    """One definition of each name and module: a module's stub (`x.pyi`) stands for it (`x.py`), as for type
    checkers, and of a function's `@overload`s and its implementation the last, the implementation, stays."""
    def module_of(file: IndexedFile) -> str:
        return file.relative.rsplit(".", 1)[0]
    stubbed = {module_of(file) for file, _ in found if file.relative.endswith(".pyi")}
    kept: dict[tuple[str, str, str], Found] = {}
    for file, definition in found:
        if file.relative.endswith(".py") and module_of(file) in stubbed:
            continue
        kept[(module_of(file), definition.container or "", definition.name)] = (file, definition)
    return list(kept.values())


def places_module(base: str, current: IndexedFile, index: WorkspaceIndex) -> bool:
    """Whether `base` stands for a module of the workspace: `nx` of `import networkx as nx` inside networkx,
    not `np` of `import numpy as np`, whose names the workspace's files must not stand in for."""
    return any(index.module_files(current, module) for module in _modules_by_base(current).get(base, ()))


def exported(file: IndexedFile, name: str, current: IndexedFile, index: WorkspaceIndex,
             depth: int = 0) -> Iterator[Found]:
    """`file`'s top-level definitions of `name`, or, when it only passes the name on (a package's `__init__.py`
    importing it from a submodule, a JS `export ... from`), the definitions behind that, MAX_REEXPORT_DEPTH deep."""
    if file.path == current.path:
        return
    for path, final_name in _exporters(file, name, index, depth):
        source = index.files.get(path)
        if source is not None and path != current.path:
            yield from ((source, d) for d in source.named(final_name) if d.container is None)


def _exporters(file: IndexedFile, name: str, index: WorkspaceIndex, depth: int) -> list[tuple[Path, str]]:
    """(path, name there) of the files that define what `file` exports as `name`. Star imports fan out over a
    whole package, so the answer is remembered until some file's exports change. A whole-module import with a
    local name (`import * as X from "m"`, `import m as X`) binds that name only and passes none of m's on."""
    if any(d.container is None for d in file.named(name)):
        return [(file.path, name)]
    if depth >= MAX_REEXPORT_DEPTH:
        return []
    key = ("exported", file.path, name, depth)
    if key not in index.memo:
        index.memo[key] = list(dict.fromkeys(
            hit for imp in file.outline.imports + file.outline.reexports
            if (imp.name is None and imp.alias is None) or (imp.alias or imp.name) == name  # a star import, or the name
            for source in index.module_files(file, imp.module) if source.path != file.path
            for hit in _exporters(source, _source_name(imp) or name, index, depth + 1)))
    return index.memo[key]


def definitions_by_name(name: str, current: IndexedFile, index: WorkspaceIndex) -> list[Found]:
    """Definitions of `name` in other files of the language, files sharing more folders with this one first;
    none for a name that many files define (`forward`, `run`): any pick would be a guess, and sorting them
    would cost more than the rest of the request."""
    if index.num_files_defining(name) > MAX_AMBIGUOUS_FILES:
        return []
    found = [(file, d) for file, d in index.definitions_named(name, current.family) if file.path != current.path]
    found.sort(key=lambda item: (-_shared_folders(item[0].relative, current.relative), item[0].relative,
                                 item[1].container is not None))
    return found[:MAX_BY_NAME]


@lru_cache(maxsize=16)  # per file version (IndexedFile hashes by identity): asked for every `base.name`
def _modules_by_base(file: IndexedFile) -> dict[str, tuple[str, ...]]:
    """Local name -> the modules it may stand for: a module imported whole, or a submodule imported by name."""
    found: dict[str, list[str]] = {}
    for imp in file.outline.all_imports:
        for base in imp.module_names:
            found.setdefault(base, []).append(imp.module)
        submodule = imp.submodule(file.language.grammar)
        if submodule is not None:
            found.setdefault(imp.alias or str(imp.name), []).append(submodule)
    return {base: tuple(modules) for base, modules in found.items()}


def _source_name(imp: Import) -> str | None:
    """The name an import takes from its module; a JS default import is looked up by its local name, which
    is nearly always the name the module's `export default class Name` gives it."""
    return imp.alias if imp.name == "default" and imp.alias else imp.name


def _shared_folders(a: str, b: str) -> int:
    count = 0
    for left, right in zip(a.split("/")[:-1], b.split("/")[:-1]):
        if left != right:
            break
        count += 1
    return count
