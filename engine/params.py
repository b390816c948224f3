"""The two small dataclasses callers fill in: how an engine is set up (EngineOptions) and how one infill is decoded
(InfillParams), with the names they take. No torch here: the servers read names and defaults without a model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

Algorithm = Literal["origin", "maskgit_plus", "topk_margin", "entropy", "threshold"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
# Algorithms whose confidence is a per-position score the fast path can rank; `origin` reveals at random and
# `alg_temp` samples positions, both by the exact loop only.
FAST_ALGORITHMS: tuple[str, ...] = ("threshold", "maskgit_plus", "topk_margin", "entropy")
RefreshRule = Literal["block", "steps", "revealed", "none"]
REFRESH_RULES: tuple[str, ...] = get_args(RefreshRule)
# Fast-dLLM's default bar for confidence-threshold parallel decoding.
DEFAULT_THRESHOLD = 0.9


def _whole_number(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True)
class CachePolicy:
    """When the fast path's cached keys and values are recomputed over the whole canvas (a full forward pass).

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
    # On the CPU, where a window may change shape from pass to pass, `drifted` > 0 replaces the margin: each pass
    # recomputes the `near` nearest cached positions each side of the block and the `drifted` positions within
    # `reach` of those whose keys have most likely drifted since they were last computed (cache.DriftEstimate).
    # A stale position hurts wherever it is, so these buy back more agreement per row than a wide margin does.
    # GPU windows keep the margin (static shapes).
    drifted: int = 0
    near: int = 2
    reach: int = 32
    # How many calls in a row may start from an earlier call's keys and values (see cache.CanvasCache) before one
    # computes its whole canvas again; 0: every call starts with a full pass.
    reuse: int = 0
    # On the CPU, where a window's shape may change from pass to pass: a pass leaves out the block's positions
    # outside the range that was still masked before the previous pass (each was recomputed in the pass after
    # it was revealed), keeping the margin around that range. GPU windows keep the whole block (static shapes).
    skip_settled: bool = False

    def __post_init__(self) -> None:
        if self.refresh not in REFRESH_RULES:
            raise ValueError(f"unknown cache refresh rule {self.refresh!r}; expected one of {', '.join(REFRESH_RULES)}")
        _whole_number("cache refresh every", self.every, 1)
        _whole_number("cache margin", self.margin, 0)
        _whole_number("cache drifted", self.drifted, 0)
        _whole_number("cache near", self.near, 0)
        _whole_number("cache reach", self.reach, 0)
        _whole_number("cache reuse", self.reuse, 0)
        if not 0 < self.revealed_share <= 1:
            raise ValueError(f"cache revealed_share must be in (0, 1], got {self.revealed_share}")
        if not isinstance(self.skip_settled, bool):
            raise ValueError(f"cache skip_settled must be True or False, got {self.skip_settled!r}")

    def drifts(self, device_type: str) -> bool:
        """Whether windows on this device take the drifted positions instead of the margin."""
        return self.drifted > 0 and device_type == "cpu"

    def side(self, device_type: str) -> int:
        """Cached positions recomputed each side of the block on this device (the drifted ones aside)."""
        return self.near if self.drifts(device_type) else self.margin

    def extra_rows(self, device_type: str) -> int:
        """Positions a window pass computes besides the block's on this device."""
        return 2 * self.side(device_type) + (self.drifted if self.drifts(device_type) else 0)

    def needs_refresh(self, *, new_block: bool, passes_since: int, revealed_since: int, span: int) -> bool:
        """Whether the next pass recomputes the whole canvas, given what happened since the last refresh."""
        if self.refresh == "block":
            return new_block
        if self.refresh == "steps":
            return passes_since >= self.every
        if self.refresh == "revealed":
            return revealed_since >= self.revealed_share * span
        return False


