"""How the server reads LSP messages: CodaProtocol, pygls' protocol with an InvalidParams answer to unparsable
requests and no second copy of the documents; Utf8RepairingStdin, stdin with invalid UTF-8 made U+FFFD."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, lsp_method

logger = logging.getLogger(__name__)

# Stands for a request that was already answered with an error while it was being parsed.
_ANSWERED = object()


class CodaProtocol(LanguageServerProtocol):
    """pygls logs a request whose params fail validation and never answers it, so the client waits forever;
    here such a request gets InvalidParams (-32602) with the method named."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if "id" not in data or "method" not in data or not isinstance(data["id"], (int, str)):
                raise
            error = JsonRpcInvalidParams(f"invalid params for {data['method']}")
            self._send_response(data["id"], error=error.to_response_error())
            return _ANSWERED

    def handle_message(self, message: Any) -> None:
        if message is _ANSWERED:
            return
        super().handle_message(message)

    # pygls keeps its own copy of every document and re-splits it into lines on each change; the server reads
    # only coda_lsp.documents, so these builtins just pass the notification on (half the memory, and no
    # O(document) work per keystroke in a 5 MB file).
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)

    def _user_handler(self, method: str, params: Any) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None


class Utf8RepairingStdin:
    """stdin for pygls' reader, with each message body made valid UTF-8 (bad bytes become U+FFFD). pygls reads
    the body with read(Content-Length) and json-decodes it as UTF-8; one stray byte in a document would
    otherwise drop the whole didOpen or request without any answer."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def readline(self) -> bytes:
        return self._raw.readline()

    def read(self, size: int) -> bytes:
        data = self._raw.read(size)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            logger.warning("message body is not valid UTF-8; invalid bytes replaced with U+FFFD")
            return data.decode("utf-8", "replace").encode("utf-8")
        return data
