"""The approximate key/value cache of a bidirectional canvas (Fast-dLLM's DualCache) and when to refresh it.

Attention is bidirectional, so every position's keys and values change whenever any token of the canvas changes:
no cache is exact. The approximation (Fast-dLLM, arXiv 2505.22618) is that positions far from the tokens being
revealed change little, so their keys and values are computed once over the whole canvas and reused, while only
the active block's positions are recomputed at each step. No sampling here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .config import ModelConfig

RefreshRule = Literal["block", "steps", "revealed", "none"]
REFRESH_RULES: tuple[str, ...] = ("block", "steps", "revealed", "none")


@dataclass
class KVCache:
    """Keys and values of every canvas position for each layer, (B, kv_heads, L, head_dim), at true positions.

    The model writes the positions it computes into it and attends over all of it; `start` of a forward says
    where its tokens sit in the canvas (RoPE uses that true index)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(cls, config: ModelConfig, batch: int, length: int, device: torch.device,
                 dtype: torch.dtype) -> "KVCache":
        shape = (batch, config.num_key_value_heads, length, config.head_dim)
        layers = range(config.num_hidden_layers)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in layers],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in layers])

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@dataclass(frozen=True)
class CachePolicy:
    """When the cached keys and values are recomputed over the whole canvas (a full forward pass).

    - "block": at the start of every block after the first (Fast-dLLM's DualCache);
    - "steps": every `every` forward passes;
    - "revealed": once `revealed_share` of the span has been revealed since the last refresh;
    - "none": only the first pass. A finished block's last tokens then get their keys and values from the
      first window of the next block, which also covers the finished block.
    """

    refresh: RefreshRule = "none"
    every: int = 8
    revealed_share: float = 0.5
    # Cached positions on each side of the block recomputed at every pass too: the nearest context is what the
    # block's tokens move most, so a margin buys back most of a refresh's accuracy at a fraction of its cost.
    margin: int = 0

    def __post_init__(self) -> None:
        if self.refresh not in REFRESH_RULES:
            raise ValueError(f"unknown cache refresh rule {self.refresh!r}; expected one of {', '.join(REFRESH_RULES)}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"cache refresh every must be a positive integer, got {self.every!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, int) or self.margin < 0:
            raise ValueError(f"cache margin must be a whole number >= 0, got {self.margin!r}")
        if not 0 < self.revealed_share <= 1:
            raise ValueError(f"cache revealed_share must be in (0, 1], got {self.revealed_share}")

    def needs_refresh(self, *, new_block: bool, passes_since: int, revealed_since: int, span: int) -> bool:
        """Whether the next pass recomputes the whole canvas, given what happened since the last refresh."""
        if self.refresh == "block":
            return new_block
        if self.refresh == "steps":
            return passes_since >= self.every
        if self.refresh == "revealed":
            return revealed_since >= self.revealed_share * span
        return False


@dataclass(frozen=True)
class Block:
    """Canvas positions [start, end) decoded together in `steps` passes."""

    start: int
    end: int
    steps: int


def check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return block_size


def plan_blocks(span_start: int, span_end: int, block_size: int, steps: int) -> list[Block]:
    """Split the span into blocks of `block_size` (the last may be shorter) and share `steps` among them,
    the earlier blocks taking the remainder. Every block needs at least one pass."""
    starts = list(range(span_start, span_end, check_block_size(block_size)))
    if steps < len(starts):
        raise ValueError(f"steps ({steps}) must be at least the number of blocks ({len(starts)}): raise steps or "
                         f"block_size")
    base, extra = divmod(steps, len(starts))
    return [Block(start, min(start + block_size, span_end), base + (index < extra))
            for index, start in enumerate(starts)]
