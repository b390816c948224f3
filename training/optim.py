"""optax chains: global-norm clipping, then Adafactor (pre/mid-training) or AdamW (SFT), on warmup + decay."""

from __future__ import annotations

import optax

from coda_training.config import OptimConfig


def lr_schedule(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to the peak, then cosine / linear decay to peak * min_lr_ratio at num_steps."""
    peak, warmup = cfg.learning_rate, cfg.warmup_steps
    end = peak * cfg.min_lr_ratio
    decay_steps = max(num_steps - warmup, 1)
    if cfg.decay == "cosine":
        after = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.decay == "linear":
        after = optax.linear_schedule(peak, end, decay_steps)
    else:
        after = optax.constant_schedule(peak)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(cfg: OptimConfig, num_steps: int) -> optax.GradientTransformation:
    schedule = lr_schedule(cfg, num_steps)
    if cfg.name == "adafactor":
        # CoDA used HF Adafactor(relative_step=False, scale_parameter=False): an external lr, no
        # parameter-scale multiplier, update clipping at 1.0 (optax's default clipping_threshold).
        inner = optax.adafactor(schedule, multiply_by_parameter_scale=False,
                                weight_decay_rate=cfg.weight_decay or None)
    else:
        inner = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), inner)
    return inner
