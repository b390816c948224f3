"""Cross-file context through the real server: the background index (progress, .gitignore, symlink escape, a
binary and a broken file), kept current by didOpen / didChange / didChangeWatchedFiles, coda/explainCompletion,
and `crossFile: false`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types

from tests.server.e2e.conftest import (FAST_SETTINGS, PROFILES, Session, as_dict, inline, insert, open_document,
                                       start_session, status, wait_until_settled)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
SOURCE = Path(__file__).parent / "crossfile_workspace"
EXPLAIN = "coda/explainCompletion"


def make_workspace(root: Path) -> Path:
    """A git repository copied from crossfile_workspace/, plus what must never be indexed."""
    folder = root / "shop"
    shutil.copytree(SOURCE, folder)
    (folder / "gitignore.txt").rename(folder / ".gitignore")
    outside = root / "outside.py"
    outside.write_text("def leaked_secret() -> str:\n    return 'outside the workspace'\n")
    (folder / "app" / "linked.py").symlink_to(outside)
    (folder / "app" / "blob.py").write_bytes(b"def binary():\n    pass\n\x00\x01\x02")
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=sorted(PROFILES))
async def session(request: pytest.FixtureRequest, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = make_workspace(tmp_path_factory.mktemp(f"xfile-{request.param}"))
    started = await start_session(tiny_checkpoint, request.param, configuration=FAST_SETTINGS, workspace=folder)
    started.folder = folder  # type: ignore[attr-defined]
    yield started
    await started.client.shutdown_session()


async def wait_for_index(session: Session, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = (await status(session.client))["crossFile"]
        if current["state"] not in ("pending", "building") or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


async def explain(session: Session, uri: str) -> Any:
    return as_dict(await session.client.protocol.send_request_async(EXPLAIN, {"textDocument": {"uri": uri}}))


def folder_of(session: Session) -> Path:
    return session.folder  # type: ignore[attr-defined,no-any-return]


def open_file(session: Session, relative: str, text: str | None = None) -> tuple[str, str]:
    path = folder_of(session) / relative
    text = path.read_text() if text is None else text
    open_document(session.client, path.as_uri(), text)
    return path.as_uri(), text


async def complete_at_line(session: Session, uri: str, text: str, line: int) -> Any:
    """An inline request at the start of `line` (0-based), then the prompt the server explains for it."""
    await wait_until_settled(session.client)
    await inline(session.client, uri, types.Position(line=line, character=0))
    return await explain(session, uri)


def definitions(explained: dict[str, Any]) -> list[str]:
    """Paths of the definition snippets (other open tabs also add similar windows and recent edits)."""
    return [s["path"] for s in explained["crossFile"]["snippets"] if s["kind"] == "definition"]


async def test_the_index_is_built_in_the_background_with_progress(session: Session) -> None:
    index = await wait_for_index(session)
    # app/{shapes,main,broken}.py: secret/ is ignored, linked.py leaves the folder, blob.py is binary
    assert (index["state"], index["numFiles"], index["isTruncated"]) == ("ready", 3, False)
    reports = [report for token, values in session.client.progress_reports.items()
               if str(token).startswith("coda-index-") for report in values]
    assert type(reports[0]) is types.WorkDoneProgressBegin and type(reports[-1]) is types.WorkDoneProgressEnd
    assert reports[-1].message == "3 files"


async def test_explain_shows_the_definition_from_another_file(session: Session) -> None:
    await wait_for_index(session)
    uri, text = open_file(session, "app/main.py")
    explained = await complete_at_line(session, uri, text, 5)
    snippets = explained["crossFile"]["snippets"]
    assert [(s["kind"], s["path"], s["startLine"], s["endLine"]) for s in snippets] == \
        [("definition", "app/shapes.py", 3, 10)]
    assert snippets[0]["tokens"] > 0 and snippets[0]["score"] == 1.0  # the first (and only) definition
    assert explained["crossFile"]["text"].startswith("# Path: app/shapes.py\nclass Circle:\n")
    assert explained["crossFile"]["text"].endswith("# Path: app/main.py\n")
    context_tokens = FAST_SETTINGS["contextTokens"]
    assert explained["crossFile"]["budget"] == context_tokens // 4
    assert explained["prefix"]["budget"] + explained["suffix"]["budget"] == \
        context_tokens - explained["crossFile"]["tokens"]
    assert 0 < explained["prefix"]["tokens"] <= explained["prefix"]["budget"]


async def test_the_index_follows_edits_of_open_documents(session: Session) -> None:
    await wait_for_index(session)
    shapes_uri, shapes = open_file(session, "app/shapes.py")
    end = types.Position(line=shapes.count("\n"), character=0)
    insert(session.client, shapes_uri, 2, end, "\n\ndef perimeter(circle: Circle) -> float:\n"
                                               "    \"\"\"Length of the edge.\"\"\"\n    return 0.0\n")
    main_text = "from app.shapes import Circle, perimeter\n\n\ndef edge(c: Circle) -> float:\n" \
                "    return perimeter(c)\n\n"
    uri, _ = open_file(session, "app/edge.py", main_text)
    await asyncio.sleep(0.8)  # the edited buffer is re-parsed once typing pauses (0.5 s)
    explained = await complete_at_line(session, uri, main_text, 5)
    kinds = {(s["kind"], s["path"]) for s in explained["crossFile"]["snippets"]}
    assert ("definition", "app/shapes.py") in kinds
    assert "def perimeter(circle: Circle) -> float:" in explained["crossFile"]["text"]
    assert (await status(session.client))["crossFile"]["numEditedRanges"] >= 1


async def test_watched_files_keep_the_index_current(session: Session) -> None:
    await wait_for_index(session)
    watched = [r for r in session.registrations if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES]
    dynamic = session.profile == "vscode"  # Neovim's profile has no dynamic registration for watchers
    assert len(watched) == (1 if dynamic else 0)
    before = (await status(session.client))["crossFile"]["numFiles"]
    colors = folder_of(session) / "app" / "colors.py"
    colors.write_text("def shade(name: str) -> str:\n    \"\"\"A darker colour.\"\"\"\n    return name\n")
    session.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=colors.as_uri(), type=types.FileChangeType.Created)]))
    text = "from app.colors import shade\n\nDARK = shade('red')\n\n"
    uri, _ = open_file(session, "app/theme.py", text)
    explained = await complete_at_line(session, uri, text, 3)
    assert definitions(explained) == ["app/colors.py"]
    colors.unlink()
    session.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=colors.as_uri(), type=types.FileChangeType.Deleted)]))
    explained = await complete_at_line(session, uri, text, 3)
    assert definitions(explained) == []
    assert (await status(session.client))["crossFile"]["numFiles"] == before + 1  # theme.py, an open buffer


async def test_nothing_outside_the_workspace_or_ignored_reaches_a_prompt(session: Session) -> None:
    await wait_for_index(session)
    text = "from app.linked import leaked_secret\nfrom secret.keys import api_key\n\n\nleaked_secret()\napi_key()\n\n"
    uri, _ = open_file(session, "app/thief.py", text)
    explained = await complete_at_line(session, uri, text, 6)
    assert definitions(explained) == []
    assert "def leaked_secret" not in explained["crossFile"]["text"]
    assert "def api_key" not in explained["crossFile"]["text"]


async def test_explain_before_any_completion_is_null_and_bad_params_are_refused(session: Session) -> None:
    assert await explain(session, (folder_of(session) / "app" / "never.py").as_uri()) is None
    with pytest.raises(Exception, match="textDocument"):
        await session.client.protocol.send_request_async(EXPLAIN, {"uri": 3})


async def test_cross_file_off_reads_nothing(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = make_workspace(tmp_path)
    off = await start_session(tiny_checkpoint, "vscode", configuration={**FAST_SETTINGS, "crossFile": False},
                              workspace=folder)
    try:
        off.folder = folder  # type: ignore[attr-defined]
        assert (await wait_for_index(off))["state"] == "off"
        uri, text = open_file(off, "app/main.py")
        explained = await complete_at_line(off, uri, text, 5)
        assert explained["crossFile"] == {"budget": 0, "tokens": 0, "snippets": [], "text": ""}
        assert explained["prefix"]["budget"] + explained["suffix"]["budget"] == FAST_SETTINGS["contextTokens"]
        assert not any(str(token).startswith("coda-index-") for token in off.client.progress_reports)
        assert not [r for r in off.registrations if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES]
    finally:
        await off.client.shutdown_session()


async def test_did_save_reindexes_at_once(session: Session) -> None:
    await wait_for_index(session)
    uri, text = open_file(session, "app/palette.py", "RED = 1\n")
    insert(session.client, uri, 2, types.Position(line=1, character=0), "\n\ndef tint(colour: int) -> int:\n    ...\n")
    session.client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    user = "from app.palette import tint\n\nLIGHT = tint(2)\n\n"
    user_uri, _ = open_file(session, "app/light.py", user)
    explained = await complete_at_line(session, user_uri, user, 3)  # well within the 0.5 s didChange delay
    assert "def tint(colour: int) -> int: ..." in explained["crossFile"]["text"]


async def test_the_file_cap_is_reported(tiny_checkpoint: Path, tmp_path: Path) -> None:
    capped = await start_session(tiny_checkpoint, "neovim", configuration={**FAST_SETTINGS, "crossFileMaxFiles": 2},
                                 workspace=make_workspace(tmp_path))
    try:
        capped.folder = tmp_path / "shop"  # type: ignore[attr-defined]
        index = await wait_for_index(capped)
        # the cap counts the files read, in path order: app/blob.py (binary: refused) and app/broken.py
        assert (index["numFiles"], index["isTruncated"]) == (1, True)
        assert any("crossFileMaxFiles" in message.message for message in capped.client.messages)
    finally:
        await capped.client.shutdown_session()


async def test_an_added_workspace_folder_is_indexed(session: Session, tmp_path: Path) -> None:
    await wait_for_index(session)
    before = (await status(session.client))["crossFile"]["numFiles"]
    extra = tmp_path / "extra"
    (extra / "lib").mkdir(parents=True)
    (extra / "lib" / "extra_mod.py").write_text("def extra_helper() -> int:\n    return 1\n")
    folder = types.WorkspaceFolder(uri=extra.as_uri(), name="extra")
    session.client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[folder], removed=[])))
    # the notification is handled before the status request that follows it: the rebuild has started
    assert (await wait_for_index(session))["numFiles"] == before + 1  # open buffers are indexed again too
    session.client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[], removed=[folder])))
    assert (await wait_for_index(session))["numFiles"] == before
