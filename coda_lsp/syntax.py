"""tree-sitter facts: single- vs multi-line and the scope a completion may fill, parse errors, fillable blocks."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from tree_sitter import Language, Parser

from coda_lsp.languages import LANGUAGES, LanguageInfo
from coda_lsp.text import indent_width, is_closers_only, leading_whitespace


@dataclass(frozen=True)
class Scope:
    """What a completion at the cursor may fill."""

    is_multiline: bool   # False: the rest of the current statement (one line); True: lines of the enclosing block
    indent_floor: int    # columns; a completion line indented less than this has left the block


@dataclass(frozen=True)
class BlockSlot:
    """A placeholder body that "Fill this block" replaces: offsets in code points into the document."""

    start: int           # just after the block opener (':' or '{') or after a kept docstring
    end: int             # end of the last placeholder line (Python) or start of '}' (braces)
    body_indent: str     # indentation of every line of the new body
    closer_indent: str | None  # braces: indentation put back before '}'; None for Python


class GrammarMissing(RuntimeError):
    """A language's grammar package is not installed (a broken install); the message names the package."""


def new_parser(language: LanguageInfo) -> Parser:
    """A tree-sitter parser of the language's grammar."""
    return Parser(grammar_language(language.grammar))


def grammar_language(grammar: str) -> Language:
    """A grammar by its name, from its own package (tree-sitter-python, ...); GrammarMissing names the package."""
    language = next(info for info in LANGUAGES.values() if info.grammar == grammar)
    try:
        module = importlib.import_module(language.grammar_module)
    except ImportError:
        package = language.grammar_module.replace("_", "-")
        raise GrammarMissing(f"the tree-sitter grammar for {grammar} is not installed: pip install "
                             f"{package} (a dependency of coda-lsp: reinstall it)") from None
    return Language(getattr(module, language.grammar_function)())


def check_grammars() -> None:
    """Raise GrammarMissing for the first language whose grammar cannot be loaded: a server should say so when
    it starts, not on the first completion in that language."""
    for language in LANGUAGES.values():
        _parser(language)


@cache
def _parser(language: LanguageInfo) -> Parser:
    return new_parser(language)


def parse(language: LanguageInfo, source: bytes) -> Any:
    return _parser(language).parse(source)


def has_errors(language: LanguageInfo, text: str) -> bool:
    """Whether tree-sitter finds a syntax error (ERROR or MISSING node) anywhere in `text`."""
    return parse(language, text.encode("utf-8", "replace")).root_node.has_error


def error_count(node: Any) -> int:
    """The syntax errors tree-sitter recovered from under `node`: ERROR nodes (each counted once, whatever it
    holds) and MISSING ones. A loop, not recursion: nesting a thousand brackets deep must not raise."""
    count, stack = 0, [node]
    while stack:
        current = stack.pop()
        if current.is_error or current.is_missing:
            count += 1
        elif current.has_error:
            stack.extend(child for child in current.children if child.has_error or child.is_missing)
    return count


def first_error_row(language: LanguageInfo, text: str) -> int | None:
    """0-based line of the first syntax error (ERROR or MISSING node) in `text`, or None if it parses clean."""
    node = parse(language, text.encode("utf-8", "replace")).root_node
    if not node.has_error:
        return None
    while not (node.is_error or node.is_missing):
        child = next((c for c in node.children if c.has_error or c.is_missing), None)
        if child is None:
            break
        node = child
    return node.start_point[0]


def analyse_scope(language: LanguageInfo | None, prefix: str, suffix: str, line_prefix: str, line_suffix: str,
                  indent_unit: str) -> Scope:
    """Single- vs multi-line and the indentation floor for a cursor between `prefix` and `suffix`.

    Multi-line right after a block opener (even inside an auto-closed `{}`) and on a blank line; single-line
    when the rest of the line has text, inside strings and comments, and in the middle of a statement."""
    cursor_indent = indent_width(line_prefix)
    opener = language.block_opener if language else ":{"
    stripped = line_prefix.rstrip()
    if stripped and stripped[-1] in opener and is_closers_only(line_suffix):
        return Scope(is_multiline=True, indent_floor=cursor_indent + indent_width(indent_unit))
    if line_suffix.strip():
        return Scope(is_multiline=False, indent_floor=cursor_indent)
    if language is None:
        return Scope(is_multiline=not line_prefix.strip(), indent_floor=cursor_indent)
    source, cursor = (prefix + suffix).encode("utf-8", "replace"), len(prefix.encode("utf-8", "replace"))
    enclosing = list(_ancestors(parse(language, source).root_node.descendant_for_byte_range(max(0, cursor - 1),
                                                                                          cursor)))
    if any(node.type in language.no_complete_types for node in enclosing):
        return Scope(is_multiline=False, indent_floor=cursor_indent)
    if not line_prefix.strip():
        floor = max(cursor_indent, _block_indent(language, enclosing, source, cursor))
        return Scope(is_multiline=True, indent_floor=floor)
    return Scope(is_multiline=False, indent_floor=cursor_indent)


