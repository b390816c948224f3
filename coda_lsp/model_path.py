"""resolve_model(value) -> Path: a `--model` folder as given, or a hub id (`owner/name`) found in the local
Hugging Face cache, without network access and without huggingface_hub."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

# Hub repository ids: one owner and one name, each of letters, digits, `-`, `_`, `.` (huggingface_hub's rule).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# A commit hash in refs/<revision> names the snapshot folder that holds that revision's files.
_COMMIT = re.compile(r"[0-9a-f]{40}")


class ModelNotFound(ValueError):
    """`--model` names neither a folder nor a downloaded hub model; the message says what to run."""


def resolve_model(value: str, env: Mapping[str, str] = os.environ) -> Path:
    """The checkpoint folder `value` means: an existing path as it is (`~` expanded); otherwise a hub id's
    snapshot of its `main` revision in the local cache. A path that does not exist and is no hub id comes back
    absolute, so the loader's error names the folder it looked for."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    if not _HUB_ID.fullmatch(value):
        return path.absolute()
    cache = hub_cache_dir(env)
    snapshot = cached_snapshot(cache, value)
    if snapshot is None:
        # `models/coda-tiny` run from another directory reads as a hub id too: the folder comes first
        raise ModelNotFound(f"no model folder {path.absolute()}, and no {value} downloaded into the Hugging Face "
                            f"cache at {cache}; a hub model: download it first with `huggingface-cli download "
                            f"{value}` (or `hf download {value}`)")
    return snapshot


def hub_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where huggingface_hub keeps downloaded repositories, by the same variables it reads, in its order."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(variable):
            return Path(env[variable]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache_home = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache_home / "huggingface" / "hub"


def cached_snapshot(cache: Path, repo_id: str, revision: str = "main") -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (a ref name or a commit hash), or None if it was never
    downloaded. Layout: models--owner--name/refs/<ref> holds a commit hash; snapshots/<hash>/ holds the files."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    if _COMMIT.fullmatch(commit) and snapshot.is_dir():
        return snapshot
    return None
