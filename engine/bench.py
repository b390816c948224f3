"""python -m coda_engine.bench: infill latency, passes, tokens/s and peak memory, beside the plain reference loop.

The workload is the editor's: a 64-token span between a prefix and a suffix that hold 512 tokens of real code
together. Every row is measured in this process, on the same canvas, so the ratios are meaningful.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import CheckpointError, Engine
from .checkpoint import find_weight_files
from .config import load_config
from .engine import load_model, resolve_dtype
from .generate import LogitsAtMasks, SamplingParams, denoise, masked_logits, reference_logits
from .presets import PRESETS, write_random_checkpoint
from .tokenizer import load_tokenizer

log = logging.getLogger("coda_engine.bench")
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER_DIR = REPO_ROOT.parent / "shared" / "reference" / "coda-v0"


@dataclass(frozen=True)
class Row:
    name: str
    latency_ms: float
    num_forward_passes: int
    tokens_per_s: float
    peak_mib: float


def resident_mib() -> float:
    """The process's current resident set (VmRSS) in MiB."""
    return _status_kib("VmRSS") / 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_probe(device: torch.device) -> tuple[Callable[[], None], Callable[[], float]]:
    """(reset, read) for peak memory in MiB: CUDA's allocator peak, or the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.reset_peak_memory_stats, lambda: torch.cuda.max_memory_allocated() / 2**20

    def reset() -> None:
        # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")

    return reset, lambda: _status_kib("VmHWM") / 1024


def code_context(engine: Engine, context_tokens: int, span: int) -> torch.Tensor:
    """Real Python source around a span of masks: 3/4 of the context before it, 1/4 after."""
    import json.decoder
    import logging.handlers

    source = inspect.getsource(logging.handlers) + inspect.getsource(json.decoder)
    ids = engine.tokenizer.encode(source)[:context_tokens]
    cut = context_tokens * 3 // 4
    canvas = ids[:cut] + [engine.mask_token_id] * span + ids[cut:]
    return torch.tensor([canvas], device=engine.device)


def measure(engine: Engine, canvas: torch.Tensor, params: SamplingParams, logits_at_masks: LogitsAtMasks,
            repeats: int) -> tuple[float, int, float]:
    """Median latency (ms) over `repeats` runs after one warm-up, forward passes, and peak memory (MiB)."""
    reset, read = peak_memory_probe(engine.device)
    denoise(engine.model, canvas, engine.mask_token_id, params, logits_at_masks=logits_at_masks)
    reset()
    times, passes = [], 0
    for _ in range(repeats):
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        trace = denoise(engine.model, canvas, engine.mask_token_id, params, logits_at_masks=logits_at_masks)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1000)
        passes = trace.num_forward_passes
    return statistics.median(times), passes, read()


def run_rows(engine: Engine, context_tokens: int, span: int, steps: int, repeats: int) -> list[Row]:
    canvas = code_context(engine, context_tokens, span)
    variants = [
        ("reference loop (full logits), entropy", SamplingParams(steps, "entropy"), reference_logits),
        ("masked-position logits, entropy", SamplingParams(steps, "entropy"), masked_logits),
        ("masked-position logits, threshold 0.9", SamplingParams(steps, "threshold"), masked_logits),
    ]
    rows = []
    for name, params, logits_fn in variants:
        latency, passes, peak = measure(engine, canvas, params, logits_fn, repeats)
        rows.append(Row(name, latency, passes, span / (latency / 1000), peak))
    return rows


def load_row(path: Path, device: str, dtype: str | None) -> tuple[Engine, str]:
    """Load the checkpoint, tracking the peak memory of the weights alone; returns the engine and a summary."""
    folder, target = Path(path), torch.device(device)
    config, tokenizer = load_config(folder), load_tokenizer(folder)
    reset, read = peak_memory_probe(target)
    before = resident_mib() if target.type == "cpu" else 0.0
    reset()
    started = time.perf_counter()
    model = load_model(folder, config, target, resolve_dtype(dtype, target))
    elapsed = time.perf_counter() - started
    for param in model.parameters():
        param.sum()  # touch every weight so lazily mapped pages count, as they will after the first request
    peak = read() - before
    file_mib = sum(p.stat().st_size for p in find_weight_files(folder)) / 2**20
    summary = (f"load {elapsed * 1000:.0f} ms; weights file {file_mib:.1f} MiB; peak memory growth while loading "
               f"and touching every weight {peak:.1f} MiB = {peak / file_mib:.2f} x the file")
    return Engine(model, tokenizer, folder), summary


def format_table(rows: list[Row]) -> str:
    base = rows[0]
    lines = ["| variant | latency ms | forward passes | tokens/s | peak MiB | speed-up |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.name} | {row.latency_ms:.1f} | {row.num_forward_passes} | {row.tokens_per_s:.1f} "
                     f"| {row.peak_mib:.0f} | {base.latency_ms / row.latency_ms:.2f}x |")
    return "\n".join(lines)


def checkpoint_for(args: argparse.Namespace, scratch: Path) -> Path:
    if args.model is not None:
        return args.model
    log.info("writing a random %s checkpoint", args.preset)
    return write_random_checkpoint(scratch / args.preset, preset=args.preset, seed=0, tokenizer_dir=args.tokenizer_dir,
                                   dtype=torch.bfloat16 if args.preset == "coda-v0" else torch.float32)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coda_engine.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="random checkpoint shape")
    parser.add_argument("--model", type=Path, help="benchmark this checkpoint folder instead of a preset")
    parser.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR,
                        help="tokenizer files for preset checkpoints (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--context", type=int, default=512, help="tokens of code around the span")
    parser.add_argument("--span", type=int, default=64, help="tokens to infill")
    parser.add_argument("--steps", type=int, default=64, help="denoising steps (the reference uses one per token)")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    try:
        with tempfile.TemporaryDirectory(prefix="coda-bench-") as scratch:
            path = checkpoint_for(args, Path(scratch))
            engine, load_summary = load_row(path, args.device, args.dtype)
            rows = run_rows(engine, args.context, args.span, args.steps, args.repeats)
    except (CheckpointError, ValueError) as exc:
        print(f"coda_engine.bench: {exc}", file=sys.stderr)
        return 1
    name = args.model or f"preset {args.preset}"
    print(f"{name}: {engine.config.num_parameters / 1e6:.1f} M parameters on {engine.device} ({engine.dtype}); "
          f"{args.span}-token span in {args.context} tokens of context, {args.steps} steps")
    print(load_summary)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