def _ancestors(node: Any) -> Iterator[Any]:
    """`node`, its parent, and so on up to the root."""
    while node is not None:
        yield node
        node = node.parent


def _block_indent(language: LanguageInfo, enclosing: list[Any], source: bytes, cursor: int) -> int:
    """Indentation of the statements of the innermost block around the cursor (0 at top level): a blank line
    the editor did not indent still belongs to the body it sits in."""
    for node in enclosing:
        if node.type in language.block_types and node.named_child_count and node.start_byte < cursor:
            first = node.named_children[0]
            line_start = source.rfind(b"\n", 0, first.start_byte) + 1
            return indent_width(source[line_start:first.start_byte].decode("utf-8", "replace"))
    return 0


def find_block_slot(language: LanguageInfo, text: str, offset: int, indent_unit: str) -> BlockSlot | None:
    """The innermost function / method / loop / branch around `offset` whose body is only a placeholder
    (empty, pass, ..., TODO, raise NotImplementedError and the like), or None."""
    source = text.encode("utf-8", "replace")
    cursor = len(text[:offset].encode("utf-8", "replace"))
    root = parse(language, source).root_node
    # the character before the cursor too: a cursor right after `def f():` touches the function, not the next line
    for start in (cursor, max(0, cursor - 1)):
        for node in _ancestors(root.descendant_for_byte_range(start, start)):
            if node.type in language.owner_types:
                slot = _slot_of_owner(language, node, source, indent_unit)
                if slot is not None:
                    return slot
    return None


def _slot_of_owner(language: LanguageInfo, owner: Any, source: bytes, indent_unit: str) -> BlockSlot | None:
    block = next((child for child in owner.children if child.type in language.block_types), None)
    if block is None:
        return None
    if language.uses_braces:
        return _brace_slot(language, block, source, indent_unit)
    return _indented_slot(language, owner, block, source, indent_unit)


def _chars(source: bytes, byte_offset: int) -> int:
    """Code-point offset of a byte offset (the text was encoded with errors='replace', one char per char)."""
    return len(source[:byte_offset].decode("utf-8", "replace"))


def _line_indent(source: bytes, byte_offset: int) -> str:
    line_start = source.rfind(b"\n", 0, byte_offset) + 1
    return leading_whitespace(source[line_start:byte_offset].decode("utf-8", "replace"))


def _is_placeholder_body(language: LanguageInfo, body: str) -> bool:
    return all(language.placeholder.match(line.strip()) for line in body.splitlines() if line.strip())


def _brace_slot(language: LanguageInfo, block: Any, source: bytes, indent_unit: str) -> BlockSlot | None:
    if len(block.children) < 2 or block.children[0].type != "{" or block.children[-1].type != "}":
        return None
    start, end = block.children[0].end_byte, block.children[-1].start_byte
    body = source[start:end].decode("utf-8", "replace")
    if not _is_placeholder_body(language, body):
        return None
    header_indent = _line_indent(source, block.start_byte)
    body_lines = [line for line in body.splitlines() if line.strip()]
    body_indent = leading_whitespace(body_lines[0]) if body_lines else header_indent + indent_unit
    return BlockSlot(start=_chars(source, start), end=_chars(source, end), body_indent=body_indent,
                     closer_indent=header_indent)


def _indented_slot(language: LanguageInfo, owner: Any, block: Any, source: bytes,
                   indent_unit: str) -> BlockSlot | None:
    """Python: the body runs from the ':' (or a kept docstring) to the last line indented deeper than the
    header; trailing comments like `# TODO` may sit outside the block node, so lines are read as text."""
    colon = block.prev_sibling
    if colon is None or colon.type != ":":
        return None
    start = colon.end_byte
    if block.named_child_count and _is_docstring(block.named_children[0]):
        start = block.named_children[0].end_byte
    header_indent = indent_width(_line_indent(source, owner.start_byte))
    end, first_line_indent = start, None
    position = source.find(b"\n", start)
    while position != -1:
        line_end = source.find(b"\n", position + 1)
        line = source[position + 1: line_end if line_end != -1 else len(source)].decode("utf-8", "replace")
        if line.strip():
            if indent_width(line) <= header_indent:
                break
            first_line_indent = first_line_indent or leading_whitespace(line)
            end = line_end if line_end != -1 else len(source)
        position = line_end
    body = source[start:end].decode("utf-8", "replace")
    same_line = source[start:source.find(b"\n", start) if b"\n" in source[start:] else len(source)]
    if same_line.strip() or not _is_placeholder_body(language, body):
        return None
    body_indent = first_line_indent or _line_indent(source, owner.start_byte) + indent_unit
    return BlockSlot(start=_chars(source, start), end=_chars(source, end), body_indent=body_indent,
                     closer_indent=None)


def _is_docstring(node: Any) -> bool:
    return node.type == "expression_statement" and node.named_child_count == 1 and \
        node.named_children[0].type == "string"
