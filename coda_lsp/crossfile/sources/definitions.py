"""Source (a): definitions, in other files, of the names used near the cursor; the file's imports first.

A name is resolved through the current file's imports (a named import, then the modules it imports whole),
and only then by name anywhere in the index. Names used near the cursor come first, nearest first; then the
imported names used elsewhere in the neighbourhood, which the line being written often uses again."""

from __future__ import annotations

from collections.abc import Iterator

from coda_lsp.crossfile.index import IndexedFile, WorkspaceIndex
from coda_lsp.crossfile.outline import Definition
from coda_lsp.crossfile.query import CursorQuery
from coda_lsp.crossfile.snippets import Snippet

MAX_BY_NAME = 2  # a name resolved only by name may be defined in many files: the nearest few are shown


def definition_snippets(query: CursorQuery, index: WorkspaceIndex) -> list[Snippet]:
    current = index.get(query.path) if query.path is not None else None
    if current is None:
        return []
    own_names = {definition.name for definition in current.outline.definitions}
    imported = {imp.alias or imp.name: imp for imp in current.outline.imports if imp.name or imp.alias}
    candidates = [name for name in query.near_names if name not in own_names]
    candidates += [name for name in query.neighbour_names if name in imported and name not in candidates]
    snippets: list[Snippet] = []
    seen: set[tuple[str, int]] = set()
    for rank, name in enumerate(candidates):
        for file, definition in _resolve(name, current, index):
            if (file.relative, definition.start_line) in seen:
                continue
            seen.add((file.relative, definition.start_line))
            snippets.append(Snippet("definition", file.relative, definition.start_line, definition.end_line,
                                    round(1.0 / (1 + rank), 4), definition.text, file.language.line_comment))
    return snippets


def _resolve(name: str, current: IndexedFile, index: WorkspaceIndex) -> list[tuple[IndexedFile, Definition]]:
    found = list(_through_imports(name, current, index))
    if found:
        return found
    by_name = [(file, d) for file, d in index.definitions_named(name, current.family) if file.path != current.path]
    by_name.sort(key=lambda item: (-_shared_folders(item[0].relative, current.relative), item[0].relative,
                                   item[1].container is not None))
    return by_name[:MAX_BY_NAME]


def _through_imports(name: str, current: IndexedFile, index: WorkspaceIndex) -> Iterator[tuple[IndexedFile, Definition]]:
    for imp in current.outline.imports:
        # `from m import a as b`: b is a's local name; `a` itself, seen on the import line, means the same
        if imp.name is not None and name in (imp.alias or imp.name, imp.name):
            for file in index.module_files(current, imp.module):
                yield from _named(file, imp.name, current)
            return
    whole = [imp for imp in current.outline.imports if imp.name is None]
    for imp in whole:
        for file in index.module_files(current, imp.module):
            yield from _named(file, name, current)
    if current.language.grammar == "go":  # a Go package is its folder: its files see each other unimported
        folder = current.relative.rpartition("/")[0]
        for file, definition in index.definitions_named(name, current.family):
            if file.path != current.path and file.relative.rpartition("/")[0] == folder:
                yield file, definition


def _named(file: IndexedFile, name: str, current: IndexedFile) -> Iterator[tuple[IndexedFile, Definition]]:
    if file.path == current.path:
        return
    for definition in file.outline.definitions:
        if definition.name == name and definition.container is None:
            yield file, definition


def _shared_folders(a: str, b: str) -> int:
    count = 0
    for left, right in zip(a.split("/")[:-1], b.split("/")[:-1]):
        if left != right:
            break
        count += 1
    return count
