"""A one-line progress counter on stderr: done/total, rate and ETA, redrawn in place with a carriage return."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class ProgressBar:
    """Thread-safe: executions finish on the pool's threads."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.label, self.num_done = total, label, 0
        self._stream, self._started, self._lock = stream, time.perf_counter(), threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.num_done += count
            self._draw()

    def close(self) -> None:
        with self._lock:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self) -> None:
        elapsed_s = time.perf_counter() - self._started
        rate = self.num_done / elapsed_s if elapsed_s > 0 else 0.0
        eta = f"{(self.total - self.num_done) / rate:.0f} s" if rate > 0 else "?"
        self._stream.write(f"\r{self.label}: {self.num_done}/{self.total}  {rate:.2f} problems/s  "
                           f"elapsed {elapsed_s:.0f} s  ETA {eta} ")
        self._stream.flush()
