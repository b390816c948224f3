"""--model as a folder or a hub id from the local Hugging Face cache: resolution rules and the CLI's errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coda_lsp.model_path import ModelNotFound, cached_snapshot, hub_cache_dir, resolve_model
from tests.clients.conftest import COMMIT, HUB_REPO_ID, write_hub_cache


def test_a_hub_id_resolves_to_the_main_snapshot(hub_cache: Path) -> None:
    snapshot = resolve_model(HUB_REPO_ID, {"HF_HUB_CACHE": str(hub_cache)})
    assert snapshot == hub_cache / "models--coda-tests--CoDA-tiny-random" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file()


def test_a_commit_hash_or_another_ref_selects_that_snapshot(tmp_path: Path, tiny_checkpoint: Path) -> None:
    other = "f" * 40
    write_hub_cache(tmp_path, "o/n", tiny_checkpoint, commit=other)
    (tmp_path / "models--o--n" / "refs" / "v1").write_text(other + "\n")
    assert cached_snapshot(tmp_path, "o/n", "v1") == cached_snapshot(tmp_path, "o/n", other) \
        == tmp_path / "models--o--n" / "snapshots" / other
    assert cached_snapshot(tmp_path, "o/n", "no-such-ref") is None


def test_an_existing_folder_wins_over_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert resolve_model("owner/name", {"HF_HUB_CACHE": str(tmp_path / "empty")}) == Path("owner/name")


def test_a_missing_path_that_is_no_hub_id_is_left_to_the_loader(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no" / "such" / "model"
    assert resolve_model(str(missing), {}) == missing
    monkeypatch.chdir(tmp_path)  # relative: made absolute, so the loader's error names the folder it looked at
    assert resolve_model("./no/such/model", {}) == missing


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "coda").mkdir(parents=True)
    assert resolve_model("~/models/coda", {}) == tmp_path / "models" / "coda"


def test_a_missing_relative_folder_shaped_like_a_hub_id_names_the_folder_first(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as error:
        resolve_model("models/coda-tiny", {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert str(error.value).startswith(f"no model folder {tmp_path / 'models' / 'coda-tiny'}, and no "
                                       f"models/coda-tiny downloaded into the Hugging Face cache at {tmp_path / 'hub'}")


def test_a_hub_id_not_downloaded_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as error:
        resolve_model("Salesforce/CoDA-v0-Instruct", {"HF_HOME": str(tmp_path)})
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "hub") in message
    assert "huggingface-cli download Salesforce/CoDA-v0-Instruct" in message


def test_the_cache_folder_follows_huggingface_hub_variables(tmp_path: Path) -> None:
    assert hub_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hub_cache_dir({"HUGGINGFACE_HUB_CACHE": "/legacy"}) == Path("/legacy")
    assert hub_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hub_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")
    assert hub_cache_dir({}) == Path.home() / ".cache" / "huggingface" / "hub"


def _coda_lsp(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "coda_lsp", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_infill_with_a_hub_id_from_the_cache(hub_cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("def add(a, b):\n    return \n")
    result = _coda_lsp("infill", "--model", HUB_REPO_ID, str(source), "--line", "2", "--column", "12",
                       "--max-tokens", "4", "--steps", "2", cache=hub_cache)
    assert result.returncode == 0, result.stderr
    assert "tokens of text in 2 forward passes" in result.stderr


def test_serve_and_infill_refuse_a_hub_id_not_in_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    serve = _coda_lsp("--model", "Salesforce/CoDA-v0-Instruct", cache=tmp_path)
    infill = _coda_lsp("infill", "--model", "Salesforce/CoDA-v0-Instruct", str(source), "--line", "1",
                       "--column", "1", cache=tmp_path)
    assert (serve.returncode, infill.returncode) == (2, 1)
    for result in (serve, infill):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "huggingface-cli download Salesforce/CoDA-v0-Instruct" in result.stderr
