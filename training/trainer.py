"""The training loop: check every input, restore or initialise, then step with periodic log / checkpoint hooks
and a NaN guard. All three stages run through `train`; the config says which recipe."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import jax
import numpy as np

from coda_training import hf_io
from coda_training.checkpoint import Checkpoints
from coda_training.config import Config, to_yaml
from coda_training.curriculum import MaskingSchedule
from coda_training.data.batches import TokenSet, batch_at, open_tokens
from coda_training.data.tokenizer import load_tokenizer
from coda_training.errors import TrainingError
from coda_training.optim import lr_schedule
from coda_training.perf import measure_matmul_peak, train_flops_per_token
from coda_training.plan import checked_step, describe_failure
from coda_training.sharding import check_batch, make_mesh, place
from coda_training.train_step import (StepContext, TrainState, abstract_params, abstract_train_state, build_context,
                                      make_eval_loss, param_shapes, place_state, random_params)


@dataclass(frozen=True)
class RunSummary:
    final_step: int  # completed optimizer steps
    last_loss: float
    elapsed_s: float
    tokens_per_s: float


def open_data(cfg: Config, path: str) -> TokenSet:
    if not path:
        raise TrainingError("data.path is empty: point it at a folder written by `coda-train tokenize`")
    return open_tokens(path, cfg.data.seq_len, vocab_size=cfg.model.vocab_size, mask_id=cfg.model.mask_token_id,
                       pad_id=cfg.model.pad_token_id, verify_hashes=cfg.data.verify_hashes)


def check_tokenizer(cfg: Config) -> None:
    if cfg.tokenizer_dir:
        info = load_tokenizer(cfg.tokenizer_dir)
        if (info.mask_id, info.pad_id) != (cfg.model.mask_token_id, cfg.model.pad_token_id):
            raise TrainingError(f"tokenizer mask/pad ids {info.mask_id}/{info.pad_id} differ from the model's "
                                f"{cfg.model.mask_token_id}/{cfg.model.pad_token_id}")


def check_init_source(cfg: Config) -> None:
    """Fail on a missing or mismatched init source now, not after the data and mesh are set up."""
    if cfg.init.kind == "hf":
        hf_io.check_shape(Path(cfg.init.path), cfg.model)
    elif cfg.init.kind == "checkpoint":
        source = Checkpoints(cfg.init.path, read_only=True)
        step = source.latest_step()
        if step is None:
            raise TrainingError(f"init.path {cfg.init.path} holds no finished checkpoint")
        source.check_shape(step, cfg.model)
        source.close()


def check_resume_or_init(cfg: Config, run_dir: Path) -> None:
    """A run with checkpoints resumes (same shape, not yet finished); a new run needs a usable init source."""
    if not (run_dir / "checkpoints").is_dir():
        check_init_source(cfg)
        return
    existing = Checkpoints(run_dir, read_only=True)
    step = existing.latest_step()
    if step is None:
        check_init_source(cfg)
    else:
        existing.check_shape(step, cfg.model)
        if step >= cfg.num_steps:
            raise TrainingError(f"{run_dir} already holds step {step} of num_steps={cfg.num_steps}; nothing to do")
    existing.close()


def initial_state(ctx: StepContext, cfg: Config, ckpts: Checkpoints) -> TrainState:
    """Resume this run if it has a checkpoint; else start from init.kind with a fresh optimizer."""
    step = ckpts.latest_step()
    if step is not None:
        return ckpts.restore_state(step, abstract_train_state(ctx), cfg)
    if cfg.init.kind == "hf":
        shapes = param_shapes(cfg)
        params = hf_io.load_params(cfg.init.path, cfg.model, ctx.state_sharding["params"], shapes)
    elif cfg.init.kind == "checkpoint":
        source = Checkpoints(cfg.init.path, read_only=True)
        params = source.restore_params(source.latest_step(), abstract_params(ctx))
        source.close()
    else:
        params = random_params(ctx, cfg.seed)
    return place_state(ctx, params)


class Progress:
    """One progress line on stderr and one JSON row in metrics.jsonl per log interval, from the first host only
    (every host computes the same replicated metrics)."""

    def __init__(self, cfg: Config, metrics_path: Path, stream: TextIO, peak_flops: float, start_step: int):
        self.cfg, self.stream, self.peak_flops = cfg, stream, peak_flops
        self.enabled = jax.process_index() == 0
        self.metrics = metrics_path.open("a") if self.enabled else None
        self.schedule = lr_schedule(cfg.optim, cfg.num_steps)
        self.tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
        self.flops_per_token = train_flops_per_token(cfg.model, cfg.data.seq_len)
        self.start = time.perf_counter()
        self.mark_time, self.mark_step = self.start, start_step

    def log(self, step: int, metrics: dict[str, float]) -> float:
        """`step` = completed steps. Throughput covers the interval since the last line (the first interval
        includes compilation, so it reads low)."""
        now = time.perf_counter()
        steps = max(step - self.mark_step, 1)
        step_s = (now - self.mark_time) / steps
        tokens_per_s = self.tokens_per_step / step_s
        mfu = tokens_per_s * self.flops_per_token / self.peak_flops
        eta = (self.cfg.num_steps - step) * step_s
        self.mark_time, self.mark_step = now, step
        if not self.enabled:
            return tokens_per_s
        row = {"step": step, **metrics, "lr": float(self.schedule(step - 1)), "tokens_per_s": tokens_per_s,
               "mfu": mfu, "elapsed_s": now - self.start}
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()
        print(f"{self.cfg.stage} step {step}/{self.cfg.num_steps} | loss {metrics['loss']:.4f} | "
              f"{tokens_per_s:,.0f} tok/s | MFU {100 * mfu:.2f}% | ETA {_clock(eta)}", file=self.stream, flush=True)
        return tokens_per_s

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(cfg: Config, stream: TextIO | None = None) -> RunSummary:
    """Run (or resume) one stage to cfg.num_steps; progress lines go to `stream` (default: stderr)."""
    # Everything that can be wrong with the inputs is checked before the first compile.
    check_tokenizer(cfg)
    tokens = open_data(cfg, cfg.data.path)
    mesh = make_mesh(cfg.mesh)
    check_batch(cfg.data.batch_size // cfg.data.grad_accum, mesh)
    ctx = build_context(cfg, mesh)
    run_dir = Path(cfg.run_dir)
    check_resume_or_init(cfg, run_dir)
    # The step is compiled (and its memory checked) before the weights exist, so a plan that cannot fit
    # stops in seconds with the override to try, not after loading gigabytes.
    step_fn = checked_step(cfg, ctx, stream or sys.stderr)
    ckpts = Checkpoints(run_dir, cfg)  # creates run_dir: only now that every input has passed
    if jax.process_index() == 0:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))

    try:
        state = initial_state(ctx, cfg, ckpts)
    except jax.errors.JaxRuntimeError as exc:
        raise TrainingError(describe_failure(cfg, dict(mesh.shape), exc, "placing the initial state")) from None
    start = int(state["step"])
    schedule = MaskingSchedule(cfg.masking, cfg.num_steps)
    peak = (cfg.peak_flops or measure_matmul_peak(cfg.model.compute_dtype)) * len(mesh.devices.flat)
    progress = Progress(cfg, run_dir / "metrics.jsonl", stream or sys.stderr, peak, start)
    loss, tokens_per_s = float("nan"), 0.0
    try:
        for step in range(start, cfg.num_steps):
            batch = batch_at(tokens, cfg.data.seed, step, cfg.data.batch_size, cfg.data.grad_accum,
                             cfg.data.eos_token_id)
            batch = {k: place(v, ctx.batch_sharding) for k, v in batch.items()}
            rates = jax.device_put(schedule.rates(step), ctx.replicated)
            try:
                state, metrics = step_fn(state, batch, rates)
                # One host sync per step: a NaN must be caught before the state that follows it is saved.
                host = {k: float(v) for k, v in jax.device_get(metrics).items()}
            except jax.errors.JaxRuntimeError as exc:
                ckpts.wait()
                reason = describe_failure(cfg, dict(mesh.shape), exc, f"in step {step + 1}")
                raise TrainingError(f"{reason}. The last good checkpoint is step {ckpts.latest_step()} in "
                                    f"{ckpts.directory}") from None
            loss, done = host["loss"], step + 1
            if not (math.isfinite(loss) and math.isfinite(host["grad_norm"])):
                ckpts.wait()
                raise TrainingError(f"step {done}: loss {loss}, grad norm {host['grad_norm']}; stopped. The last "
                                    f"good checkpoint is step {ckpts.latest_step()} in {ckpts.directory}")
            if done % cfg.log_every == 0 or done == cfg.num_steps:
                tokens_per_s = progress.log(done, host)
            if done % cfg.checkpoint.every == 0 or done == cfg.num_steps:
                ckpts.save(done, state, cfg)
        ckpts.wait()
    finally:
        progress.close()
        ckpts.close()
    return RunSummary(cfg.num_steps, loss, time.perf_counter() - progress.start, tokens_per_s)


def load_run_params(cfg: Config, ctx: StepContext, step: int | None = None) -> tuple[dict, int]:
    """Weights of a run's latest (or given) checkpoint, placed on this mesh."""
    ckpts = Checkpoints(cfg.run_dir, read_only=True)
    step = ckpts.latest_step() if step is None else step
    if step is None:
        raise TrainingError(f"{cfg.run_dir} holds no finished checkpoint")
    ckpts.check_shape(step, cfg.model)
    params = ckpts.restore_params(step, abstract_params(ctx))
    ckpts.close()
    return params, step


