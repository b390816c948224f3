"""One file -> FileOutline: its top-level and class-level definitions (one-line signatures) and imports."""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any, NamedTuple

import tree_sitter

from coda_lsp.crossfile.identifiers import identifier_set
from coda_lsp.languages import PYTHON, LanguageInfo
from coda_lsp.syntax import error_count, grammar_language, new_parser
from coda_lsp.text import leading_whitespace

# A class, struct or interface shown whole is cut after this many lines: the budget holds a few hundred tokens.
MAX_DEFINITION_LINES = 16
# A class shows its constructor, or without one (a dataclass, a TypedDict) this many first members: how to make
# one; a whole outline of a 40-method class would take the budget of a dozen other definitions.
MAX_CLASS_MEMBERS = 2
_CONSTRUCTORS = frozenset({"__init__", "constructor", "new"})
MAX_SIGNATURE_LINES = 6  # a longer header (one parameter per line) is shortened to this many lines
MAX_LINE_CHARS = 160  # a definition line longer than this is cut (long literals, minified code)


@dataclass(frozen=True)
class Definition:
    """A name a file defines, and the text a prompt shows for it: how to call or make it, in few tokens: a
    function's signature on one line, a class by its header and constructor, never a body or a doc line."""

    name: str
    kind: str             # "function" | "class" | "method" | "constant" | "type"
    start_line: int       # 0-based line of the definition's first line (decorators and doc comments excluded)
    end_line: int         # 0-based, inclusive
    text: str             # the view, in the file's own syntax and indentation
    container: str | None = None  # the class / impl / receiver type of a method


@dataclass(frozen=True)
class Import:
    """One binding an import statement makes: `alias` names `name` of `module`, or the whole module."""

    module: str           # as written: "a.b", ".x", "./x", "github.com/x/y", "crate::a::b"
    name: str | None      # None: the whole module (import x, import *, a Go package, a namespace import)
    alias: str | None     # the local name, when there is one

    @cached_property  # read for every import on every request
    def module_names(self) -> frozenset[str]:
        """The local names a whole-module import may bind: its alias, or each part of its path (`os`, `path`
        of `import os.path`; a Go package's last path part is its name)."""
        if self.name is not None:
            return frozenset()
        if self.alias:
            return frozenset({self.alias})
        return frozenset(part for part in re.split(r"[./:@-]+", self.module) if part)

    def submodule(self, grammar: str) -> str | None:
        """The module path of `from pkg import mod`, a named import that may be a submodule; None for a
        whole-module import, or where a language's named imports never are (JS, Go)."""
        if self.name is None:
            return None
        if grammar == "python":
            return f"{self.module}{self.name}" if self.module.endswith(".") else f"{self.module}.{self.name}"
        return f"{self.module}::{self.name}" if grammar == "rust" else None


@dataclass(frozen=True)
class FileOutline:
    definitions: tuple[Definition, ...]
    imports: tuple[Import, ...]
    # JS / TS `export { a as b } from "./m"` (Import("./m", "a", "b")) and `export * from "./m"`: names the
    # file passes on without binding them itself
    reexports: tuple[Import, ...] = ()
    # module of a whole-module import, or a named import that may be a submodule -> the names the file uses as
    # `alias.name`: over the workspace, which of a module's names its importers use most
    module_attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Imports inside functions (Python modules import there to avoid import cycles): they bind names for the
    # file's own code, not for files importing it. Read, like `uses`, only for an editor's buffer (see outline).
    local_imports: tuple[Import, ...] = ()
    uses: ImportUses | None = None  # where the file uses what it imports (only for an editor's buffer)
    syntax_errors: int = 0  # that tree-sitter recovered from (coda_lsp.syntax.error_count): it may lack parts

    @cached_property
    def all_imports(self) -> tuple[Import, ...]:
        """Every import the file's own code can name, module-level first."""
        return self.imports + self.local_imports

    @cached_property
    def module_aliases(self) -> frozenset[str]:
        """Local names of whole-module imports: `nx` of `import networkx as nx`; `os`, `path` of `import os.path`."""
        return frozenset(name for imp in self.all_imports for name in imp.module_names)


