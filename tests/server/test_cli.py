"""cli: --version, --help, the missing default model, `coda-lsp infill` on the tiny checkpoint and bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from coda_lsp import __version__
from coda_lsp.cli import main


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coda_lsp", *args], capture_output=True, text=True, timeout=120,
                          env=None if env is None else {**os.environ, **env})


def test_version_and_help(capsys) -> None:
    for argv in (["--version"], ["--help"], ["infill", "--help"]):
        try:
            main(argv)
        except SystemExit as exit_:
            assert exit_.code == 0
    out = capsys.readouterr().out
    assert f"coda-lsp {__version__}" in out and "--tcp HOST:PORT" in out and "--max-tokens" in out


def test_missing_default_model_says_what_to_pass(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("coda_lsp.cli.DEFAULT_MODEL", tmp_path / "models" / "coda-tiny")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--model" in err


def test_infill_prints_text_and_timings(tiny_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    result = _run("infill", "--model", str(tiny_checkpoint), str(source), "--line", "2", "--column", "12",
                  "--max-tokens", "8", "--steps", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert re.search(r"^\d tokens of text in 4 forward passes: first pass [\d.]+ ms", result.stderr, re.M)
    assert " weights (auto on a CPU with " in result.stderr  # the default format, chosen by timing


def test_infill_at_the_start_of_a_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    result = _run("infill", "--model", str(tiny_checkpoint), str(source), "--line", "1", "--column", "1",
                  "--max-tokens", "4", "--steps", "2", "--dtype", "int8")
    assert result.returncode == 0, result.stderr
    assert "int8 weights (asked for)" in result.stderr


def test_infill_errors_are_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    bad_model = _run("infill", "--model", str(tmp_path / "missing"), str(source), "--line", "1", "--column", "1")
    bad_line = _run("infill", "--model", str(tiny_checkpoint), str(source), "--line", "9", "--column", "1")
    # Forced kernels where triton cannot run (no interpreter on a CPU), and a mode that does not exist.
    no_kernels = _run("infill", "--model", str(tiny_checkpoint), str(source), "--line", "1", "--column", "1",
                      env={"CODA_KERNELS": "triton", "TRITON_INTERPRET": "0"})
    bad_mode = _run("infill", "--model", str(tiny_checkpoint), str(source), "--line", "1", "--column", "1",
                    env={"CODA_KERNELS": "fast"})
    for result, words in ((bad_model, "model folder not found"), (bad_line, "--line 9"),
                          (no_kernels, "Triton kernels asked for on cpu, where they cannot run"),
                          (bad_mode, "CODA_KERNELS='fast' is not a kernel mode")):
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
