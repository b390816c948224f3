"""build_server(settings, spec, load_backend) -> CodaServer: the language server's state and feature wiring."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from coda_lsp import __version__
from coda_lsp.cache import CompletionCache
from coda_lsp.crossfile.service import CrossFile
from coda_lsp.documents import DocumentStore
from coda_lsp.latency import LatencyTracker
from coda_lsp.latest import LatestWins
from coda_lsp.loader import LoadBackend, ModelHost, ModelSpec, load_local_backend
from coda_lsp.pipeline import Pipeline
from coda_lsp.positions import Encoding, encoding_of
from coda_lsp.protocol import CodaProtocol
from coda_lsp.settings import Settings

logger = logging.getLogger(__name__)


class CodaServer(LanguageServer):
    """State shared by the features; the features themselves live in coda_lsp.features."""

    def __init__(self, settings: Settings, spec: ModelSpec, load_backend: LoadBackend) -> None:
        super().__init__("coda-lsp", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=CodaProtocol)
        self.default_settings = settings
        self.initialization_settings = settings   # defaults < initializationOptions
        self.settings = settings                  # ... < workspace/configuration
        self.configured = asyncio.Event()         # set once `initialized` has pulled the client's settings
        self.load_backend = load_backend
        self.documents = DocumentStore()
        self.host = ModelHost(spec)
        self.latest = LatestWins()
        self.latency = LatencyTracker()
        self.cross_file = CrossFile(self.documents)
        self.pipeline = Pipeline(self.host, CompletionCache(), self.cross_file)
        self.workspace_folders: list[Path] = []   # from initialize; the only places files are read from
        self.load_task: asyncio.Task[None] | None = None  # kept so the running load is not garbage-collected
        self.index_task: asyncio.Task[None] | None = None
        self.index_started = False  # set once `initialized` has looked at the settings and the folders
        self.reindex_timers: dict[str, asyncio.TimerHandle] = {}  # uri -> pending re-parse after didChange

    @property
    def encoding(self) -> Encoding:
        """The position encoding negotiated in initialize (utf-16 unless the client offered utf-8 / utf-32)."""
        capabilities = self.protocol.server_capabilities
        return encoding_of(capabilities.position_encoding if capabilities else None)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """A malformed notification is logged, not shown: a misbehaving client must not flood the user."""
        if isinstance(error, (JsonRpcException, ValueError)):
            logger.warning("ignored a malformed message: %s", error)
            return
        super().report_server_error(error, source)


def build_server(settings: Settings, spec: ModelSpec, load_backend: LoadBackend = load_local_backend) -> CodaServer:
    """A server with every feature registered; the model loads after `initialized`."""
    from coda_lsp.features import (completion, configuration, explain, fill_block, focus, inline, lifecycle, status,
                                   workspace)

    server = CodaServer(settings, spec, load_backend)
    for feature in (lifecycle, configuration, workspace, inline, completion, fill_block, focus, status, explain):
        feature.register(server)
    return server
