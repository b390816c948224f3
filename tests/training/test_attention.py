"""Every attention implementation equals the einsum reference in values and gradients: GQA, packed segments,
lengths that are not a multiple of the block, fp32 and bf16; the blockwise backward never holds L x L scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coda_training import attention
from coda_training.config import MeshConfig
from coda_training.sharding import make_mesh

HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16
# bf16 inputs carry ~3 significant digits; both bf16 paths are compared with the fp32 reference.
TOLERANCE = {"float32": 2e-5, "bfloat16": 3e-2}


def inputs(batch: int, length: int, dtype: str, seed: int = 0) -> tuple[jax.Array, ...]:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(batch, length, HEADS, HEAD_DIM))
    k, v = (rng.normal(size=(batch, length, KV_HEADS, HEAD_DIM)) for _ in range(2))
    # Packed rows: 3 documents of random lengths per row, so blocks straddle document boundaries.
    segments = np.sort(rng.integers(0, 3, (batch, length)), axis=1)
    return (*(jnp.asarray(x, dtype) for x in (q, k, v)), jnp.asarray(segments, jnp.int32))


def loss_grads(fn, q, k, v, segments):
    """Gradients of a weighted sum of the output, so every output element gets a distinct cotangent."""
    weights = jnp.sin(jnp.arange(q.size, dtype=jnp.float32)).reshape(q.shape)
    value = lambda q, k, v: jnp.sum(fn(q, k, v, segments).astype(jnp.float32) * weights)  # noqa: E731
    return jax.jit(jax.grad(value, argnums=(0, 1, 2)))(q, k, v)


def assert_close(ours, reference, dtype: str) -> None:
    ours, reference = np.asarray(ours, np.float32), np.asarray(reference, np.float32)
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(ours, reference, atol=TOLERANCE[dtype] * scale, rtol=0)


def blockwise(block_q: int, block_kv: int):
    return lambda q, k, v, s: attention.blockwise_attention(q, k, v, s, block_q, block_kv)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("length, block_q, block_kv, with_segments", [
    (40, 16, 16, True),  # 3 x 3 whole blocks
    (37, 8, 16, True),  # neither block divides L; queries and keys padded differently
    (24, 32, 32, False),  # one block larger than L; no segments
])
def test_blockwise_equals_einsum(dtype: str, length: int, block_q: int, block_kv: int, with_segments: bool) -> None:
    q, k, v, segments = inputs(2, length, dtype)
    segments = segments if with_segments else None
    q32, k32, v32 = (x.astype(jnp.float32) for x in (q, k, v))
    reference = attention.einsum_attention(q32, k32, v32, segments)
    assert_close(blockwise(block_q, block_kv)(q, k, v, segments), reference, dtype)
    assert_close(attention.einsum_attention(q, k, v, segments), reference, dtype)  # the tolerance is fair
    reference_grads = loss_grads(attention.einsum_attention, q32, k32, v32, segments)
    for ours, ref in zip(loss_grads(blockwise(block_q, block_kv), q, k, v, segments), reference_grads):
        assert ours.dtype == q.dtype
        assert_close(ours, ref, dtype)


def test_blockwise_backward_holds_no_full_score_matrix() -> None:
    """XLA's own buffer plan for value-and-grad at L = 2048: the einsum path needs the [heads, L, L] fp32 scores
    (and their gradient); the blockwise path's temporaries stay a small fraction of one such matrix."""
    q, k, v, segments = (jax.ShapeDtypeStruct(x.shape, x.dtype) for x in inputs(1, 8, "float32"))
    length = 2048
    shapes = [jax.ShapeDtypeStruct((1, length, *x.shape[2:]), x.dtype) for x in (q, k, v)]
    seg = jax.ShapeDtypeStruct((1, length), jnp.int32)

    def temp_bytes(fn) -> int:
        grad = jax.grad(lambda q, k, v, s: jnp.sum(fn(q, k, v, s)), argnums=(0, 1, 2))
        return jax.jit(grad).lower(*shapes, seg).compile().memory_analysis().temp_size_in_bytes

    scores_bytes = HEADS * length * length * 4
    assert temp_bytes(attention.einsum_attention) >= scores_bytes
    assert temp_bytes(blockwise(256, 256)) < scores_bytes / 8


def test_cudnn_call_layout_mask_and_gqa_equal_einsum() -> None:
    """The cuDNN path's call (BTNH layout, GQA, segment mask) run by XLA on CPU; cuDNN itself needs an NVIDIA GPU,
    which CI does not have."""
    q, k, v, segments = inputs(2, 40, "float32")
    reference = attention.einsum_attention(q, k, v, segments)
    assert_close(attention.fused_attention(q, k, v, segments, implementation="xla"), reference, "float32")


def test_splash_kernel_in_interpret_mode_under_a_sharded_batch() -> None:
    """The TPU Pallas kernel itself, run by Pallas's interpreter on CPU, under shard_map over a 2-device fsdp mesh;
    L = 200 is padded to two 128-blocks."""
    q, k, v, segments = inputs(2, 200, "float32")
    mesh = make_mesh(MeshConfig(1, 2, 1), jax.devices()[:2])
    splash = lambda q, k, v, s: attention.splash_attention(q, k, v, s, 128, interpret=True, mesh=mesh)  # noqa: E731
    out = jax.jit(splash)(q, k, v, segments)
    grads = loss_grads(splash, q, k, v, segments)
    assert_close(out, attention.einsum_attention(q, k, v, segments), "float32")
    for ours, ref in zip(grads, loss_grads(attention.einsum_attention, q, k, v, segments)):
        assert_close(ours, ref, "float32")


@pytest.mark.parametrize("platform, dtype, expected", [
    ("tpu", "bfloat16", "splash"), ("tpu", "float32", "splash"), ("gpu", "bfloat16", "cudnn"),
    ("gpu", "float32", "blockwise"), ("cpu", "bfloat16", "blockwise"),
])
def test_auto_picks_the_fused_kernel_per_platform(platform: str, dtype: str, expected: str) -> None:
    assert attention.resolve_kind("auto", dtype, platform) == expected
    assert attention.resolve_kind("einsum", dtype, platform) == "einsum"
