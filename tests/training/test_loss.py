"""The shifted, 1/t-weighted, segment-aware masked cross-entropy against a plain numpy reference."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from coda_training.loss import masked_diffusion_loss


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
