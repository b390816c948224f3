"""Which path a denoising step takes, Triton kernels or plain torch: decided once per device, with a probe.

CODA_KERNELS picks the rule, read when a choice is made (docs/engine.md, Fast infill). auto (the default): the
kernels where they run compiled (CUDA) and a tiny launch of each agrees with its torch reference, else torch with
one logged reason (Triton builds a C helper at its first launch and ROCm lacks some of what the kernels use: only
a launch tells). triton: the kernels, or a one-line ValueError; on a CPU under TRITON_INTERPRET=1 (the tests).
torch: the torch references everywhere.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import torch

from ..errors import one_line
from .confidence import confidence_stats, reference_confidence_stats
from .reveal import reference_reveal_by_confidence, reveal_by_confidence
from .runtime import interpreter_active, on_device, unavailable_reason

log = logging.getLogger("coda_engine.kernels")

KERNELS_ENV = "CODA_KERNELS"
KERNEL_MODES: tuple[str, ...] = ("auto", "triton", "torch")
# The probe's logits: enough columns for several tiles and splits, few enough to check in a few milliseconds.
PROBE_ROWS, PROBE_VOCAB = 4, 4096


@dataclass(frozen=True)
class KernelChoice:
    """The path chosen for one device, the rule that chose it and why, in one line."""

    use_triton: bool
    mode: str
    reason: str

    @property
    def name(self) -> str:
        return "triton" if self.use_triton else "torch"


def kernel_mode(mode: str | None = None) -> str:
    """`mode`, or CODA_KERNELS (default auto), checked."""
    value = (os.environ.get(KERNELS_ENV) or "auto") if mode is None else mode
    if value not in KERNEL_MODES:
        raise ValueError(f"{KERNELS_ENV}={value!r} is not a kernel mode; expected auto, triton or torch")
    return value


def runs_compiled(device: torch.device) -> bool:
    """Whether Triton compiles kernels for `device` (auto's rule); elsewhere it could only interpret them, which
    is correct but far slower than torch."""
    return device.type == "cuda"


def choose_kernels(device: torch.device | str, mode: str | None = None) -> KernelChoice:
    """The path for tensors on `device` under `mode` (None: CODA_KERNELS). Raises ValueError, one line, when
    the mode is unknown or is `triton` where the kernels cannot run."""
    return _choose(str(torch.device(device)), kernel_mode(mode), interpreter_active())


@functools.cache
def _choose(device_name: str, mode: str, interpreting: bool) -> KernelChoice:
    """choose_kernels, once per device, mode and interpreter state (tests turn the interpreter on and off)."""
    device = torch.device(device_name)
    if mode == "torch":
        return KernelChoice(False, mode, f"{KERNELS_ENV}=torch")
    if mode == "auto" and not runs_compiled(device):
        return KernelChoice(False, mode, f"Triton kernels are compiled for CUDA only, not {device.type}")
    failure = unavailable_reason(device) or probe_failure(device)
    if failure is None:
        return KernelChoice(True, mode, f"a probe launch on {device} agreed with torch")
    if mode == "triton":
        raise ValueError(f"Triton kernels asked for on {device}, where they cannot run: {failure} "
                         f"({KERNELS_ENV}=auto or torch takes the torch path)")
    log.warning("Triton kernels unavailable on %s, using the torch path: %s", device, failure)
    return KernelChoice(False, mode, failure)


def probe_failure(device: torch.device) -> str | None:
    """None when a tiny launch of each kernel (greedy and sampled confidence, reveal) runs on `device` and
    agrees with its torch reference; else one line saying what went wrong."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(PROBE_ROWS, PROBE_VOCAB, generator=generator) * 4).to(device)
    try:
        with on_device(device):
            greedy = confidence_stats(logits)
            sampled = confidence_stats(logits, temperature=0.8, seed=1)
            canvas = torch.full((2, 8), -1, dtype=torch.int64, device=device)
            proposal = torch.arange(16, device=device).reshape(2, 8)
            confidence = torch.linspace(0, 1, 16, device=device).reshape(2, 8)
            quota = torch.tensor([3, 1], device=device)
            expected = canvas.clone()
            reveal_by_confidence(canvas, proposal, confidence, quota, 0.9, -1)
            reference_reveal_by_confidence(expected, proposal, confidence, quota, 0.9, -1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    except Exception as exc:  # a missing compiler, ROCm, an old driver: all mean "use torch", with the reason
        return f"probe launch failed: {one_line(exc, typed=True)}"
    if not torch.equal(greedy.token.cpu(), reference_confidence_stats(logits).token.cpu()):
        return "probe launch disagreed with torch (greedy tokens)"
    if not torch.equal(canvas.cpu(), expected.cpu()):
        return "probe launch disagreed with torch (reveal)"
    sampled_token = sampled.token.cpu()
    if not bool(((sampled_token >= 0) & (sampled_token < PROBE_VOCAB)).all()):
        return "probe launch disagreed with torch (sampled tokens out of range)"
    probability = torch.softmax(logits.cpu().double() / 0.8, dim=-1).gather(1, sampled_token[:, None]).squeeze(1)
    if not torch.allclose(sampled.max_prob.cpu().double(), probability, rtol=1e-4, atol=1e-6):
        return "probe launch disagreed with torch (sampled probabilities)"
    return None
