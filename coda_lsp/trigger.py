"""Whether to complete at a cursor at all: language enabled, not mid-word, rest of the line only closers."""

from __future__ import annotations

from coda_lsp.context import CompletionContext
from coda_lsp.settings import TriggerSettings
from coda_lsp.text import is_closers_only


def should_complete(ctx: CompletionContext, settings: TriggerSettings, is_invoked: bool) -> str | None:
    """None when the model should be asked, else the reason not to (logged at debug level).

    Automatic requests complete only where the rest of the line is closing characters, which also rules out the
    middle of a word (a word character right of the cursor). An explicit (Invoked) request skips that rule:
    the user asked, and gets a single-line insertion."""
    enabled = settings.languages
    if ctx.language_id not in enabled and (ctx.language is None or ctx.language.grammar not in enabled):
        return f"language {ctx.language_id!r} is not enabled"
    if is_invoked:
        return None
    if ctx.line_suffix[:1].isalnum() or ctx.line_suffix[:1] == "_":
        return "in the middle of a word"
    if not is_closers_only(ctx.line_suffix):
        return "text after the cursor on this line"
    return None
