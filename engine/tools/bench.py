"""python -m coda_engine.tools.bench: infill latency, passes, tokens/s and peak memory, beside the reference loop and an
autoregressive model.

The workload is the editor's: a --span of masks between a prefix and a suffix that hold --context tokens of real
code together. Rows, all measured in this process on the same canvas and weights, so their ratios are meaningful:
- the reference loop: CoDA's loop as published (full vocabulary projection at every position, every step);
- exact=True: the same tokens, projecting only masked positions;
- the default fast path: Engine.infill's defaults (block-wise threshold decoding over the key/value cache);
- an autoregressive baseline: transformers' Qwen3ForCausalLM holding the same weights, causal attention with
  its KV cache, greedy, writing as many tokens after a prompt as long as the whole context.

`--suite cpu` (bench_cpu.py): the CoDA-v0 shape (or --preset) with random weights, a cold request and five
keystrokes with cache reuse, in each weight format of --formats, beside the AR baseline in the same format.
`--suite gpu` (about 5 minutes on one H100/H200, nothing to download): the CoDA-v0 shape with random bf16 weights
built on the card, the four rows, then every Triton kernel against torch eager with its achieved GB/s beside the
card's measured copy bandwidth. It needs the tokenizer files (--tokenizer-dir) and transformers.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from coda_engine import CheckpointError, Engine
from coda_engine.blockwise import denoise_blockwise
from coda_engine.checkpoint import find_weight_files
from coda_engine.config import ModelConfig, load_config
from coda_engine.engine import column_major_head, fast_sampling, load_model, resolve_device
from coda_engine.precision import FORMAT_NAMES, Precision, resolve_precision
from coda_engine.quantize import quantize_linears
from coda_engine.generate import LogitsAtMasks, PadTail, SamplingParams, denoise, masked_logits, reference_logits
from coda_engine.model import CodaModel
from coda_engine.params import REFRESH_RULES, InfillParams
from coda_engine.presets import INIT_STD, PRESETS, write_random_checkpoint
from coda_engine.tokenizer import load_tokenizer
from coda_engine.tools.autoregressive import qwen3_baseline
from coda_engine.tools.bench_cpu import PREFIX_TOKENS, SPAN_TOKENS, SUFFIX_TOKENS, cpu_suite
from coda_engine.tools.bench_llamacpp import llama_cpp_available, to_gguf
from coda_engine.tools.files import CODA_V0_DIR
from coda_engine.tools.kernel_bench import benchmark_kernels, format_kernel_table

log = logging.getLogger("coda_engine.tools.bench")
DEFAULT = InfillParams()


@dataclass(frozen=True)
class Row:
    name: str
    latency_ms: float
    num_forward_passes: int
    num_tokens: int
    peak_mib: float


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: its peak) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_probe(device: torch.device) -> tuple[Callable[[], None], Callable[[], float]]:
    """(reset, read) for peak memory in MiB: CUDA's allocator peak, or the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.reset_peak_memory_stats, lambda: torch.cuda.max_memory_allocated() / 2**20

    def reset() -> None:
        # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")

    return reset, lambda: status_mib("VmHWM")


def code_context(engine: Engine, context_tokens: int, span: int) -> tuple[torch.Tensor, int]:
    """Real Python source around a span of masks, 3/4 of the context before it and 1/4 after; and where the span
    starts."""
    import json.decoder
    import logging.handlers

    source = inspect.getsource(logging.handlers) + inspect.getsource(json.decoder)
    ids = engine.tokenizer.encode(source)[:context_tokens]
    cut = context_tokens * 3 // 4
    canvas = ids[:cut] + [engine.mask_token_id] * span + ids[cut:]
    return torch.tensor([canvas], device=engine.device), cut


Run = Callable[[], int]  # one timed run; returns its forward passes


def measure(device: torch.device, run: Run, repeats: int) -> tuple[float, int, float]:
    """Median latency (ms) over `repeats` runs after one warm-up, forward passes, and peak memory (MiB)."""
    reset, read = peak_memory_probe(device)
    # The engine's device, not the current one (cuda:0 unless told).
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    run()
    reset()
    times, passes = [], 0
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        passes = run()
        sync()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), passes, read()


def loop_run(engine: Engine, canvas: torch.Tensor, params: SamplingParams, logits_at_masks: LogitsAtMasks) -> Run:
    return lambda: denoise(engine.model, canvas, engine.mask_token_id, params,
                           logits_at_masks=logits_at_masks).num_forward_passes


