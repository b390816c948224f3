"""Triton kernels for one denoising step (confidence_stats, reveal_by_confidence), each beside the plain-torch
reference it is tested against. The package imports without triton (runtime.py); the references run anywhere."""

from __future__ import annotations

from .confidence import ConfidenceStats, confidence_stats, reference_confidence_stats, reference_uniform
from .reveal import reference_reveal_by_confidence, reveal_by_confidence
from .runtime import triton_available

__all__ = ["ConfidenceStats", "confidence_stats", "reference_confidence_stats", "reference_reveal_by_confidence",
           "reference_uniform", "reveal_by_confidence", "triton_available"]
