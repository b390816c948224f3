"""cli: --version, --help and the defaults it names, the missing default model, `coda-lsp infill` on the tiny
checkpoint and bad input, `~` in path arguments."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

from coda_lsp import __version__
from coda_lsp.cli import DEFAULT_MODEL, _http_parser, _infill_parser, _serve_parser, main


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


def _help_defaults(parser: argparse.ArgumentParser) -> dict[str, tuple[str, object]]:
    """option -> (the value its help calls the default, the parser's default) for every help that names one."""
    found = {}
    for action in parser._actions:
        match = re.search(r"\bdefault:? ([^\s,;)]+?):?(?=[\s,;)]|$)", action.help or "")
        if match and match.group(1) != "the":  # "default: the fast path's" names a rule, not a value
            found[action.option_strings[0]] = (match.group(1), action.default)
    return found


def _agrees(text: str, value: object) -> bool:
    return float(text) == float(value) if isinstance(value, (int, float)) else text == str(value)


def test_help_defaults_agree_with_the_code() -> None:
    from coda_engine import Engine
    from coda_engine.params import DEFAULT_THRESHOLD, EngineOptions, InfillParams
    from coda_lsp.backends.ray import ClusterOptions
    from coda_lsp.serve.settings import ServeSettings

    # options whose parser default is None (not given): the value the code then uses
    code_defaults = {"--model": DEFAULT_MODEL, "--alg": InfillParams.alg, "--replicas": ClusterOptions.replicas,
                     "--gpus-per-replica": ClusterOptions.gpus_per_replica,
                     "--cpus-per-replica": ClusterOptions.cpus_per_replica}
    parsers = {"lsp": _serve_parser(), "serve": _http_parser(), "infill": _infill_parser()}
    checked = 0
    for parser in parsers.values():
        for option, (text, default) in _help_defaults(parser).items():
            expected = code_defaults[option] if default is None else default
            assert _agrees(text, expected), f"{parser.prog} {option}: help says {text}, the code uses {expected}"
            checked += 1
    assert checked >= 20
    assert f"at least {DEFAULT_THRESHOLD} sure" in parsers["infill"]._option_string_actions["--alg"].help
    # the HTTP server's defaults are its engines' and settings' own
    serve = vars(parsers["serve"].parse_args(["--model", "m"]))
    for name in ("max_rows", "max_queue", "cache_mb"):
        assert serve[name] == getattr(EngineOptions, name), name
    assert serve["max_tokens"] == ServeSettings.max_tokens and serve["max_body_kb"] * 1024 == ServeSettings.max_body_bytes
    infill = vars(parsers["infill"].parse_args(["--model", "m", "f", "--line", "1", "--column", "1"]))
    assert infill["max_tokens"] == inspect.signature(Engine.infill).parameters["max_new_tokens"].default


def test_lsp_key_and_log_files_expand_the_home_folder(tmp_path: Path) -> None:
    # editors start the server with an argument list: no shell expands `~`
    (tmp_path / ".coda-key").write_text("secret\n")
    result = subprocess.run([sys.executable, "-m", "coda_lsp", "--remote", "http://127.0.0.1:9", "--api-key-file",
                             "~/.coda-key", "--log-file", "~/coda-lsp.log"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0 and result.stderr == ""
    assert (tmp_path / "coda-lsp.log").is_file()


def test_infill_model_and_file_expand_the_home_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "model").symlink_to(tiny_checkpoint)
    (tmp_path / "a.py").write_text("x = \n")
    result = _run("infill", "--model", "~/model", "~/a.py", "--line", "1", "--column", "5", "--max-tokens", "4",
                  "--steps", "2", env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def test_a_relative_model_from_another_folder_names_the_folder_it_looked_at(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    result = subprocess.run([sys.executable, "-m", "coda_lsp", "infill", "--model", "models/coda-tiny", str(source),
                             "--line", "1", "--column", "1"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 1
    assert result.stderr.startswith(f"coda-lsp infill: error: no model folder {tmp_path / 'models' / 'coda-tiny'}, ")
    assert len(result.stderr.strip().splitlines()) == 1
