"""How many masked positions each denoising step reveals: pure functions of counts and step indices."""

from __future__ import annotations

import torch


def timesteps(steps: int, eps: float) -> torch.Tensor:
    """t_0 = 1 > t_1 > ... > t_steps = eps, linearly spaced in float32 as the reference does."""
    return torch.linspace(1, eps, steps + 1, dtype=torch.float32)


def reveal_quota(num_masked: torch.Tensor, step: int, steps: int, times: torch.Tensor) -> int:
    """Positions to reveal at `step`: floor(M * (1 - s/t)), and all that remain at the last step. `num_masked`
    is the batch's average mask count (a float32 scalar), so every row reveals as many. float32 on purpose: with
    steps == masks it gives the reference's uneven [0, 1, ..., 1, 2] pattern, which token parity depends on."""
    if step == steps - 1:
        return int(num_masked)
    t, s = times[step], times[step + 1]
    return int(num_masked * (1 - s / t))


def reveal_probability(step: int, steps: int, times: torch.Tensor) -> float | torch.Tensor:
    """The `origin` rule: each masked position is revealed independently with probability 1 - s/t."""
    if step == steps - 1:
        return 1.0
    return 1 - times[step + 1] / times[step]


def threshold_reveal(confidence: torch.Tensor, is_masked: torch.Tensor, threshold: float,
                     min_count: int) -> torch.Tensor:
    """(B, L) bool: masked positions at or above `threshold`, and per row at least the `min_count` best (the
    quota keeps passes within `steps`; the threshold lets confident steps reveal many at once, as Fast-dLLM)."""
    confident = (confidence >= threshold) & is_masked
    row_masks = is_masked.sum(dim=1)
    floor_count = row_masks.clamp(max=max(min_count, 1))
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    best = (rank < floor_count[:, None]) & is_masked
    return confident | best
