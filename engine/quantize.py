"""int8 weights for CPU serving: each linear layer's weight quantized at load, activations quantized per call.

Weights: per output channel, symmetric, scale = max |w| / 127. Activations: per row, symmetric, at every call,
to whole-number codes within +-`levels` of the kernel; each int32 sum is scaled back by its row's and channel's
scales (torchao's int8 dynamic-activation, int8-weight recipe, written out because it is these few lines).
A product of at most FINE_ROWS rows (the passes that decide tokens) quantizes each row twice, the row and then
what its codes missed at a step 2 * levels finer, in one product of twice the rows: one code per entry lost too
many greedy answers; a cold first pass keeps one, where int8's speed is most of the request (docs/engine.md,
int8 kernels). Not torch's dynamic linear: its one scale per matrix lets an outlier channel, common in LLM
activations, coarsen every entry. Attention, norms, embeddings and the confidence computation stay in float.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from typing import Iterator, Protocol

import torch
from torch import nn

from .errors import one_line
from .timing import LOSING_FACTOR, fastest_ms

log = logging.getLogger("coda_engine")

INT8_MAX = 127
FINE_ROWS = 128  # products this thin get two-level activations (see above)
# What a kernel is timed on at load: about a fast-path window (48 rows in the CPU's products, 80 with a 16-position
# margin) through the layer's weight, or through this many of its output channels where it has more (the
# vocabulary head: the cost per channel is what matters).
WINDOW_ROWS, TIMED_CHANNELS = 64, 16384


class Int8Kernel(Protocol):
    """An int8 matrix product: `levels` bounds the activation codes it multiplies exactly."""

    name: str
    levels: int

    def pack(self, weight_int8: torch.Tensor) -> object: ...  # [out, in] int8 weights -> what `multiply` takes
    def unpack(self, packed: object) -> torch.Tensor: ...  # and back

    def multiply(self, codes: torch.Tensor, packed: object) -> torch.Tensor:
        """(M, in) fp32 whole numbers within +-levels -> (M, out) codes @ weights.T, int32 or exact sums in fp32."""


class IntMMKernel:
    """oneDNN's s8 x s8 GEMM (fast with VNNI or AMX, a slow fallback without) on the [out, in] weights as they
    are: their transpose is a column-major operand, which _int_mm takes without a copy."""

    name, levels = "_int_mm", INT8_MAX

    def pack(self, weight_int8: torch.Tensor) -> torch.Tensor:
        return weight_int8

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        return packed

    def multiply(self, codes: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(codes.to(torch.int8), packed.t())


class FbgemmKernel:
    """fbgemm's packed per-channel int8 linear (torch.ops.quantized; the int8 tensor is not kept beside it). Its
    AVX2 kernels, without VNNI, add pairs of u8 x s8 products in saturating int16, so codes are 7-bit: a pair
    stays within 2 * 127 * 127 < 2^15 on every CPU. It quantizes fp32 activations itself: with scale 1 and
    zero point 64, whole-number codes within +-63 become exactly code + 64."""

    name, levels = "fbgemm", 63
    zero_point = 64

    def pack(self, weight_int8: torch.Tensor) -> object:
        channels = weight_int8.shape[0]
        with warnings.catch_warnings(), quantized_engine("fbgemm"):
            warnings.simplefilter("ignore", UserWarning)  # torch 2.13 marks quantized tensors as deprecated
            weight = torch._make_per_channel_quantized_tensor(
                weight_int8, torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.long), 0)
            return torch.ops.quantized.linear_prepack(weight, None)

    def unpack(self, packed: object) -> torch.Tensor:
        return torch.ops.quantized.linear_unpack(packed)[0].int_repr()

    def multiply(self, codes: torch.Tensor, packed: object) -> torch.Tensor:
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(codes, 1.0, self.zero_point, packed)


# fbgemm first: it has AVX2 kernels on every x86 CPU, so a scalar-fallback _int_mm loses after one timed run.
KERNELS: tuple[Int8Kernel, ...] = (FbgemmKernel(), IntMMKernel())


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[None]:
    """torch's quantized engine set to `name` (it decides how linear_prepack packs), then restored."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float weights -> (int8 [out, in], fp32 [out] scales): weight ~ int8 * scale[:, None]."""
    weight = weight.float()
    scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
    return torch.round(weight / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


class Int8Linear(nn.Module):
    """y = x W^T with W held as int8 rows and fp32 scales (no bias: CoDA's linear layers have none), multiplied
    by `kernel` (default: the fastest here for this shape, see fastest_kernel)."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, kernel: Int8Kernel | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.kernel = kernel or fastest_kernel(self.in_features, self.out_features)
        self.register_buffer("scale", scale.float())
        packed = self.kernel.pack(weight_int8)
        if isinstance(packed, torch.Tensor):
            self.register_buffer("packed", packed)
        else:
            self.packed = packed

    @classmethod
    def from_float(cls, weight: torch.Tensor, kernel: Int8Kernel | None = None) -> "Int8Linear":
        return cls(*quantize_rows(weight), kernel)

    @property
    def weight_int8(self) -> torch.Tensor:
        return self.kernel.unpack(self.packed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        levels = self.kernel.levels
        codes, step = quantize_activations(rows, levels)
        if rows.shape[0] <= FINE_ROWS:
            residual, finer = quantize_residual(rows, codes, step, levels)
            first, second = self.kernel.multiply(torch.cat([codes, residual]), self.packed).split(rows.shape[0])
            out = torch.mul(first, step).addcmul_(second, finer)  # int32 sums become fp32 in these passes
        else:
            out = torch.mul(self.kernel.multiply(codes, self.packed), step)
        return out.mul_(self.scale).to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def quantize_activations(rows: torch.Tensor, levels: int = INT8_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, in) fp32 -> (fp32 whole-number codes within +-levels (M, in), fp32 (M, 1) steps), each row symmetric
    to its own largest entry."""
    step = rows.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / levels
    return torch.round(rows / step), step


def quantize_residual(rows: torch.Tensor, codes: torch.Tensor, step: torch.Tensor,
                      levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What `codes` * `step` missed of `rows` (at most half a step) as codes within +-levels at a step 2 * levels
    times finer, and that finer step: rows ~ codes * step + residual * finer."""
    finer = step / (2 * levels)
    residual = torch.round((rows - codes * step) / finer).clamp_(-levels, levels)
    return residual, finer


def reference_int8_linear(x: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor,
                          levels: int = INT8_MAX) -> torch.Tensor:
    """Int8Linear's result in float64 from the same quantized operands: what an int8 kernel must equal."""
    rows = x.reshape(-1, x.shape[-1]).float()
    codes, step = quantize_activations(rows, levels)
    activations = codes.double() * step.double()
    if rows.shape[0] <= FINE_ROWS:
        residual, finer = quantize_residual(rows, codes, step, levels)
        activations += residual.double() * finer.double()
    out = (activations @ weight_int8.double().t()) * scale.double()
    return out.reshape(*x.shape[:-1], weight_int8.shape[0])


def kernel_unavailable_reason(kernel: Int8Kernel) -> str | None:
    """None where `kernel` multiplies exactly on this CPU (a probe product against its exact result, with the
    largest codes against the largest weights, where a saturating sum would show); else one line why not."""
    weight = (torch.arange(24 * 16) % (2 * INT8_MAX + 1) - INT8_MAX).to(torch.int8).reshape(24, 16)
    weight[0], weight[1] = INT8_MAX, -INT8_MAX
    codes = (torch.arange(6 * 16) % (2 * kernel.levels + 1) - kernel.levels).float().reshape(6, 16)
    codes[0], codes[1] = kernel.levels, -kernel.levels
    try:
        product = kernel.multiply(codes, kernel.pack(weight))
    except (RuntimeError, NotImplementedError, AttributeError) as exc:  # AttributeError: a torch without the op
        return f"{kernel.name} does not run here ({one_line(exc)})"
    if not torch.equal(product.double(), codes.double() @ weight.double().t()):
        return f"{kernel.name} gave a wrong product on this CPU"
    return None


@functools.cache
def runnable_kernels() -> tuple[Int8Kernel, ...]:
    return tuple(kernel for kernel in KERNELS if kernel_unavailable_reason(kernel) is None)


@functools.cache
def int8_unavailable_reason() -> str | None:
    """None where some int8 kernel runs on this CPU; else one line saying why none does."""
    if runnable_kernels():
        return None
    return "; ".join(str(kernel_unavailable_reason(kernel)) for kernel in KERNELS)


def fastest_kernel(in_features: int, out_features: int) -> Int8Kernel:
    """The runnable kernel that multiplies a window by an [out, in] weight fastest here (timed once per shape,
    with at most TIMED_CHANNELS outputs)."""
    return timed_fastest_kernel(in_features, min(out_features, TIMED_CHANNELS))


# Kernels over timing.LOSING_FACTOR times slower than another on some shape (a scalar fallback): not timed on
# the layer shapes after it, whose timing would only make loading slow.
LOST_KERNELS: set[Int8Kernel] = set()


@functools.cache
def timed_fastest_kernel(in_features: int, out_features: int) -> Int8Kernel:
    kernels = [kernel for kernel in runnable_kernels() if kernel not in LOST_KERNELS]
    if not kernels:
        raise RuntimeError(f"no int8 kernel runs here: {int8_unavailable_reason()}")
    if len(kernels) == 1:
        return kernels[0]
    timings: dict[Int8Kernel, float] = {}
    for kernel in kernels:
        timings[kernel] = window_ms(kernel, in_features, out_features, min(timings.values(), default=math.inf))
    fastest = min(timings, key=timings.__getitem__)
    LOST_KERNELS.update(kernel for kernel, ms in timings.items() if ms > LOSING_FACTOR * timings[fastest])
    log.info("int8 kernel for %d -> %d products: %s (a %d-row window took %s)", in_features, out_features,
             fastest.name, WINDOW_ROWS, ", ".join(f"{kernel.name} {ms:.2f} ms" for kernel, ms in timings.items()))
    return fastest


def window_ms(kernel: Int8Kernel, in_features: int, out_features: int, to_beat_ms: float = math.inf) -> float:
    """A window of WINDOW_ROWS rows through an Int8Linear of this shape on `kernel`, in ms (timing.fastest_ms)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(out_features, in_features, generator=generator) * 0.02
    window = torch.randn(WINDOW_ROWS, in_features, generator=generator)
    return fastest_ms(Int8Linear.from_float(weight, kernel), window, to_beat_ms)


def quantize_linears(model: nn.Module) -> None:
    """Replace each nn.Linear of `model` by an Int8Linear of its weight, in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear):
            replace_module(model, name, Int8Linear.from_float(module.weight.detach()))


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `model`'s submodule `name` (dotted) was."""
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name), leaf, module)
