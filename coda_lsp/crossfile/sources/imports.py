"""Source (b): the signatures of the names the current file imports from the workspace, most likely used first.

The definitions source sees only the names used around the cursor; code often calls a name imported at the top
and not named again for a hundred lines (`from .utils import (a, b, c)`), and nothing near the cursor points at
it. This source ranks every name the file imports by its uses in the whole file, the cursor's own line left out:
1. a name imported by name and not used yet (the user imported it to use it);
2. the others by their uses, each weighing 1 / (1 + d / USE_DECAY_LINES) at d lines away, a name the file never
   calls (a type in annotations, a constant) NOT_CALLED_WEIGHT of that: what a line needs from another file is
   most often the parameters of what it calls, while a type's or constant's name is all its uses show; the types
   the code at the cursor works with (the enclosing function's annotations, its class's bases) count as one
   more use; code repeats itself (a method and its async twin, a test per case, a rule per primitive), so a
   name gains ECHO_WEIGHT where it followed, elsewhere in the neighbourhood, a line naming what the line above
   the cursor names, and up to SIMILAR_WEIGHT where the functions most like the code before the cursor use it;
3. for a module imported whole (`import networkx as nx`), the names of it that most files of the workspace use.
Each shows as every definition does (coda_lsp.crossfile.outline), its signature on one line, a class by its
constructor, a Python one without its annotations."""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable

from coda_lsp.crossfile.identifiers import jaccard, line_identifiers
from coda_lsp.crossfile.index import IndexedFile, WorkspaceIndex
from coda_lsp.crossfile.outline import Definition, ImportUses, without_annotations
from coda_lsp.crossfile.query import NEAR_LINES_AFTER, WINDOW_LINES_BEFORE, CursorQuery
from coda_lsp.crossfile.resolve import (Found, attribute_definitions, definitions_by_name, imported_definitions,
                                       one_each, places_module)
from coda_lsp.crossfile.snippets import Snippet

USE_DECAY_LINES = 20     # a use d lines away weighs 1 / (1 + d / USE_DECAY_LINES)
UNUSED_WEIGHT = 100.0    # an imported name not used elsewhere in the file: first
NOT_CALLED_WEIGHT = 0.25  # a use of a name the file never calls
ECHO_WEIGHT = 2.0        # a name that followed, elsewhere, a line like the one above the cursor: as two uses at it
SIMILAR_FUNCTIONS = 2     # the functions most like the code before the cursor (Jaccard of identifiers) ...
MIN_LIKENESS = 0.2        # ... at least this alike ...
SIMILAR_WEIGHT = 4.0      # ... lend the names they use this times their likeness
ENCLOSING_WEIGHT = 1.0   # a type named in the enclosing function signature or class header: like a use here
POPULAR_NAMES = 8        # a whole-module import's names offered by how many files of the workspace use them
POPULAR_WEIGHT = 0.1     # the most used of them: like one use about 180 lines away
MAX_SNIPPETS = 24


# A candidate: the local name of a named import, or (base, name) of `base.name` with `base` an imported module.
Candidate = str | tuple[str, str]


def import_snippets(query: CursorQuery, index: WorkspaceIndex) -> list[Snippet]:
    current = index.get(query.path) if query.path is not None else None
    if current is None or current.outline.uses is None:
        return []
    scores = _scores(current, current.outline.uses, query)
    _add_popular(scores, current, index)
    snippets: list[Snippet] = []
    seen: set[tuple[str, int]] = set()
    for candidate in sorted(scores, key=lambda key: -scores[key]):
        for file, definition in one_each(_resolve(candidate, current, index)):
            if (file.relative, definition.start_line) in seen:
                continue
            seen.add((file.relative, definition.start_line))
            snippets.append(Snippet("import", file.relative, definition.start_line, definition.end_line,
                                    round(scores[candidate], 4), _view(file, definition), file.language.line_comment))
            if len(snippets) >= MAX_SNIPPETS:
                return snippets
    return snippets


def _view(file: IndexedFile, definition: Definition) -> str:
    """Breadth over detail: the name needed ranks anywhere among a dozen, and Python signatures without their
    annotations take about 30 % fewer tokens (jax's, openai's), so more of them fit; the definitions source keeps
    the types of the names the code nearby uses."""
    return without_annotations(definition.text) if file.language.grammar == "python" else definition.text


