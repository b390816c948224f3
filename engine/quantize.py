"""int8 weights for CPU serving: each linear layer's weight quantized at load, activations quantized per call.

Weights: per output channel (a row of the [out, in] matrix), symmetric, scale = max |w| / 127. Activations:
per row (token), symmetric, at every call. The product runs on int8 with int32 sums (torch._int_mm), then each
entry is scaled back by its row's and its channel's scales. This is the
recipe of torchao's int8 dynamic-activation, int8-weight config, written out because it is these few lines.

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

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> "Int8Linear":
        return cls(*quantize_rows(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
        quantized = torch.round(rows / row_scale).to(torch.int8)
        product = torch._int_mm(quantized, self.weight_int8.t())  # (M, out) int32
        out = product.float().mul_(row_scale).mul_(self.scale)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def reference_int8_linear(x: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Int8Linear's result in float64 from the same quantized operands: what the int8 kernel must equal."""
    rows = x.reshape(-1, x.shape[-1]).double()
    row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
    quantized = torch.round((rows.float() / row_scale.float()).double())
    out = (quantized @ weight_int8.double().t()) * row_scale * scale.double()
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
