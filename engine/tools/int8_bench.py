"""python -m coda_engine.tools.int8_bench: the int8 kernels beside fp32 on CoDA-v0's products, in ms.

Each of CoDA-v0's product shapes (a layer's q/o, k/v, gate/up and down projections and the vocabulary head) at
1, 8, 57 (a fast-path window), 128 and 1,024 (a first pass) rows, and a whole window pass: 57 rows through 28
layers' seven products. Candidates:
- fp32: x @ W.T, the baseline.
- int8 <kernel>, one per quantize.Int8Linear kernel that runs here: what the engine runs (per-row activation
  codes, twice in products of at most 128 rows).
- int8pack: torch._weight_int8pack_mm, int8 weights and fp32 activations (no activation rounding).
- dynamic: torch.ao's dynamic int8 Linear (fbgemm, one activation scale per matrix: fast, not faithful).
Each cell is the fastest of --repeats rounds that run every candidate in turn, so a busy machine slows all of
them alike; beside it, fp32's time over its own, from the same rounds. A candidate more than 4x slower than fp32
on a shape is not timed at more rows there, nor in the window pass.

--emulate-avx2 runs the same under ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2
and FBGEMM_ENABLE_INSTRUCTIONS=AVX2: ATen's, oneDNN's, MKL's and fbgemm's own AVX2 code on a newer CPU (fbgemm
reads the CPU from cpuinfo, so only its variable reaches it; the header says which fbgemm kernel answered).
--clock thread --threads 1 times the CPU time of the one thread doing the work, which waiting for a core shared
with other processes does not inflate.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from coda_engine.precision import SHOWN_FLAGS, cpu_flags
from coda_engine.quantize import FbgemmKernel, Int8Linear, quantize_rows, quantized_engine, runnable_kernels
from coda_engine.timing import LOSING_FACTOR

log = logging.getLogger("coda_engine.tools.int8_bench")

AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                  "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
# CoDA-v0's products as (name, in, out): hidden 2048, intermediate 6144, 16 query and 8 key-value heads of 128.
PRODUCTS = (("q/o 2048->2048", 2048, 2048), ("k/v 2048->1024", 2048, 1024), ("gate/up 2048->6144", 2048, 6144),
            ("down 6144->2048", 6144, 2048), ("head 2048->151936", 2048, 151936))
LAYER_PRODUCTS = ((2048, 2048), (2048, 1024), (2048, 1024), (2048, 2048), (2048, 6144), (2048, 6144), (6144, 2048))
ROWS = (1, 8, 57, 128, 1024)
HEAD_MAX_ROWS = 128  # the head projects only a pass's masked rows
WINDOW_ROWS, LAYERS = 57, 28

Product = Callable[[torch.Tensor], object]
Build = Callable[[torch.Tensor], Product]  # a way to hold a float [out, in] weight W: W -> (x -> x @ W.T)


def candidates() -> dict[str, Build]:
    """fp32 first (the baseline), then what runs here."""
    found: dict[str, Build] = {"fp32": lambda weight: lambda x: x @ weight.t()}
    for kernel in runnable_kernels():
        found[f"int8 {kernel.name}"] = lambda weight, kernel=kernel: Int8Linear.from_float(weight, kernel)
    found["int8pack"] = int8pack_product
    if "fbgemm" in torch.backends.quantized.supported_engines:
        found["dynamic"] = dynamic_product
    return found


def int8pack_product(weight: torch.Tensor) -> Product:
    """torch._weight_int8pack_mm: int8 weights, fp32 activations, the channel scales applied inside."""
    weight_int8, scale = quantize_rows(weight)
    return lambda x: torch._weight_int8pack_mm(x, weight_int8, scale)


def dynamic_product(weight: torch.Tensor) -> Product:
    """torch.ao's dynamic int8 Linear on fbgemm: activations quantized with one scale per matrix, 7-bit."""
    with warnings.catch_warnings(), quantized_engine("fbgemm"):
        warnings.simplefilter("ignore", UserWarning)  # torch 2.13 marks quantized tensors as deprecated
        layer = torch.ao.nn.quantized.dynamic.Linear(weight.shape[1], weight.shape[0], bias_=False,
                                                     dtype=torch.qint8)
        weight_int8, scale = quantize_rows(weight)
        layer.set_weight_bias(torch._make_per_channel_quantized_tensor(
            weight_int8, scale.double(), torch.zeros(weight.shape[0], dtype=torch.long), 0), None)
    return layer


