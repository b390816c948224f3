"""Shifted masked cross-entropy weighted by 1/t (CoDA eq. 6), segment-aware, returned as a sum for exact accumulation.

Position i predicts token i+1, so the loss compares logits[:, :-1] with targets[:, 1:] where position i+1 is
masked. The caller divides by B x L (the full batch, not the masked count), as CoDA does; returning the sum
lets gradient accumulation add numerators across micro-batches and divide once.

`masked_diffusion_loss` takes full [B, L, V] logits (the reference); `chunked_masked_diffusion_loss` takes the
final hidden states and the lm_head and walks chunks of positions (MaxText's vocabulary tiling, over the
sequence) and, inside each, tiles of the vocabulary (Levanter's blockwise cross-entropy), with a custom VJP that
saves one log-sum-exp per token and recomputes each tile's logits: neither pass holds more than [B, chunk, tile]
logits, or any [D, V] buffer besides the head's own fp32 gradient.
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
    """hidden [B, L, D] in the compute dtype, head_kernel [D, V] fp32 (cast to the compute dtype, as the lm_head
    does), target_ids/is_masked/segment_ids [B, L], t [B]. Equals masked_diffusion_loss(lm_head(hidden), ...).

    Chunks cut the sequence, not the batch: the batch axis stays whole inside each chunk, so it stays sharded
    over the mesh the way the activations are (a flattened token axis would put the scan on a sharded axis).
    t is the sampled noise level, not a parameter: no gradient flows to it.
    """
    b, l, _ = hidden.shape
    targets, valid = _targets_and_validity(target_ids, is_masked, segment_ids)
    chunk = min(chunk_len, l - 1)
    padded = -(-(l - 1) // chunk) * chunk  # padding positions are invalid: they add exactly 0

    def chunked(x: Array) -> Array:
        """[B, L-1, ...] -> [num_chunks, B, chunk, ...]."""
        x = jnp.pad(x, [(0, 0), (0, padded - (l - 1))] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape(b, padded // chunk, chunk, *x.shape[2:]), 1, 0)

    weighted, nll_sum = _chunked_nll_sums(chunked(hidden[:, :-1]), head_kernel, chunked(targets), chunked(valid),
                                          jax.lax.stop_gradient(t))
    return LossParts(weighted_nll_sum=weighted, num_masked=jnp.sum(valid, dtype=jnp.int32), nll_sum=nll_sum)


# Vocabulary columns per tile inside a chunk: the head is read (and cast to the compute dtype) one [D, tile]
# slice at a time, so no [D, V] copy of it exists besides its fp32 gradient (151,936 = 74 tiles of 2,048, the
# last one overlapping its neighbour).
VOCAB_TILE = 2048


def _tiles(vocab: int) -> tuple[int, int]:
    tile = min(VOCAB_TILE, vocab)
    return tile, -(-vocab // tile)


def _tile_logits(h: Array, head_kernel: Array, index: Array, tile: int) -> tuple[Array, Array, Array]:
    """Logits of vocab tile `index` in fp32 [B, chunk, tile] with the lm_head's numerics (matmul in the compute
    dtype), the tile's first column, and which of its columns are new (the clamped last tile overlaps)."""
    vocab = head_kernel.shape[1]
    start = jnp.minimum(index * tile, vocab - tile)
    columns = jax.lax.dynamic_slice_in_dim(head_kernel, start, tile, axis=1).astype(h.dtype)
    fresh = start + jnp.arange(tile) >= index * tile
    return (h @ columns).astype(jnp.float32), start, fresh


