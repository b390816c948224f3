"""Torch work done off the scheduler's thread, on a thread that ends with it.

With torch's OpenMP CPU backend (libgomp), a thread that has run parallel kernels keeps its own OpenMP team for as
long as it lives, and while two such threads are alive the parallel regions of either run about twice as slow (a
37 x 256 x 768 product: 66 us on the only such thread, 140 us beside an idle one; measured in docs/engine.md, "One
thread for the passes"). A model loaded on a server's main or pool thread, which stay alive, would so slow every
pass of the scheduler's thread for the life of the process."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_passing_thread(work: Callable[[], T]) -> T:
    """work()'s result (or its exception), computed on a new thread that has ended when this returns."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="coda-load") as pool:
        return pool.submit(work).result()