def check_fast(alg: str, alg_temp: float | None) -> None:
    """ValueError unless the fast path can decode with this reveal rule."""
    if alg not in FAST_ALGORITHMS:
        raise ValueError(f"alg={alg!r} runs only on the exact path (exact=True); the fast path takes "
                         f"{', '.join(FAST_ALGORITHMS)}")
    if alg_temp:
        raise ValueError("alg_temp (sampled reveal order) runs only on the exact path (exact=True)")


@dataclass(frozen=True)
class InfillParams:
    """How one infill is decoded (what to fill, and the rows' temperatures and seed, are the job's).

    The defaults are the fast path's, chosen by measurement on the shipped model's harness (docs/engine.md, "Fast
    infill"): entropy order plus every position at least `threshold` sure, one token a pass at least; blocks of
    32 left to right over the cache, never refreshed, with a 16-position margin recomputed around the block (on
    the CPU: 2 each side and the 8 most drifted within reach, and the block's settled positions left out).
    `exact=True` runs CoDA's reference loop instead: no cache, the given `alg` and `steps` (one token per step by
    default); it ignores `block_size` and `cache`."""

    steps: int | None = None         # passes at most; None: one token a pass (the span's length)
    alg: Algorithm = "entropy"       # reveal order
    threshold: float | None = None   # fast path: also reveal every position at least this sure (None: 0.9, 1.0:
    #                                  off); exact path: the bar of alg "threshold" only
    block_size: int = 32             # fast path: tokens decoded together over the cache (the span, if shorter)
    cache: CachePolicy = CachePolicy(margin=16, skip_settled=True, drifted=8)
    exact: bool = False
    variable_length: bool = True     # the model may end the span early with a pad tail; False: exactly the span
    window: int | None = None        # reveal among each row's leftmost `window` masks only (None: anywhere)
    top_p: float | None = None
    top_k: int | None = None
    alg_temp: float | None = None    # exact path: sample the reveal order at this temperature
    eps: float = 1e-3                # the schedule's last timestep

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ValueError(f"unknown alg {self.alg!r}; expected one of {', '.join(ALGORITHMS)}")
        if self.steps is not None:
            _whole_number("steps", self.steps, 1)
        _whole_number("block_size", self.block_size, 1)
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not self.exact:
            check_fast(self.alg, self.alg_temp)

    @property
    def reveal_bar(self) -> float:
        """The fast path's parallel-reveal bar."""
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold

    def num_steps(self, span: int) -> int:
        """Passes for a span of `span` tokens, checked against it."""
        steps = span if self.steps is None else self.steps
        if steps > span:
            raise ValueError(f"steps ({steps}) must not exceed the span ({span} tokens)")
        return steps


# Served requests (the language server's and the HTTP server's): the fast path, each one starting from its client's
# last canvas up to 8 times in a row before one computes its whole canvas again.
SERVED = InfillParams(cache=replace(InfillParams().cache, reuse=8))


@dataclass(frozen=True)
class EngineOptions:
    """How an engine is loaded and how its scheduler serves jobs."""

    device: str = "cpu"              # auto (CUDA when present), cpu, cuda, cuda:N
    dtype: Any = None                # fp32, bf16, fp16, int8, auto (the CPU's fastest) or a torch dtype; None: fp32
    #                                  on the CPU, bf16 on CUDA
    kernels: str | None = None       # auto, triton or torch (None: CODA_KERNELS, default auto)
    max_rows: int = 16               # rows decoded together in one pass; each candidate is a row
    max_queue: int = 64              # jobs waiting for rows; past it a job is refused (Overloaded)
    cache_mb: float = 512            # memory for the clients' kept canvases
    warm_span: int = 64              # the span whose canvas a warm-up (max_tokens 0) computes
    row_chunk: int | None | str = "auto"  # batch-invariant products (see batching.py); "auto": on the CPU

    def __post_init__(self) -> None:
        _whole_number("max_rows", self.max_rows, 1)
        _whole_number("max_queue", self.max_queue, 0)
        _whole_number("warm_span", self.warm_span, 1)
        if not self.cache_mb >= 0:
            raise ValueError(f"cache_mb must be >= 0, got {self.cache_mb}")
