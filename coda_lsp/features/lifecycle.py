"""initialize / initialized / shutdown: settings from initializationOptions, the model load with progress."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from lsprotocol import types

from coda_lsp.features import configuration, workspace
from coda_lsp.loader import ModelSpec
from coda_lsp.server import CodaServer

logger = logging.getLogger(__name__)


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
        # After the pull, so that `crossFile: false` from the client's settings means nothing is ever read.
        workspace.start_indexing(ls)
        await workspace.watch_files(ls)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CodaServer, params: None) -> None:
        ls.worker.close()


async def load_model(server: CodaServer) -> None:
    """Load the engine on the engine thread, reporting through workDoneProgress (when the client supports it)
    and logMessage; a failure becomes showMessage, status `error` and empty completions, never a crash."""
    spec = server.host.spec
    token = await begin_progress(server, f"Loading CoDA model {spec.path.name}")
    _log(server, types.MessageType.Info, f"loading model {spec.path} on {spec.device}")
    try:
        engine = await server.worker.run(lambda stop: _load_and_warm(server, spec))
    except Exception as exc:  # CheckpointError, OSError, torch errors: all reach the user as one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        server.host.set_error(reason)
        _log(server, types.MessageType.Error, f"model failed to load: {reason}")
        server.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                           message=f"coda-lsp: model failed to load: {reason}"))
        end_progress(server, token, f"failed: {reason}")
        return
    server.host.set_ready(engine)
    _log(server, types.MessageType.Info, f"model ready: {spec.path} ({engine.device}, {engine.precision.name}: "
                                         f"{engine.precision.reason}; "
                                         f"{engine.kernels.name} kernels: {engine.kernels.reason})")
    end_progress(server, token, "ready")


def _load_and_warm(server: CodaServer, spec: ModelSpec) -> Any:
    """Load, then warm the engine up for the spans completions use: the first call pays for allocator set-up
    (hundreds of ms on CPU) and, on a GPU, for compiling the Triton kernels (seconds), which belong to
    "loading", not to the user's first completion."""
    engine = server.load_engine(spec.path, spec.device, spec.dtype)
    generation = server.settings.generation
    engine.warm_up((generation.single_line_tokens, generation.max_tokens), generation.candidate_temperature)
    return engine


def _log(server: CodaServer, kind: types.MessageType, message: str) -> None:
    logger.log(logging.ERROR if kind is types.MessageType.Error else logging.INFO, message)
    server.window_log_message(types.LogMessageParams(type=kind, message=message))


async def begin_progress(server: CodaServer, title: str, token_prefix: str = "coda-load") -> str | None:
    window = server.client_capabilities.window
    if not (window and window.work_done_progress):
        return None
    token = f"{token_prefix}-{uuid.uuid4().hex[:8]}"
    try:
        await server.work_done_progress.create_async(token)
    except Exception as exc:  # the client refused the token: load without a progress bar
        logger.warning("window/workDoneProgress/create failed: %s", exc)
        return None
    server.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=False))
    return token


def end_progress(server: CodaServer, token: str | None, message: str) -> None:
    if token is not None:
        server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
