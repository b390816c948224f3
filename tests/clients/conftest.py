"""Client fixtures: a Hugging Face cache laid out as huggingface_hub writes it, holding the tiny checkpoint."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

# Not a real hub repository: the cache resolver must find it only because the fixture wrote it.
HUB_REPO_ID = "coda-tests/CoDA-tiny-random"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_cache(cache: Path, repo_id: str, checkpoint: Path, commit: str = COMMIT) -> Path:
    """`checkpoint`'s files as huggingface_hub caches them: blobs/<sha256>, snapshots/<commit>/<name> linking
    to the blob, and refs/main holding the commit. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(checkpoint.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A Hugging Face hub cache folder (what HF_HUB_CACHE points at) holding the tiny checkpoint."""
    cache = tmp_path_factory.mktemp("hf-hub")
    write_hub_cache(cache, HUB_REPO_ID, tiny_checkpoint)
    return cache
