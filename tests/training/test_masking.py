"""Property tests of the forward process: rates match their targets, and what must stay clean stays clean."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coda_training import masking as mk
from coda_training.config import MAX_BLOCK_SIZES

B, L = 2000, 64
MASK, PAD = 101, 100


def rates(prefix=0.0, truncate=0.0, block=0.0, sizes=(2,), cond=1.0) -> mk.MaskingRates:
    return mk.MaskingRates(jnp.float32(prefix), jnp.float32(truncate), jnp.float32(block),
                           jnp.asarray(np.resize(np.asarray(sizes, np.int32), MAX_BLOCK_SIZES)),
                           jnp.int32(len(sizes)), jnp.float32(cond))


def noise(seed: int, r: mk.MaskingRates, ids=None, segments=None, condition=None, conditional=False) -> mk.Noised:
    key = jax.random.PRNGKey(seed)
    ids = jax.random.randint(key, (B, L), 0, 100) if ids is None else ids
    segments = jnp.zeros((B, L), jnp.int32) if segments is None else segments
    condition = jnp.zeros((B, L), bool) if condition is None else condition
    return mk.noise_batch(jax.random.fold_in(key, 1), ids, segments, condition, r, eps=1e-3, mask_id=MASK,
                          pad_id=PAD, conditional=conditional)


@pytest.mark.parametrize("seed", [0, 1])
def test_t_is_uniform_on_eps_one(seed: int) -> None:
    t = np.asarray(mk.sample_t(jax.random.PRNGKey(seed), 20000, 0.1))
    assert t.min() >= 0.1 and t.max() <= 1.0
    assert abs(t.mean() - 0.55) < 0.01
    assert abs(np.mean(t < 0.325) - 0.25) < 0.015


@pytest.mark.parametrize("t", [0.05, 0.3, 0.8])
@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
def test_block_masking_keeps_the_token_rate_near_t(t: float, k: int) -> None:
    masked = mk.block_mask(jax.random.PRNGKey(k), jnp.ones((B, L), bool), jnp.full((B,), t), jnp.int32(k))
    interior = np.asarray(masked)[:, k:L - k]  # edges are covered by fewer windows
    assert abs(interior.mean() - t) < 0.02


@pytest.mark.parametrize("k", [2, 4, 8])
def test_block_masking_makes_runs_of_at_least_k(k: int) -> None:
    masked = np.asarray(mk.block_mask(jax.random.PRNGKey(0), jnp.ones((B, L), bool), jnp.full((B,), 0.2), jnp.int32(k)))
    for row in masked[:200]:
        padded = np.concatenate([[0], row.astype(int), [0]])
        starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
        assert np.all(ends - starts >= k)


@pytest.mark.parametrize("k", [1, 4])
def test_block_masking_never_touches_unmaskable_tokens(k: int) -> None:
    maskable = jax.random.uniform(jax.random.PRNGKey(3), (B, L)) < 0.7
    masked = mk.block_mask(jax.random.PRNGKey(4), maskable, jnp.full((B,), 0.9), jnp.int32(k))
    assert not np.any(np.asarray(masked) & ~np.asarray(maskable))


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_prefix_rows_and_lengths(prob: float) -> None:
    prefix = np.asarray(mk.prefix_unmaskable(jax.random.PRNGKey(0), B, L, jnp.float32(prob)))
    rows = prefix.any(axis=1)
    assert abs(rows.mean() - prob) < 0.03
    lengths = prefix.sum(axis=1)[rows]
    assert np.all(lengths >= 1) and np.all(lengths <= L - 1)
    assert np.all(prefix[rows, 0])  # contiguous from position 0: the length equals the index of the first False
    assert np.all(prefix.argmin(axis=1)[rows] == lengths)
    if prob > 0.5:
        assert abs(lengths.mean() - L / 2) < 1.5  # uniform on [1, L-1]


def test_truncation_only_on_eligible_rows_and_fills_pad() -> None:
    ids = jnp.zeros((B, L), jnp.int32) + 7
    eligible = jnp.arange(B) % 2 == 0
    out, truncated = mk.truncate_suffix(jax.random.PRNGKey(0), ids, jnp.float32(0.5), eligible, PAD)
    out, truncated = np.asarray(out), np.asarray(truncated)
    assert not truncated[1::2].any()
    assert abs(truncated[::2].any(axis=1).mean() - 0.5) < 0.04
    assert np.all(out[truncated] == PAD) and np.all(out[~truncated] == 7)
    assert not truncated[:, 0].any()  # the cut is at least 1
    assert np.all(np.diff(truncated.astype(int), axis=1) >= 0)  # a suffix: once truncated, always truncated


def test_conditional_ratio_keeps_the_first_share_of_condition_tokens() -> None:
    condition = jnp.asarray([[True] * 10 + [False] * 6, [False] * 2 + [True] * 4 + [False] * 10])
    none = np.asarray(mk.conditional_unmaskable(condition, jnp.float32(0.0)))
    half = np.asarray(mk.conditional_unmaskable(condition, jnp.float32(0.5)))
    full = np.asarray(mk.conditional_unmaskable(condition, jnp.float32(1.0)))
    assert not none.any()
    assert np.array_equal(full, np.asarray(condition))
    assert half[0].tolist() == [True] * 5 + [False] * 11
    assert half[1].tolist() == [False] * 2 + [True] * 2 + [False] * 12


def test_block_size_choice() -> None:
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    never = {int(mk.choose_block_size(k, rates(block=0.0, sizes=(4, 8)))) for k in keys[:50]}
    always = [int(mk.choose_block_size(k, rates(block=1.0, sizes=(4, 8, 16)))) for k in keys]
    assert never == {1}
    assert set(always) == {4, 8, 16}  # only the first num_block_sizes entries, each drawn
    assert all(abs(always.count(s) / len(always) - 1 / 3) < 0.08 for s in (4, 8, 16))


def test_pretraining_noise_invariants() -> None:
    key = jax.random.PRNGKey(5)
    ids = jax.random.randint(key, (B, L), 0, 102).at[:, 40].set(PAD)  # a real pad inside every row
    segments = jnp.asarray(np.repeat([[0] * 20 + [1] * 44], B, axis=0))
    n = noise(0, rates(prefix=0.3, truncate=0.3, block=0.5, sizes=(2, 4)), ids=ids, segments=segments)
    masked, inputs, targets = np.asarray(n.is_masked), np.asarray(n.input_ids), np.asarray(n.target_ids)
    assert np.all(inputs[masked] == MASK) and np.all(inputs[~masked] == targets[~masked])
    assert not masked[:, 0].any() and not masked[:, 20].any()  # segment starts stay clean
    assert not masked[targets == PAD].any()  # pads (real or S2) are never masked outside SFT
    t = np.asarray(n.t)
    assert abs(masked.sum() / (t[:, None] * np.ones((1, L))).sum() - 0.6) < 0.15  # fewer than t: S1/S2/pads


def test_no_strategies_gives_token_rate_t_on_maskable_positions() -> None:
    n = noise(1, rates())
    masked, t = np.asarray(n.is_masked)[:, 1:], np.asarray(n.t)
    assert abs(masked.mean() - t.mean()) < 0.01
    hi, lo = t > 0.8, t < 0.2
    assert masked[hi].mean() > 0.8 and masked[lo].mean() < 0.2


def test_truncated_rows_never_have_a_prefix() -> None:
    n = noise(2, rates(prefix=0.5, truncate=1.0))
    truncated = np.asarray(n.target_ids)[:, -1] == PAD  # every non-prefixed row is truncated (prob 1)
    assert abs(truncated.mean() - 0.5) < 0.05


def test_sft_conditioning_and_maskable_pad_tail() -> None:
    ids = jnp.asarray(np.repeat([[5] * 20 + [6] * 24 + [PAD] * 20], B, axis=0))
    condition = jnp.asarray(np.repeat([[True] * 20 + [False] * 44], B, axis=0))
    full = noise(3, rates(prefix=1.0, truncate=1.0, cond=1.0), ids=ids, condition=condition, conditional=True)
    masked = np.asarray(full.is_masked)
    assert not masked[:, :20].any()  # the prompt is clean
    assert masked[:, 44:].mean() > 0.3  # the pad tail is maskable: the model learns to stop
    assert np.array_equal(np.asarray(full.target_ids), np.asarray(ids))  # S1/S2 are off in SFT
    uncond = noise(3, rates(cond=0.0), ids=ids, condition=condition, conditional=True)
    assert np.asarray(uncond.is_masked)[:, 1:20].mean() > 0.3  # ratio 0: the prompt is noised too