def _scores(current: IndexedFile, uses: ImportUses, query: CursorQuery) -> dict[Candidate, float]:
    """Candidate -> its weight: uses by closeness (less for a name never called), UNUSED_WEIGHT for a named
    import not used yet, ENCLOSING_WEIGHT more for a type of the enclosing definitions, ECHO_WEIGHT more for a
    name that followed a line like the one above the cursor, and what the functions most like the cursor's code
    lend. Insertion order is import order, which breaks ties (sorting is stable)."""
    scores: dict[Candidate, float] = {}
    for imp in current.outline.all_imports:
        if imp.name is not None:
            local = imp.alias or imp.name
            scores[local] = _weight(uses, local, uses.names.get(local, ()), query.line) or UNUSED_WEIGHT
    for attribute, lines in uses.attributes.items():
        weight = _weight(uses, attribute, lines, query.line)
        if weight:
            scores[attribute] = weight
    for name in _enclosing_names(current, query.line):
        if name in scores:
            scores[name] += ENCLOSING_WEIGHT
    alike = _alike_functions_bonus(uses, query)
    for candidate in scores:
        is_echo = (candidate if isinstance(candidate, str) else candidate[1]) in query.echo_names
        scores[candidate] += ECHO_WEIGHT * is_echo + alike.get(candidate, 0.0)
    return scores


def _add_popular(scores: dict[Candidate, float], current: IndexedFile, index: WorkspaceIndex) -> None:
    """For each module the file imports (whole, or a submodule by name), the names of it the most files of the
    workspace use, after every name the file uses itself: `nx.Graph` is a good guess in a file of `import
    networkx as nx`, `logging.get_logger` in one of `from .utils import logging`."""
    for imp in current.outline.imports:
        module = imp.module if imp.name is None else imp.submodule(current.language.grammar)
        popular = index.popular_attributes(current, module, POPULAR_NAMES) if module is not None else []
        # any of a whole-module import's names leads attribute_definitions back to its module
        base = min(imp.module_names, default=imp.module) if imp.name is None else imp.alias or str(imp.name)
        for name, num_files in popular:
            # a floor, not a default: a use far away (or in a docstring) must not leave it below its popularity
            scores[(base, name)] = max(scores.get((base, name), 0.0), POPULAR_WEIGHT * num_files / popular[0][1])


def _alike_functions_bonus(uses: ImportUses, query: CursorQuery) -> dict[Candidate, float]:
    """Candidate -> SIMILAR_WEIGHT x the likeness of the most alike of the SIMILAR_FUNCTIONS functions of the
    file most like the code before the cursor (by their identifiers; functions it overlaps left out) that use
    it."""
    first, last = query.line - WINDOW_LINES_BEFORE, query.line + NEAR_LINES_AFTER
    others = (f for f in uses.functions if f.end_line < first or f.start_line > last)
    alike = [(likeness, f) for f in others if (likeness := jaccard(query.window_ids, f.identifiers)) >= MIN_LIKENESS]
    bonus: dict[Candidate, float] = {}
    for likeness, f in heapq.nlargest(SIMILAR_FUNCTIONS, alike, key=lambda item: item[0]):
        for table in (uses.names, uses.attributes):
            for key, lines in table.items():
                first_after = bisect_left(lines, f.start_line)  # a use's lines ascend
                if first_after < len(lines) and lines[first_after] <= f.end_line:
                    bonus[key] = max(bonus.get(key, 0.0), SIMILAR_WEIGHT * likeness)
    return bonus


def _weight(uses: ImportUses, candidate: Candidate, lines: Iterable[int], cursor_line: int) -> float:
    closeness = sum(1.0 / (1.0 + abs(number - cursor_line) / USE_DECAY_LINES)
                    for number in lines if number != cursor_line)
    is_called = any(number != cursor_line for number in uses.calls.get(candidate, ()))
    return closeness if is_called else NOT_CALLED_WEIGHT * closeness


def _enclosing_names(current: IndexedFile, line: int) -> set[str]:
    """Identifiers of the views of the definitions around `line`: a function's parameter annotations and
    return type; a method's, and its class's header with the bases. The line just after a definition counts
    as inside it: typing there may extend it, and what is typed must not change the prompt."""
    names: set[str] = set()
    for definition in current.outline.definitions:
        if definition.start_line < line <= definition.end_line + 1:
            names.update(word for view_line in definition.text.split("\n") for word in line_identifiers(view_line))
    return names


def _resolve(candidate: Candidate, current: IndexedFile, index: WorkspaceIndex) -> list[Found]:
    if isinstance(candidate, str):
        return list(imported_definitions(candidate, current, index))
    base, name = candidate
    found = list(attribute_definitions(base, name, current, index))
    if not found and base in current.outline.module_aliases and places_module(base, current, index):
        # the workspace's own package, imported by name, passing the name on in ways not followed
        found = [(file, d) for file, d in definitions_by_name(name, current, index) if d.container is None]
    return found

