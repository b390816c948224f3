"""The model's lifecycle: loaded once in the background, in state loading, ready or error."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Loads the engine for (path, device, dtype); raises with a one-line message on a bad checkpoint.
LoadEngine = Callable[[Path, str, "str | None"], Any]


class EngineUnavailable(Exception):
    """The engine cannot answer now (`--remote`: the server is down or failed); the request gets no completion,
    and the user hears of it once (features.lifecycle), not per keystroke."""


class ModelState(enum.Enum):
    LOADING = "loading"  # from startup until the load finishes; requests wait for it (bounded)
    READY = "ready"      # the engine answers requests
    ERROR = "error"      # the load failed; requests get empty results and coda/status the reason


@dataclass(frozen=True)
class ModelSpec:
    """What to load: the command line's slice."""

    path: Path
    device: str = "auto"  # CUDA when present, else the CPU
    dtype: str | None = "auto"  # auto: bf16 on CUDA, the CPU's fastest format (fp32, bf16 or int8) elsewhere
    remote: str | None = None   # a `coda-lsp serve` URL: no model is loaded, infills go there (remote.py)
    api_key: str | None = field(default=None, repr=False)  # its key (--api-key-file), never logged

    @property
    def name(self) -> str:
        """What the user knows the model by: the folder, or the server's URL."""
        return self.remote or str(self.path)


def load_coda_engine(path: Path, device: str, dtype: str | None) -> Any:
    """The real loader; imported lazily so `coda-lsp --help` does not pay for importing torch."""
    from coda_engine import Engine

    return Engine.from_pretrained(path, device=device, dtype=dtype)


class ModelHost:
    """Holds the engine once loaded, and what went wrong if it was not."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.state = ModelState.LOADING
        self.engine: Any = None
        self.error: str | None = None
        self._settled = asyncio.Event()

    def set_ready(self, engine: Any) -> None:
        self.engine, self.state = engine, ModelState.READY
        self._settled.set()

    def set_error(self, reason: str) -> None:
        self.error, self.state = reason, ModelState.ERROR
        self._settled.set()

    async def wait(self, timeout_s: float) -> Any:
        """The engine, waiting up to `timeout_s` while it loads; None if it failed or is still loading."""
        if self.state is ModelState.LOADING:
            try:
                await asyncio.wait_for(self._settled.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.engine