def evaluate(cfg: Config, params: dict, ctx: StepContext, num_batches: int, seed: int = 1) -> dict[str, float]:
    """Mean 1/t-weighted loss (per token, B x L normalised) and plain masked-token NLL over `num_batches`
    batches of the eval data, with the noise of the final curriculum step and a fixed seed."""
    tokens = open_data(cfg, cfg.data.eval_path or cfg.data.path)
    eval_fn = make_eval_loss(ctx)
    rates = MaskingSchedule(cfg.masking, cfg.num_steps).rates(cfg.num_steps - 1)
    totals = np.zeros(4)
    for index in range(num_batches):
        batch = batch_at(tokens, seed, index, cfg.data.batch_size, cfg.data.grad_accum, cfg.data.eos_token_id)
        batch = {k: place(v, ctx.batch_sharding) for k, v in batch.items()}
        out = jax.device_get(eval_fn(params, batch, rates, jax.random.PRNGKey(seed + index)))
        totals += [out["weighted_sum"], out["num_tokens"], out["nll_sum"], out["num_masked"]]
    return {"loss": totals[0] / totals[1], "masked_token_nll": totals[2] / max(totals[3], 1),
            "num_masked": int(totals[3]), "num_batches": num_batches}


def context_for(cfg: Config) -> StepContext:
    mesh = make_mesh(cfg.mesh)
    check_batch(cfg.data.batch_size // cfg.data.grad_accum, mesh)
    return build_context(cfg, mesh)