@dataclass(frozen=True)
class ImportUses:
    """The lines (0-based, ascending) where a file uses what it imports, import statements left out."""

    names: Mapping[str, tuple[int, ...]] = field(default_factory=dict)   # local name of a named import
    # (base, x) of `base.x` / `base::x` where base is an imported name: `nx.path_graph`, `core.Primitive` of
    # `from jax._src import core`, `fs::read`
    attributes: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    # the lines where a key of `names` or `attributes` is called: `grow(...)`, `nx.path_graph(...)`, a decorator
    # `@cache`; a name whose member is called (`Sharding.get_replicated(...)`) counts as called too
    calls: Mapping[str | tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    # each function and method: its first and last line and the identifiers of its lines, to find the ones most
    # like the code at the cursor
    functions: tuple[FunctionIds, ...] = ()


class FunctionIds(NamedTuple):
    start_line: int
    end_line: int
    identifiers: frozenset[str]


_IDENTIFIER_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# an identifier, and the attribute after it when there is one: `nx.path_graph`, `fs::read`
_NAME_AND_ATTRIBUTE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:[ \t]*(?:\.|::)[ \t]*([A-Za-z_][A-Za-z0-9_]*))?"
                                 r"([ \t]*\()?")


def outline(language: LanguageInfo, text: str, with_uses: bool = False,
            known: FileOutline | None = None) -> FileOutline:
    """The outline of `text`; a file with syntax errors still yields every definition tree-sitter recovers.
    `with_uses` is for a file completions happen in (an editor's buffer), not for the thousands of files a
    workspace index reads from disk: it adds the imports inside functions and where each import is used.
    A text with more syntax errors than the `known` outline of the same file keeps that outline, and reads only
    the uses that one lacks (the file's outline from disk has none): a pause in the middle of `f("ab`, or an
    emptied line, can make tree-sitter lose what follows, calls included, and the snippets would change under
    a line being typed."""
    source = text.encode("utf-8", "replace")
    root = _parser(language).parse(source).root_node
    syntax_errors = error_count(root)
    kept = known if known is not None and syntax_errors > known.syntax_errors else None
    if kept is not None and (kept.uses is not None or not with_uses):
        return kept  # before any reading: each pause in typing a broken line comes here
    reader = _Reader(source, language.grammar)
    imports = tuple(reader.imports(root))  # also fills reader.import_lines, which the uses leave out
    file_outline = kept if kept is not None else FileOutline(
        tuple(reader.definitions(root)), imports, tuple(reader.reexports(root)),
        module_attributes(text, imports, language.grammar), syntax_errors=syntax_errors)
    if not with_uses:
        return file_outline
    file_outline = replace(file_outline, local_imports=tuple(reader.local_imports(root)))
    return replace(file_outline, uses=import_uses(text, file_outline, reader.import_lines))


def module_attributes(text: str, imports: tuple[Import, ...], grammar: str) -> dict[str, frozenset[str]]:
    """The names the file uses of each module it imports (`nx.Graph`, `logging.get_logger` of `from .utils
    import logging`). `str.find` per alias: a regular expression over every identifier, as `import_uses` runs
    for a buffer, would add a fifth to the whole index build."""
    module_of = {local: imp.module for imp in imports for local in imp.module_names}
    module_of.update((imp.alias or str(imp.name), module) for imp in imports
                     if (module := imp.submodule(grammar)) is not None)
    found: dict[str, set[str]] = {}
    for alias, module in module_of.items():
        for separator in ("::", ".") if grammar == "rust" else (".",):
            key = alias + separator
            start = text.find(key)
            while start >= 0:
                before = text[start - 1] if start else " "
                name = _IDENTIFIER_AT.match(text, start + len(key))
                if name is not None and not (before.isalnum() or before in "_."):  # `x.nx.a` is not nx's
                    found.setdefault(module, set()).add(name.group())
                start = text.find(key, start + len(key))
    return {module: frozenset(names) for module, names in found.items()}


