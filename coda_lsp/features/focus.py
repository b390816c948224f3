"""coda/didFocus (a notification of this server's own clients): the user looks at a cursor, in a document just
opened or focused or where the cursor came to rest, so the pipeline computes its canvas ahead of the first
keystroke there. Params `{"textDocument": {"uri": ...}, "position": {"line": L, "character": C}}`."""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.protocol import default_converter

from coda_lsp.features import param
from coda_lsp.server import CodaServer

logger = logging.getLogger(__name__)

DID_FOCUS = "coda/didFocus"
_CONVERTER = default_converter()


def register(server: CodaServer) -> None:
    @server.feature(DID_FOCUS)
    def did_focus(ls: CodaServer, params: Any) -> None:
        uri, position = param(param(params, "textDocument"), "uri"), param(params, "position")
        try:
            if uri is None or position is None:
                raise ValueError("textDocument.uri or position is missing")
            # lsprotocol structures dicts; pygls hands a custom notification's params over as nested objects
            position = _CONVERTER.structure(position if isinstance(position, dict) else
                                            {name: getattr(position, name) for name in ("line", "character")},
                                            types.Position)
        except Exception as exc:  # a notification has no answer: a malformed one is logged and dropped
            logger.warning("ignored a malformed %s: %s", DID_FOCUS, exc)
            return
        doc = ls.documents.get(str(uri))
        if doc is None:
            return
        ls.pipeline.focus(doc, doc.offset_at(position, ls.encoding), ls.settings)
