"""LSP positions <-> string offsets in utf-16, utf-8 or utf-32 code units; clamps positions past the end."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from typing import Literal

from lsprotocol import types

Encoding = Literal["utf-8", "utf-16", "utf-32"]

# LSP counts exactly these as line breaks (spec: "\n", "\r\n" and "\r"), unlike str.splitlines, which also splits
# on \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029 and would put every later line on the wrong number.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encoding_of(kind: str | None) -> Encoding:
    """The negotiated `positionEncoding` as one of ours; utf-16 is the LSP default when none was negotiated."""
    if kind in ("utf-8", "utf-32"):
        return kind  # type: ignore[return-value]
    return "utf-16"


def line_starts(text: str) -> list[int]:
    """Offsets (code points) at which each line of `text` begins; a final line is always present."""
    return [0, *(match.end() for match in _LINE_BREAK.finditer(text))]


def line_text(text: str, starts: Sequence[int], line: int) -> str:
    """Line `line` without its line break."""
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    return text[starts[line]:end].rstrip("\r\n")


def num_units(chars: str, encoding: Encoding) -> int:
    """Length of `chars` in the encoding's code units."""
    if encoding == "utf-32" or chars.isascii():
        return len(chars)
    if encoding == "utf-8":
        return len(chars.encode("utf-8", "surrogatepass"))
    return len(chars.encode("utf-16-le", "surrogatepass")) // 2


def column_to_index(line: str, character: int, encoding: Encoding) -> int:
    """Code-point index in `line` of a column in code units; past the end clamps to the end, and a column
    inside a multi-unit character snaps back to that character's start."""
    if character <= 0:
        return 0
    if encoding == "utf-32" or line.isascii():
        return min(character, len(line))
    units = 0
    for index, char in enumerate(line):
        units += num_units(char, encoding)
        if units > character:
            return index
    return len(line)


def offset_at(text: str, starts: Sequence[int], position: types.Position, encoding: Encoding) -> int:
    """Offset (code points) of a client position; lines past the end clamp to the end of the text."""
    if position.line >= len(starts):
        return len(text)
    line = line_text(text, starts, position.line)
    return starts[position.line] + column_to_index(line, position.character, encoding)


def position_at(text: str, starts: Sequence[int], offset: int, encoding: Encoding) -> types.Position:
    """Client position of an offset (code points), clamped into the text."""
    offset = max(0, min(offset, len(text)))
    line = bisect_right(starts, offset) - 1
    column_text = text[starts[line]:offset].rstrip("\r\n") if offset > starts[line] else ""
    return types.Position(line=line, character=num_units(column_text, encoding))
