"""positions: utf-16 / utf-8 / utf-32 columns, LSP line breaks, clamping."""

from __future__ import annotations

import pytest
from lsprotocol import types

from coda_lsp import positions
from coda_lsp.documents import Document

LINE = 'x = "😀é"'  # 😀 is 2 utf-16 units and 4 utf-8 bytes; é is 1 utf-16 unit and 2 bytes


@pytest.mark.parametrize(("encoding", "character", "index"), [
    ("utf-16", 5, 5), ("utf-16", 7, 6), ("utf-16", 8, 7),
    ("utf-8", 5, 5), ("utf-8", 9, 6), ("utf-8", 11, 7),
    ("utf-32", 6, 6), ("utf-32", 7, 7),
])
def test_column_to_index_and_back(encoding: positions.Encoding, character: int, index: int) -> None:
    assert positions.column_to_index(LINE, character, encoding) == index
    assert positions.num_units(LINE[:index], encoding) == character


@pytest.mark.parametrize(("encoding", "character"), [("utf-16", 6), ("utf-8", 7), ("utf-8", 8)])
def test_column_inside_a_character_snaps_to_its_start(encoding: positions.Encoding, character: int) -> None:
    assert positions.column_to_index(LINE, character, encoding) == 5


def test_line_breaks_are_lsp_ones_only() -> None:
    text = "a\r\nb\rc\nd\x0ce\u2028f"
    assert positions.line_starts(text) == [0, 3, 5, 7]
    assert positions.line_text(text, positions.line_starts(text), 3) == "d\x0ce\u2028f"


def test_positions_past_the_end_clamp() -> None:
    doc = Document("file:///a.py", "python", 1, "ab\ncd\n")
    assert doc.offset_at(types.Position(line=0, character=99), "utf-16") == 2
    assert doc.offset_at(types.Position(line=99, character=0), "utf-16") == len(doc.text)
    assert doc.position_at(10_000, "utf-16") == types.Position(line=2, character=0)


def test_position_round_trip_with_crlf() -> None:
    doc = Document("file:///a.py", "python", 1, "é1\r\n😀2\r\n")
    for offset in range(len(doc.text) + 1):
        if doc.text[offset - 1:offset] == "\r":
            continue  # between \r and \n is no position a client can name
        for encoding in ("utf-8", "utf-16", "utf-32"):
            assert doc.offset_at(doc.position_at(offset, encoding), encoding) == offset


def test_encoding_negotiated() -> None:
    assert positions.encoding_of("utf-8") == "utf-8"
    assert positions.encoding_of(None) == "utf-16"
    assert positions.encoding_of("utf-7") == "utf-16"
