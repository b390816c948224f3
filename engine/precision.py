"""The format a model's weights are served in (fp32, bf16, fp16, int8), and `auto`'s choice for a CPU.

Flags say what instructions exist, not what is fastest (docs/engine.md, Weight formats), so `auto` times every
format that runs on the model's own shapes, once at load, and takes the fastest; the flags only order the
candidates. CUDA gets bf16, as CoDA's own serving does. An explicit bf16 or int8 that measures slower than fp32
here gets one warning with the measured times.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ModelConfig
from .quantize import TIMED_CHANNELS, WINDOW_ROWS, Int8Linear, fastest_kernel, int8_unavailable_reason
from .timing import LOSING_FACTOR, fastest_ms

log = logging.getLogger("coda_engine")

FLOAT_FORMATS = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
FORMAT_NAMES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
SHORT_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "int8"}
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
SHOWN_FLAGS = ("avx2", "fma", "avx512f") + INT8_FLAGS + NATIVE_BF16_FLAGS  # what the reason says the CPU has
# The masked rows a pass projects onto the vocabulary head, timed on a slice of it (TIMED_CHANNELS columns).
HEAD_ROWS = 16


@dataclass(frozen=True)
class Precision:
    """How weights are held: `name` (float32, bfloat16, float16 or int8), the floating dtype activations and
    the remaining weights use (`compute`), and why this one (for `auto`, what was measured)."""

    name: str
    compute: torch.dtype
    reason: str

    @property
    def int8(self) -> bool:
        return self.name == "int8"


@dataclass(frozen=True)
class PassShape:
    """What a denoising pass's products are made of: the layers' widths, their number and the vocabulary."""

    hidden: int
    intermediate: int
    layers: int
    vocab: int

    @classmethod
    def of(cls, config: ModelConfig | None) -> "PassShape":
        """`config`'s shapes; CoDA-v0's where None."""
        if config is None:
            return cls(2048, 6144, 28, 151936)
        return cls(config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size)


def resolve_precision(value: str | torch.dtype | None, device: torch.device,
                      config: ModelConfig | None = None) -> Precision:
    """None: fp32 on the CPU, bf16 on CUDA (the engine's fixed default); "auto": the CPU's fastest format for
    `config`'s shapes (bf16 on CUDA); a name or torch dtype: that format. Raises ValueError, one line, for a
    name that does not exist and for int8 where it cannot run."""
    if value is None or value == "auto":
        if device.type == "cuda":
            return Precision("bfloat16", torch.bfloat16, "CUDA: bf16")
        if value is None:
            return Precision("float32", torch.float32, "the CPU default without --dtype auto")
        return fastest_cpu_precision(PassShape.of(config))
    if value == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 weights run on the CPU only, not {device.type}: use --dtype bf16 there")
        reason = int8_unavailable_reason()
        if reason is not None:
            raise ValueError(f"--dtype int8 cannot run here: {reason}; use --dtype fp32")
        warn_if_slower_than_fp32("int8", PassShape.of(config))
        return Precision("int8", torch.float32, "asked for")
    dtype = FLOAT_FORMATS.get(value) if isinstance(value, str) else value
    if dtype not in FLOAT_FORMATS.values():
        raise ValueError(f"unknown dtype {value!r}; expected one of {', '.join(FORMAT_NAMES)}")
    if dtype == torch.bfloat16 and device.type == "cpu":
        warn_if_slower_than_fp32("bfloat16", PassShape.of(config))
    return Precision(str(dtype).removeprefix("torch."), dtype, "asked for")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def candidate_formats(flags: frozenset[str]) -> list[str]:
    """What `auto` times on a CPU with these flags, in the order they suggest: the formats it has dot-product
    instructions for, then fp32, then the others that run (bf16 always does; int8 where a kernel does). fp16 is
    left out: its range (65,504) can overflow the activations of a model trained in bf16."""
    native_int8, native_bf16 = bool(flags & set(INT8_FLAGS)), bool(flags & set(NATIVE_BF16_FLAGS))
    int8 = ["int8"] if int8_unavailable_reason() is None else []
    return ((int8 if native_int8 else []) + (["bfloat16"] if native_bf16 else []) + ["float32"]
            + ([] if native_bf16 else ["bfloat16"]) + ([] if native_int8 else int8))


@functools.cache
def fastest_cpu_precision(shape: PassShape) -> Precision:
    """Time each candidate format on `shape`'s products and keep the fastest (the first of equal times)."""
    flags = cpu_flags()
    timings: dict[str, float] = {}
    for name in candidate_formats(flags):
        timings[name] = estimated_pass_ms(name, shape, min(timings.values(), default=math.inf))
    best = min(timings, key=timings.__getitem__)
    reason = auto_reason(best, timings, shape, [flag for flag in SHOWN_FLAGS if flag in flags])
    log.info("weights: %s", reason)
    return Precision(best, torch.float32 if best == "int8" else FLOAT_FORMATS[best], reason)


def auto_reason(best: str, timings: dict[str, float], shape: PassShape, flags: list[str]) -> str:
    """What `auto` measured and chose, in one line (the log's and coda/status's dtypeReason)."""
    cpu = f"a CPU with {', '.join(flags)}" if flags else "a CPU without AVX2, AVX-512, VNNI, AMX or AVX512-BF16"
    measured = ", ".join(f"{label(name, shape)} {ms:.0f} ms" for name, ms in timings.items())
    return f"auto on {cpu}: {best} was fastest for this model's shapes (estimated pass: {measured})"


def label(name: str, shape: PassShape) -> str:
    """The format's name, for int8 with the kernels its layers and head use."""
    if name != "int8":
        return name
    kernels = dict.fromkeys(fastest_kernel(shape.hidden, out).name for out in (shape.intermediate, shape.vocab))
    return f"int8 ({', '.join(kernels)})"


# Each format's estimated pass, once per process: `auto` and an explicit format's warning then agree.
MEASURED_PASS_MS: dict[tuple[str, PassShape], float] = {}


def estimated_pass_ms(name: str, shape: PassShape, to_beat_ms: float = math.inf) -> float:
    """A denoising pass's products in format `name`, estimated from two timed ones: a window through a
    layer's MLP-sized product (four of those a layer) and the masked rows through a slice of the head. A format
    whose first window shows it cannot beat `to_beat_ms` is timed twice a product (timing.fastest_ms)."""
    if (name, shape) in MEASURED_PASS_MS:
        return MEASURED_PASS_MS[name, shape]
    generator = torch.Generator().manual_seed(0)
    layer = torch.randn(shape.intermediate, shape.hidden, generator=generator) * 0.02
    window = torch.randn(WINDOW_ROWS, shape.hidden, generator=generator)
    layer_budget_ms = to_beat_ms / (shape.layers * 4)
    layer_ms = fastest_ms(product(name, layer), window, layer_budget_ms)
    lost = layer_ms > LOSING_FACTOR * layer_budget_ms
    head = torch.randn(min(shape.vocab, TIMED_CHANNELS), shape.hidden, generator=generator) * 0.02
    rows = torch.randn(HEAD_ROWS, shape.hidden, generator=generator)
    head_ms = fastest_ms(product(name, head), rows, 0.0 if lost else math.inf)
    MEASURED_PASS_MS[name, shape] = shape.layers * 4 * layer_ms + head_ms * shape.vocab / head.shape[0]
    return MEASURED_PASS_MS[name, shape]


def product(name: str, weight: torch.Tensor):
    """x -> x @ weight.T with `weight` held in format `name`."""
    if name == "int8":
        return Int8Linear.from_float(weight)
    typed = weight.to(FLOAT_FORMATS[name])
    return lambda x: x.to(typed.dtype) @ typed.t()


@functools.cache
def warn_if_slower_than_fp32(name: str, shape: PassShape) -> None:
    """An explicit bf16 or int8 (`name`) that runs slower than fp32 on this CPU: one warning, with the measured
    times (it still runs: it was asked for)."""
    asked_ms, fp32_ms = estimated_pass_ms(name, shape), estimated_pass_ms("float32", shape)
    if asked_ms > fp32_ms:
        log.warning("--dtype %s is %.1fx slower than fp32 on this CPU: an estimated pass took %.0f ms in %s against "
                    "%.0f ms in fp32; --dtype auto picks the fastest format", SHORT_NAMES[name],
                    asked_ms / fp32_ms, asked_ms, label(name, shape), fp32_ms)
