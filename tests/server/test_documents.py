"""documents: incremental changes in client units, versions, snapshots."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.documents import DocumentStore


def _change(uri: str, version: int, start: tuple[int, int], end: tuple[int, int],
            text: str) -> types.DidChangeTextDocumentParams:
    span = types.Range(types.Position(*start), types.Position(*end))
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=span, text=text)])


def test_incremental_changes_in_utf16_after_an_emoji() -> None:
    store = DocumentStore()
    before = store.open(types.TextDocumentItem(uri="file:///a.py", language_id="python", version=1,
                                               text="s = '😀'\nt = 1\n"))
    after = store.change(_change("file:///a.py", 2, (0, 7), (0, 7), "!"), "utf-16")
    assert after is not None and after.text == "s = '😀!'\nt = 1\n" and after.version == 2
    assert before.text == "s = '😀'\nt = 1\n"  # the snapshot a running request holds is untouched


def test_changes_apply_in_order_and_whole_document_replaces() -> None:
    store = DocumentStore()
    store.open(types.TextDocumentItem(uri="file:///a.py", language_id="python", version=1, text="abc\n"))
    params = _change("file:///a.py", 2, (0, 0), (0, 1), "X")
    params.content_changes = [*params.content_changes,
                              types.TextDocumentContentChangePartial(
                                  range=types.Range(types.Position(0, 1), types.Position(0, 3)), text="YZ"),
                              ]
    doc = store.change(params, "utf-8")
    assert doc is not None and doc.text == "XYZ\n"
    whole = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri="file:///a.py", version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="new")])
    assert store.change(whole, "utf-16").text == "new"


def test_unknown_document_change_is_ignored_and_close_forgets() -> None:
    store = DocumentStore()
    assert store.change(_change("file:///nope.py", 2, (0, 0), (0, 0), "x"), "utf-16") is None
    store.open(types.TextDocumentItem(uri="file:///a.py", language_id="python", version=1, text=""))
    store.close("file:///a.py")
    assert store.get("file:///a.py") is None


def test_change_range_past_the_end_clamps() -> None:
    store = DocumentStore()
    store.open(types.TextDocumentItem(uri="file:///a.py", language_id="python", version=1, text="ab"))
    doc = store.change(_change("file:///a.py", 2, (5, 5), (9, 9), "c"), "utf-16")
    assert doc is not None and doc.text == "abc"
