"""Shifted masked cross-entropy weighted by 1/t (CoDA eq. 6), segment-aware, returned as a sum for exact accumulation.

Position i predicts token i+1, so the loss compares logits[:, :-1] with targets[:, 1:] where position i+1 is
masked. The caller divides by B x L (the full batch, not the masked count), as CoDA does; returning the sum
lets gradient accumulation add numerators across micro-batches and divide once.

`masked_diffusion_loss` takes full [B, L, V] logits (the reference); `chunked_masked_diffusion_loss` takes the
final hidden states and the lm_head and scores a chunk of positions at a time under jax.checkpoint, so neither
the forward nor the backward pass holds more than [B, chunk, V] logits (MaxText's vocabulary tiling, over the
sequence).
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


def _targets_and_validity(target_ids: Array, is_masked: Array, segment_ids: Array) -> tuple[Array, Array]:
    """targets[:, 1:] and which of them are scored."""
    # A target in another document than its predicting position is never scored: with segment-aware
    # attention that position cannot see the new document, so the target would be pure noise.
    valid = is_masked[:, 1:] & (segment_ids[:, 1:] == segment_ids[:, :-1])
    return target_ids[:, 1:], valid


def masked_diffusion_loss(logits: Array, target_ids: Array, is_masked: Array, t: Array,
                          segment_ids: Array) -> LossParts:
    """logits [B, L, V] fp32, target_ids/is_masked/segment_ids [B, L], t [B]."""
    pred = logits[:, :-1]  # [B, L-1, V]: position i's prediction of token i+1
    targets, valid = _targets_and_validity(target_ids, is_masked, segment_ids)
    target_logit = jnp.take_along_axis(pred, targets[..., None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(pred, axis=-1) - target_logit  # [B, L-1]
    nll = jnp.where(valid, nll, 0.0)
    return LossParts(
        weighted_nll_sum=jnp.sum(nll / t[:, None]),
        num_masked=jnp.sum(valid, dtype=jnp.int32),
        nll_sum=jnp.sum(nll),
    )


def chunked_masked_diffusion_loss(hidden: Array, head_kernel: Array, target_ids: Array, is_masked: Array, t: Array,
                                  segment_ids: Array, chunk_len: int) -> LossParts:
    """hidden [B, L, D] in the compute dtype, head_kernel [D, V] fp32 (cast per chunk, as the lm_head does),
    target_ids/is_masked/segment_ids [B, L], t [B]. Equals masked_diffusion_loss(lm_head(hidden), ...).

    Chunks cut the sequence, not the batch: the batch axis stays whole inside each chunk, so it stays sharded
    over the mesh the way the activations are (a flattened token axis would put the scan on a sharded axis).
    """
    b, l, _ = hidden.shape
    targets, valid = _targets_and_validity(target_ids, is_masked, segment_ids)
    chunk = min(chunk_len, l - 1)
    padded = -(-(l - 1) // chunk) * chunk  # padding positions are invalid: they add exactly 0

    def chunked(x: Array) -> Array:
        """[B, L-1, ...] -> [num_chunks, B, chunk, ...]."""
        x = jnp.pad(x, [(0, 0), (0, padded - (l - 1))] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape(b, padded // chunk, chunk, *x.shape[2:]), 1, 0)

    def chunk_sums(sums: tuple[Array, Array], xs: tuple) -> tuple[tuple[Array, Array], None]:
        h, tgt, ok = xs
        # The cast sits inside the chunk so the head's gradient accumulates across chunks in fp32.
        logits = (h @ head_kernel.astype(h.dtype)).astype(jnp.float32)  # [B, chunk, V], freed after the chunk
        target_logit = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0]
        nll = jnp.where(ok, jax.nn.logsumexp(logits, axis=-1) - target_logit, 0.0)
        return (sums[0] + jnp.sum(nll / t[:, None]), sums[1] + jnp.sum(nll)), None

    zero = jnp.zeros((), jnp.float32)
    # Checkpointed body: the backward pass recomputes each chunk's logits instead of saving them.
    (weighted, nll_sum), _ = jax.lax.scan(jax.checkpoint(chunk_sums, prevent_cse=False), (zero, zero),
                                          (chunked(hidden[:, :-1]), chunked(targets), chunked(valid)))
    return LossParts(weighted_nll_sum=weighted, num_masked=jnp.sum(valid, dtype=jnp.int32), nll_sum=nll_sum)
