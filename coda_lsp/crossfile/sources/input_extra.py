"""Source (d): `input_extra` chunks a client sends with an HTTP request (llama.vim's ring buffer format).

Each chunk is `{"filename": ..., "text": ...}`; the list is oldest first, as llama.vim sends it, so the
newest chunk scores best and the oldest are the ones the budget drops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from coda_lsp.crossfile.query import CursorQuery
from coda_lsp.crossfile.snippets import Snippet

MAX_CHUNK_LINES = 64  # llama.vim's ring_chunk_size


class BadChunk(ValueError):
    """An input_extra entry that is not {filename: str, text: str}."""


def input_extra_snippets(query: CursorQuery, chunks: Sequence[Mapping[str, Any]], current_path: str | None) -> list[Snippet]:
    snippets = []
    for age, chunk in enumerate(reversed(chunks)):
        filename, text = chunk.get("filename"), chunk.get("text")
        if not isinstance(filename, str) or not isinstance(text, str):
            raise BadChunk(f"input_extra[{len(chunks) - 1 - age}] needs string filename and text, got {chunk!r}")
        lines = text.rstrip("\n").split("\n")[:MAX_CHUNK_LINES]
        if filename == current_path or not "".join(lines).strip():
            continue
        snippets.append(Snippet("inputExtra", filename, 0, len(lines) - 1, round(1.0 / (1 + age), 4),
                                "\n".join(lines), query.language.line_comment))
    return snippets
