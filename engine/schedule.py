"""How many masked positions each denoising step reveals: pure functions of counts and step indices."""

from __future__ import annotations

import torch


def timesteps(steps: int, eps: float) -> torch.Tensor:
    """t_0 = 1 > t_1 > ... > t_steps = eps, linearly spaced in float32 as the reference does."""
    return torch.linspace(1, eps, steps + 1, dtype=torch.float32)


def reveal_quota(num_masked: torch.Tensor, step: int, steps: int, times: torch.Tensor) -> int:
    """Positions to reveal at `step`: floor(M * (1 - s/t)), and all that remain at the last step.

    `num_masked` is the mask count averaged over the batch (a float32 scalar), so every row reveals the same
    number. The float32 arithmetic is kept on purpose: with steps == masks it gives the reference's uneven
    [0, 1, ..., 1, 2] pattern, and token parity with the reference depends on reproducing it.
    """
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
    """(B, L) bool: masked positions at or above `threshold`, and per row at least the `min_count` best.

    `min_count` is the schedule's quota, which keeps the number of passes within `steps` while the threshold
    lets confident steps reveal many tokens at once (Fast-dLLM's parallel decoding).
    """
    confident = (confidence >= threshold) & is_masked
    row_masks = is_masked.sum(dim=1)
    floor_count = row_masks.clamp(max=max(min_count, 1))
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    best = (rank < floor_count[:, None]) & is_masked
    return confident | best
