"""Reveal quotas and the threshold rule, without a model."""

from __future__ import annotations

import pytest
import torch

from coda_engine.schedule import reveal_quota, threshold_reveal, timesteps


def quotas(num_masks: int, steps: int) -> list[int]:
    times, remaining, out = timesteps(steps, 1e-3), num_masks, []
    for step in range(steps):
        k = reveal_quota(torch.tensor(remaining) / 1, step, steps, times)
        out.append(k)
        remaining -= k
    return out


@pytest.mark.parametrize("num_masks,steps,expected", [
    # The reveal counts measured on CoDA's reference code (research/coda.md section 3.2).
    (768, 768, [0] + [1] * 766 + [2]),
    (256, 128, [1] + [2] * 126 + [3]),
    (512, 128, [3] + [4] * 126 + [5]),
    (100, 7, [14] * 6 + [16]),
])
def test_quotas_reproduce_the_reference_float32_pattern(num_masks, steps, expected):
    assert quotas(num_masks, steps) == expected


def test_timesteps_are_float32_from_one_to_eps():
    times = timesteps(4, 1e-3)
    assert times.dtype == torch.float32
    assert times[0].item() == 1.0 and abs(times[-1].item() - 1e-3) < 1e-9
    assert torch.all(times[1:] < times[:-1])


def test_threshold_reveals_confident_masked_positions_and_at_least_the_quota():
    confidence = torch.tensor([[0.95, 0.2, 0.91, -torch.inf, 0.5]])
    is_masked = torch.tensor([[True, True, True, False, True]])
    assert threshold_reveal(confidence, is_masked, 0.9, 1).tolist() == [[True, False, True, False, False]]
    # Nothing clears the bar: the quota's best positions still go.
    assert threshold_reveal(confidence, is_masked, 0.99, 2).tolist() == [[True, False, True, False, False]]
    # A row with no masks reveals nothing, whatever the quota.
    none_masked = torch.zeros_like(is_masked)
    assert not threshold_reveal(confidence, none_masked, 0.1, 3).any()
