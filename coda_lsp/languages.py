"""Per-language facts in one table: grammar, comment and block syntax, placeholder bodies, node types."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LanguageInfo:
    """What the server needs to know about one language; every language-specific rule reads it from here."""

    grammar: str                      # tree-sitter grammar name
    grammar_module: str               # the Python module (one PyPI package per grammar) that holds it
    grammar_function: str             # that module's function returning the grammar's language pointer
    extensions: tuple[str, ...]
    line_comment: str
    uses_braces: bool                 # blocks are `{ ... }` (False: Python's indented blocks after ':')
    block_opener: str                 # what ends a line that opens a block
    block_types: frozenset[str]       # tree-sitter types of statement blocks (bodies)
    owner_types: frozenset[str]       # function / method / loop / branch nodes whose body "Fill this block" fills
    no_complete_types: frozenset[str]  # cursor inside these: complete the line only (strings, comments)
    placeholder: re.Pattern[str]      # one body line that is only a placeholder (after stripping indentation)
    default_indent: str               # indentation unit when the document shows none (the formatter's default)


_C_LIKE_STRINGS = frozenset({"string", "template_string", "string_fragment", "comment", "line_comment",
                             "block_comment", "interpreted_string_literal", "raw_string_literal",
                             "string_literal", "raw_string", "char_literal"})

_JS_OWNERS = frozenset({"function_declaration", "function_expression", "arrow_function", "method_definition",
                        "generator_function_declaration", "for_statement", "for_in_statement", "while_statement",
                        "do_statement", "if_statement", "else_clause", "try_statement", "catch_clause",
                        "finally_clause"})

_JS = dict(
    line_comment="//", uses_braces=True, block_opener="{", block_types=frozenset({"statement_block"}),
    owner_types=_JS_OWNERS, no_complete_types=_C_LIKE_STRINGS,
    placeholder=re.compile(r"^(//.*\bTODO\b.*|throw new Error\(.*[Nn]ot implemented.*\);?)$"),
    default_indent="  ",
)

PYTHON = LanguageInfo(
    grammar="python", grammar_module="tree_sitter_python", grammar_function="language", extensions=(".py", ".pyi"), line_comment="#", uses_braces=False, block_opener=":",
    block_types=frozenset({"block"}),
    owner_types=frozenset({"function_definition", "for_statement", "while_statement", "if_statement",
                           "elif_clause", "else_clause", "with_statement", "try_statement", "except_clause",
                           "finally_clause", "class_definition"}),
    no_complete_types=frozenset({"string", "string_content", "comment"}),
    placeholder=re.compile(r"^(pass|\.\.\.|raise NotImplementedError(\(.*\))?|#.*\bTODO\b.*)$"),
    default_indent="    ",
)
JAVASCRIPT = LanguageInfo(grammar="javascript", grammar_module="tree_sitter_javascript", grammar_function="language",
                          extensions=(".js", ".mjs", ".cjs", ".jsx"), **_JS)
TYPESCRIPT = LanguageInfo(grammar="typescript", grammar_module="tree_sitter_typescript",
                          grammar_function="language_typescript", extensions=(".ts", ".mts", ".cts"), **_JS)
TSX = LanguageInfo(grammar="tsx", grammar_module="tree_sitter_typescript", grammar_function="language_tsx",
                   extensions=(".tsx",), **_JS)
GO = LanguageInfo(
    grammar="go", grammar_module="tree_sitter_go", grammar_function="language", extensions=(".go",), line_comment="//", uses_braces=True, block_opener="{",
    block_types=frozenset({"block"}),
    owner_types=frozenset({"function_declaration", "method_declaration", "func_literal", "for_statement",
                           "if_statement", "expression_switch_statement"}),
    no_complete_types=_C_LIKE_STRINGS,
    placeholder=re.compile(r"^(//.*\bTODO\b.*|panic\(\".*(TODO|[Nn]ot implemented).*\"\))$"),
    default_indent="\t",
)
RUST = LanguageInfo(
    grammar="rust", grammar_module="tree_sitter_rust", grammar_function="language", extensions=(".rs",), line_comment="//", uses_braces=True, block_opener="{",
    block_types=frozenset({"block"}),
    owner_types=frozenset({"function_item", "closure_expression", "for_expression", "while_expression",
                           "loop_expression", "if_expression", "else_clause"}),
    no_complete_types=_C_LIKE_STRINGS,
    placeholder=re.compile(r"^(//.*\bTODO\b.*|(todo|unimplemented)!\(.*\);?)$"),
    default_indent="    ",
)

# LSP languageId -> facts; the ids are the ones VS Code and Neovim send.
LANGUAGES: dict[str, LanguageInfo] = {
    "python": PYTHON,
    "javascript": JAVASCRIPT,
    "javascriptreact": JAVASCRIPT,
    "typescript": TYPESCRIPT,
    "typescriptreact": TSX,
    "go": GO,
    "rust": RUST,
}


def language_for(language_id: str, uri: str) -> LanguageInfo | None:
    """Facts for a document, by languageId first and by file extension when the client sent an unknown id."""
    if language_id in LANGUAGES:
        return LANGUAGES[language_id]
    for info in LANGUAGES.values():
        if uri.endswith(info.extensions):
            return info
    return None