def fast_run(engine: Engine, canvas: torch.Tensor, span: tuple[int, int], params: InfillParams) -> Run:
    """Engine.infill's fast path on this canvas with `params`, with the learned pad tail."""
    width = span[1] - span[0]
    tail = PadTail(tuple(sorted(engine.tokenizer.filler_token_ids)), engine.tokenizer.pad_token_id)
    return lambda: denoise_blockwise(engine.model, canvas, span, engine.mask_token_id, fast_sampling(params, width),
                                     min(params.block_size, width), params.cache, reveal_bar=params.reveal_bar,
                                     pad_tail=tail, use_kernels=engine.kernels.use_triton).num_forward_passes


def autoregressive_run(engine: Engine, prompt: torch.Tensor, new_tokens: int,
                       float_model: CodaModel | None = None) -> Run | None:
    """The Qwen3 baseline (qwen3_baseline): causal, KV cache, greedy, exactly `new_tokens` tokens."""
    model = qwen3_baseline(engine, float_model)
    if model is None:
        return None
    attention = torch.ones_like(prompt)

    def run() -> int:
        with torch.inference_mode():
            model.generate(prompt, attention_mask=attention, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, use_cache=True, pad_token_id=engine.tokenizer.pad_token_id)
        return new_tokens  # one prefill pass that writes the first token, then one pass per token

    return run


def fast_params(steps: int, block_size: int = DEFAULT.block_size, refresh: str = DEFAULT.cache.refresh) -> InfillParams:
    """The default fast path's parameters (margin and all) with these steps, block and refresh rule."""
    return dataclasses.replace(DEFAULT, steps=steps, block_size=block_size,
                               cache=dataclasses.replace(DEFAULT.cache, refresh=refresh))


def run_rows(engine: Engine, context_tokens: int, span: int, params: InfillParams, repeats: int,
             float_model: CodaModel | None = None) -> list[Row]:
    steps, policy, block_size = params.num_steps(span), params.cache, params.block_size
    canvas, start = code_context(engine, context_tokens, span)
    variants: list[tuple[str, Run | None]] = [
        (f"reference loop (full logits), entropy, {steps} steps",
         loop_run(engine, canvas, SamplingParams(steps, "entropy"), reference_logits)),
        (f"exact=True (masked-position logits), entropy, {steps} steps",
         loop_run(engine, canvas, SamplingParams(steps, "entropy"), masked_logits)),
        (f"{'default ' if policy == DEFAULT.cache else ''}fast path: cache ({policy.refresh} refresh, margin "
         f"{policy.margin}), blocks of {min(block_size, span)}, {params.alg} + threshold {params.reveal_bar}, "
         f"{steps} steps, {engine.kernels.name} kernels", fast_run(engine, canvas, (start, start + span), params)),
        (f"autoregressive Qwen3 + KV cache, greedy, {span} tokens after {context_tokens}",
         autoregressive_run(engine, canvas[:, :context_tokens].clone(), span, float_model)),
    ]
    rows = []
    for name, run in variants:
        if run is not None:
            log.info("measuring: %s", name)
            latency, passes, peak = measure(engine.device, run, repeats)
            rows.append(Row(name, latency, passes, span, peak))
    return rows


def load_row(path: Path, device: str, dtype: str | None) -> tuple[Engine, str]:
    """Load the checkpoint, tracking the peak memory of the weights alone; returns the engine and a summary."""
    folder, target = Path(path), resolve_device(device)
    config, tokenizer = load_config(folder), load_tokenizer(folder)
    precision = resolve_precision(dtype, target, config)
    reset, read = peak_memory_probe(target)
    before = status_mib("VmRSS") if target.type == "cpu" else 0.0
    reset()
    started = time.perf_counter()
    model = load_model(folder, config, target, precision)
    elapsed = time.perf_counter() - started
    held = [*model.parameters(), *model.buffers()]
    for tensor in held:
        tensor.sum()  # touch every weight so lazily mapped pages count, as they will after the first request
    peak = read() - before
    file_mib = sum(p.stat().st_size for p in find_weight_files(folder)) / 2**20
    held_mib = sum(tensor.numel() * tensor.element_size() for tensor in held) / 2**20
    summary = (f"{precision.name} weights ({precision.reason}); load {elapsed * 1000:.0f} ms; weights file "
               f"{file_mib:.1f} MiB, held {held_mib:.1f} MiB; peak memory growth while loading and touching every "
               f"weight {peak:.1f} MiB = {peak / file_mib:.2f} x the file = {peak / held_mib:.2f} x what is held")
    return Engine(model, tokenizer, folder, precision=precision), summary


