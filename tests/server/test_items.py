"""items: inline and completion items with ranges the spec allows; fill-block edits."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.context import build_context
from coda_lsp.documents import Document
from coda_lsp.items import completion_item, fill_edit, inline_item
from coda_lsp.languages import JAVASCRIPT, PYTHON
from coda_lsp.settings import ContextSettings
from coda_lsp.syntax import find_block_slot


def _at(text: str, language: str = "python") -> tuple[Document, object]:
    offset = text.index("║")
    doc = Document("file:///a", language, 1, text.replace("║", ""))
    return doc, build_context(doc, offset, ContextSettings(), len)


def test_inline_item_inserts_at_the_cursor_in_client_units() -> None:
    doc, ctx = _at("s = '😀' + f(║)\n")
    item = inline_item("x", ctx, doc, "utf-16")
    assert item.range == types.Range(types.Position(0, 13), types.Position(0, 13))
    assert inline_item("x", ctx, doc, "utf-8").range.start.character == 15


def test_inline_item_with_selected_completion_extends_it() -> None:
    doc, ctx = _at("x = pri║\n")
    selected = types.SelectedCompletionInfo(range=types.Range(types.Position(0, 4), types.Position(0, 7)),
                                            text="print")
    item = inline_item("(x)", ctx, doc, "utf-16", selected)
    assert item.insert_text == "print(x)" and item.range == selected.range


def test_block_inside_auto_closed_braces_puts_the_brace_on_its_own_line() -> None:
    doc, ctx = _at("function f() {║}\n", "javascript")
    item = inline_item("\n  return 1;", ctx, doc, "utf-16")
    assert item.insert_text == "\n  return 1;\n"


def test_completion_item_replaces_the_typed_word() -> None:
    doc, ctx = _at("value = comp║\n")
    item = completion_item("ute(a)", ctx, doc, "utf-16")
    assert item.text_edit.range == types.Range(types.Position(0, 8), types.Position(0, 12))
    assert item.text_edit.new_text == "compute(a)" and item.filter_text == "compute(a)"
    assert item.label == "ute(a)"


def test_fill_edit_python_and_braces() -> None:
    text = "def f(x):\n    pass\n\ny = 1\n"
    doc = Document("file:///a.py", "python", 1, text)
    slot = find_block_slot(PYTHON, text, 3, "    ")
    edit = fill_edit("return x\n    + 1", slot, doc, "utf-16").changes["file:///a.py"][0]
    assert edit.range == types.Range(types.Position(0, 9), types.Position(1, 8))
    assert edit.new_text == "\n    return x\n    + 1"

    text = "function f() {}\n"
    doc = Document("file:///a.js", "javascript", 1, text)
    slot = find_block_slot(JAVASCRIPT, text, 3, "  ")
    edit = fill_edit("return 1;", slot, doc, "utf-16").changes["file:///a.js"][0]
    assert edit.new_text == "\n  return 1;\n"
