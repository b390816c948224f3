"""The shifted, 1/t-weighted, segment-aware masked cross-entropy against a plain numpy reference, and the chunked
form (hidden states + lm_head, never all logits) against the full-logits one in values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coda_training.loss import VOCAB_TILE, chunked_masked_diffusion_loss, masked_diffusion_loss


def reference_loss(logits, targets, is_masked, t, segments) -> tuple[float, int]:
    total, count = 0.0, 0
    batch, length, _ = logits.shape
    for b in range(batch):
        for i in range(length - 1):
            if is_masked[b, i + 1] and segments[b, i] == segments[b, i + 1]:
                row = logits[b, i].astype(np.float64)
                log_z = np.log(np.sum(np.exp(row - row.max()))) + row.max()
                total += (log_z - row[targets[b, i + 1]]) / t[b]
                count += 1
    return total, count


def test_matches_reference_with_shift_weight_and_segments() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 10, 17)).astype(np.float32)
    targets = rng.integers(0, 17, (3, 10))
    is_masked = rng.random((3, 10)) < 0.5
    t = np.array([0.1, 0.5, 1.0], np.float32)
    segments = np.array([[0] * 10, [0] * 4 + [1] * 6, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]])
    parts = masked_diffusion_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(is_masked), jnp.asarray(t),
                                  jnp.asarray(segments))
    expected, count = reference_loss(logits, targets, is_masked, t, segments)
    assert int(parts.num_masked) == count
    np.testing.assert_allclose(float(parts.weighted_nll_sum), expected, rtol=1e-5)


def test_position_i_is_scored_on_token_i_plus_1() -> None:
    # Logits that put all mass on token 3 at position 0 only: a masked token 3 at position 1 costs ~0.
    logits = np.zeros((1, 3, 5), np.float32)
    logits[0, 0, 3] = 50.0
    targets = np.array([[1, 3, 2]])
    only_pos1 = np.array([[False, True, False]])
    parts = masked_diffusion_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(only_pos1),
                                  jnp.ones(1), jnp.zeros((1, 3), jnp.int32))
    assert float(parts.weighted_nll_sum) < 1e-6
    only_pos2 = np.array([[False, False, True]])
    parts = masked_diffusion_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(only_pos2),
                                  jnp.ones(1), jnp.zeros((1, 3), jnp.int32))
    np.testing.assert_allclose(float(parts.weighted_nll_sum), np.log(5.0), rtol=1e-6)


def test_unmasked_targets_and_position_zero_cost_nothing() -> None:
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 9)), jnp.float32)
    is_masked = jnp.zeros((2, 6), bool).at[:, 0].set(True)  # position 0 is never a target
    zeros = jnp.zeros((2, 6), jnp.int32)
    parts = masked_diffusion_loss(logits, zeros, is_masked, jnp.ones(2), zeros)
    assert float(parts.weighted_nll_sum) == 0.0 and int(parts.num_masked) == 0


def loss_inputs(dtype: str, vocab: int = 37) -> tuple:
    rng = np.random.default_rng(2)
    batch, length, width = 3, 11, 8
    hidden = jnp.asarray(rng.normal(size=(batch, length, width)), dtype)
    head = jnp.asarray(rng.normal(size=(width, vocab)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, vocab, (batch, length)))
    is_masked = jnp.asarray(rng.random((batch, length)) < 0.6)
    t = jnp.asarray([0.05, 0.5, 1.0], jnp.float32)
    segments = jnp.asarray([[0] * 11, [0] * 4 + [1] * 7, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]])
    return hidden, head, targets, is_masked, t, segments


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("bfloat16", 2e-2)])
@pytest.mark.parametrize("chunk, vocab", [
    (1, 37), (3, 37), (4096, 37),  # 10 shifted positions: one per chunk, an uneven last chunk, one chunk
    (3, 2 * VOCAB_TILE + 300),  # three vocab tiles, the last clamped so it overlaps the second
])
def test_chunked_loss_equals_full_logits_in_value_and_gradient(dtype: str, rtol: float, chunk: int,
                                                               vocab: int) -> None:
    hidden, head, targets, is_masked, t, segments = loss_inputs(dtype, vocab)

    def full(h, w):
        logits = (h @ w.astype(h.dtype)).astype(jnp.float32)  # what Model.__call__'s lm_head computes
        return masked_diffusion_loss(logits, targets, is_masked, t, segments)

    def chunked(h, w):
        return chunked_masked_diffusion_loss(h, w, targets, is_masked, t, segments, chunk)

    ours, reference = chunked(hidden, head), full(hidden, head)
    assert int(ours.num_masked) == int(reference.num_masked) > 0
    np.testing.assert_allclose(float(ours.weighted_nll_sum), float(reference.weighted_nll_sum), rtol=rtol)
    np.testing.assert_allclose(float(ours.nll_sum), float(reference.nll_sum), rtol=rtol)
    grad = lambda fn: jax.grad(lambda h, w: fn(h, w).weighted_nll_sum, argnums=(0, 1))(hidden, head)  # noqa: E731
    for ours_g, ref_g in zip(grad(chunked), grad(full)):
        ours_g, ref_g = np.asarray(ours_g, np.float32), np.asarray(ref_g, np.float32)
        np.testing.assert_allclose(ours_g, ref_g, atol=rtol * np.abs(ref_g).max(), rtol=0)


def test_chunked_loss_holds_one_chunk_of_logits() -> None:
    """XLA's buffer plan for value-and-grad with 4096 positions x 8192 vocab: the full loss needs the [L, V] fp32
    logits (128 MiB); 256-position chunks of 2048-column tiles keep the temporaries well under a quarter of that
    (and hold no second [D, V] copy of the head)."""
    tokens, width, vocab = 4096, 64, 8192
    shapes = (jax.ShapeDtypeStruct((1, tokens, width), jnp.float32), jax.ShapeDtypeStruct((width, vocab), jnp.float32))
    ints = jnp.zeros((1, tokens), jnp.int32)

    def temp_bytes(fn) -> int:
        grad = jax.grad(lambda h, w: fn(h, w).weighted_nll_sum, argnums=(0, 1))
        return jax.jit(grad).lower(*shapes).compile().memory_analysis().temp_size_in_bytes

    full = lambda h, w: masked_diffusion_loss((h @ w), ints, ints == 0, jnp.ones(1), ints)  # noqa: E731
    chunked = lambda h, w: chunked_masked_diffusion_loss(h, w, ints, ints == 0, jnp.ones(1), ints, 256)  # noqa: E731
    logits_bytes = tokens * vocab * 4
    assert temp_bytes(full) >= logits_bytes
    assert temp_bytes(chunked) < logits_bytes / 4
