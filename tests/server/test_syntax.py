"""syntax: single- vs multi-line and the indentation floor; placeholder blocks for "Fill this block"."""

from __future__ import annotations

import subprocess
import sys

import pytest

from coda_lsp.languages import GO, JAVASCRIPT, LANGUAGES, PYTHON, RUST, TYPESCRIPT, LanguageInfo, language_for
from coda_lsp.syntax import (GrammarMissing, analyse_scope, check_grammars, error_count, find_block_slot,
                             first_error_row, has_errors, new_parser)


def test_every_language_has_its_grammar() -> None:
    check_grammars()
    for language in LANGUAGES.values():
        assert new_parser(language).parse(b"x").root_node is not None


def test_a_missing_grammar_is_one_line_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tree_sitter_go", None)  # what import sees for a package not installed
    with pytest.raises(GrammarMissing, match=r"^the tree-sitter grammar for go is not installed: pip install "
                                             r"tree-sitter-go \(a dependency of coda-lsp: reinstall it\)$"):
        new_parser(GO)


def test_the_server_will_not_start_without_a_grammar() -> None:
    script = ("import sys; sys.modules['tree_sitter_rust'] = None; from coda_lsp.cli import main; "
              "sys.exit(main(['--stdio']))")
    result = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("coda-lsp: the tree-sitter grammar for rust is not installed: pip install "
                                     "tree-sitter-rust (a dependency of coda-lsp: reinstall it)")


def _scope(language: LanguageInfo, text: str):
    prefix, suffix = text.split("║")
    line_prefix = prefix.rsplit("\n", 1)[-1]
    line_suffix = suffix.split("\n", 1)[0]
    return analyse_scope(language, prefix, suffix, line_prefix, line_suffix, language.default_indent)


@pytest.mark.parametrize(("language", "text", "is_multiline", "floor"), [
    (PYTHON, "def f(x):\n    if x:║\n", True, 8),
    (PYTHON, "def f(x):\n    y = 1\n    ║\n    return y\n", True, 4),
    (PYTHON, "def f(x):\n    y = 1\n║\n    return y\n", True, 4),
    (PYTHON, "def f(x):\n    y = ║\n", False, 4),
    (PYTHON, "def f(x):\n    y = g(║)\n", False, 4),
    (PYTHON, "def f(x):\n    # explain ║\n", False, 4),
    (JAVASCRIPT, "function f() {║}\n", True, 2),
    (JAVASCRIPT, "function f() {\n  const s = `a ║\n", False, 2),
    (GO, "func f() {\n\t║\n}\n", True, 4),
    (RUST, "fn f() {\n    let x = ║;\n}\n", False, 4),
])
def test_scope(language: LanguageInfo, text: str, is_multiline: bool, floor: int) -> None:
    scope = _scope(language, text)
    assert (scope.is_multiline, scope.indent_floor) == (is_multiline, floor)


@pytest.mark.parametrize(("language", "text", "body"), [
    (PYTHON, "def f(x):\n    ║pass\n\ny = 1\n", "\n    pass"),
    (PYTHON, "def f(x):\n    \"\"\"Doc.\"\"\"\n    ║raise NotImplementedError\n", "\n    raise NotImplementedError"),
    (PYTHON, "for x in y:║\n    ...\nz = 1\n", "\n    ..."),
    (PYTHON, "class A:\n    def f(self):║\n        # TODO: write\n    x = 1\n", "\n        # TODO: write"),
    (PYTHON, "def f():║\n\ndef g():\n    return 1\n", ""),
    (JAVASCRIPT, "function f(a) {║\n  // TODO\n}\n", "\n  // TODO\n"),
    (TYPESCRIPT, "const f = (a: number) => {║}\n", ""),
    (GO, "func f() int {║\n\tpanic(\"not implemented\")\n}\n", "\n\tpanic(\"not implemented\")\n"),
    (RUST, "fn f() -> i32 {║\n    todo!()\n}\n", "\n    todo!()\n"),
])
def test_placeholder_block(language: LanguageInfo, text: str, body: str) -> None:
    offset = text.index("║")
    text = text.replace("║", "")
    slot = find_block_slot(language, text, offset, language.default_indent)
    assert slot is not None and text[slot.start:slot.end] == body


@pytest.mark.parametrize(("language", "text"), [
    (PYTHON, "def f(x):\n    ║return x\n"),
    (PYTHON, "def f(x):║ pass\n"),
    (JAVASCRIPT, "function f(a) {║ return a; }\n"),
    (PYTHON, "x = 1║\n"),
])
def test_no_placeholder(language: LanguageInfo, text: str) -> None:
    offset = text.index("║")
    assert find_block_slot(language, text.replace("║", ""), offset, language.default_indent) is None


def test_python_body_indent_and_docstring_kept() -> None:
    text = "class A:\n    def f(self):\n        \"\"\"Doc.\"\"\"\n        pass\n"
    slot = find_block_slot(PYTHON, text, text.index("def"), "    ")
    assert slot is not None
    assert text[:slot.start].endswith('"""Doc."""') and slot.body_indent == "        "
    assert slot.closer_indent is None


def test_has_errors() -> None:
    assert not has_errors(PYTHON, "def f():\n    return 1\n")
    assert has_errors(PYTHON, "def f(:\n")


def test_error_count_counts_each_error_once_and_any_nesting_depth() -> None:
    def count(language: LanguageInfo, text: str) -> int:
        return error_count(new_parser(language).parse(text.encode()).root_node)
    assert count(PYTHON, "def f():\n    return 1\n") == 0
    assert count(PYTHON, "def f(:\n" * 3) == 3
    assert count(PYTHON, "x = " + "[" * 6000 + "1 +" + "]" * 6000 + "\n") == 1  # no RecursionError


@pytest.mark.parametrize(("language", "text", "row"), [
    (PYTHON, "def f(x):\n    return x\n", None),
    (PYTHON, "def f(x):\n    y = 1\n    return )(\n    z = 2\n", 2),
    (PYTHON, "x = 1\ny = (\n", 1),
    (GO, "package main\n\nfunc f() {\n\tx := 1\n", 4),  # the missing brace is due at the end
])
def test_first_error_row(language: LanguageInfo, text: str, row: int | None) -> None:
    assert first_error_row(language, text) == row
    assert (row is None) == (not has_errors(language, text))


def test_language_for() -> None:
    assert language_for("python", "file:///a") is PYTHON
    assert language_for("plaintext", "file:///a.rs") is RUST
    assert language_for("plaintext", "file:///a.txt") is None
