"""Run-wide fixtures: the data files shipped with the tools and one tiny random checkpoint written by the project's
own code."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda_engine.tools.files import CODA_V0_DIR, HUMANEVAL_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The real CoDA-v0 config and tokenizer files (no weights)."""
    return CODA_V0_DIR


@pytest.fixture(scope="session")
def humaneval_dir() -> Path:
    return HUMANEVAL_DIR


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """A random `tiny`-preset CoDA checkpoint with the real tokenizer, written once per run."""
    from coda_engine.presets import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", preset="tiny", seed=0,
                                   tokenizer_dir=reference_dir)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests run last, so a broken unit shows up before a slow server test times out."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
