"""python -m coda_engine.tools.kernel_bench: each Triton kernel beside torch eager on CUDA, in ms and GB/s.

The confidence kernel is meant to be bandwidth-bound, so its yardstick is the card's own device-to-device copy
bandwidth, measured in the same run (a 1 GiB tensor copy: bytes read + written per second). Each kernel is
timed two ways with CUDA events after a warm-up: called back to back from Python (what an eager loop pays,
launch overhead included) and replayed from a CUDA graph (GPU time only, what a captured step pays); GB/s and
the share of copy bandwidth use the graph time. Inputs rotate over enough copies to overflow the L2 cache
(50 MB on H100/H200), so the logits come from DRAM as they do after a forward pass of the real model.

CODA_KERNELS is honoured as the engine honours it: `torch`, or `auto` where the kernels' probe fails, times the
torch rows only (and says why); `triton` where the kernels cannot run is an error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from coda_engine.kernels.choice import choose_kernels
from coda_engine.kernels.confidence import confidence_stats
from coda_engine.kernels.reveal import reference_reveal_by_confidence, reveal_by_confidence
from coda_engine.kernels.runtime import cdiv, on_device

log = logging.getLogger("coda_engine.tools.kernel_bench")

COPY_BYTES = 2**30  # large enough that the copy runs at DRAM bandwidth, far past any L2
ROTATION_BYTES = 256 * 2**20  # inputs cycled per timing: 5x an H100/H200's L2
NUM_WARMUP = 3
NUM_TIMED = 20  # passes over the rotation, per timing
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Bytes a confidence row writes: token int64 + three fp32 statistics.
CONFIDENCE_OUTPUT_BYTES_PER_ROW = 8 + 3 * 4
# Bytes per reveal position: confidence fp32, proposal int64, canvas int64 read and written back.
REVEAL_BYTES_PER_POSITION = 4 + 8 + 8 + 8


@dataclass(frozen=True)
class KernelRow:
    """One kernel or its torch baseline on one shape."""

    name: str
    shape: str
    eager_ms: float  # back-to-back calls from Python, launch overhead included
    graph_ms: float  # replayed from a CUDA graph: GPU time
    num_bytes: int  # bytes the operation must read and write at least
    copy_gb_per_s: float  # the card's device-to-device copy bandwidth, this run

    @property
    def gb_per_s(self) -> float:
        return self.num_bytes / (self.graph_ms / 1000) / 1e9

    @property
    def share_of_copy(self) -> float:
        return self.gb_per_s / self.copy_gb_per_s


def confidence_bytes(num_rows: int, vocab_size: int, dtype: torch.dtype) -> int:
    """Least traffic of confidence_stats: the logits read once, four per-row outputs written."""
    return num_rows * vocab_size * dtype.itemsize + num_rows * CONFIDENCE_OUTPUT_BYTES_PER_ROW


def reveal_bytes(num_rows: int, row_length: int) -> int:
    """Traffic of a reveal counted as every input read once and the canvas written once (an upper bound: the
    kernel writes only the revealed positions), plus quota and done."""
    return num_rows * row_length * REVEAL_BYTES_PER_POSITION + num_rows * (8 + 1)


def format_kernel_table(rows: list[KernelRow]) -> str:
    """Markdown table; each Triton row's speed-up against the torch row of the same kernel and shape."""
    lines = ["| kernel | shape | eager ms | graph ms | GB/s | % of copy | vs torch (graph) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    baselines = {(row.name.split(" ")[0], row.shape): row for row in rows if row.name.endswith("torch eager")}
    for row in rows:
        baseline = baselines.get((row.name.split(" ")[0], row.shape))
        versus = f"{baseline.graph_ms / row.graph_ms:.1f}x" if baseline is not None else "-"
        lines.append(f"| {row.name} | {row.shape} | {row.eager_ms:.4f} | {row.graph_ms:.4f} | {row.gb_per_s:.0f} "
                     f"| {100 * row.share_of_copy:.0f}% | {versus} |")
    if rows:
        lines.append(f"\ndevice-to-device copy: {rows[0].copy_gb_per_s:.0f} GB/s (read + write of "
                     f"{COPY_BYTES // 2**20} MiB)")
    return "\n".join(lines)


def eager_confidence_stats(logits: torch.Tensor, temperature: float = 0.0) -> tuple[torch.Tensor, ...]:
    """What a torch step computes for the same four outputs: fp32 softmax, argmax or Gumbel-max, top-2, entropy."""
    z = logits.float() / temperature if temperature > 0 else logits.float()
    probs = torch.softmax(z, dim=-1)
    token = torch.argmax(z - torch.log(-torch.log(torch.rand_like(z))) if temperature > 0 else z, dim=-1)
    top = torch.topk(probs, 2, dim=-1).values
    return token, probs.gather(-1, token[:, None]), top[:, 0] - top[:, 1], torch.xlogy(probs, probs).sum(dim=-1)


def measure_copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy bandwidth in GB/s, bytes read plus bytes written."""
    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    for _ in range(NUM_WARMUP):
        target.copy_(source)
    ms = _event_ms(lambda: target.copy_(source), NUM_TIMED)
    return 2 * COPY_BYTES / (ms / 1000) / 1e9


def _event_ms(run: Callable[[], object], num_calls: int) -> float:
    """Mean ms per call of `run`, by CUDA events around `num_calls` back-to-back calls."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(num_calls):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / num_calls


def time_both_ways(calls: list[Callable[[], object]]) -> tuple[float, float]:
    """(eager ms, graph ms) per call, over a rotation of calls that each read different inputs."""
    def run_rotation() -> None:
        for call in calls:
            call()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (and Triton's compilation) off the capture stream, as torch asks
        for _ in range(NUM_WARMUP):
            run_rotation()
    torch.cuda.current_stream().wait_stream(side)
    eager_ms = _event_ms(run_rotation, NUM_TIMED) / len(calls)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run_rotation()
    graph.replay()
    graph_ms = _event_ms(graph.replay, NUM_TIMED) / len(calls)
    return eager_ms, graph_ms


def benchmark_kernels(device: torch.device, num_rows: int = 64, vocab: int = 151936,
                      dtype: torch.dtype = torch.bfloat16, reveal_rows: int = 8,
                      reveal_length: int = 1024, include_triton: bool = True) -> list[KernelRow]:
    """Rows for confidence_stats (greedy and sampled) and reveal_by_confidence, each beside torch eager
    (`include_triton=False`: the torch rows only). Defaults: one 64-token block of the CoDA vocabulary in bf16 (a
    denoising step's logits) and eight 1024-position rows to reveal in. Raises ValueError without CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"the kernel benchmark needs a CUDA device, not {device.type}")
    with on_device(device):  # events, streams and graphs belong to the current device: make it the one measured
        generator = torch.Generator(device=device).manual_seed(0)
        copy_gb_per_s = measure_copy_bandwidth(device)
        log.info("copy bandwidth %.0f GB/s", copy_gb_per_s)
        rows = []

        def add_row(name: str, shape: str, calls: list[Callable[[], object]], num_bytes: int) -> None:
            eager_ms, graph_ms = time_both_ways(calls)
            rows.append(KernelRow(name, shape, eager_ms, graph_ms, num_bytes, copy_gb_per_s))
            log.info("%s: %.4f ms eager, %.4f ms graph", name, eager_ms, graph_ms)

        logits_bytes = num_rows * vocab * dtype.itemsize
        copies = [(torch.randn(num_rows, vocab, device=device, generator=generator) * 4).to(dtype)
                  for _ in range(max(1, cdiv(ROTATION_BYTES, logits_bytes)))]
        confidence_variants: list[tuple[str, Callable[[torch.Tensor], object]]] = [
            ("confidence_stats triton", lambda logits: confidence_stats(logits)),
            ("confidence_stats torch eager", lambda logits: eager_confidence_stats(logits)),
            ("confidence_stats(T=0.8) triton", lambda logits: confidence_stats(logits, temperature=0.8, seed=1)),
            ("confidence_stats(T=0.8) torch eager", lambda logits: eager_confidence_stats(logits, temperature=0.8)),
        ]
        for name, run in confidence_variants:
            if include_triton or not name.endswith("triton"):
                add_row(name, f"{num_rows}x{vocab} {str(dtype).removeprefix('torch.')}",
                        [lambda logits=logits: run(logits) for logits in copies],
                        confidence_bytes(num_rows, vocab, dtype))
        del copies

        mask_token_id = 151669
        canvas = torch.full((reveal_rows, reveal_length), mask_token_id, device=device)
        proposal = torch.randint(0, vocab, (reveal_rows, reveal_length), device=device, generator=generator)
        confidence = torch.rand(reveal_rows, reveal_length, device=device, generator=generator)
        quota = torch.full((reveal_rows,), 4, device=device)
        reveals = [("reveal_by_confidence triton", reveal_by_confidence)] if include_triton else []
        for name, reveal in reveals + [("reveal_by_confidence torch eager", reference_reveal_by_confidence)]:
            # The canvas fills up as calls repeat; the ranking (the cost) does not depend on it.
            add_row(name, f"{reveal_rows}x{reveal_length}",
                    [lambda: reveal(canvas, proposal, confidence, quota, 0.9, mask_token_id)],
                    reveal_bytes(reveal_rows, reveal_length))
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_engine.tools.kernel_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="logits rows (masked positions per step)")
    parser.add_argument("--vocab", type=int, default=151936, help="vocabulary size (CoDA-v0: 151936)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16", help="logits dtype")
    parser.add_argument("--reveal-rows", type=int, default=8, help="canvas rows for the reveal kernel")
    parser.add_argument("--reveal-length", type=int, default=1024, help="positions per reveal row")
    parser.add_argument("--device", default="cuda", help="a CUDA device (default: cuda)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    try:
        if min(args.rows, args.vocab, args.reveal_rows, args.reveal_length) < 1:
            raise ValueError("--rows, --vocab, --reveal-rows and --reveal-length must be >= 1")
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("no CUDA device is available")
        kernels = choose_kernels(device)
        rows = benchmark_kernels(device, args.rows, args.vocab, DTYPES[args.dtype], args.reveal_rows,
                                 args.reveal_length, include_triton=kernels.use_triton)
    except (ValueError, RuntimeError) as exc:
        print(f"coda_engine.tools.kernel_bench: {exc}", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name(device)}, triton kernels against torch eager"
          + ("" if kernels.use_triton else f" (torch rows only: {kernels.reason})"))
    print(format_kernel_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