def fastest_in_turn(products: dict[str, Product], x: torch.Tensor, repeats: int,
                    clock: Callable[[], float]) -> dict[str, float]:
    """ms of each product on x: the fastest of `repeats` rounds that run each in turn, after an untimed one."""
    best = dict.fromkeys(products, float("inf"))
    with torch.inference_mode():
        for run in products.values():
            run(x)
        for _ in range(repeats):
            for name, run in products.items():
                started = clock()
                run(x)
                best[name] = min(best[name], clock() - started)
    return {name: seconds * 1000 for name, seconds in best.items()}


def product_rows(found: dict[str, Build], repeats: int, clock: Callable[[], float]) -> list[tuple[str, dict]]:
    """(label, {candidate: ms}) for each product shape and row count."""
    generator = torch.Generator().manual_seed(0)
    rows_out = []
    for name, in_features, out_features in PRODUCTS:
        weight = torch.randn(out_features, in_features, generator=generator) * 0.02
        products = {name: build(weight) for name, build in found.items()}
        for rows in ROWS:
            if name.startswith("head") and rows > HEAD_MAX_ROWS:
                continue
            x = torch.randn(rows, in_features, generator=generator)
            timings = fastest_in_turn(products, x, repeats, clock)
            rows_out.append((f"{name}, {rows} rows", timings))
            log.info("%s, %d rows: %s", name, rows, ", ".join(f"{k} {v:.2f} ms" for k, v in timings.items()))
            for loser in [k for k, v in timings.items() if v > LOSING_FACTOR * timings["fp32"]]:
                del products[loser]
        del products, weight
        gc.collect()
    return rows_out


def window_pass_row(found: dict[str, Build], kept: set[str], weight_sets: int, repeats: int,
                    clock: Callable[[], float]) -> dict[str, float]:
    """ms of a window pass per candidate in `kept`: 57 rows through 28 layers' seven products, the layers'
    weights cycling over `weight_sets` distinct sets (real layers each read their own weights from memory)."""
    generator = torch.Generator().manual_seed(1)
    weights = [[torch.randn(out, in_, generator=generator) * 0.02 for in_, out in LAYER_PRODUCTS]
               for _ in range(weight_sets)]
    inputs = {in_: torch.randn(WINDOW_ROWS, in_, generator=generator) for in_, _ in LAYER_PRODUCTS}
    passes = {name: window_pass([[build(weight) for weight in layer] for layer in weights], inputs)
              for name, build in found.items() if name in kept}
    del weights
    timings = fastest_in_turn(passes, inputs[LAYER_PRODUCTS[0][0]], repeats, clock)
    log.info("window pass: %s", ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()))
    return timings


def window_pass(layers: list[list[Product]], inputs: dict[int, torch.Tensor]) -> Product:
    """x -> None: LAYERS layers' products on `inputs` (by input width), the layers cycling over `layers`."""
    def run(_: torch.Tensor) -> None:
        for layer in range(LAYERS):
            for (in_features, _out), product in zip(LAYER_PRODUCTS, layers[layer % len(layers)]):
                product(inputs[in_features])
    return run


