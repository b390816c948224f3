"""The approximate key/value cache of a bidirectional canvas (Fast-dLLM's DualCache) and when to refresh it.

With bidirectional attention any token's change moves every position's keys and values: no cache is exact.
Fast-dLLM's approximation (arXiv 2505.22618): positions far from the tokens being revealed change little, so
their keys and values are computed once and reused, while the active block's are recomputed at each step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .config import ModelConfig

@dataclass
class KVCache:
    """Keys and values of every canvas position for each layer, (B, kv_heads, L, head_dim), at true positions:
    a pass writes the positions it computes and attends over all of them."""

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

    def first_rows(self, rows: int) -> "KVCache":
        """The same cache for the first `rows` batch rows; copied when that is fewer than it holds, so the other
        rows' memory can go."""
        if rows >= self.keys[0].shape[0]:
            return self
        return KVCache([t[:rows].clone() for t in self.keys], [t[:rows].clone() for t in self.values])

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@dataclass(frozen=True)
class CanvasCache:
    """A finished call's canvas and keys and values, kept for the next call.

    As-you-type requests come one keystroke apart: the new canvas holds the same prefix (perhaps less its first
    lines) and suffix, shifted by what was typed, whose keys and values are reused (the suffix's rotated), so the
    next first pass computes only the region around the cursor; the reused positions last saw the old text
    there. Positions the old call's later passes recomputed saw its revealed tokens, so they are never reused."""

    ids: tuple[int, ...]           # the canvas (its first row)
    span: tuple[int, int]
    cache: KVCache                 # one row
    stale: tuple[int, int]         # positions written after the first pass; (0, 0) when none
    reuses: int                    # calls in a row that started from an earlier call's cache

    def is_fresh_for(self, ids: Sequence[int]) -> bool:
        """Whether this is the cache of exactly the canvas `ids`, every position as its first pass computed it
        (Engine.warm's): starting from it then adds nothing to the approximation."""
        return self.stale == (0, 0) and tuple(ids) == self.ids

    def reuses_after(self, ids: Sequence[int]) -> int:
        """`reuses` of a call on canvas `ids` that starts from this cache: one more, unless it is fresh for it."""
        return self.reuses + (not self.is_fresh_for(ids))


@dataclass(frozen=True)
class Prefill:
    """A new canvas's cache with the reused positions filled in, and the positions its first pass computes."""

    cache: KVCache
    window: tuple[int, int]
    reused: int                    # positions taken from the previous call
    reuses: int                    # CanvasCache.reuses for the call that starts from it


# The longest stretch at the top of the old prefix that may have scrolled out of the context window.
_MAX_TOP_SHIFT = 512
_ANCHOR = 8  # tokens that must match to consider a shift


