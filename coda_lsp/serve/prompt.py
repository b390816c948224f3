"""A request's prefix, suffix and input_extra -> the canvas text, cut to the model's positions as llama-server does
(docs/serving.md, "Prompt cutting"; the split is server-common.cpp `format_prompt_infill`'s). Counts are the
engine's own: prefix and suffix are encoded separately, as Engine._canvas does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coda_engine.jobs import canvas_prefix
from coda_lsp.context import TokenCounter
from coda_lsp.crossfile.assemble import Layout, assemble
from coda_lsp.crossfile.query import cursor_query
from coda_lsp.crossfile.sources.input_extra import input_extra_snippets
from coda_lsp.documents import Document
from coda_lsp.languages import PYTHON, LanguageInfo, language_for

PREFIX_SHARE = 0.75  # llama-server's 3/4 of the room for the prefix, 1/4 for the suffix
# A cut between tokens can split a UTF-8 character; its bytes decode to this, and are dropped.
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Prompt:
    prefix: str          # the cross-file text, then the request's prefix; never empty
    suffix: str
    prompt_tokens: int   # prefix + suffix tokens: OpenAI's usage.prompt_tokens
    truncated: bool      # something was cut or dropped to fit the model's positions


def build_prompt(tokenizer: Any, counter: TokenCounter, max_positions: int, span: int, prefix: str, suffix: str,
                 extra: Sequence[Mapping[str, Any]] = (), extra_tokens: int = 0) -> Prompt:
    """The canvas text for `span` tokens between `prefix` and `suffix`, with `extra` chunks as cross-file text
    (at most `extra_tokens`), within `max_positions`."""
    room = max_positions - span
    if room < 2:
        raise ValueError(f"a span of {span} tokens leaves no room in the model's {max_positions} positions")
    prefix_ids, suffix_ids = tokenizer.encode(prefix), tokenizer.encode(suffix)
    truncated = False
    if len(prefix_ids) + len(suffix_ids) > room:
        prefix_room, suffix_room = split_room(room, len(prefix_ids), len(suffix_ids))
        prefix = _keep(tokenizer, prefix_ids, prefix_room, from_end=True)
        suffix = _keep(tokenizer, suffix_ids, suffix_room, from_end=False)
        truncated = True
    cross_file = ""
    if extra:
        left = room - len(tokenizer.encode(prefix)) - len(tokenizer.encode(suffix))
        cross_file, dropped = _cross_file(counter, prefix, suffix, extra, min(extra_tokens, left), extra_tokens)
        truncated = truncated or dropped
    text = cross_file + prefix
    text = canvas_prefix(text)  # counted as the engine will lay it out
    text_ids = tokenizer.encode(text)
    suffix_count = len(tokenizer.encode(suffix))
    if len(text_ids) + suffix_count > room:  # the cross-file text and the prefix merged a token less than counted
        text = canvas_prefix(_keep(tokenizer, text_ids, room - suffix_count, from_end=True))
        text_ids = tokenizer.encode(text)
        truncated = True
    return Prompt(text, suffix, len(text_ids) + suffix_count, truncated)


def split_room(room: int, num_prefix: int, num_suffix: int) -> tuple[int, int]:
    """Tokens the prefix and the suffix keep when together they need more than `room`: 3/4 and 1/4, and what
    one side does not need goes to the other."""
    suffix_share = room - int(room * PREFIX_SHARE)
    if num_suffix <= suffix_share:
        return room - num_suffix, num_suffix
    if num_prefix <= room - suffix_share:
        return num_prefix, room - num_prefix
    return room - suffix_share, suffix_share


def _keep(tokenizer: Any, ids: list[int], keep: int, *, from_end: bool) -> str:
    """The text of the last (or first) `keep` tokens, shortened until it encodes to at most `keep` tokens again."""
    while keep > 0:
        if from_end:
            text = tokenizer.decode(ids[len(ids) - keep:]).lstrip(REPLACEMENT)
        else:
            text = tokenizer.decode(ids[:keep]).rstrip(REPLACEMENT)
        if len(tokenizer.encode(text)) <= keep:
            return text
        keep -= 1
    return ""


def _cross_file(counter: TokenCounter, prefix: str, suffix: str, extra: Sequence[Mapping[str, Any]], budget: int,
                wanted: int) -> tuple[str, bool]:
    """The input_extra chunks as the LSP's cross-file text (the input_extra source, assembled in the `comment`
    layout), within `budget` tokens; and whether the canvas's room took away chunks `wanted` would have kept."""
    if wanted <= 0:
        return "", False
    language = _language(extra)
    # The chunks are matched against the code around the cursor: llama.vim evicts chunks that mostly repeat it.
    doc = Document("file:///request", "", 0, prefix + suffix)
    query = cursor_query(doc, len(prefix), language, None)
    snippets = input_extra_snippets(query, extra, None)
    # The request names no current file; its header in the prompt names a stand-in with the chunks' language.
    layout = Layout("comment", f"current{language.extensions[0]}", language.line_comment, "workspace")

    def render(tokens: int) -> tuple[str, int]:
        if tokens <= 0:
            return "", 0
        prompt = assemble({"inputExtra": snippets}, {"inputExtra": tokens}, tokens, layout, query.local_lines,
                          counter)
        return prompt.text, len(prompt.snippets)

    text, kept = render(budget)
    if budget >= wanted:
        return text, False
    return text, render(wanted)[1] > kept


def _language(extra: Sequence[Mapping[str, Any]]) -> LanguageInfo:
    """The language of the newest chunk whose file name says one (the comment token of the headers); Python's
    `#` otherwise."""
    for chunk in reversed(extra):
        info = language_for("", str(chunk.get("filename", "")))
        if info is not None:
            return info
    return PYTHON
