"""initialize / initialized / shutdown: settings from initializationOptions, the model load with progress (or,
with --remote, the connection to a `coda-lsp serve`)."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types

from coda_engine.errors import one_line
from coda_lsp.backend import BackendUnavailable
from coda_lsp.backends.http import HttpBackend
from coda_lsp.features import begin_progress, configuration, end_progress, show_message, workspace
from coda_lsp.server import CodaServer

logger = logging.getLogger(__name__)

RECONNECT_S = 5.0  # --remote: how often a server that did not answer at startup is asked again


def register(server: CodaServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: CodaServer, params: types.InitializeParams) -> None:
        options = params.initialization_options
        # Accept both {"coda": {...}} and the section's object itself.
        if isinstance(options, dict) and configuration.SECTION in options:
            options = options[configuration.SECTION]
        settings, problems = ls.default_settings.merged(options)
        ls.initialization_settings = ls.settings = settings
        ls.workspace_folders = workspace.folders_of(params)
        for problem in problems:
            logger.warning("initializationOptions: %s", problem)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: CodaServer, params: types.InitializedParams) -> None:
        # The load starts first: pulling configuration waits on the client, loading does not need it.
        ls.load_task = asyncio.create_task(load_model(ls))
        await configuration.pull(ls)
        ls.configured.set()
        # After the pull, so that `crossFile: false` from the client's settings means nothing is ever read.
        workspace.start_indexing(ls)
        await workspace.watch_files(ls)

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: CodaServer, params: None) -> None:
        ls.pipeline.close()
        backend = ls.host.backend
        if backend is not None:
            backend.close()
            if isinstance(backend, HttpBackend):
                await backend.aclose()


async def load_model(server: CodaServer) -> None:
    """Load the backend in a thread, reporting through workDoneProgress (when the client supports it) and
    logMessage; a failure becomes showMessage, status `error` and empty completions, never a crash."""
    spec = server.host.spec
    if spec.remote is not None:
        await connect_remote(server, spec.remote, spec.api_key)
        return
    token = await begin_progress(server, f"Loading CoDA model {spec.path.name}", "coda-load")
    _log(server, types.MessageType.Info, f"loading model {spec.path} on {spec.device}")
    generation = server.settings.generation
    spans = (generation.single_line_tokens, generation.max_tokens)
    try:
        backend = await asyncio.to_thread(server.load_backend, spec.path, spec.options, spans,
                                          generation.candidate_temperature)
    except Exception as exc:  # CheckpointError, OSError, torch errors: all reach the user as one line
        reason = one_line(exc)
        server.host.set_error(reason)
        _log(server, types.MessageType.Error, f"model failed to load: {reason}", show=True)
        end_progress(server, token, f"failed: {reason}")
        return
    server.host.set_ready(backend)
    described = backend.describe()
    _log(server, types.MessageType.Info, f"model ready: {spec.path} ({backend.device}, {described['dtype']}: "
                                         f"{described['dtypeReason']}; {described['kernels']} kernels: "
                                         f"{described['kernelsReason']})")
    end_progress(server, token, "ready")


async def connect_remote(server: CodaServer, url: str, api_key: str | None) -> None:
    """--remote: read the server's props and tokenizer, asking again every RECONNECT_S while it does not answer
    (requests meanwhile get no completion). The user hears once that it is unreachable, at startup or later,
    and the log says when it answers again; the editor keeps working throughout."""
    backend = HttpBackend(url, api_key)
    token = await begin_progress(server, f"Connecting to coda-lsp serve at {url}", "coda-load")
    _log(server, types.MessageType.Info, f"connecting to coda-lsp serve at {url}")
    told = False
    while True:
        try:
            await backend.connect()
            break
        except BackendUnavailable as exc:
            if not told:
                server.host.set_error(str(exc))
                _tell_unreachable(server, url, str(exc))
                end_progress(server, token, f"unreachable: {exc}")
                token, told = None, True
            await asyncio.sleep(RECONNECT_S)
        except Exception as exc:  # a server that answers something else than coda-lsp serve does
            reason = one_line(exc)
            server.host.set_error(reason)
            _log(server, types.MessageType.Error, f"{url} is not a coda-lsp serve: {reason}", show=True)
            end_progress(server, token, f"failed: {reason}")
            return
    backend.on_status = lambda reason: _remote_status(server, url, reason)
    server.host.error = None
    server.host.set_ready(backend)
    _log(server, types.MessageType.Info, f"connected to coda-lsp serve at {url}: model {backend.model_name} on "
                                         f"{backend.device}, {backend.max_positions} positions")
    end_progress(server, token, "ready")


def _remote_status(server: CodaServer, url: str, reason: str | None) -> None:
    server.host.error = reason
    if reason is None:
        _log(server, types.MessageType.Info, f"coda-lsp serve at {url} answers again")
    else:
        _tell_unreachable(server, url, reason)


def _tell_unreachable(server: CodaServer, url: str, reason: str) -> None:
    _log(server, types.MessageType.Warning, f"the server at {url} does not answer ({reason}); completions resume "
                                            "when it does", show=True)


def _log(server: CodaServer, kind: types.MessageType, message: str, show: bool = False) -> None:
    """Into the log and the client's (window/logMessage); `show`: also in front of the user."""
    level = {types.MessageType.Error: logging.ERROR, types.MessageType.Warning: logging.WARNING}.get(kind, logging.INFO)
    logger.log(level, message)
    server.window_log_message(types.LogMessageParams(type=kind, message=message))
    if show:
        show_message(server, kind, message)
