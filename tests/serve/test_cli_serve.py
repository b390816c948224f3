"""`coda-lsp serve`'s command line: --help without the serve extra, one-line refusals before listening (no
extra, a non-loopback address without a key, a bad key file, a wrong model folder), and the LSP keeps its
command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coda_lsp.cli import main


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_help_works_without_the_serve_extra(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("fastapi", "uvicorn", "prometheus_client"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it raises ImportError
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--api-key-file FILE" in out and "--insecure-no-auth" in out and "--max-rows" in out


def test_without_the_serve_extra_it_says_what_to_install(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "pip install '.[serve]' in coda-lsp's clone" in _one_line(capsys.readouterr().err)


def test_a_non_loopback_host_needs_a_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--model", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "--api-key-file" in _one_line(capsys.readouterr().err)
    empty = tmp_path / "key"
    empty.write_text("\nsecond\n")
    assert main(["serve", "--model", str(tmp_path), "--host", "0.0.0.0", "--api-key-file", str(empty)]) == 2
    assert "empty" in _one_line(capsys.readouterr().err)
    assert main(["serve", "--model", str(tmp_path), "--api-key-file", str(tmp_path / "absent")]) == 2
    assert "cannot read --api-key-file" in _one_line(capsys.readouterr().err)
    # past the address check, the model folder (no config.json here) is the next one to fail
    assert main(["serve", "--model", str(tmp_path), "--host", "0.0.0.0", "--insecure-no-auth"]) == 1
    assert "config.json" in _one_line(capsys.readouterr().err)


def test_remote_arguments_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, words in ((["--remote", "gpu-box:8012"], "http:// or https://"),
                        (["--remote", "http://h:8012", "--model", str(tmp_path)], "--remote and --model"),
                        (["--api-key-file", str(tmp_path / "k")], "goes with --remote"),
                        (["--remote", "http://h:8012", "--api-key-file", str(tmp_path / "k")], "cannot read")):
        assert main(argv) == 2
        assert words in _one_line(capsys.readouterr().err)


def test_key_file_and_model_paths_expand_the_home_folder(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # an editor's argument list reaches the server with no shell to expand `~`
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".coda-key").write_text("secret\n")
    (tmp_path / "not-a-checkpoint").mkdir()
    argv = ["serve", "--model", "~/not-a-checkpoint", "--host", "0.0.0.0", "--api-key-file", "~/.coda-key"]
    assert main(argv) == 1  # the key was read: the next check, the model folder's config.json, is what fails
    assert f"{tmp_path / 'not-a-checkpoint'}: not a CoDA checkpoint folder" in _one_line(capsys.readouterr().err)


def test_a_wrong_model_or_device_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             short_checkpoint: Path) -> None:
    for model, words in ((tmp_path / "missing", "model folder not found"), (tmp_path, "it has no config.json")):
        assert main(["serve", "--model", str(model)]) == 1
        assert words in _one_line(capsys.readouterr().err)
    assert main(["serve", "--model", str(short_checkpoint), "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in _one_line(capsys.readouterr().err)


def test_ray_arguments_are_checked_before_ray_starts(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, short_checkpoint: Path) -> None:
    model = ["serve", "--model", str(short_checkpoint)]
    for argv, words in ((["--replicas", "2"], "go with --ray"),
                        (["--ray", "--device", "cuda"], "needs --gpus-per-replica"),
                        (["--ray", "--gpus-per-replica", "1", "--device", "cpu"], "never use")):
        assert main(model + argv) == 2
        assert words in _one_line(capsys.readouterr().err)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(model + ["--ray", "--replicas", "2"]) == 2
    assert "pip install '.[cluster]' in coda-lsp's clone" in _one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as exit_:
        main(model + ["--ray", "--autoscale", "3:1"])
    assert exit_.value.code == 2 and "MIN <= MAX" in capsys.readouterr().err


def test_the_language_server_keeps_its_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the description
    assert "--tcp HOST:PORT" in out and "coda-lsp serve --help" in out