def format_table(rows: list[Row]) -> str:
    """Markdown table; speed-ups against the first row (the reference loop) and the autoregressive row."""
    base = rows[0]
    autoregressive = next((row for row in rows if row.name.startswith("autoregressive")), None)
    lines = ["| variant | latency ms | forward passes | tokens/forward | tokens/s | peak MiB | vs reference "
             "| vs autoregressive |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        versus_ar = f"{autoregressive.latency_ms / row.latency_ms:.2f}x" if autoregressive else "-"
        lines.append(f"| {row.name} | {row.latency_ms:.1f} | {row.num_forward_passes} "
                     f"| {row.num_tokens / max(row.num_forward_passes, 1):.2f} "
                     f"| {row.num_tokens / (row.latency_ms / 1000):.1f} | {row.peak_mib:.0f} "
                     f"| {base.latency_ms / row.latency_ms:.2f}x | {versus_ar} |")
    return "\n".join(lines)


def random_model(config: ModelConfig, device: torch.device, precision: Precision, seed: int) -> CodaModel:
    """Random weights made on the device itself (no checkpoint file): normal(0, 0.02) matrices, unit norms."""
    with torch.device("meta"):
        model = CodaModel(config)
    model = model.to_empty(device=device).to(precision.compute)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, INIT_STD, generator=generator)
        if column_major_head(precision, device):
            model.lm_head.weight.data = model.lm_head.weight.data.t().contiguous().t()
    if precision.int8:
        quantize_linears(model)
    return model.eval()


def gpu_suite(args: argparse.Namespace) -> int:
    """The CoDA-v0 shape on the GPU: the four rows, then the kernels against torch eager."""
    device = resolve_device(args.device)
    if device.type != "cuda":
        raise ValueError("--suite gpu needs a CUDA device")
    tokenizer = load_tokenizer(args.tokenizer_dir)
    precision = Precision("bfloat16", torch.bfloat16, "the GPU suite's")
    engine = Engine(random_model(PRESETS["coda-v0"], device, precision, seed=0), tokenizer, args.tokenizer_dir,
                    precision=precision)
    rows = run_rows(engine, args.context, args.span, fast_params(args.steps, args.block_size, args.refresh),
                    args.repeats)
    print(f"{engine.kernels.name} kernels ({engine.kernels.reason})")
    print(f"{torch.cuda.get_device_name(device)}: CoDA-v0 shape, {engine.config.num_parameters / 1e6:.0f} M "
          f"parameters, random bf16 weights; {args.span}-token span in {args.context} tokens of context, "
          f"{args.steps} steps")
    print(format_table(rows))
    if engine.kernels.use_triton:
        print("\n" + format_kernel_table(benchmark_kernels(device)))
    return 0


def cpu_suite_main(args: argparse.Namespace) -> int:
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    if not formats or any(name not in FORMAT_NAMES for name in formats):
        raise ValueError(f"--formats takes {', '.join(FORMAT_NAMES)}; got {args.formats!r}")
    simulate = reveal_counts(args.reveal_per_pass)
    with tempfile.TemporaryDirectory(prefix="coda-bench-") as scratch:
        path = checkpoint_for(args, Path(scratch))
        table = cpu_suite(path, formats, with_ar=not args.no_ar, gguf=llama_cpp_gguf(args, path, Path(scratch)),
                          simulate=simulate, llama_cpp_extra_buffers=not args.llama_cpp_no_extra_buffers)
    print(f"{args.model or 'preset ' + args.preset} on the CPU ({torch.get_num_threads()} threads): "
          f"{PREFIX_TOKENS} + {SUFFIX_TOKENS} tokens of context, a {SPAN_TOKENS}-token span")
    print(table)
    return 0


def reveal_counts(text: str | None) -> tuple[int, ...]:
    """--reveal-per-pass's counts: whole numbers from 1 to the span."""
    if text is None:
        return ()
    counts = [part.strip() for part in text.split(",") if part.strip()]
    if not counts or not all(part.isdigit() and 1 <= int(part) <= SPAN_TOKENS for part in counts):
        raise ValueError(f"--reveal-per-pass takes whole numbers from 1 to {SPAN_TOKENS}, comma-separated; "
                         f"got {text!r}")
    return tuple(sorted({int(part) for part in counts}))


