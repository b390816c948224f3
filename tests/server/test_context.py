"""context: budgets measured in tokens, cut at line boundaries, suffix never starved, line parts, indent unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda_lsp.context import TokenCounter, build_context
from coda_lsp.documents import Document
from coda_lsp.settings import ContextSettings

LINES = [f"line_{number} = {number}\n" for number in range(200)]
TEXT = "".join(LINES)


def _words(text: str) -> int:
    return len(text.split())


def _doc(text: str = TEXT, language: str = "python") -> Document:
    return Document("file:///a.py", language, 1, text)


def test_whole_small_file_fits() -> None:
    ctx = build_context(_doc(), TEXT.index("line_100"), ContextSettings(context_tokens=100_000), _words)
    assert ctx.prefix + ctx.suffix == TEXT


def test_budget_cuts_at_line_boundaries_and_keeps_the_suffix_share() -> None:
    cursor = TEXT.index("line_150")
    ctx = build_context(_doc(), cursor, ContextSettings(context_tokens=90, suffix_share=0.25), _words)
    assert _words(ctx.prefix) + _words(ctx.suffix) <= 90
    assert _words(ctx.suffix) >= 90 * 0.25 - 3  # whole lines of 3 "tokens": at most one line short
    assert ctx.prefix.startswith("line_") and ctx.suffix.endswith("\n")
    assert (ctx.prefix + ctx.suffix) in TEXT


def test_unused_suffix_budget_flows_to_the_prefix() -> None:
    cursor = TEXT.index("line_198")
    ctx = build_context(_doc(), cursor, ContextSettings(context_tokens=90, suffix_share=0.5), _words)
    assert _words(ctx.suffix) == 6
    assert _words(ctx.prefix) > 45


def test_unused_prefix_budget_flows_to_the_suffix() -> None:
    cursor = TEXT.index("line_1 ")
    ctx = build_context(_doc(), cursor, ContextSettings(context_tokens=90, suffix_share=0.1), _words)
    assert _words(ctx.prefix) == 3
    assert _words(ctx.suffix) > 70


def test_line_parts() -> None:
    text = "def f(x):\n    return g(x)\n"
    ctx = build_context(_doc(text), text.index("x)\n"), ContextSettings(), _words)
    assert (ctx.line_prefix, ctx.line_suffix) == ("    return g(", "x)")
    assert ctx.line_indent == "    "


def test_single_huge_line_is_cut_by_characters() -> None:
    text = "x" * 1_000_000
    ctx = build_context(_doc(text), 500_000, ContextSettings(context_tokens=100), len)
    assert len(ctx.prefix) + len(ctx.suffix) <= 100


@pytest.mark.parametrize(("text", "language", "unit"), [
    ("if x:\n\ty = 1\n", "python", "\t"),
    ("if x:\n  y = 1\n  if y:\n    z = 2\n", "python", "  "),
    ("x = 1\n", "go", "\t"),
    ("x = 1\n", "python", "    "),
])
def test_indent_unit(text: str, language: str, unit: str) -> None:
    doc = Document("file:///a", language, 1, text)
    assert build_context(doc, len(text), ContextSettings(), len).indent_unit == unit


def test_token_counter_uses_the_model_tokenizer(reference_dir: Path) -> None:
    from coda_engine.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(reference_dir)
    counter = TokenCounter(tokenizer)
    line = "def hello_world():\n"
    assert counter(line) == len(tokenizer.encode(line)) > 1
    assert counter(line) == len(tokenizer.encode(line))  # the second count comes from the memo


@pytest.mark.parametrize("line_prefix,expected_tail", [
    ("        ", "as f:\n"),  # only indentation: the span starts at the line start
    ("\t", "as f:\n"),
    ("        f.wr", "        f.wr"),  # code before the cursor stays
    ("", "as f:\n"),
])
def test_model_prefix_moves_a_blank_lines_indentation_into_the_span(line_prefix: str, expected_tail: str) -> None:
    from coda_lsp.pipeline import model_prefix

    text = f"def save(path):\n    with open(path) as f:\n{line_prefix}\n    return path\n"
    cursor = text.index(line_prefix + "\n    return") + len(line_prefix)
    ctx = build_context(_doc(text), cursor, ContextSettings(context_tokens=100_000), _words)
    assert ctx.line_prefix == line_prefix
    assert model_prefix(ctx).endswith(expected_tail)
    assert ctx.prefix.startswith(model_prefix(ctx)) and ctx.prefix.endswith(line_prefix)
