"""Triton kernels for one denoising step, each beside the plain-torch reference it is tested against.

The CPU runtime install has no triton, so the package imports without it (see `runtime.py`); the references
work everywhere.
"""

from __future__ import annotations

from .runtime import triton_available

__all__ = ["triton_available"]
