"""The engine's named errors (a bad checkpoint on disk, a job its caller stopped, a full queue) and how one reads."""

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


class Overloaded(Exception):
    """Too many jobs waiting for rows: refused, with a guess at when to retry (HTTP: 503 with Retry-After)."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__(f"the server is busy; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[Overloaded], tuple[int]]:
        # Pickled (a Ray replica's answer), an exception is rebuilt from its args, here the message.
        return Overloaded, (self.retry_after_s,)


def one_line(error: BaseException, typed: bool = False) -> str:
    """An error as the one line a user sees: its first line, else its type's name; `typed`: after the type's
    name (for errors that are not the user's, such as a failed kernel or a bug)."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if typed else lines[0]
