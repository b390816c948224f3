"""Thin LSP handlers, one module per method group; helpers shared by the request handlers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInvalidParams

from coda_lsp.documents import Document
from coda_lsp.pipeline import Completion
from coda_lsp.server import CodaServer
from coda_lsp.settings import Settings

logger = logging.getLogger(__name__)
CONFIGURATION_WAIT_S = 5.0  # how long a request may wait for the client's settings after the handshake


def snapshot(server: CodaServer, uri: str, position: types.Position) -> tuple[Document, int]:
    """The document as it is now and the cursor's offset in it; InvalidParams (-32602) for a document that was
    never opened. Positions past the end clamp to the end (negative ones never get here: lsprotocol rejects
    them while parsing, and CodaProtocol answers InvalidParams)."""
    doc = server.documents.get(uri)
    if doc is None:
        raise JsonRpcInvalidParams(f"unknown document {uri}: it was not opened with textDocument/didOpen")
    return doc, doc.offset_at(position, server.encoding)


def ensure_current(server: CodaServer, doc: Document) -> None:
    """Raise ContentModified (-32801) when the document changed while the request ran: a completion computed
    for an older version would land in the wrong place."""
    current = server.documents.get(doc.uri)
    if current is None or current.version != doc.version:
        raise JsonRpcContentModified(f"{doc.uri} changed (version {doc.version} -> "
                                     f"{current.version if current else 'closed'}) while completing")


async def complete(server: CodaServer, method: str, uri: str, position: types.Position, *, is_invoked: bool,
                   view: Callable[[Document, int], tuple[Document, int]] | None = None,
                   ) -> tuple[Document, Completion | None]:
    """The pipeline's completion for a request (the newest per method and document wins), at the cursor or in
    the `view` of the document it gives; a completion that needed the model is timed for coda/status."""
    started = time.perf_counter()
    server.latest.claim((method, uri))
    doc, offset = snapshot(server, uri, position)
    seen, cursor = view(doc, offset) if view else (doc, offset)
    completion = await server.pipeline.complete(seen, cursor, await settings(server), is_invoked=is_invoked)
    ensure_current(server, doc)
    if completion is not None and completion.engine_ms:
        server.latency.record((time.perf_counter() - started) * 1000, completion.engine_ms)
    return doc, completion


async def settings(server: CodaServer) -> Settings:
    """The settings a request runs with: the client's, once `initialized` has pulled them. A request sent right
    after the handshake would otherwise run with the defaults (a different span, a different answer). A client
    that never sends `initialized` is waited for once."""
    if not server.configured.is_set():
        try:
            await asyncio.wait_for(server.configured.wait(), CONFIGURATION_WAIT_S)
        except TimeoutError:
            server.configured.set()
    return server.settings


def show_message(server: CodaServer, kind: types.MessageType, message: str) -> None:
    server.window_show_message(types.ShowMessageParams(type=kind, message=f"coda-lsp: {message}"))


def param(value: Any, name: str) -> Any:
    """A field of a custom method's params: pygls hands them over as a dict or as nested objects."""
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


async def begin_progress(server: CodaServer, title: str, token_prefix: str) -> str | None:
    """A workDoneProgress token, begun; None when the client has no progress bars or refused the token."""
    window = server.client_capabilities.window
    if not (window and window.work_done_progress):
        return None
    token = f"{token_prefix}-{uuid.uuid4().hex[:8]}"
    try:
        await server.work_done_progress.create_async(token)
    except Exception as exc:  # the client refused the token: go on without a progress bar
        logger.warning("window/workDoneProgress/create failed: %s", exc)
        return None
    server.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=False))
    return token


def end_progress(server: CodaServer, token: str | None, message: str) -> None:
    if token is not None:
        server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
