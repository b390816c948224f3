"""python -m coda_training.bench: train-step tokens/s and MFU for a preset, one row per compute dtype.

MFU is against a square-matmul peak measured in the same run on the same devices, so a CPU laptop and a GPU
both get a meaningful fraction. Batches are random token ids: the step does the same work on any data.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from coda_training.config import load_config
from coda_training.curriculum import MaskingSchedule
from coda_training.errors import TrainingError
from coda_training.perf import measure_matmul_peak, train_flops_per_token
from coda_training.sharding import check_batch, make_mesh, place
from coda_training.train_step import build_context, make_train_step, place_state, random_params


def bench_row(preset: str, dtype: str, steps: int, overrides: list[str]) -> dict:
    cfg = load_config("pretrain", preset, [f"model.compute_dtype={dtype}", "optim.warmup_steps=0", *overrides])
    mesh = make_mesh(cfg.mesh)
    check_batch(cfg.data.batch_size // cfg.data.grad_accum, mesh)
    ctx = build_context(cfg, mesh)
    state = place_state(ctx, random_params(ctx, 0))
    step_fn = make_train_step(ctx)
    rates = MaskingSchedule(cfg.masking, cfg.num_steps).rates(0)
    shape = (cfg.data.grad_accum, cfg.data.batch_size // cfg.data.grad_accum, cfg.data.seq_len)
    ids = np.random.default_rng(0).integers(0, cfg.model.vocab_size - 1000, shape).astype(np.int32)
    batch = {k: place(v, ctx.batch_sharding) for k, v in
             {"input_ids": ids, "segment_ids": np.zeros_like(ids), "condition": np.zeros(shape, bool)}.items()}
    state, metrics = step_fn(state, batch, rates)  # compile + first step, not timed
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step_fn(state, batch, rates)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / steps
    tokens_per_s = cfg.data.batch_size * cfg.data.seq_len / step_s
    model_flops = tokens_per_s * train_flops_per_token(cfg.model, cfg.data.seq_len)
    peak = measure_matmul_peak(dtype) * mesh.devices.size
    return {"preset": preset, "dtype": dtype, "devices": f"{mesh.devices.size}x {jax.devices()[0].platform}",
            "batch": f"{cfg.data.batch_size}x{cfg.data.seq_len}", "step_ms": 1000 * step_s,
            "tokens_per_s": tokens_per_s, "model_tflops": model_flops / 1e12, "peak_tflops": peak / 1e12,
            "mfu": model_flops / peak}


def format_table(rows: list[dict]) -> str:
    header = f"{'preset':<8} {'dtype':<9} {'devices':<9} {'batch':<9} {'step ms':>8} {'tokens/s':>10} " \
             f"{'model TFLOP/s':>14} {'matmul peak':>12} {'MFU':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['preset']:<8} {r['dtype']:<9} {r['devices']:<9} {r['batch']:<9} {r['step_ms']:>8.1f} "
                     f"{r['tokens_per_s']:>10,.0f} {r['model_tflops']:>14.4f} {r['peak_tflops']:>12.4f} "
                     f"{100 * r['mfu']:>6.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coda_training.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="pretrain preset to time (tiny, 1p7b, or a YAML file)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the compiling one")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes, one row each")
    args, overrides = parser.parse_known_args(argv)
    try:
        rows = [bench_row(args.preset, dtype, args.steps, overrides) for dtype in args.dtypes.split(",")]
    except TrainingError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