def import_uses(text: str, file_outline: FileOutline, import_lines: set[int]) -> ImportUses:
    """One regular-expression pass over the text (strings and comments included: a name in a docstring is
    a weak hint, and telling them apart would need the tree walked in Python, ten times slower)."""
    named = {imp.alias or imp.name for imp in file_outline.all_imports if imp.name is not None}
    bases = named | file_outline.module_aliases
    line_ends = [match.start() for match in re.finditer("\n", text)]
    names: dict[str, list[int]] = {}
    attributes: dict[tuple[str, str], list[int]] = {}
    calls: dict[str | tuple[str, str], list[int]] = {}

    def add(table: dict[Any, list[int]], key: Any, line: int) -> None:
        lines = table.setdefault(key, [])
        if not lines or lines[-1] != line:
            lines.append(line)
    for match in _NAME_AND_ATTRIBUTE.finditer(text):
        name, attribute = match.group(1), match.group(2)
        # `f(...)`, and a decorator, which is called with what it decorates: `@nx._dispatchable`
        is_call = match.group(3) is not None or text[match.start() - 1:match.start()] == "@"
        if name not in bases:
            continue
        line = bisect_right(line_ends, match.start() - 1)
        if line in import_lines:
            continue
        if name in named:
            add(names, name, line)
        if attribute is not None:
            add(attributes, (name, attribute), line)
        for key in ((name,) if attribute is None else (name, (name, attribute))) if is_call else ():
            add(calls, key, line)
    lines = text.split("\n")
    functions = tuple(FunctionIds(d.start_line, d.end_line, identifier_set(lines[d.start_line:d.end_line + 1]))
                      for d in file_outline.definitions if d.kind in ("function", "method"))
    return ImportUses(*({k: tuple(v) for k, v in table.items()} for table in (names, attributes, calls)), functions)


_PARSERS = threading.local()
# The import statements a language may write inside a function, as a tree-sitter query.
_NESTED_IMPORTS = {"python": "[(import_statement) (import_from_statement)] @import",
                   "rust": "(use_declaration) @import"}
_FUNCTIONS = frozenset({"function_definition", "function_item"})
_QUERIES: dict[str, Any] = {}  # compiled queries are read-only: one per grammar serves every thread


def _query(grammar: str, pattern: str) -> Any:
    if grammar not in _QUERIES:
        _QUERIES[grammar] = tree_sitter.Query(grammar_language(grammar), pattern)
    return _QUERIES[grammar]


def _parser(language: LanguageInfo) -> tree_sitter.Parser:
    """A parser of this thread's own: the index is built off the event loop, whose completions parse with
    coda_lsp.syntax's parsers meanwhile, and a tree-sitter parser must not be used by two threads at once."""
    parsers = getattr(_PARSERS, "by_grammar", None)
    if parsers is None:
        parsers = _PARSERS.by_grammar = {}
    if language.grammar not in parsers:
        parsers[language.grammar] = new_parser(language)
    return parsers[language.grammar]


def _text(source: bytes, node: Any) -> str:
    return source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _expression_of(node: Any) -> Any:
    """The expression a one-expression statement holds (Python's `x = 1` and docstrings are statements around
    an assignment or a string), else the node itself."""
    if node.type == "expression_statement" and node.named_child_count == 1:
        return node.named_children[0]
    return node


def _one_line(header: str) -> str:
    """A header of one parameter per line on one line (each line break and indent is a token or two); left as
    it is when a line holds a comment, which would swallow the rest."""
    lines = header.split("\n")
    if len(lines) == 1 or any("#" in line or "//" in line for line in lines[:-1]):
        return header
    joined = lines[0]
    for line in lines[1:]:
        part = line.strip()
        if part.startswith((")", "]", "}", ">")):
            joined = joined.removesuffix(",") + part  # `b=2,\n)`: the trailing comma goes with the break
        else:
            joined += part if joined.endswith(("(", "[", "{", "<")) else " " + part
    return joined


