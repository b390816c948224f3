"""int8 weights for CPU serving: each linear layer's weight quantized at load, activations quantized per call.

Weights: per output channel (a row of the [out, in] matrix), symmetric, scale = max |w| / 127. Activations:
per row (token), symmetric, at every call. The product runs on int8 with int32 sums (torch._int_mm), then each
entry is scaled back by its row's and its channel's scales. This is the
recipe of torchao's int8 dynamic-activation, int8-weight config, written out because it is these few lines.

A product of at most FINE_ROWS rows (a fast-path window, the head's masked rows: the passes that decide tokens)
quantizes each activation row twice: the row, then what its int8 copy missed, at a step 2^shift times finer.
Both go through one product of twice the rows (a thin product's cost is mostly reading the weights once), and
the two int32 results are joined as first * 2^shift + second, in int32: `shift` is the largest (at most 8)
that cannot overflow for the layer's input width, 8 at 384 inputs, 6 at 2048, 4 at 6144. That is 12- to
16-bit activations.
Measured on the shipped model's harness (first 100 single-line problems, greedy answers against fp32): one
int8 copy everywhere 54 identical; int8 weights with fp32 activations 93; two copies in every product 93,
in the thin ones only 93, in the wide ones only 49. A cold canvas's first pass (its context's keys, read by
every later pass) keeps one copy: there the int8 product's speed is most of a cold request.

Why per-row activations rather than torch's fbgemm / oneDNN dynamic linear, which is faster (measured on this
project's 2-core VNNI machine, 57 rows by a 2048 x 6144 weight: 1.6 ms against 3.9, fp32 13 ms): that one
quantizes a whole activation matrix with one scale, so one outlier channel, common in LLM activations, coarsens
every other entry. With three channels at 50x the rest, its relative error was 14-28 % against 8-11 % here.
Attention, norms, embeddings and the confidence computation stay in floating point.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

INT8_MAX = 127
FINE_ROWS = 128  # products this thin get two-level activations (see above)


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float weights -> (int8 [out, in], fp32 [out] scales): weight ~ int8 * scale[:, None]."""
    weight = weight.float()
    scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
    return torch.round(weight / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


class Int8Linear(nn.Module):
    """y = x W^T with W held as int8 rows and fp32 scales (no bias: CoDA's linear layers have none).

    `weight_int8` is [out, in] row-major and is multiplied as its transpose, a column-major [in, out] operand,
    which _int_mm takes without a copy (and multiplies one row by faster: 0.37 against 1.1 ms, 2048 x 6144)."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        if weight_int8.dtype != torch.int8 or weight_int8.dim() != 2 or scale.shape != weight_int8.shape[:1]:
            raise ValueError(f"Int8Linear takes int8 [out, in] weights and [out] scales, got {weight_int8.dtype} "
                             f"{tuple(weight_int8.shape)} and {tuple(scale.shape)}")
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scale", scale.float())
        self.out_features, self.in_features = weight_int8.shape
        self.residual_shift = residual_shift(self.in_features)

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> "Int8Linear":
        return cls(*quantize_rows(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        quantized, row_scale = quantize_activations(rows)
        if rows.shape[0] <= FINE_ROWS:
            residual, row_scale = quantize_residual(rows, quantized, row_scale, self.residual_shift)
            first, second = torch._int_mm(torch.cat([quantized, residual]), self.weight_int8.t()).split(
                rows.shape[0])  # (M, out) int32 each
            product = torch.add(second, first, alpha=2 ** self.residual_shift)
        else:
            product = torch._int_mm(quantized, self.weight_int8.t())  # (M, out) int32
        out = product.float().mul_(row_scale).mul_(self.scale)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def quantize_activations(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, in) fp32 -> (int8 (M, in), fp32 (M, 1) scales), each row symmetric to its own largest entry."""
    row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
    return torch.round(rows / row_scale).to(torch.int8), row_scale


def residual_shift(in_features: int) -> int:
    """The largest shift <= 8 for which first * 2^shift + second, two int32 sums of `in_features` int8 x int8
    terms, cannot overflow int32."""
    largest_sum = INT8_MAX * INT8_MAX * in_features
    shift = 8
    while shift > 0 and largest_sum * (2 ** shift + 1) > torch.iinfo(torch.int32).max:
        shift -= 1
    return shift


def quantize_residual(rows: torch.Tensor, quantized: torch.Tensor, row_scale: torch.Tensor,
                      shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What `quantized` * `row_scale` missed of `rows` (at most half a step), as int8 at a step 2^shift times
    finer, and that finer step: rows ~ (quantized * 2^shift + residual) * finer step."""
    finer = row_scale / 2 ** shift
    residual = torch.round((rows - quantized.float() * row_scale) / finer).clamp(-INT8_MAX, INT8_MAX)
    return residual.to(torch.int8), finer


def reference_int8_linear(x: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Int8Linear's result in float64 from the same quantized operands: what the int8 kernel must equal."""
    rows = x.reshape(-1, x.shape[-1]).float()
    quantized, row_scale = quantize_activations(rows)
    activations = quantized.double() * row_scale.double()
    if rows.shape[0] <= FINE_ROWS:
        residual, finer = quantize_residual(rows, quantized, row_scale, residual_shift(rows.shape[1]))
        activations += residual.double() * finer.double()
    out = (activations @ weight_int8.double().t()) * scale.double()
    return out.reshape(*x.shape[:-1], weight_int8.shape[0])


@functools.cache
def int8_unavailable_reason() -> str | None:
    """None where this CPU runs int8 products (torch._int_mm on the CPU, checked by one small product against
    its exact result); else one line saying why not."""
    try:
        a = torch.arange(-64, 64, dtype=torch.int8).reshape(8, 16)
        b = torch.arange(16 * 8, dtype=torch.int8).reshape(8, 16).t()
        if not torch.equal(torch._int_mm(a, b), a.int() @ b.int()):
            return "torch._int_mm gave a wrong product on this CPU"
    except (RuntimeError, NotImplementedError) as exc:
        return f"this torch has no CPU int8 matrix product ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    return None


def quantize_linears(model: nn.Module) -> None:
    """Replace each nn.Linear of `model` by an Int8Linear of its weight, in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear):
            replace_module(model, name, Int8Linear.from_float(module.weight.detach()))


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `model`'s submodule `name` (dotted) was."""
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name), leaf, module)
