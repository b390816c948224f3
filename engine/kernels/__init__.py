"""Triton kernels for one denoising step, each beside the plain-torch reference it is tested against.

confidence_stats: (N, V) logits -> token, its probability, margin, negative entropy, in one read of V.
reveal_by_confidence: top-k or threshold reveal written into the canvas, with a per-row done flag, no host sync.
The CPU runtime install has no triton, so the package imports without it (see `runtime.py`); the references
run anywhere torch does.
"""

from __future__ import annotations

from .confidence import ConfidenceStats, confidence_stats, reference_confidence_stats, reference_uniform
from .reveal import reference_reveal_by_confidence, reveal_by_confidence
from .runtime import triton_available

__all__ = ["ConfidenceStats", "confidence_stats", "reference_confidence_stats", "reference_reveal_by_confidence",
           "reference_uniform", "reveal_by_confidence", "triton_available"]
