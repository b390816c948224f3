"""textDocument/didOpen, didChange, didClose: the document store, kept in sync (incremental). The workspace index
for cross-file context: built in the background after `initialized` (workDoneProgress), kept current from those
and didSave, workspace/didChangeWatchedFiles (registered dynamically where the client allows) and
workspace/didChangeWorkspaceFolders."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from lsprotocol import types

from coda_lsp.crossfile.discovery import SOURCE_EXTENSIONS, list_source_files
from coda_lsp.crossfile.index import build_batch, uri_to_path
from coda_lsp.features import begin_progress, end_progress, show_message
from coda_lsp.server import CodaServer

logger = logging.getLogger(__name__)

BATCH_FILES = 64        # files parsed per hop off the event loop; progress is reported per batch
REINDEX_DELAY_S = 0.5   # a changed buffer is re-parsed once typing pauses this long (Copilot, Tabby: 0.5-1 s)
WATCH_ID = "coda-watched-files"
WATCH_GLOB = "**/*.{" + ",".join(sorted(ext.lstrip(".") for ext in SOURCE_EXTENSIONS)) + "}"


def register(server: CodaServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodaServer, params: types.DidOpenTextDocumentParams) -> None:
        _reindex_now(ls, ls.documents.open(params.text_document).uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodaServer, params: types.DidChangeTextDocumentParams) -> None:
        before = ls.documents.get(params.text_document.uri)
        after = ls.documents.change(params, ls.encoding)
        if before is None or after is None or not _is_active(ls):
            return
        ls.cross_file.record_change(before, after, params.content_changes)
        _cancel_reindex(ls, after.uri)
        ls.reindex_timers[after.uri] = asyncio.get_running_loop().call_later(REINDEX_DELAY_S, _reindex_now, ls,
                                                                            after.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodaServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.close(uri)
        ls.cross_file.forget_document(uri)
        _cancel_reindex(ls, uri)
        if _is_active(ls):
            ls.cross_file.reindex_disk(uri, ls.settings.cross_file.max_file_kb * 1024)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: CodaServer, params: types.DidSaveTextDocumentParams) -> None:
        _reindex_now(ls, params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: CodaServer, params: types.DidChangeWatchedFilesParams) -> None:
        if not _is_active(ls):
            return
        max_bytes = ls.settings.cross_file.max_file_kb * 1024
        for change in params.changes:
            if change.type == types.FileChangeType.Deleted:
                ls.cross_file.remove(change.uri)
            else:
                ls.cross_file.reindex_disk(change.uri, max_bytes)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(ls: CodaServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        removed = {uri_to_path(folder.uri) for folder in params.event.removed}
        kept = [folder for folder in ls.workspace_folders if folder not in removed]
        added = [path for folder in params.event.added if (path := uri_to_path(folder.uri)) is not None]
        ls.workspace_folders = kept + [path for path in added if path not in kept]
        start_indexing(ls)


def folders_of(params: types.InitializeParams) -> list[Path]:
    """The client's workspace folders (rootUri when it sends none); non-file uris are left out."""
    uris = [folder.uri for folder in params.workspace_folders or []]
    if not uris and params.root_uri:
        uris = [params.root_uri]
    paths = [uri_to_path(uri) for uri in uris]
    return [path for path in paths if path is not None and path.is_dir()]


def start_indexing(server: CodaServer) -> None:
    """(Re)build the index for the current folders in the background, or drop it when crossFile is off."""
    server.index_started = True
    if server.index_task is not None and not server.index_task.done():
        server.index_task.cancel()
    cross_file = server.cross_file
    if not server.settings.cross_file.enabled or not server.workspace_folders:
        cross_file.set_folders(())
        cross_file.state = "off"
        return
    cross_file.set_folders(server.workspace_folders)
    cross_file.state = "building"
    max_bytes = server.settings.cross_file.max_file_kb * 1024
    for doc in list(server.documents.documents.values()):
        cross_file.reindex_text(doc.uri, doc.text, max_bytes)  # open buffers are indexed first and win
    server.index_task = asyncio.create_task(build_index(server))


async def build_index(server: CodaServer) -> None:
    """Discover and parse every folder's files off the event loop, a batch at a time; a completion asked
    meanwhile simply finds fewer definitions."""
    settings = server.settings.cross_file
    cross_file = server.cross_file
    started = time.perf_counter()
    token = await begin_progress(server, "Indexing the workspace for CoDA", "coda-index")
    try:
        for folder in cross_file.index.folders:
            discovery = await asyncio.to_thread(list_source_files, folder, settings.max_files)
            if discovery.is_truncated:
                cross_file.is_truncated = True
                message = (f"indexed the first {settings.max_files} files of {folder} (coda.crossFileMaxFiles); "
                           "cross-file context will not see the rest")
                logger.warning(message)
                show_message(server, types.MessageType.Warning, message)
            paths = discovery.files
            for start in range(0, len(paths), BATCH_FILES):
                files = await asyncio.to_thread(build_batch, paths[start:start + BATCH_FILES], folder,
                                                settings.max_file_kb * 1024)
                for file in files:
                    if not cross_file.has_open_buffer(file.path):
                        cross_file.index.add(file)
                done = min(start + BATCH_FILES, len(paths))
                if token is not None:
                    server.work_done_progress.report(token, types.WorkDoneProgressReport(
                        message=f"{folder.name}: {done}/{len(paths)} files", percentage=done * 100 // len(paths)))
    except asyncio.CancelledError:
        end_progress(server, token, "cancelled")
        raise
    except Exception as exc:  # an unexpected failure leaves what was indexed; completions go on
        logger.warning("workspace indexing failed: %s", exc)
        end_progress(server, token, f"failed: {exc}")
        cross_file.state = "ready"
        return
    cross_file.build_ms = (time.perf_counter() - started) * 1000
    cross_file.state = "ready"
    logger.info("indexed %d files in %.0f ms", len(cross_file.index), cross_file.build_ms)
    end_progress(server, token, f"{len(cross_file.index)} files")


async def watch_files(server: CodaServer) -> None:
    """Ask for workspace/didChangeWatchedFiles on source files, where the client registers watchers for us."""
    workspace = server.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration) or server.cross_file.state == "off":
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=WATCH_GLOB)])
    try:
        await server.client_register_capability_async(types.RegistrationParams(registrations=[types.Registration(
            id=WATCH_ID, method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options)]))
    except Exception as exc:  # without watchers the index still follows the editor's own documents
        logger.warning("client/registerCapability for watched files failed: %s", exc)


def _is_active(server: CodaServer) -> bool:
    return server.settings.cross_file.enabled and server.cross_file.state != "off"


def _cancel_reindex(server: CodaServer, uri: str) -> None:
    timer = server.reindex_timers.pop(uri, None)
    if timer is not None:
        timer.cancel()


def _reindex_now(server: CodaServer, uri: str) -> None:
    server.reindex_timers.pop(uri, None)
    doc = server.documents.get(uri)
    if doc is not None and _is_active(server):
        server.cross_file.reindex_text(uri, doc.text, server.settings.cross_file.max_file_kb * 1024)
