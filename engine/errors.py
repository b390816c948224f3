"""The engine's named errors: a bad checkpoint on disk, and a request its caller stopped."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(Exception):
    """A checkpoint folder cannot be loaded; the message names the file and the problem in one line."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Cancelled(Exception):
    """Generation was stopped between denoising steps because `should_stop()` returned True."""

    def __init__(self, num_forward_passes: int) -> None:
        self.num_forward_passes = num_forward_passes
        super().__init__(f"generation cancelled after {num_forward_passes} forward pass(es)")
