"""Bidirectional, segment-aware GQA attention in four implementations behind one `attend` call.

- `einsum`: the reference; materialises the [B, heads, L, L] fp32 scores (fine for short rows and tests).
- `blockwise`: pure JAX online softmax over query x key blocks with a custom VJP that saves only the output
  and one log-sum-exp per query, and recomputes each block's scores in the backward pass (FlashAttention-2,
  arXiv 2307.08691, Algorithms 1-2). Memory O(L x block) instead of O(L^2); runs on every backend.
- `splash`: the TPU Pallas kernel (jax.experimental.pallas.ops.tpu.splash_attention) with SegmentIds;
  `interpret=True` runs the same kernel on CPU for tests.
- `cudnn`: jax.nn.dot_product_attention's cuDNN fused kernel on NVIDIA GPUs (bf16/fp16 only); segments go in as
  a boolean mask, which cuDNN folds into an O(L^2) bias (one [L, L] per sequence, not per head).

Layout everywhere: q [B, L, N, H], k and v [B, L, K, H] with N a multiple of K (query head n reads kv head
n // (N / K), HF repeat_kv order), segment_ids [B, L] non-negative ints or None; output [B, L, N, H].
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from coda_training.sharding import BATCH_AXES

Array = jax.Array
AttentionKind = Literal["auto", "einsum", "blockwise", "splash", "cudnn"]

# A large finite negative instead of -inf: a block in which a query row sees no key then gives finite
# garbage that the online-softmax correction exp(m_old - m_new) multiplies by exactly 0 once a visible key
# arrives, where -inf would give inf - inf = NaN. Same choice as splash's DEFAULT_MASK_VALUE.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
# Padding rows/columns get this segment: padded keys are invisible to real queries (whose ids are >= 0).
PAD_SEGMENT = -1


def resolve_kind(kind: AttentionKind, compute_dtype: str, platform: str | None = None) -> str:
    """`auto` -> the best implementation for the platform: splash on TPU, cuDNN on GPU when the compute dtype
    is one cuDNN accepts (bf16), else blockwise (CPU, fp32 on GPU)."""
    if kind != "auto":
        return kind
    platform = platform or jax.devices()[0].platform
    if platform == "tpu":
        return "splash"
    if platform == "gpu" and compute_dtype == "bfloat16":
        return "cudnn"
    return "blockwise"


def attend(q: Array, k: Array, v: Array, segment_ids: Array | None, kind: AttentionKind = "auto",
           block_size: int = 512, compute_dtype: str = "float32", mesh: Mesh | None = None) -> Array:
    """softmax(q k^T / sqrt(H)) v within each segment, by the implementation `kind` resolves to; `mesh` is
    where the batch is split (splash runs under shard_map on it)."""
    resolved = resolve_kind(kind, compute_dtype)
    if resolved == "einsum":
        return einsum_attention(q, k, v, segment_ids)
    if resolved == "blockwise":
        return blockwise_attention(q, k, v, segment_ids, block_size, block_size)
    if resolved == "splash":
        return splash_attention(q, k, v, segment_ids, block_size, mesh=mesh)
    return fused_attention(q, k, v, segment_ids, implementation="cudnn")


def einsum_attention(q: Array, k: Array, v: Array, segment_ids: Array | None) -> Array:
    """The reference: full fp32 scores, masked across segments, softmax, then the value product."""
    b, l, n, h = q.shape
    kv_heads = k.shape[2]
    grouped = q.reshape(b, l, kv_heads, n // kv_heads, h)
    scores = jnp.einsum("bqkgh,bskh->bkgqs", grouped, k, preferred_element_type=jnp.float32) * h**-0.5
    if segment_ids is not None:
        allowed = segment_ids[:, :, None] == segment_ids[:, None, :]  # [B, Lq, Ls]
        scores = jnp.where(allowed[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    return jnp.einsum("bkgqs,bskh->bqkgh", probs, v).reshape(b, l, n, h)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def _pad_length(x: Array, length: int, value: int | float = 0) -> Array:
    """Pad axis 1 (the sequence) of x up to `length`."""
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, length - x.shape[1])
    return jnp.pad(x, pad, constant_values=value)


def blockwise_attention(q: Array, k: Array, v: Array, segment_ids: Array | None, block_q: int = 512,
                        block_kv: int = 512) -> Array:
    """Online-softmax attention over [block_q x block_kv] tiles; any L (padded up to the blocks, then cut)."""
    b, l, n, h = q.shape
    kv_heads = k.shape[2]
    bq, bk = min(block_q, l), min(block_kv, l)
    lq, lk = _round_up(l, bq), _round_up(l, bk)
    seg = jnp.zeros((b, l), jnp.int32) if segment_ids is None else segment_ids.astype(jnp.int32)
    grouped = _pad_length(q.reshape(b, l, kv_heads, n // kv_heads, h), lq)
    out = _flash(grouped, _pad_length(k, lk), _pad_length(v, lk), _pad_length(seg, lq, PAD_SEGMENT),
                 _pad_length(seg, lk, PAD_SEGMENT), bq, bk)
    return out[:, :l].reshape(b, l, n, h)


def _q_blocks(x: Array, block: int) -> Array:
    """[B, L, ...] -> [L / block, B, block, ...]: the leading axis is what lax.map / lax.scan walk."""
    return jnp.moveaxis(x.reshape(x.shape[0], x.shape[1] // block, block, *x.shape[2:]), 1, 0)


def _from_blocks(x: Array) -> Array:
    """Inverse of _q_blocks."""
    x = jnp.moveaxis(x, 0, 1)
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def _block_scores(q_i: Array, k_j: Array, seg_q_i: Array, seg_k_j: Array) -> Array:
    """Scaled, masked fp32 scores of one tile: q_i [B, bq, K, G, H], k_j [B, bk, K, H] -> [B, K, G, bq, bk]."""
    scores = jnp.einsum("bqkgh,bskh->bkgqs", q_i, k_j, preferred_element_type=jnp.float32) * q_i.shape[-1] ** -0.5
    allowed = seg_q_i[:, None, None, :, None] == seg_k_j[:, None, None, None, :]
    return jnp.where(allowed, scores, MASK_VALUE)


def _flash_forward(q: Array, k: Array, v: Array, seg_q: Array, seg_k: Array, bq: int,
                   bk: int) -> tuple[Array, Array]:
    """Output [B, Lq, K, G, H] in q's dtype and the per-query log-sum-exp [B, K, G, Lq] in fp32."""
    b, _, kv_heads, groups, h = q.shape
    k_blocks, v_blocks, seg_k_blocks = _q_blocks(k, bk), _q_blocks(v, bk), _q_blocks(seg_k, bk)

    def one_query_block(args: tuple[Array, Array]) -> tuple[Array, Array]:
        q_i, seg_q_i = args

        def kv_step(carry: tuple, kv: tuple) -> tuple[tuple, None]:
            row_max, row_sum, acc = carry
            k_j, v_j, seg_k_j = kv
            scores = _block_scores(q_i, k_j, seg_q_i, seg_k_j)
            new_max = jnp.maximum(row_max, scores.max(axis=-1))
            probs = jnp.exp(scores - new_max[..., None])
            correction = jnp.exp(row_max - new_max)
            row_sum = row_sum * correction + probs.sum(axis=-1)
            pv = jnp.einsum("bkgqs,bskh->bkgqh", probs.astype(v_j.dtype), v_j, preferred_element_type=jnp.float32)
            return (new_max, row_sum, acc * correction[..., None] + pv), None

        stats_shape = (b, kv_heads, groups, q_i.shape[1])
        init = (jnp.full(stats_shape, MASK_VALUE, jnp.float32), jnp.zeros(stats_shape, jnp.float32),
                jnp.zeros((*stats_shape, h), jnp.float32))
        (row_max, row_sum, acc), _ = jax.lax.scan(kv_step, init, (k_blocks, v_blocks, seg_k_blocks))
        out = (acc / row_sum[..., None]).astype(q.dtype)  # [B, K, G, bq, H]
        return jnp.moveaxis(out, 3, 1), row_max + jnp.log(row_sum)

    out_blocks, lse_blocks = jax.lax.map(one_query_block, (_q_blocks(q, bq), _q_blocks(seg_q, bq)))
    lse = jnp.moveaxis(lse_blocks, 0, 3)  # [B, K, G, nq, bq]
    return _from_blocks(out_blocks), lse.reshape(*lse.shape[:3], -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _flash(q: Array, k: Array, v: Array, seg_q: Array, seg_k: Array, bq: int, bk: int) -> Array:
    return _flash_forward(q, k, v, seg_q, seg_k, bq, bk)[0]


def _flash_fwd(q, k, v, seg_q, seg_k, bq, bk):
    out, lse = _flash_forward(q, k, v, seg_q, seg_k, bq, bk)
    return out, (q, k, v, seg_q, seg_k, out, lse)


def _flash_bwd(bq: int, bk: int, residuals: tuple, d_out: Array) -> tuple:
    """Recompute each tile's probabilities from the saved log-sum-exp: outer scan over key blocks (dk, dv
    finish per block), inner scan over query blocks (dq accumulates across key blocks)."""
    q, k, v, seg_q, seg_k, out, lse = residuals
    scale = q.shape[-1] ** -0.5
    # delta_i = sum_h dO_ih O_ih: the softmax-Jacobian term, one number per query and head.
    delta = jnp.einsum("bqkgh,bqkgh->bkgq", d_out.astype(jnp.float32), out.astype(jnp.float32))
    q_blocks, do_blocks, seg_q_blocks = _q_blocks(q, bq), _q_blocks(d_out.astype(q.dtype), bq), _q_blocks(seg_q, bq)
    stat_blocks = lambda x: jnp.moveaxis(x.reshape(*x.shape[:3], -1, bq), 3, 0)  # noqa: E731  [nq, B, K, G, bq]
    lse_blocks, delta_blocks = stat_blocks(lse), stat_blocks(delta)

    def kv_block(dq_acc: Array, kv: tuple) -> tuple[Array, tuple[Array, Array]]:
        k_j, v_j, seg_k_j = kv

        def q_step(carry: tuple, qs: tuple) -> tuple[tuple, Array]:
            dk_j, dv_j = carry
            q_i, do_i, seg_q_i, lse_i, delta_i = qs
            probs = jnp.exp(_block_scores(q_i, k_j, seg_q_i, seg_k_j) - lse_i[..., None])  # [B, K, G, bq, bk]
            dv_j = dv_j + jnp.einsum("bkgqs,bqkgh->bskh", probs.astype(q.dtype), do_i,
                                     preferred_element_type=jnp.float32)
            d_probs = jnp.einsum("bqkgh,bskh->bkgqs", do_i, v_j, preferred_element_type=jnp.float32)
            d_scores = (probs * (d_probs - delta_i[..., None]) * scale).astype(q.dtype)
            dq_i = jnp.einsum("bkgqs,bskh->bqkgh", d_scores, k_j, preferred_element_type=jnp.float32)
            dk_j = dk_j + jnp.einsum("bkgqs,bqkgh->bskh", d_scores, q_i, preferred_element_type=jnp.float32)
            return (dk_j, dv_j), dq_i

        zeros = jnp.zeros(k_j.shape, jnp.float32)
        (dk_j, dv_j), dq_blocks = jax.lax.scan(q_step, (zeros, zeros),
                                               (q_blocks, do_blocks, seg_q_blocks, lse_blocks, delta_blocks))
        return dq_acc + dq_blocks, (dk_j, dv_j)

    dq0 = jnp.zeros(q_blocks.shape, jnp.float32)
    dq_blocks, (dk_blocks, dv_blocks) = jax.lax.scan(
        kv_block, dq0, (_q_blocks(k, bk), _q_blocks(v, bk), _q_blocks(seg_k, bk)))
    dq = _from_blocks(dq_blocks).astype(q.dtype)
    dk, dv = _from_blocks(dk_blocks).astype(k.dtype), _from_blocks(dv_blocks).astype(v.dtype)
    return dq, dk, dv, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def splash_block(seq_len: int, block_size: int) -> tuple[int, int]:
    """(block, padded length) for splash: blocks are multiples of 128 (its segment-mask tiling), at most
    `block_size`, and the row is padded to a whole number of blocks."""
    block = min(_round_up(block_size, 128), _round_up(seq_len, 128))
    return block, _round_up(seq_len, block)


def splash_attention(q: Array, k: Array, v: Array, segment_ids: Array | None, block_size: int = 512,
                     interpret: bool = False, mesh: Mesh | None = None) -> Array:
    """The Pallas splash kernel, vmapped over the batch; with a mesh it runs under shard_map with the batch
    split like the activations, since XLA cannot partition a Mosaic call itself."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernels
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    b, l, n, h = q.shape
    block, padded = splash_block(l, block_size)
    seg = jnp.zeros((b, l), jnp.int32) if segment_ids is None else segment_ids.astype(jnp.int32)
    seg = _pad_length(seg, padded, PAD_SEGMENT)  # padded queries see the padded keys: no row is empty
    sizes = kernels.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                               block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = masks.MultiHeadMask([masks.FullMask((padded, padded))] * n)
    kernel = kernels.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
    # The kernel applies no softmax scale: pre-scale q (as MaxText and Levanter do).
    to_heads_first = lambda x: jnp.swapaxes(_pad_length(x, padded), 1, 2)  # noqa: E731  [B, heads, L, H]
    q_t, k_t, v_t = to_heads_first(q * jnp.asarray(h**-0.5, q.dtype)), to_heads_first(k), to_heads_first(v)

    def per_batch(q_b: Array, k_b: Array, v_b: Array, seg_b: Array) -> Array:
        return jax.vmap(lambda q1, k1, v1, s1: kernel(q1, k1, v1, segment_ids=kernels.SegmentIds(q=s1, kv=s1)))(
            q_b, k_b, v_b, seg_b)

    if mesh is not None:
        spec4, spec2 = P(BATCH_AXES, None, None, None), P(BATCH_AXES, None)
        per_batch = jax.shard_map(per_batch, mesh=mesh, in_specs=(spec4, spec4, spec4, spec2), out_specs=spec4,
                                  check_vma=False)
    out = per_batch(q_t, k_t, v_t, seg)
    return jnp.swapaxes(out, 1, 2)[:, :l]


def fused_attention(q: Array, k: Array, v: Array, segment_ids: Array | None,
                    implementation: Literal["cudnn", "xla"] = "cudnn") -> Array:
    """jax.nn.dot_product_attention (GQA native, BTNH layout); implementation="xla" is the same call on CPU."""
    mask = None if segment_ids is None else (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