def shared_prefix(old: Sequence[int], new: Sequence[int]) -> tuple[int, int]:
    """(shift, length): new[:length] == old[shift:shift + length], the longest such run for shifts up to
    _MAX_TOP_SHIFT (lines at the top leave the context window as the prefix grows)."""
    best = (0, common_length(old, new))
    anchor = tuple(new[:_ANCHOR])
    if len(anchor) < _ANCHOR:
        return best
    for shift in range(1, min(_MAX_TOP_SHIFT, len(old) - _ANCHOR) + 1):
        if tuple(old[shift:shift + _ANCHOR]) == anchor:
            length = common_length(old[shift:], new)
            if length > best[1]:
                best = (shift, length)
    return best


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading entries a and b share."""
    return next((index for index, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def prefill_from(previous: CanvasCache, ids: Sequence[int], span: tuple[int, int], batch: int,
                 shift_keys: Callable[[torch.Tensor, int], torch.Tensor], min_share: float = 0.5) -> Prefill | None:
    """The new canvas `ids` (span [start, end)) prefilled from `previous`, or None when less than `min_share`
    of it could be reused. `shift_keys(keys, delta)` rotates keys as if they sat delta positions later."""
    (start, end), (old_start, old_end) = span, previous.span
    old_ids, stale_start, stale_end = previous.ids, *previous.stale
    shift, prefix = shared_prefix(old_ids[:old_start], ids[:start])
    suffix_skip = 0
    if stale_start < stale_end:
        prefix = max(0, min(prefix, stale_start - shift))
        suffix_skip = max(0, stale_end - old_end)
    suffix = common_length(old_ids[old_end:], ids[end:])
    # The first pass is one window, so the suffix is reused only when the shared run reaches the canvas's end.
    reuse_suffix = suffix == len(ids) - end and suffix > suffix_skip
    window = (prefix, end + suffix_skip if reuse_suffix else len(ids))
    reused = prefix + (len(ids) - window[1])
    if reused < min_share * len(ids):
        return None
    old, length = previous.cache, len(ids)
    keys, values = [], []
    for old_keys, old_values in zip(old.keys, old.values):
        new_keys = old_keys.new_zeros((batch, *old_keys.shape[1:2], length, old_keys.shape[3]))
        new_values = torch.zeros_like(new_keys)
        new_keys[:, :, :prefix] = shift_keys(old_keys[:, :, shift:shift + prefix], -shift)
        new_values[:, :, :prefix] = old_values[:, :, shift:shift + prefix]
        if reuse_suffix:
            first, delta = old_end + suffix_skip, end - old_end
            new_keys[:, :, window[1]:] = shift_keys(old_keys[:, :, first:old_end + suffix], delta)
            new_values[:, :, window[1]:] = old_values[:, :, first:old_end + suffix]
        keys.append(new_keys)
        values.append(new_values)
    return Prefill(KVCache(keys, values), window, reused, previous.reuses_after(ids))


# A token revealed d positions away is taken to move a cached position's keys by 1 / (1 + d / DRIFT_SCALE):
# bidirectional attention lets it reach the whole canvas, its neighbours most (docs/engine.md, "Fewer rows").
DRIFT_SCALE = 8.0


class DriftEstimate:
    """How far each canvas position's cached keys and values have likely drifted since they were last computed,
    in units of one token revealed next to it: every token revealed since adds 1 / (1 + d / DRIFT_SCALE) at
    distance d. On the host, one estimate for all of a batch's rows (their reveals pooled)."""

    def __init__(self, length: int) -> None:
        self.drift = torch.zeros(length)
        self._positions = torch.arange(length, dtype=torch.float32)

    def computed(self, positions: torch.Tensor | slice) -> None:
        """These positions' keys and values were just computed from the canvas as it is."""
        self.drift[positions] = 0.0

    def revealed(self, positions: torch.Tensor) -> None:
        """Tokens were written at these positions (1-D, on the host)."""
        if positions.numel():
            distance = (self._positions[None, :] - positions.float()[:, None]).abs()
            self.drift += (1.0 / (1.0 + distance / DRIFT_SCALE)).sum(dim=0)

    def stalest(self, count: int, within: tuple[int, int], computed: tuple[int, int]) -> list[int]:
        """Up to `count` positions of [within) outside [computed) (the window already recomputed), most drifted
        first, leaving out any that has not drifted at all."""
        drift = self.drift[within[0]:within[1]].clone()
        drift[max(0, computed[0] - within[0]):max(0, computed[1] - within[0])] = 0.0
        top = drift.topk(min(count, drift.numel()))
        return [within[0] + int(i) for value, i in zip(top.values.tolist(), top.indices.tolist()) if value > 0]


@dataclass(frozen=True)
class Block:
    """Canvas positions [start, end) decoded together in `steps` passes."""

    start: int
    end: int
    steps: int


def plan_blocks(span_start: int, span_end: int, block_size: int, steps: int) -> list[Block]:
    """Split the span into blocks of `block_size` (the last may be shorter) and share `steps` among them,
    the earlier blocks taking the remainder. Every block needs at least one pass."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    starts = list(range(span_start, span_end, block_size))
    if steps < len(starts):
        raise ValueError(f"steps ({steps}) must be at least the number of blocks ({len(starts)}): raise steps or "
                         f"block_size")
    base, extra = divmod(steps, len(starts))
    return [Block(start, min(start + block_size, span_end), base + (index < extra))
            for index, start in enumerate(starts)]
