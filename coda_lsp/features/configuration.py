"""workspace/configuration pull for section "coda", refreshed on workspace/didChangeConfiguration."""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from coda_lsp.features import show_message
from coda_lsp.server import CodaServer

logger = logging.getLogger(__name__)
SECTION = "coda"


def register(server: CodaServer) -> None:
    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: CodaServer, params: types.DidChangeConfigurationParams) -> None:
        # Clients that support pull send an empty or partial push; the pulled value is the truth.
        if supports_pull(ls):
            await pull(ls)
        elif isinstance(params.settings, dict) and SECTION in params.settings:
            apply(ls, params.settings[SECTION])


def supports_pull(server: CodaServer) -> bool:
    workspace = server.client_capabilities.workspace
    return bool(workspace and workspace.configuration)


async def pull(server: CodaServer) -> None:
    """Ask the client for section "coda" and merge it over defaults and initializationOptions."""
    if not supports_pull(server):
        return
    params = types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
    try:
        values = await server.workspace_configuration_async(params)
    except Exception as exc:  # a client that fails the request keeps the settings it had
        logger.warning("workspace/configuration failed: %s", exc)
        return
    apply(server, values[0] if values else None)


def apply(server: CodaServer, values: Any) -> None:
    from coda_lsp.features import workspace

    settings, problems = server.initialization_settings.merged(values)
    was_enabled = server.settings.cross_file.enabled
    server.settings = settings
    if server.index_started and settings.cross_file.enabled != was_enabled:
        workspace.start_indexing(server)
    logger.info("settings: %s", settings)
    for problem in problems:
        show_message(server, types.MessageType.Warning, problem)