def _chunk_stats(h: Array, head_kernel: Array, tgt: Array) -> tuple[Array, Array]:
    """log-sum-exp over the vocab and the target's logit, [B, chunk] each, by an online max over tiles."""
    tile, num_tiles = _tiles(head_kernel.shape[1])

    def over_tiles(carry: tuple, index: Array) -> tuple[tuple, None]:
        row_max, row_sum, target_logit = carry
        logits, start, fresh = _tile_logits(h, head_kernel, index, tile)
        logits = jnp.where(fresh, logits, -jnp.inf)
        new_max = jnp.maximum(row_max, logits.max(axis=-1))
        row_sum = row_sum * jnp.exp(row_max - new_max) + jnp.exp(logits - new_max[..., None]).sum(axis=-1)
        column = tgt - start
        hit = (column >= 0) & (column < tile) & (tgt >= index * tile)
        picked = jnp.take_along_axis(logits, jnp.clip(column, 0, tile - 1)[..., None], axis=-1)[..., 0]
        return (new_max, row_sum, jnp.where(hit, picked, target_logit)), None

    shape = tgt.shape
    init = (jnp.full(shape, -jnp.inf, jnp.float32), jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
    (row_max, row_sum, target_logit), _ = jax.lax.scan(over_tiles, init, jnp.arange(num_tiles))
    return row_max + jnp.log(row_sum), target_logit


@jax.custom_vjp
def _chunked_nll_sums(h_chunks: Array, head_kernel: Array, targets: Array, valid: Array,
                      t: Array) -> tuple[Array, Array]:
    """(sum of nll / t, sum of nll) over sequence chunks [n, B, chunk, ...], vocab tile by vocab tile."""
    return _nll_sums_fwd(h_chunks, head_kernel, targets, valid, t)[0]


def _nll_sums_fwd(h_chunks, head_kernel, targets, valid, t):
    def chunk_sums(sums: tuple[Array, Array], xs: tuple) -> tuple[tuple[Array, Array], Array]:
        h, tgt, ok = xs
        lse, target_logit = _chunk_stats(h, head_kernel, tgt)
        nll = jnp.where(ok, lse - target_logit, 0.0)
        return (sums[0] + jnp.sum(nll / t[:, None]), sums[1] + jnp.sum(nll)), lse

    zero = jnp.zeros((), jnp.float32)
    sums, lse = jax.lax.scan(chunk_sums, (zero, zero), (h_chunks, targets, valid))
    # Residuals: the inputs and one log-sum-exp per token; the backward pass recomputes each tile's logits.
    return sums, (h_chunks, head_kernel, targets, valid, t, lse)


def _nll_sums_bwd(residuals: tuple, cotangents: tuple[Array, Array]) -> tuple:
    """d nll / d logits = softmax - onehot(target), per valid token times (g_weighted / t + g_plain). Each tile's
    head gradient is the compute-dtype product (as the reference's single matmul rounds it), added into an fp32
    [D, V] accumulator in place: no other [D, V] buffer exists."""
    h_chunks, head_kernel, targets, valid, t, lse = residuals
    g_weighted, g_plain = cotangents
    tile, num_tiles = _tiles(head_kernel.shape[1])

    def chunk_grads(d_kernel: Array, xs: tuple) -> tuple[Array, Array]:
        h, tgt, ok, lse_c = xs
        coeff = jnp.where(ok, g_weighted / t[:, None] + g_plain, 0.0)[..., None]  # [B, chunk, 1]

        def over_tiles(carry: tuple, index: Array) -> tuple[tuple, None]:
            d_kernel, d_h = carry
            logits, start, fresh = _tile_logits(h, head_kernel, index, tile)
            is_target = (start + jnp.arange(tile)) == tgt[..., None]
            d_logits = (jnp.where(fresh, jnp.exp(logits - lse_c[..., None]) - is_target, 0.0) * coeff).astype(h.dtype)
            columns = jax.lax.dynamic_slice_in_dim(head_kernel, start, tile, axis=1).astype(h.dtype)
            d_h = d_h + jnp.einsum("bcv,dv->bcd", d_logits, columns).astype(jnp.float32)
            d_cols = jnp.einsum("bcd,bcv->dv", h, d_logits).astype(jnp.float32)
            old = jax.lax.dynamic_slice_in_dim(d_kernel, start, tile, axis=1)
            return (jax.lax.dynamic_update_slice_in_dim(d_kernel, old + d_cols, start, axis=1), d_h), None

        (d_kernel, d_h), _ = jax.lax.scan(over_tiles, (d_kernel, jnp.zeros(h.shape, jnp.float32)),
                                          jnp.arange(num_tiles))
        return d_kernel, d_h.astype(h.dtype)

    d_kernel, d_h = jax.lax.scan(chunk_grads, jnp.zeros(head_kernel.shape, jnp.float32),
                                 (h_chunks, targets, valid, lse))
    return d_h, d_kernel, None, None, jnp.zeros_like(t)


_chunked_nll_sums.defvjp(_nll_sums_fwd, _nll_sums_bwd)