def llama_cpp_gguf(args: argparse.Namespace, path: Path, scratch: Path) -> Path | None:
    """The Q8_0 GGUF of the suite's checkpoint for llama.cpp's row (--llama-cpp-gguf, or converted with
    --llama-cpp-converter), or None: no row, and the log says why."""
    if args.llama_cpp_gguf is None and args.llama_cpp_converter is None:
        return None
    missing = llama_cpp_available()
    if missing is not None:
        log.warning("no llama.cpp row: %s", missing)
        return None
    if args.llama_cpp_gguf is not None:
        return args.llama_cpp_gguf
    log.info("converting %s to a Q8_0 GGUF", path)
    return to_gguf(path, args.llama_cpp_converter, scratch / "model-q8_0.gguf")


def checkpoint_for(args: argparse.Namespace, scratch: Path) -> Path:
    if args.model is not None:
        return args.model
    log.info("writing a random %s checkpoint", args.preset)
    return write_random_checkpoint(scratch / args.preset, preset=args.preset, seed=0, tokenizer_dir=args.tokenizer_dir,
                                   dtype=torch.bfloat16 if args.preset == "coda-v0" else torch.float32)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coda_engine.tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["engine", "cpu", "gpu"], default="engine",
                        help="engine: the four rows for a preset or --model on --device; cpu and gpu: the suites "
                             "described above")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="random checkpoint shape (default: tiny; the cpu suite: coda-v0)")
    parser.add_argument("--formats", default="fp32,bf16,int8,auto",
                        help="cpu suite: weight formats, comma-separated (default %(default)s)")
    parser.add_argument("--no-ar", action="store_true", help="cpu suite: skip the autoregressive rows")
    parser.add_argument("--reveal-per-pass", metavar="K,...",
                        help="cpu suite: also a cost simulation revealing exactly K tokens a pass, for each K "
                             "(e.g. 1,2,3,4), with the K from which coda beats llama.cpp")
    parser.add_argument("--llama-cpp-gguf", type=Path, metavar="GGUF",
                        help="cpu suite: llama.cpp's row on this Q8_0 GGUF of the same weights (needs llama_cpp)")
    parser.add_argument("--llama-cpp-no-extra-buffers", action="store_true",
                        help="cpu suite: llama.cpp without its repacked and AMX weight copies (they crash "
                             "llama-cpp-python 0.3.36 on AMX Xeons)")
    parser.add_argument("--llama-cpp-converter", type=Path, metavar="PY",
                        help="cpu suite: make that GGUF with llama.cpp's convert_hf_to_gguf.py (from "
                             "llama-cpp-python's sdist: vendor/llama.cpp/convert_hf_to_gguf.py)")
    parser.add_argument("--model", type=Path, help="benchmark this checkpoint folder instead of a preset")
    parser.add_argument("--tokenizer-dir", type=Path, default=CODA_V0_DIR,
                        help="tokenizer files for preset checkpoints (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", choices=FORMAT_NAMES,
                        help="default: bf16 on CUDA, fp32 on CPU; int8: the CPU's int8 weights; auto: the fastest")
    parser.add_argument("--context", type=int, help="tokens of code around the span (default 512; gpu suite 1024)")
    parser.add_argument("--span", type=int, default=64, help="tokens to infill")
    parser.add_argument("--steps", type=int, default=16, help="denoising steps of every diffusion row")
    parser.add_argument("--block-size", type=int, default=DEFAULT.block_size,
                        help="fast path's block (default %(default)s)")
    parser.add_argument("--refresh", choices=REFRESH_RULES, default=DEFAULT.cache.refresh,
                        help="fast path's cache refresh rule (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.context is None:
        args.context = 1024 if args.suite == "gpu" else 512
    if args.preset is None:
        args.preset = "coda-v0" if args.suite == "cpu" else "tiny"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    try:
        if args.suite == "gpu":
            return gpu_suite(args)
        if args.suite == "cpu":
            return cpu_suite_main(args)
        with tempfile.TemporaryDirectory(prefix="coda-bench-") as scratch:
            path = checkpoint_for(args, Path(scratch))
            engine, load_summary = load_row(path, args.device, args.dtype)
            # An int8 engine's autoregressive baseline is quantized from the same checkpoint's float weights.
            float_model = load_model(path, engine.config, engine.device, Precision("float32", torch.float32, "")) \
                if engine.precision.int8 else None
            rows = run_rows(engine, args.context, args.span, fast_params(args.steps, args.block_size, args.refresh),
                            args.repeats, float_model)
    except (CheckpointError, ValueError) as exc:
        print(f"coda_engine.tools.bench: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model or 'preset ' + args.preset}: {engine.config.num_parameters / 1e6:.1f} M parameters on "
          f"{engine.device} ({engine.precision.name}); {args.span}-token span in {args.context} tokens of context, "
          f"{args.steps} steps")
    print(load_summary)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
