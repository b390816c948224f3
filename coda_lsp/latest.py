"""The newest request per document wins: a superseded request's task is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any


class LatestWins:
    """The newest request per key (method and document) wins: registering a request cancels the task of the
    one it replaces, which pygls then answers with RequestCancelled (-32800). Neovim never cancels a superseded
    automatic request itself, so without this every keystroke would queue an infill."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def claim(self, key: Hashable) -> None:
        """Make the current task the newest for `key`, cancelling the previous one if it is still running."""
        task = asyncio.current_task()
        assert task is not None, "claim() runs inside a request handler's task"
        previous = self._tasks.get(key)
        if previous is not None and previous is not task and not previous.done():
            previous.cancel()
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
