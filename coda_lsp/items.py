"""Completion text -> InlineCompletionItem / CompletionItem / fill-block WorkspaceEdit, with spec-valid ranges."""

from __future__ import annotations

from lsprotocol import types

from coda_lsp.context import CompletionContext
from coda_lsp.documents import Document
from coda_lsp.positions import Encoding
from coda_lsp.syntax import BlockSlot

_LABEL_CHARS = 60  # a completion item's label is its first line, shortened to fit a completion menu


def insert_text(text: str, ctx: CompletionContext) -> str:
    """The text to insert at the cursor. A block filled inside auto-closed brackets (`{|}`) ends with a line
    break and the cursor line's indentation, so the closing bracket lands on a line of its own."""
    if "\n" in text and ctx.line_suffix.strip():
        return text + "\n" + ctx.line_indent
    return text


def inline_item(text: str, ctx: CompletionContext, doc: Document, encoding: Encoding,
                selected: types.SelectedCompletionInfo | None = None) -> types.InlineCompletionItem:
    """An inline item inserting at the cursor. With the suggest widget open the item must extend the selected
    completion's text and use the same range (LSP 3.18), or the client does not show it."""
    if selected is not None:
        return types.InlineCompletionItem(insert_text=selected.text + insert_text(text, ctx), range=selected.range)
    cursor = doc.position_at(ctx.offset, encoding)
    return types.InlineCompletionItem(insert_text=insert_text(text, ctx), range=types.Range(cursor, cursor))


def completion_item(text: str, ctx: CompletionContext, doc: Document, encoding: Encoding,
                    rank: int = 0) -> types.CompletionItem:
    """A completion item for clients without inline completion: a textEdit at the cursor (single-line range that
    contains the position, as the spec requires), sorted before other servers' items by `rank`, never filtered
    away by the typed word."""
    cursor = doc.position_at(ctx.offset, encoding)
    first_line = next((line.strip() for line in text.split("\n") if line.strip()), text.strip())
    label = first_line if len(first_line) <= _LABEL_CHARS else first_line[:_LABEL_CHARS - 1] + "…"
    word = _word_before(ctx.line_prefix)
    start = doc.position_at(ctx.offset - len(word), encoding)
    return types.CompletionItem(
        label=label,
        kind=types.CompletionItemKind.Snippet if "\n" in text else types.CompletionItemKind.Text,
        detail="CoDA",
        documentation=types.MarkupContent(kind=types.MarkupKind.PlainText, value=text) if "\n" in text else None,
        sort_text=f"0{rank}",
        filter_text=word + text,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start, cursor), new_text=word + insert_text(text, ctx)),
    )


def _word_before(line_prefix: str) -> str:
    """The identifier characters right before the cursor: clients filter items by it, so the edit replaces it
    (with itself plus the completion) and filterText starts with it."""
    index = len(line_prefix)
    while index > 0 and (line_prefix[index - 1].isalnum() or line_prefix[index - 1] == "_"):
        index -= 1
    return line_prefix[index:]


def fill_edit(text: str, slot: BlockSlot, doc: Document, encoding: Encoding) -> types.WorkspaceEdit:
    """Replace a placeholder body with the filled lines, indented as the body, closing bracket put back."""
    new_text = "\n" + slot.body_indent + text
    if slot.closer_indent is not None:
        new_text += "\n" + slot.closer_indent
    return replace_edit(doc, slot.start, slot.end, new_text, encoding)


def replace_edit(doc: Document, start: int, end: int, new_text: str, encoding: Encoding) -> types.WorkspaceEdit:
    """A plain `changes` edit: every client supports it, unlike versioned documentChanges (the version was
    checked against the document when the edit was computed)."""
    edit = types.TextEdit(range=types.Range(doc.position_at(start, encoding), doc.position_at(end, encoding)),
                          new_text=new_text)
    return types.WorkspaceEdit(changes={doc.uri: [edit]})
