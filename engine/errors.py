"""The engine's named errors: a bad checkpoint on disk, and a request its caller stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class CheckpointError(Exception):
    """A checkpoint folder cannot be loaded; the message names the file and the problem in one line."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Cancelled(Exception):
    """Generation was stopped between denoising steps because `should_stop()` returned True. `partial`: what the
    stopped loop had computed (the fast path's BlockwiseTrace), so its cache can still serve the next call."""

    def __init__(self, num_forward_passes: int, partial: Any = None) -> None:
        self.num_forward_passes = num_forward_passes
        self.partial = partial
        super().__init__(f"generation cancelled after {num_forward_passes} forward pass(es)")
