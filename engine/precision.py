"""The format a model's weights are served in (fp32, bf16, fp16, int8), and `auto`'s choice for a CPU.

A CPU multiplies in the formats it has instructions for: bf16 natively with AMX or AVX512-BF16 (emulated, and
slower than fp32, elsewhere), int8 with VNNI or AMX-INT8. Flags say what exists, not what is fastest: on this
project's 2-core Xeon with both AVX512-BF16 and VNNI, a 57 x 2048 by 2048 x 6144 product took 9.2 ms in fp32,
9.9 in bf16 and 1.3-1.9 in int8. So `auto` times the candidates the flags allow on the model's own shapes, once
at load (a few tens of ms), and takes the fastest; CUDA gets bf16, as CoDA's own serving does.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ModelConfig
from .quantize import Int8Linear, int8_unavailable_reason

log = logging.getLogger("coda_engine")

FLOAT_FORMATS = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
FORMAT_NAMES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
# The shapes `auto` times: a fast-path window of decoder rows through a layer's largest product, and the few
# masked rows a pass projects onto a slice of the vocabulary head (the cost per column is what matters).
WINDOW_ROWS, HEAD_ROWS, HEAD_COLUMNS = 64, 16, 16384
# The fastest of at least this many runs, and of as many as fit this long: a busy machine's runs vary several
# fold (other processes take the cores), its fastest ones far less.
TIMING_REPEATS, TIMING_BUDGET_S = 10, 0.05


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
        return fastest_cpu_precision(config)
    if value == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 weights run on the CPU only, not {device.type}: use --dtype bf16 there")
        reason = int8_unavailable_reason()
        if reason is not None:
            raise ValueError(f"--dtype int8 cannot run here: {reason}; use --dtype fp32")
        return Precision("int8", torch.float32, "asked for")
    dtype = FLOAT_FORMATS.get(value) if isinstance(value, str) else value
    if dtype not in FLOAT_FORMATS.values():
        raise ValueError(f"unknown dtype {value!r}; expected one of {', '.join(FORMAT_NAMES)}")
    if dtype == torch.bfloat16 and device.type == "cpu":
        warn_if_bf16_is_emulated()
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
    """What `auto` may pick from on a CPU with these flags: fp32 always, bf16 where it is native, int8 where
    there are int8 dot-product instructions and torch has a CPU int8 product."""
    formats = ["float32"]
    if flags & set(NATIVE_BF16_FLAGS):
        formats.append("bfloat16")
    if flags & set(INT8_FLAGS) and int8_unavailable_reason() is None:
        formats.append("int8")
    return formats


@functools.cache
def fastest_cpu_precision(config: ModelConfig | None) -> Precision:
    """Time each candidate format on `config`'s shapes (the coda-v0 shape when None) and keep the fastest."""
    hidden, intermediate, layers, vocab = ((2048, 6144, 28, 151936) if config is None else
                                           (config.hidden_size, config.intermediate_size,
                                            config.num_hidden_layers, config.vocab_size))
    flags = cpu_flags()
    timings = {name: _pass_ms(name, hidden, intermediate, layers, vocab) for name in candidate_formats(flags)}
    best = min(timings, key=timings.get)
    has = [flag for flag in NATIVE_BF16_FLAGS + INT8_FLAGS if flag in flags]
    measured = ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items())
    reason = (f"auto on a CPU with {', '.join(has) or 'neither native bf16 nor int8'}: {best} was fastest for "
              f"this model's shapes (estimated pass: {measured})")
    log.info("weights: %s", reason)
    return Precision(best, torch.float32 if best == "int8" else FLOAT_FORMATS[best], reason)


def _pass_ms(name: str, hidden: int, intermediate: int, layers: int, vocab: int) -> float:
    """A denoising pass's products in format `name`, estimated from two timed ones: a window through a
    layer's MLP-sized product (four of those a layer) and the masked rows through a slice of the head."""
    generator = torch.Generator().manual_seed(0)
    layer = torch.randn(intermediate, hidden, generator=generator) * 0.02
    head = torch.randn(min(vocab, HEAD_COLUMNS), hidden, generator=generator) * 0.02
    window = torch.randn(WINDOW_ROWS, hidden, generator=generator)
    rows = torch.randn(HEAD_ROWS, hidden, generator=generator)
    layer_ms = _best_ms(_product(name, layer), window)
    head_ms = _best_ms(_product(name, head), rows)
    return layers * 4 * layer_ms + head_ms * vocab / head.shape[0]


def _product(name: str, weight: torch.Tensor):
    if name == "int8":
        return Int8Linear.from_float(weight)
    typed = weight.to(FLOAT_FORMATS[name])
    return lambda x: x.to(typed.dtype) @ typed.t()


def _best_ms(product, x: torch.Tensor) -> float:
    with torch.inference_mode():
        product(x)
        times: list[float] = []
        deadline = time.perf_counter() + TIMING_BUDGET_S
        while len(times) < TIMING_REPEATS or time.perf_counter() < deadline:
            started = time.perf_counter()
            product(x)
            times.append(time.perf_counter() - started)
    return min(times) * 1000


@functools.cache
def warn_if_bf16_is_emulated() -> None:
    """An explicit bf16 on a CPU without native bf16: one warning, with what it measured."""
    if cpu_flags() & set(NATIVE_BF16_FLAGS):
        return
    fp32_ms = _pass_ms("float32", 2048, 6144, 1, 16384)
    bf16_ms = _pass_ms("bfloat16", 2048, 6144, 1, 16384)
    log.warning("bf16 on a CPU without AMX or AVX512-BF16 is emulated: a layer's products took %.1f ms in bf16 "
                "against %.1f ms in fp32 here; --dtype auto picks the fastest format", bf16_ms, fp32_ms)
