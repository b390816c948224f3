"""trigger: language enabled, mid-word, closers-only rest of line, Invoked overrides."""

from __future__ import annotations

import pytest

from coda_lsp.context import build_context
from coda_lsp.documents import Document
from coda_lsp.settings import ContextSettings, TriggerSettings
from coda_lsp.trigger import should_complete


def _ctx(text: str, language: str = "python"):
    offset = text.index("║")
    doc = Document("file:///a", language, 1, text.replace("║", ""))
    return build_context(doc, offset, ContextSettings(), len)


@pytest.mark.parametrize(("text", "reason"), [
    ("x = foo(║)\n", None),
    ("x = ║\n", None),
    ("print('║')\n", None),
    ("d = {'a': ║}\n", None),
    ("x = fo║o\n", "in the middle of a word"),
    ("x = ║ + y\n", "text after the cursor on this line"),
])
def test_automatic(text: str, reason: str | None) -> None:
    assert should_complete(_ctx(text), TriggerSettings(), is_invoked=False) == reason


def test_invoked_completes_mid_line() -> None:
    assert should_complete(_ctx("x = ║ + y\n"), TriggerSettings(), is_invoked=True) is None


def test_language_not_enabled() -> None:
    settings = TriggerSettings(languages=("rust",))
    assert should_complete(_ctx("x = ║\n"), settings, is_invoked=True) == "language 'python' is not enabled"
    assert should_complete(_ctx("x = ║\n", "plaintext"), TriggerSettings(), is_invoked=False) is not None