def fbgemm_kernel_answering() -> str:
    """Which fbgemm int8 kernel family runs here, told by a product whose u8 x s8 pair sums exceed int16: exact
    with VNNI kernels, saturated with AVX2 (or AVX-512 without VNNI) ones."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "fbgemm: not in this torch"
    weight = torch.full((8, 64), 127, dtype=torch.int8)
    codes = torch.full((2, 64), 127.0)  # at zero point 128: u8 255
    packed = FbgemmKernel().pack(weight)
    got = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(codes, 1.0, 128, packed)[0, 0]
    if float(got) == 127 * 127 * 64:
        return "fbgemm answers with VNNI kernels (u8 x s8 pairs summed exactly)"
    return "fbgemm answers with AVX2-class kernels (u8 x s8 pairs saturate in int16)"


def header(args: argparse.Namespace) -> list[str]:
    """The machine, the settings and the emulation, as the lines above the table."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.partition(":")[2].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
              if line.startswith("model name")]
    flags = cpu_flags()
    emulation = {name: os.environ[name] for name in AVX2_EMULATION if name in os.environ}
    return [f"{models[0] if models else 'unknown CPU'}; flags: "
            f"{', '.join(flag for flag in SHOWN_FLAGS if flag in flags) or 'none of ' + ', '.join(SHOWN_FLAGS)}; "
            f"torch {torch.__version__}, ATen capability {torch.backends.cpu.get_cpu_capability()}",
            f"emulation: {' '.join(f'{k}={v}' for k, v in emulation.items()) or 'none (the CPU as it is)'}; "
            f"{fbgemm_kernel_answering()}",
            f"{torch.get_num_threads()} threads, {'thread CPU' if args.clock == 'thread' else 'wall'} time, fastest "
            f"of {args.repeats} rounds (window pass: {args.pass_repeats}, {args.weight_sets} weight sets); load "
            f"average {os.getloadavg()[0]:.1f} at start"]


def format_table(names: list[str], rows: list[tuple[str, dict]]) -> str:
    """Markdown: a row per product and row count, a column per candidate, ms and fp32's time over it."""
    def cell(timings: dict[str, float], name: str) -> str:
        if name not in timings:
            return "-"
        return f"{timings[name]:.2f}" + ("" if name == "fp32" else f" ({timings['fp32'] / timings[name]:.2f}x)")

    lines = ["| product, rows | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cell(timings, name) for name in names) + " |" for label, timings in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coda_engine.tools.int8_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="run under the AVX2 emulation variables above (an AVX2-only CPU's kernels)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="wall time, or the calling thread's CPU time (needs --threads 1)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per product shape (default 5)")
    parser.add_argument("--pass-repeats", type=int, default=3, help="rounds of the window pass (default 3)")
    parser.add_argument("--weight-sets", type=int, default=4,
                        help="distinct weight sets the window pass's 28 layers cycle over (default 4: 800 MB in "
                             "fp32, more than the caches)")
    parser.add_argument("--no-window-pass", action="store_true", help="the product rows only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    if args.emulate_avx2 and any(os.environ.get(k) != v for k, v in AVX2_EMULATION.items()):
        # The variables are read once, when the libraries load: run again with them set.
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, "-m", "coda_engine.tools.int8_bench", *argv],
                  {**os.environ, **AVX2_EMULATION})
    if min(args.repeats, args.pass_repeats, args.weight_sets) < 1 or (args.threads is not None and args.threads < 1):
        print("coda_engine.tools.int8_bench: --threads, --repeats, --pass-repeats and --weight-sets must be >= 1",
              file=sys.stderr)
        return 2
    if args.clock == "thread" and (args.threads or torch.get_num_threads()) != 1:
        print("coda_engine.tools.int8_bench: --clock thread needs --threads 1 (other threads' work is not counted)",
              file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    lines = header(args)
    found = candidates()
    rows = product_rows(found, args.repeats, clock)
    if not args.no_window_pass:
        window_57 = [timings for label, timings in rows if label.endswith(f", {WINDOW_ROWS} rows")]
        kept = {name for name in window_57[0] if all(name in timings for timings in window_57)}
        rows.append((f"window pass: {WINDOW_ROWS} rows x {LAYERS} layers x 7 products",
                     window_pass_row(found, kept, args.weight_sets, args.pass_repeats, clock)))
    print("\n".join(lines))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(format_table(list(found), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
