"""Source (a): definitions, in other files, of the names used near the cursor; the file's imports first.

A name is resolved through the current file's imports (coda_lsp.crossfile.resolve), and only then by name
anywhere in the index."""

from __future__ import annotations

from collections.abc import Callable

from coda_lsp.crossfile.index import IndexedFile, WorkspaceIndex
from coda_lsp.crossfile.query import CursorQuery
from coda_lsp.crossfile.resolve import (Found, attribute_definitions, definitions_by_name, imported_definitions,
                                       one_each, places_module)
from coda_lsp.crossfile.snippets import Snippet

MAX_SNIPPETS = 24  # more than a share of a few hundred tokens can hold; resolving stops there


def definition_snippets(query: CursorQuery, index: WorkspaceIndex) -> list[Snippet]:
    """Snippets in two tiers: first the imported names used in the neighbourhood and the names near the cursor
    that the imports resolve (`mod.name` of a whole-module import, a Go package's own names), most and nearest
    uses first; then names near the cursor found only by name (an attribute or method: a guess the imports
    cannot confirm)."""
    current = index.get(query.path) if query.path is not None else None
    if current is None:
        return []
    own_names = {definition.name for definition in current.outline.definitions}
    imported = {name for imp in current.outline.all_imports for name in (imp.alias, imp.name) if name} | \
        current.outline.module_aliases
    near = [name for name in query.near_names if name not in own_names]
    weights = query.use_weights
    near_set = set(near)
    modules = current.outline.module_aliases
    imported_bases = {name: bases & imported for name, bases in query.attribute_bases.items() if bases & imported}
    of_module = {name for name, bases in query.attribute_bases.items()
                 if any(places_module(base, current, index) for base in bases & modules)}
    through_imports = sorted((name for name in query.neighbour_names if name not in own_names and
                              (name in imported or name in near_set or name in imported_bases)),
                             key=lambda name: -weights.get(name, 0.0))
    tiers = [
        [(name, _through_imports(name, current, index, bases=imported_bases.get(name, frozenset()),
                                 is_module_attribute=name in of_module))
         for name in through_imports],
        [(name, lambda name=name: definitions_by_name(name, current, index)) for name in near
         if name not in imported],
    ]
    snippets: list[Snippet] = []
    seen: set[tuple[str, int]] = set()
    for tier in tiers:
        for name, resolve in tier:
            for file, definition in one_each(resolve()):
                if (file.relative, definition.start_line) in seen:
                    continue
                seen.add((file.relative, definition.start_line))
                snippets.append(Snippet("definition", file.relative, definition.start_line, definition.end_line,
                                        round(1.0 / (1 + len(snippets)), 4), definition.text,
                                        file.language.line_comment))
                if len(snippets) >= MAX_SNIPPETS:
                    return snippets
    return snippets


def _through_imports(name: str, current: IndexedFile, index: WorkspaceIndex, *, bases: frozenset[str],
                     is_module_attribute: bool) -> Callable[[], list[Found]]:
    """A lazy resolution of `name` through the file's imports (resolving costs lookups; most names are not
    needed once the budget is full): as `base.name` of an imported module or submodule, else as a name the
    imports bring. `mod.name` of a module the index cannot place (the workspace's own package imported by its
    name, a re-exporting __init__) falls back to top-level definitions by name."""
    def resolve() -> list[Found]:
        found = [hit for base in sorted(bases) for hit in attribute_definitions(base, name, current, index)]
        if not found:
            found = list(imported_definitions(name, current, index))
        if not found and is_module_attribute:
            found = [(file, d) for file, d in definitions_by_name(name, current, index) if d.container is None]
        return found
    return resolve
