"""coda_engine: load CoDA diffusion checkpoints and infill code with confidence-guided denoising."""

from .engine import Engine, InfillResult
from .errors import Cancelled, CheckpointError

__all__ = ["Cancelled", "CheckpointError", "Engine", "InfillResult"]
