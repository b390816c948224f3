"""End-to-end helpers: the real `coda-lsp` process on the tiny checkpoint, driven by pytest-lsp's client under
a VS Code-like and a Neovim-like capability profile."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from coda_lsp.positions import num_units

WORKSPACE = Path(__file__).parent / "workspace"
# Small spans keep each infill on the tiny model under ~0.2 s on two cores; debounce 0 makes timings exact.
FAST_SETTINGS: dict[str, Any] = {"maxTokens": 12, "singleLineTokens": 8, "steps": 4, "debounceMs": 0,
                                 "contextTokens": 512}


def vscode_capabilities() -> types.ClientCapabilities:
    """VS Code 1.65's capabilities (utf-16 only) plus inlineCompletion, as vscode-languageclient 10 sends."""
    capabilities = client_capabilities("visual-studio-code")
    capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    return capabilities


def neovim_capabilities() -> types.ClientCapabilities:
    """Neovim's capabilities (offers utf-8 first, so positions are negotiated in bytes) plus inlineCompletion
    (Neovim 0.12), and no inline completion in 0.11: those clients use textDocument/completion."""
    capabilities = client_capabilities("neovim")
    capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    return capabilities


PROFILES = {"vscode": vscode_capabilities, "neovim": neovim_capabilities}


@dataclass
class Session:
    """A running, initialised server process and what the client saw of it."""

    client: LanguageClient
    profile: str
    result: types.InitializeResult
    applied_edits: list[types.WorkspaceEdit] = field(default_factory=list)
    registrations: list[types.Registration] = field(default_factory=list)  # client/registerCapability
    num_docs: int = 0

    @property
    def encoding(self) -> str:
        return self.result.capabilities.position_encoding or "utf-16"

    def open(self, text: str, language_id: str = "python", suffix: str = ".py") -> str:
        """Open `text` under a fresh uri, so one test's cache entries and versions never meet another's."""
        self.num_docs += 1
        uri = (WORKSPACE / f"{self.profile}-{self.num_docs}{suffix}").as_uri()
        open_document(self.client, uri, text, language_id)
        return uri

    def end_of(self, text: str, needle: str) -> types.Position:
        """The position right after the first `needle`, in the negotiated encoding."""
        offset = text.index(needle) + len(needle)
        column = text[text.rfind("\n", 0, offset) + 1:offset]
        return types.Position(line=text.count("\n", 0, offset), character=num_units(column, self.encoding))


async def start_session(model: Path, profile: str, *, configuration: dict[str, Any] | None = None,
                        initialization_options: Any = None, workspace: Path = WORKSPACE,
                        dtype: str = "fp32") -> Session:
    """The real server process on `model` with `workspace` as its one folder; the `coda` section of
    `configuration` answers its pull."""
    # fp32, not the default auto: what these tests expect of the random tiny model's answers is fp32's, and
    # auto picks by timing (int8 on one CPU, fp32 on another). test_cli runs the default.
    config = ClientServerConfig(server_command=[sys.executable, "-m", "coda_lsp", "--model", str(model),
                                                "--dtype", dtype, "--log-level", "WARNING"])
    client = await config.start()
    assert isinstance(client, LanguageClient)
    client.set_configuration({"coda": configuration or {}})
    applied_edits: list[types.WorkspaceEdit] = []
    registrations: list[types.Registration] = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        registrations.extend(params.registrations)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        applied_edits.append(params.edit)
        return types.ApplyWorkspaceEditResult(applied=True)

    result = await client.initialize_session(types.InitializeParams(
        capabilities=PROFILES[profile](), root_uri=workspace.as_uri(), initialization_options=initialization_options,
        workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)]))
    return Session(client, profile, result, applied_edits, registrations)


async def status(client: LanguageClient) -> dict[str, Any]:
    return as_dict(await client.protocol.send_request_async("coda/status", {}))


def as_dict(value: Any) -> Any:
    """pygls' client turns untyped results into namedtuples; tests read them as plain dicts and lists."""
    if hasattr(value, "_asdict"):
        return {key: as_dict(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [as_dict(item) for item in value]
    return value


async def wait_until_settled(client: LanguageClient, timeout_s: float = 60.0) -> dict[str, Any]:
    """coda/status once the model is no longer loading."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = await status(client)
        if current["state"] != "loading" or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


def open_document(client: LanguageClient, uri: str, text: str, language_id: str = "python",
                  version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=version, text=text)))


def insert(client: LanguageClient, uri: str, version: int, position: types.Position, text: str) -> None:
    """An incremental didChange inserting `text` at `position`."""
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(position, position), text=text)]))


def inline_params(uri: str, position: types.Position,
                  kind: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
                  selected: types.SelectedCompletionInfo | None = None) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position,
        context=types.InlineCompletionContext(trigger_kind=kind, selected_completion_info=selected))


async def inline(client: LanguageClient, uri: str, position: types.Position,
                 **kwargs: Any) -> list[types.InlineCompletionItem]:
    result = await client.text_document_inline_completion_async(inline_params(uri, position, **kwargs))
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)


def apply_text_edits(text: str, edits: list[types.TextEdit], encoding: str) -> str:
    """`text` with non-overlapping `edits` applied (positions in `encoding` units), as a client would."""
    from coda_lsp.documents import Document

    doc = Document("file:///x", "", 0, text)
    spans = sorted(((doc.offset_at(edit.range.start, encoding), doc.offset_at(edit.range.end, encoding),
                     edit.new_text) for edit in edits), reverse=True)
    for start, end, new_text in spans:
        text = text[:start] + new_text + text[end:]
    return text
