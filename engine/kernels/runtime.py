"""Where the Triton kernels can run: triton imported under a guard, each kernel compiled on its first launch.

The CPU runtime install has no triton and the server must start without it. Triton decides once, at its import,
whether kernels run compiled (CUDA) or in its interpreter (TRITON_INTERPRET=1: numpy on the host, how the tests
run every kernel on CPU); each kernel here is compiled the way triton's own library functions (tl.rand, ...)
are, or the two could not call each other.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU runtime install; the torch references still work
    triton = None
    tl = None


def interpreted() -> bool:
    """Whether this process's triton runs kernels in its interpreter (TRITON_INTERPRET=1 when it was imported)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(triton.language.rand, InterpretedFunction)


def interpreter_active() -> bool:
    """True when TRITON_INTERPRET=1 is set now and was when triton was imported (set later, triton's own
    functions stay compiled, which the interpreter cannot call)."""
    return triton is not None and os.environ.get("TRITON_INTERPRET") == "1" and interpreted()


def is_hip() -> bool:
    """Whether this torch is a ROCm build, where `device.type == "cuda"` too but `maxnreg` and NVIDIA's PTX
    (the fast-math inline assembly) do not exist."""
    return torch.version.hip is not None


def on_device(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Make `device` the current CUDA device (a no-op elsewhere). Triton launches on the current device and its
    current stream, not on the tensors' device, and a new thread's current device is 0: without this, a kernel
    on cuda:1 tensors launched from the engine's worker thread would run on GPU 0 with GPU 1's pointers."""
    device = torch.device(device)
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def triton_available(device: torch.device) -> bool:
    """Whether the Triton kernels may be used for tensors on `device`: CUDA, or the CPU under the interpreter
    (tests; correct but slow, so an automatic choice also checks `device.type == "cuda"`)."""
    device = torch.device(device)
    if triton is None:
        return False
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and interpreter_active()


def unavailable_reason(device: torch.device) -> str | None:
    """None where `triton_available(device)`, else one line saying why not."""
    if triton_available(device):
        return None
    if triton is None:
        return "triton is not installed (pip install triton; it ships with CUDA builds of torch)"
    if device.type == "cpu":
        return ("Triton kernels run on CPU only in triton's interpreter: set TRITON_INTERPRET=1 before triton "
                "is imported")
    return f"Triton kernels run on CUDA devices, not {device.type}"


@functools.cache
def compile_kernel(kernel: Callable[..., None], do_not_specialize: Sequence[str] = ()) -> Any:
    """`kernel` (a plain function written in triton.language) as a launchable Triton kernel. Triton compiles a
    variant for each class of integer argument (1, divisible by 16, 32- or 64-bit): `do_not_specialize` names
    the arguments that vary from call to call, whose first odd value would compile one mid-completion."""
    assert triton is not None, "launchers check triton_available() first"
    if interpreted():
        from triton.runtime.interpreter import InterpretedFunction

        return QuietInterpretedKernel(InterpretedFunction(kernel))
    return triton.jit(kernel, do_not_specialize=list(do_not_specialize))


class QuietInterpretedKernel:
    """An interpreted kernel launched with numpy's floating-point warnings off: the interpreter evaluates masked-out
    lanes too, whose -inf - -inf and 0 * inf the kernels discard with tl.where."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        import numpy as np  # the interpreter's own arrays; the runtime install has neither triton nor numpy

        return np.errstate(all="ignore")(self.kernel[grid])


def cdiv(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (tl.arange takes power-of-two lengths only)."""
    return 1 << max(n - 1, 0).bit_length()
