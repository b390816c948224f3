"""The masked-diffusion forward process in pure jnp: t ~ U[eps, 1], S1/S2/S3 and SFT conditional masking.

Every function takes an explicit PRNG key and works on whole batches, so the step can jit it and a resumed run
redraws exactly the same noise (the key is fold_in(seed, step)). Shapes: B rows, L positions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class MaskingRates(NamedTuple):
    """Per-step inputs from the MaskingSchedule; arrays so a new curriculum phase does not recompile the step."""

    prefix_prob: Array  # S1 per-row probability, float32 scalar
    truncate_prob: Array  # S2 per-row probability (rows without S1), float32 scalar
    block_prob: Array  # S3 per-batch probability, float32 scalar
    block_sizes: Array  # int32 [MAX_BLOCK_SIZES]; only the first num_block_sizes are drawn from
    num_block_sizes: Array  # int32 scalar
    cond_ratio: Array  # SFT: fraction of condition tokens kept unmaskable, float32 in [0, 1]


class Noised(NamedTuple):
    """A batch after the forward process."""

    input_ids: Array  # [B, L] model input: masked positions hold the mask id
    target_ids: Array  # [B, L] clean tokens after S2 truncation (what the loss predicts)
    is_masked: Array  # [B, L] bool
    t: Array  # [B] noise level per row; the loss weight is 1/t


def sample_t(key: Array, batch: int, eps: float) -> Array:
    """t ~ U[eps, 1] per row; the floor keeps 1/t bounded."""
    return eps + (1.0 - eps) * jax.random.uniform(key, (batch,), jnp.float32)


def segment_starts(segment_ids: Array) -> Array:
    """[B, L] True at position 0 and wherever a new packed document begins."""
    change = segment_ids[:, 1:] != segment_ids[:, :-1]
    return jnp.concatenate([jnp.ones_like(change[:, :1]), change], axis=1)


def prefix_unmaskable(key: Array, batch: int, seq_len: int, prob: Array) -> Array:
    """S1: with probability `prob` a row gets a clean prefix of length uniform in [1, L-1]. Returns [B, L]."""
    k_row, k_len = jax.random.split(key)
    chosen = jax.random.uniform(k_row, (batch,)) < prob
    length = jax.random.randint(k_len, (batch,), 1, seq_len)
    return chosen[:, None] & (jnp.arange(seq_len)[None, :] < length[:, None])


def truncate_suffix(key: Array, ids: Array, prob: Array, eligible: Array, pad_id: int) -> tuple[Array, Array]:
    """S2: on eligible rows, with probability `prob`, overwrite positions >= cut (cut uniform in [1, L-1]) with pad.

    Returns (ids, truncated [B, L] bool). The pads become visible, unmaskable input: the model learns that a
    sequence may end early, which is what trailing pad on the inference canvas means.
    """
    batch, seq_len = ids.shape
    k_row, k_cut = jax.random.split(key)
    chosen = eligible & (jax.random.uniform(k_row, (batch,)) < prob)
    cut = jax.random.randint(k_cut, (batch,), 1, seq_len)
    truncated = chosen[:, None] & (jnp.arange(seq_len)[None, :] >= cut[:, None])
    return jnp.where(truncated, pad_id, ids), truncated


def conditional_unmaskable(condition: Array, ratio: Array) -> Array:
    """SFT: the first floor(ratio * |condition|) condition tokens of each row stay clean; the rest may be masked.

    ratio 0 is fully unconditional, ratio 1 keeps the whole prompt (or infill prefix/suffix) clean.
    """
    count = jnp.sum(condition, axis=1, keepdims=True)
    keep = jnp.floor(ratio * count)
    rank = jnp.cumsum(condition, axis=1)  # 1-based rank of each condition token
    return condition & (rank <= keep)


def block_mask(key: Array, maskable: Array, t: Array, block_size: Array) -> Array:
    """S3: every window of `block_size` maskable tokens starts a masked block with prob 1-(1-t)^(1/k).

    An interior token is covered by k windows, so it stays clean with probability (1-t): the per-token rate is
    t as for token masking (a little less near unmaskable tokens and the row end). k = 1 is token masking.
    `block_size` may be traced: windows are counted with cumulative sums instead of static slices.
    """
    batch, seq_len = maskable.shape
    k = block_size.astype(jnp.int32)
    zeros = jnp.zeros((batch, 1), jnp.int32)
    cum = jnp.concatenate([zeros, jnp.cumsum(maskable.astype(jnp.int32), axis=1)], axis=1)  # [B, L+1]
    start = jnp.arange(seq_len)
    end = jnp.minimum(start + k, seq_len)
    full = ((end - start) == k)[None, :] & ((cum[:, end] - cum[:, start]) == k)  # window entirely maskable
    p_window = 1.0 - (1.0 - t[:, None]) ** (1.0 / k.astype(jnp.float32))
    fires = full & (jax.random.uniform(key, (batch, seq_len)) < p_window)
    fired = jnp.concatenate([zeros, jnp.cumsum(fires.astype(jnp.int32), axis=1)], axis=1)
    first = jnp.maximum(start - k + 1, 0)  # windows starting in [i-k+1, i] cover position i
    return maskable & ((fired[:, start + 1] - fired[:, first]) > 0)


def choose_block_size(key: Array, rates: MaskingRates) -> Array:
    """S3 decision for the whole batch: a size drawn from the phase's list with prob block_prob, else 1."""
    k_use, k_size = jax.random.split(key)
    size = rates.block_sizes[jax.random.randint(k_size, (), 0, rates.num_block_sizes)]
    return jnp.where(jax.random.uniform(k_use) < rates.block_prob, size, 1)


def noise_batch(key: Array, ids: Array, segment_ids: Array, condition: Array, rates: MaskingRates, *,
                eps: float, mask_id: int, pad_id: int, conditional: bool) -> Noised:
    """The full forward process for one batch.

    Pre/mid-training (conditional=False): S1 prefix, S2 truncation on the other rows, every pad unmaskable.
    SFT (conditional=True): condition tokens unmaskable per the ramp; response pads are maskable (and so
    trained) because the model must learn to end an answer. Either way the first token of every segment stays
    clean: under the shift nothing predicts it, so masking it would only hide context.
    """
    batch, seq_len = ids.shape
    k_t, k_prefix, k_trunc, k_size, k_block = jax.random.split(key, 5)
    t = sample_t(k_t, batch, eps)
    maskable = ~segment_starts(segment_ids)
    if conditional:
        maskable &= ~conditional_unmaskable(condition, rates.cond_ratio)
    else:
        prefix = prefix_unmaskable(k_prefix, batch, seq_len, rates.prefix_prob)
        ids, _ = truncate_suffix(k_trunc, ids, rates.truncate_prob, ~jnp.any(prefix, axis=1), pad_id)
        maskable &= ~prefix & (ids != pad_id)
    is_masked = block_mask(k_block, maskable, t, choose_block_size(k_size, rates))
    return Noised(jnp.where(is_masked, mask_id, ids), ids, is_masked, t)
