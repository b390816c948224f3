"""coda_engine: load CoDA diffusion checkpoints and infill code with confidence-guided denoising."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# torch warns at its import when numpy is not installed; the engine never converts to or from numpy arrays, and
# the language server's install leaves numpy out (70 MB).
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)

# The public names, imported on first use: the parameter and name modules stay importable without torch.
_PUBLIC = {"Engine": ".engine", "InfillResult": ".engine", "Cancelled": ".errors", "CheckpointError": ".errors"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'coda_engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
