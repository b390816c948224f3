"""MaskingSchedule: constant pre-training rates, equal mid-training phases, the SFT conditioning ramp."""

from __future__ import annotations

import numpy as np

from coda_training.config import MAX_BLOCK_SIZES, load_config
from coda_training.curriculum import MaskingSchedule


def test_pretraining_is_one_percent_everywhere() -> None:
    cfg = load_config("pretrain", "1p7b")
    schedule = MaskingSchedule(cfg.masking, cfg.num_steps)
    for step in (0, 25_000, 49_999):
        rates = schedule.rates(step)
        assert (rates.prefix_prob, rates.truncate_prob, rates.block_prob) == (np.float32(0.01),) * 3
        assert list(rates.block_sizes[:int(rates.num_block_sizes)]) == [2, 4, 8]
        assert rates.block_sizes.shape == (MAX_BLOCK_SIZES,)


def test_midtraining_phases_are_equal_slices_with_growing_rates_and_blocks() -> None:
    cfg = load_config("midtrain", "1p7b", ["num_steps=100", "optim.warmup_steps=10"])
    schedule = MaskingSchedule(cfg.masking, cfg.num_steps)
    assert [schedule.phase_index(s) for s in (0, 19, 20, 39, 40, 79, 80, 99)] == [0, 0, 1, 1, 2, 3, 4, 4]
    block_probs = [float(schedule.rates(s).block_prob) for s in range(0, 100, 20)]
    assert block_probs == sorted(block_probs)
    assert (block_probs[0], block_probs[-1]) == (np.float32(0.05), np.float32(0.25))
    sizes = [int(schedule.rates(s).num_block_sizes) for s in range(0, 100, 20)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_sft_conditioning_ramps_over_the_first_five_percent() -> None:
    cfg = load_config("sft", "1p7b", ["num_steps=1000", "optim.warmup_steps=100"])
    schedule = MaskingSchedule(cfg.masking, cfg.num_steps)
    assert schedule.cond_ratio(0) == 0.0
    assert schedule.cond_ratio(25) == 0.5
    assert schedule.cond_ratio(50) == 1.0 and schedule.cond_ratio(999) == 1.0
    assert float(schedule.rates(0).prefix_prob) == 0.0 and float(schedule.rates(0).truncate_prob) == 0.0


def test_no_ramp_means_fully_conditioned_from_the_start() -> None:
    cfg = load_config("sft", "tiny", ["masking.cond_ramp_fraction=0"])
    assert MaskingSchedule(cfg.masking, cfg.num_steps).cond_ratio(0) == 1.0