def _short(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "..."


class _Reader:
    """Walks the top level and one class level of a tree; each grammar's node types are named in one place."""

    def __init__(self, source: bytes, grammar: str) -> None:
        self.source = source
        self.grammar = grammar
        self.is_python = grammar == "python"
        self.import_lines: set[int] = set()   # lines of the import statements read (filled by `imports`)

    # ---- text helpers ----------------------------------------------------------------------------------------

    def indent_of(self, node: Any) -> str:
        line_start = self.source.rfind(b"\n", 0, node.start_byte) + 1
        prefix = self.source[line_start:node.start_byte].decode("utf-8", "replace")
        return prefix if not prefix.strip() else ""

    def header(self, node: Any, body: Any | None) -> str:
        """The node's text up to its body, each line cut to MAX_LINE_CHARS; a signature of one parameter per
        line keeps its first and last lines around a `...` line."""
        end = body.start_byte if body is not None else node.end_byte
        text = self.source[node.start_byte:end].decode("utf-8", "replace").rstrip()
        lines = [_short(line) for line in text.split("\n")]
        if len(lines) > MAX_SIGNATURE_LINES:
            kept = MAX_SIGNATURE_LINES - 2
            lines = lines[:kept] + [leading_whitespace(lines[kept - 1]) + "..."] + lines[-1:]
        return "\n".join(lines)

    def whole(self, node: Any, indent: str = "") -> str:
        lines = [_short(line) for line in _text(self.source, node).split("\n")]
        if len(lines) > MAX_DEFINITION_LINES:
            lines = lines[:MAX_DEFINITION_LINES - 1] + [lines[-1]]
        return indent + "\n".join(lines)

    def function_view(self, node: Any, indent: str) -> str:
        """A function or method: its header on one line, the body elided."""
        body = node.child_by_field_name("body")
        header = _one_line(indent + self.header(node, body))
        if self.is_python:
            # a comment after the colon would swallow a same-line `...`
            return header + (f"\n{indent}    ..." if "#" in header.rsplit(":", 1)[-1] else " ...")
        return f"{header} {{ ... }}" if body is not None else header

    # ---- definitions -----------------------------------------------------------------------------------------

    def definitions(self, root: Any) -> Iterator[Definition]:
        for node in _top_level(root, self.is_python):
            try:
                yield from self.top_level(node)
            except (AttributeError, IndexError, TypeError):
                continue  # an ERROR-recovered node without the expected fields: skip it, keep the rest

    def top_level(self, node: Any) -> Iterator[Definition]:
        kind = node.type
        if kind in ("decorated_definition", "export_statement"):
            inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
            if inner is not None:
                yield from self.top_level_as(inner, node)
            return
        yield from self.top_level_as(node, node)

    def top_level_as(self, node: Any, outer: Any) -> Iterator[Definition]:
        """`node` is the definition; `outer` what the prompt shows from (an export keeps its `export`)."""
        kind = node.type
        shown = outer if outer.type == "export_statement" else node
        name_node = node.child_by_field_name("name")
        name = _text(self.source, name_node) if name_node is not None else None
        if kind in ("function_definition", "function_declaration", "function_item",
                    "generator_function_declaration") and name:
            yield self.make(name, "function", shown, self.function_view_from(shown, node))
        elif kind in ("class_definition", "class_declaration", "abstract_class_declaration") and name:
            yield from self.class_like(name, shown, node)
        elif kind in ("trait_item", "impl_item"):
            yield from self.rust_block(node)
        elif kind in ("interface_declaration", "type_alias_declaration", "enum_declaration", "struct_item",
                      "enum_item", "type_item", "union_item") and name:
            yield self.make(name, "type", shown, self.whole(shown))
        elif kind in ("const_item", "static_item") and name:
            yield self.make(name, "constant", shown, self.whole(shown))
        elif kind == "method_declaration" and name:  # Go: a method is top-level, its receiver names the type
            receiver = node.child_by_field_name("receiver")
            owner = next((_text(self.source, n) for n in _walk(receiver) if n.type == "type_identifier"), None)
            yield self.make(name, "method", node, self.function_view(node, ""), owner)
        elif kind == "type_declaration":
            for spec in node.named_children:
                spec_name = spec.child_by_field_name("name")
                if spec.type in ("type_spec", "type_alias") and spec_name is not None:
                    yield self.make(_text(self.source, spec_name), "type", node, self.whole(node))
        elif kind in ("const_declaration", "var_declaration"):
            yield from self.go_values(node)
        elif kind in ("lexical_declaration", "variable_declaration"):
            yield from self.js_values(shown, node)
        elif kind == "expression_statement":
            yield from self.python_assignment(node)

    def function_view_from(self, shown: Any, node: Any) -> str:
        if shown is node:
            return self.function_view(node, "")
        # export function f(...) { ... }: the header runs from `export` to the function's body
        return f"{self.header(shown, node.child_by_field_name('body'))} {{ ... }}"

    def make(self, name: str, kind: str, node: Any, view: str, container: str | None = None) -> Definition:
        return Definition(name, kind, node.start_point[0], node.end_point[0], view, container)

    def class_like(self, name: str, shown: Any, node: Any) -> Iterator[Definition]:
        """A class: how to make one (see class_view); each method also on its own, under the class header."""
        body = node.child_by_field_name("body")
        header = self.header(shown, body)
        members: list[str] = []
        methods: list[tuple[str, Any, str]] = []
        for member in (body.named_children if body is not None else []):
            target = member.child_by_field_name("definition") if member.type == "decorated_definition" else member
            if target is None:
                continue
            target = _expression_of(target)
            indent = self.indent_of(target)
            member_name = target.child_by_field_name("name")
            if target.type in ("function_definition", "method_definition", "method_signature",
                               "abstract_method_signature") and member_name is not None:
                view = self.function_view(target, indent)
                members.append(view)
                methods.append((_text(self.source, member_name), target, view))
            elif target.type in ("assignment", "public_field_definition", "field_definition") \
                    and _text(self.source, target).count("\n") == 0:
                members.append(indent + _short(_text(self.source, target)))
        members.sort(key=lambda view: not any(f"{name}(" in view for name in _CONSTRUCTORS))
        yield self.make(name, "class", shown, self.class_view(shown, header, members))
        opener = header if self.is_python else header + " {"
        closer = "" if self.is_python else "\n}"
        for method_name, target, view in methods:
            yield self.make(method_name, "method", target, f"{opener}\n{view}{closer}", name)

    def class_view(self, shown: Any, header: str, members: list[str]) -> str:
        """How to make one: the header and the constructor's signature, or, without a constructor (a dataclass,
        a TypedDict), the first members; `members` has the constructor first."""
        has_constructor = bool(members) and any(f"{name}(" in members[0] for name in _CONSTRUCTORS)
        shown_members = members[:1 if has_constructor else MAX_CLASS_MEMBERS]
        if not shown_members:
            return f"{header} ..." if self.is_python else f"{header} {{ ... }}"
        lines = "\n".join([header if self.is_python else header + " {", *shown_members]).split("\n")
        lines = lines[:MAX_DEFINITION_LINES]
        return "\n".join(lines if self.is_python else [*lines, self.indent_of(shown) + "}"])

    def rust_block(self, node: Any) -> Iterator[Definition]:
        """A trait is a type with method signatures; an impl block's methods belong to its type."""
        body = node.child_by_field_name("body")
        header = self.header(node, body)
        is_trait = node.type == "trait_item"
        owner_node = node.child_by_field_name("name") if is_trait else node.child_by_field_name("type")
        owner = _text(self.source, owner_node) if owner_node is not None else None
        views = []
        for member in (body.named_children if body is not None else []):
            member_name = member.child_by_field_name("name")
            if member.type in ("function_item", "function_signature_item") and member_name is not None:
                indent = self.indent_of(member)
                view = self.function_view(member, indent)
                views.append(view)
                yield self.make(_text(self.source, member_name), "method", member, f"{header} {{\n{view}\n}}", owner)
        if is_trait and owner:
            lines = f"{header} {{\n" + "\n".join(views)
            yield self.make(owner, "type", node, "\n".join(lines.split("\n")[:MAX_DEFINITION_LINES]) + "\n}")

    def go_values(self, node: Any) -> Iterator[Definition]:
        keyword = "const" if node.type == "const_declaration" else "var"
        for spec in node.named_children:
            if spec.type not in ("const_spec", "var_spec"):
                continue
            line = f"{keyword} {_short(_text(self.source, spec).split(chr(10))[0])}"
            for name_node in spec.children_by_field_name("name"):
                yield self.make(_text(self.source, name_node), "constant", spec, line)

    def js_values(self, shown: Any, node: Any) -> Iterator[Definition]:
        for declarator in node.named_children:
            name_node = declarator.child_by_field_name("name")
            if declarator.type != "variable_declarator" or name_node is None or name_node.type != "identifier":
                continue
            value = declarator.child_by_field_name("value")
            name = _text(self.source, name_node)
            if value is not None and value.type in ("arrow_function", "function_expression", "function"):
                view = f"{self.header(shown, value.child_by_field_name('body'))} {{ ... }}"
                yield self.make(name, "function", shown, view)
            else:
                yield self.make(name, "constant", shown, _short(_text(self.source, shown).split("\n")[0]))

    def python_assignment(self, statement: Any) -> Iterator[Definition]:
        node = _expression_of(statement)
        if node.type != "assignment":
            return
        left = node.child_by_field_name("left")
        if left is not None and left.type == "identifier":
            yield self.make(_text(self.source, left), "constant", node,
                            _short(_text(self.source, node).split("\n")[0]))

    # ---- imports ---------------------------------------------------------------------------------------------

    def imports(self, root: Any) -> Iterator[Import]:
        for node in self.import_candidates(root):
            if node.type == "export_statement" and node.child_by_field_name("source") is not None:
                self.import_lines.update(range(node.start_point[0], node.end_point[0] + 1))
                continue  # a re-export binds no local name: see `reexports`
            yield from self.import_statement(node)

    def import_statement(self, node: Any) -> list[Import]:
        reader = _IMPORT_READERS.get(node.type)
        try:
            found = list(reader(self, node)) if reader is not None else []
        except (AttributeError, IndexError, TypeError):
            return []
        if found:
            self.import_lines.update(range(node.start_point[0], node.end_point[0] + 1))
        return found

    def local_imports(self, root: Any) -> Iterator[Import]:
        """Python and Rust imports inside functions, found by a tree-sitter query (in C: walking the whole
        tree in Python would cost more than the parse)."""
        pattern = _NESTED_IMPORTS.get(self.grammar)
        if pattern is None:
            return
        captures = tree_sitter.QueryCursor(_query(self.grammar, pattern)).captures(root)
        for node in sorted((node for nodes in captures.values() for node in nodes), key=lambda n: n.start_byte):
            if _inside_function(node):
                yield from self.import_statement(node)

    def reexports(self, root: Any) -> Iterator[Import]:
        """JS / TS `export { a, b as c } from "m"`, `export * from "m"` (`export * as ns` names no definition)."""
        for node in _top_level(root, self.is_python):
            source_node = node.child_by_field_name("source") if node.type == "export_statement" else None
            if source_node is None:
                continue
            module = _text(self.source, source_node).strip("'\"`")
            clause = next((child for child in node.named_children if child.type == "export_clause"), None)
            if clause is None:
                if not any(child.type == "namespace_export" for child in node.named_children):
                    yield Import(module, None, None)
                continue
            for spec in clause.named_children:
                name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                if spec.type == "export_specifier" and name is not None:
                    yield Import(module, _text(self.source, name),
                                 _text(self.source, alias) if alias is not None else None)

    def import_candidates(self, root: Any) -> Iterator[Any]:
        """Top-level statements; in Python also those inside top-level `if` / `try` blocks, where
        `if TYPE_CHECKING:` and `try: import x except ImportError:` imports live."""
        def within(nodes: Iterable[Any]) -> Iterator[Any]:
            for node in nodes:
                if self.is_python and node.type in ("if_statement", "try_statement", "else_clause", "elif_clause",
                                                    "except_clause", "finally_clause", "block"):
                    yield from within(node.named_children)
                else:
                    yield node
        return within(_top_level(root, self.is_python))

    def python_import(self, node: Any) -> Iterator[Import]:
        for name in node.children_by_field_name("name"):
            if name.type == "aliased_import":
                module = _text(self.source, name.child_by_field_name("name"))
                yield Import(module, None, _text(self.source, name.child_by_field_name("alias")))
            else:
                yield Import(_text(self.source, name), None, None)

    def python_from_import(self, node: Any) -> Iterator[Import]:
        module = _text(self.source, node.child_by_field_name("module_name"))
        names = node.children_by_field_name("name")
        if not names:
            yield Import(module, None, None)  # from x import *
        for name in names:
            if name.type == "aliased_import":
                yield Import(module, _text(self.source, name.child_by_field_name("name")),
                             _text(self.source, name.child_by_field_name("alias")))
            else:
                yield Import(module, _text(self.source, name), None)

    def js_import(self, node: Any) -> Iterator[Import]:
        source_node = node.child_by_field_name("source")
        module = _text(self.source, source_node).strip("'\"`")
        clause = next((child for child in node.named_children if child.type == "import_clause"), None)
        if clause is None:
            return
        for part in clause.named_children:
            if part.type == "identifier":
                yield Import(module, "default", _text(self.source, part))
            elif part.type == "namespace_import":
                alias = next((_text(self.source, n) for n in part.named_children if n.type == "identifier"), None)
                yield Import(module, None, alias)
            elif part.type == "named_imports":
                for spec in part.named_children:
                    name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                    if spec.type == "import_specifier" and name is not None:
                        yield Import(module, _text(self.source, name),
                                     _text(self.source, alias) if alias is not None else None)

    def js_require(self, node: Any) -> Iterator[Import]:
        """CommonJS: `const x = require("m")` binds the module, `const { a, b: c } = require("m")` its names."""
        if self.is_python:
            return
        for declarator in node.named_children:
            value = declarator.child_by_field_name("value") if declarator.type == "variable_declarator" else None
            if value is None or value.type != "call_expression" or \
                    _text(self.source, value.child_by_field_name("function")) != "require":
                continue
            arguments = value.child_by_field_name("arguments")
            strings = [a for a in (arguments.named_children if arguments else []) if a.type == "string"]
            if not strings:
                continue
            module = _text(self.source, strings[0]).strip("'\"`")
            target = declarator.child_by_field_name("name")
            if target.type == "identifier":
                yield Import(module, None, _text(self.source, target))
            elif target.type == "object_pattern":
                for part in target.named_children:
                    if part.type == "shorthand_property_identifier_pattern":
                        yield Import(module, _text(self.source, part), None)
                    elif part.type == "pair_pattern":
                        key, alias = part.child_by_field_name("key"), part.child_by_field_name("value")
                        yield Import(module, _text(self.source, key), _text(self.source, alias))

    def go_import(self, node: Any) -> Iterator[Import]:
        for spec in _walk(node):
            if spec.type == "import_spec":
                path = spec.child_by_field_name("path")
                alias = spec.child_by_field_name("name")
                yield Import(_text(self.source, path).strip('"`'), None,
                             _text(self.source, alias) if alias is not None else None)

    def rust_use(self, node: Any) -> Iterator[Import]:
        argument = node.child_by_field_name("argument")
        if argument is not None:
            yield from self.rust_use_tree(argument, "")

    def rust_use_tree(self, node: Any, base: str) -> Iterator[Import]:
        join = (lambda tail: f"{base}::{tail}" if base else tail)
        if node.type == "scoped_use_list":
            path = node.child_by_field_name("path")
            inner = join(_text(self.source, path)) if path is not None else base
            for item in node.child_by_field_name("list").named_children:
                yield from self.rust_use_tree(item, inner)
        elif node.type == "use_as_clause":
            path = _text(self.source, node.child_by_field_name("path"))
            module, _, name = join(path).rpartition("::")
            yield Import(module, name, _text(self.source, node.child_by_field_name("alias")))
        elif node.type == "use_wildcard":
            yield Import(join(_text(self.source, node).removesuffix("::*").removesuffix("*")), None, None)
        elif node.type in ("scoped_identifier", "identifier", "self", "crate", "super"):
            module, _, name = join(_text(self.source, node)).rpartition("::")
            yield Import(module, name, None)


_IMPORT_READERS = {
    "import_statement": lambda reader, node: (reader.python_import(node) if reader.is_python
                                              else reader.js_import(node)),
    "import_from_statement": _Reader.python_from_import,
    "import_declaration": _Reader.go_import,
    "use_declaration": _Reader.rust_use,
    "lexical_declaration": _Reader.js_require,
    "variable_declaration": _Reader.js_require,
}


@lru_cache(maxsize=4096)  # per view text: the same few hundred imported names are asked for on every keystroke
def without_annotations(view: str) -> str:
    """A Python view with its functions' parameter and return annotations left out: `def f(a, b=1): ...`, how a
    call is written, in about 30 % fewer tokens (jax's, openai's). A view that does not parse stays as it is, but
    for the `...` standing for the middle of a long parameter list."""
    source = view.encode("utf-8")
    edits: list[tuple[int, int, bytes]] = []
    for node in _walk(_parser(PYTHON).parse(source).root_node):
        if node.type == "ERROR" and (node.parent is None or node.parent.type != "parameters"):
            return view
        if node.type != "function_definition":
            continue
        parameters, returns = node.child_by_field_name("parameters"), node.child_by_field_name("return_type")
        if parameters is None:
            continue
        edits.extend((parameter.start_byte, parameter.end_byte, shown) for parameter in parameters.named_children
                     if (shown := _unannotated(parameter, source)) is not None)
        if returns is not None:
            edits.append((parameters.end_byte, returns.end_byte, b""))
    for start, end, shown in sorted(edits, reverse=True):
        source = source[:start] + shown + source[end:]
    return source.decode("utf-8")


def _unannotated(parameter: Any, source: bytes) -> bytes | None:
    """`a` of `a: int` (`*args` of `*args: int`), `a=1` of `a: int = 1`; None for a parameter without one."""
    def part(node: Any) -> bytes:
        return source[node.start_byte:node.end_byte]
    if parameter.type == "typed_parameter":  # its name has no field: the first child, a splat pattern or not
        return part(parameter.named_children[0])
    name, value = parameter.child_by_field_name("name"), parameter.child_by_field_name("value")
    if parameter.type == "typed_default_parameter" and name is not None and value is not None:
        return part(name) + b"=" + part(value)
    return None


def _inside_function(node: Any) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type in _FUNCTIONS:
            return True
        parent = parent.parent
    return False


def _top_level(root: Any, is_python: bool) -> Iterator[Any]:
    """The statements of `root`. Where the text does not parse, tree-sitter may wrap everything from there on (the
    rest of the module, when the first line of a call over several is left open) in an ERROR node, or lift a body's
    statements out of their function: of those, only what starts a line is top-level (and in Python, where
    indentation is syntax, only that ever is)."""
    for node in root.named_children:
        if node.type == "ERROR":
            yield from (child for child in _top_level(node, is_python) if child.start_point[1] == 0)
        elif node.start_point[1] == 0 or not is_python:
            yield node


def _walk(node: Any) -> Iterator[Any]:
    if node is None:
        return
    yield node
    for child in node.named_children:
        yield from _walk(child)
