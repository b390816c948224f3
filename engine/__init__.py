"""coda_engine: load CoDA diffusion checkpoints and infill code with confidence-guided denoising."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use: the parameter and name modules stay importable without torch.
_PUBLIC = {"Engine": ".engine", "InfillResult": ".engine", "Cancelled": ".errors", "CheckpointError": ".errors"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'coda_engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
