"""The sources' own rules: the edit log's merging and eviction, changed lines of a whole-document change, and
input_extra's chunk checks."""

from __future__ import annotations


import pytest

from coda_lsp.crossfile.query import cursor_query
from coda_lsp.crossfile.sources.input_extra import BadChunk, input_extra_snippets
from coda_lsp.crossfile.sources.recent_edits import MAX_RANGES, RecentEdits, changed_lines
from coda_lsp.documents import Document
from coda_lsp.languages import PYTHON


def test_typing_on_one_line_keeps_one_range_and_other_files_ranges() -> None:
    edits = RecentEdits()
    edits.record("file:///other.py", 3, 3)
    for _ in range(50):
        edits.record("file:///current.py", 10, 10)  # one keystroke each
    assert [(r.uri, r.start_line, r.end_line) for r in edits.ranges] == [
        ("file:///other.py", 3, 3), ("file:///current.py", 10, 10)]
    edits.record("file:///other.py", 5, 6)  # near the first range: extends it and makes it the newest
    assert [(r.uri, r.start_line, r.end_line) for r in edits.ranges] == [
        ("file:///current.py", 10, 10), ("file:///other.py", 3, 6)]


def test_the_oldest_ranges_are_evicted() -> None:
    edits = RecentEdits()
    for number in range(MAX_RANGES + 3):
        edits.record(f"file:///f{number}.py", 0, 0)
    assert len(edits.ranges) == MAX_RANGES and edits.ranges[0].uri == "file:///f3.py"


@pytest.mark.parametrize(("old", "new", "lines"), [
    ("a\nb\nc\n", "a\nB\nc\n", (1, 1)),
    ("a\nb\nc\n", "a\nb\nx\ny\nc\n", (2, 3)),
    ("a\nb\nc\n", "a\nc\n", (1, 1)),
    ("a\n", "a\n", None),
])
def test_changed_lines(old: str, new: str, lines: tuple[int, int] | None) -> None:
    assert changed_lines(old, new) == lines


def test_input_extra_chunks_must_name_a_file_and_hold_text() -> None:
    doc = Document("file:///ws/a.py", "python", 1, "x = 1\n")
    query = cursor_query(doc, 0, PYTHON, None)
    with pytest.raises(BadChunk, match=r"input_extra\[1\]"):
        input_extra_snippets(query, [{"filename": "b.py", "text": "y"}, {"filename": 3, "text": "z"}], "a.py")
    blank = input_extra_snippets(query, [{"filename": "b.py", "text": "\n\n"}], "a.py")
    assert blank == []
