"""The model's lifecycle in the language server: one backend, loaded (or connected) once in the background, in
state loading, ready or error."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coda_engine.params import EngineOptions
from coda_lsp.backend import Backend

# Loads the backend of (path, options, spans a completion uses, candidate temperature); raises with a one-line
# message on a bad checkpoint. Tests pass their own to load a model of their choosing.
LoadBackend = Callable[[Path, EngineOptions, tuple[int, ...], float], Backend]


class ModelState(enum.Enum):
    LOADING = "loading"  # from startup until the load finishes; requests wait for it (bounded)
    READY = "ready"      # the backend answers requests
    ERROR = "error"      # the load failed; requests get empty results and coda/status the reason


@dataclass(frozen=True)
class ModelSpec:
    """What to load: the command line's slice."""

    path: Path
    device: str = "auto"  # CUDA when present, else the CPU
    dtype: str | None = "auto"  # auto: bf16 on CUDA, the CPU's fastest format (fp32, bf16 or int8) elsewhere
    remote: str | None = None   # a `coda-lsp serve` URL: no model is loaded, infills go there (backends.http)
    api_key: str | None = field(default=None, repr=False)  # its key (--api-key-file), never logged

    @property
    def name(self) -> str:
        """What the user knows the model by: the folder, or the server's URL."""
        return self.remote or str(self.path)

    @property
    def options(self) -> EngineOptions:
        return EngineOptions(device=self.device, dtype=self.dtype)


def load_local_backend(path: Path, options: EngineOptions, spans: tuple[int, ...],
                       candidate_temperature: float) -> Backend:
    """The real loader; imported lazily so `coda-lsp --help` does not pay for importing torch."""
    from coda_lsp.backends.local import LocalBackend

    return LocalBackend.load(path, options, spans=spans, candidate_temperature=candidate_temperature)


class ModelHost:
    """Holds the backend once loaded, and what went wrong if it was not."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.state = ModelState.LOADING
        self.backend: Backend | None = None
        self.error: str | None = None
        self._settled = asyncio.Event()

    def set_ready(self, backend: Backend) -> None:
        self.backend, self.state = backend, ModelState.READY
        self._settled.set()

    def set_error(self, reason: str) -> None:
        self.error, self.state = reason, ModelState.ERROR
        self._settled.set()

    async def wait(self, timeout_s: float) -> Backend | None:
        """The backend, waiting up to `timeout_s` while it loads; None if it failed or is still loading."""
        if self.state is ModelState.LOADING:
            try:
                await asyncio.wait_for(self._settled.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.backend
