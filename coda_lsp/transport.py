"""stdin for pygls' stdio transport that turns invalid UTF-8 in a message body into U+FFFD."""

from __future__ import annotations

import logging
from typing import BinaryIO

logger = logging.getLogger(__name__)


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
