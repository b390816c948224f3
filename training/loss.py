"""Shifted masked cross-entropy weighted by 1/t (CoDA eq. 6), segment-aware, returned as a sum for exact accumulation.

Position i predicts token i+1, so the loss compares logits[:, :-1] with targets[:, 1:] where position i+1 is
masked. The caller divides by B x L (the full batch, not the masked count), as CoDA does; returning the sum
lets gradient accumulation add numerators across micro-batches and divide once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class LossParts(NamedTuple):
    weighted_nll_sum: Array  # sum over masked targets of CE / t (float32 scalar)
    num_masked: Array  # number of targets that entered the sum (int32 scalar), for logging
    nll_sum: Array  # unweighted CE sum over the same targets (float32), for a readable per-token loss


def masked_diffusion_loss(logits: Array, target_ids: Array, is_masked: Array, t: Array,
                          segment_ids: Array) -> LossParts:
    """logits [B, L, V] fp32, target_ids/is_masked/segment_ids [B, L], t [B]."""
    pred = logits[:, :-1]  # [B, L-1, V]: position i's prediction of token i+1
    targets = target_ids[:, 1:]
    # A target in another document than its predicting position is never scored: with segment-aware
    # attention that position cannot see the new document, so the target would be pure noise.
    valid = is_masked[:, 1:] & (segment_ids[:, 1:] == segment_ids[:, :-1])
    target_logit = jnp.take_along_axis(pred, targets[..., None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(pred, axis=-1) - target_logit  # [B, L-1]
    nll = jnp.where(valid, nll, 0.0)
    return LossParts(
        weighted_nll_sum=jnp.sum(nll / t[:, None]),
        num_masked=jnp.sum(valid, dtype=jnp.int32),
        nll_sum=jnp.sum(nll),
    )
