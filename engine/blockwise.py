"""The fast infill loop: block-wise denoising over an approximate key/value cache (Fast-dLLM's DualCache).

The span is decoded block by block, left to right (semi-autoregressive). The first pass runs the whole canvas and
fills the cache; every later pass recomputes only a window around the active block and attends over the cached
prefix, suffix and other blocks (see cache.py for when the whole canvas is recomputed instead). Each step has
static shapes (the block's every position is scored, revealed positions get -inf confidence), and the only host
synchronisation is a look at the previous step's done flags, so a GPU never waits on the host.

One block as wide as the span with a refresh at every pass is the exact loop (generate.denoise) computed another
way: tests/engine/test_blockwise.py holds the two token for token equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .cache import DriftEstimate, KVCache, Prefill, plan_blocks
from .errors import Cancelled
from .generate import PadTail, SamplingParams, StepCallback, StopCheck, filler_probability, settle_tail
from .model import CodaModel, Window
from .params import CachePolicy, check_fast
from .kernels import ConfidenceStats, confidence_stats, reference_reveal_by_confidence, reveal_by_confidence
from .kernels.choice import choose_kernels
from .kernels.runtime import on_device, unavailable_reason
from .sampling import CONFIDENCE, filtered_probs, pick_tokens
from .schedule import timesteps

# (B, S) span tokens on the host -> whether every row holds all the caller needs.
FinishCheck = Callable[[torch.Tensor], bool]


@dataclass
class BlockwiseTrace:
    """What one run did: the final canvas, the cache (and which of its positions later passes rewrote: see
    CanvasCache), passes, full-canvas refreshes, tokens revealed per pass."""

    canvas: torch.Tensor
    cache: KVCache
    num_forward_passes: int = 0
    num_refreshes: int = 0
    tokens_per_step: list[int] = field(default_factory=list)
    window_rows: list[int] = field(default_factory=list)  # positions each window pass computed (not the first)
    stale: tuple[int, int] = (0, 0)  # positions written after the last pass that computed them from masks

    @property
    def cache_bytes(self) -> int:
        return self.cache.num_bytes


@dataclass(frozen=True)
class PendingFlags:
    """One step's flags (and span tokens) on their way to the host, tagged with the block that computed them."""

    flags: torch.Tensor
    span: torch.Tensor | None
    event: torch.cuda.Event | None
    block: int


class DoneFlags:
    """Whether the active block and the whole span are finished, read one step late on CUDA.

    Reading a flag the moment it is computed would stall the host until the GPU catches up; instead each step's
    flags (and, when asked for, the span's tokens) are copied to pinned memory without blocking, and the host
    looks at them after it has queued the next step, which keeps the GPU busy and costs at most one pass that
    finds nothing left to reveal. A step's flags outlive its block: the last step of a block is read during the
    next block's first step, where its span tokens can still end the call (its block-done flag no longer counts).
    `deferred` (default: on CUDA) reads one step late; on the CPU it lets tests run the CUDA reading order."""

    def __init__(self, device: torch.device, deferred: bool | None = None) -> None:
        self.device = device
        self.deferred = device.type == "cuda" if deferred is None else deferred
        self._pending: list[PendingFlags] = []

    def push(self, flags: torch.Tensor, span: torch.Tensor | None, block: int) -> None:
        """(2,) bool on the device: (block done, span done) for every row; `span`: the (B, S) span's tokens;
        `block`: the index of the block this step decoded."""
        if not self.deferred:
            self._pending = [PendingFlags(flags, span, None, block)]
            return
        if self.device.type != "cuda":
            # The span is a view of the canvas, which the next step writes into; the flags are a new tensor.
            self._pending.append(PendingFlags(flags, None if span is None else span.clone(), None, block))
            return
        host = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
        host.copy_(flags, non_blocking=True)
        host_span = None
        if span is not None:
            host_span = torch.empty(span.shape, dtype=span.dtype, pin_memory=True)
            host_span.copy_(span, non_blocking=True)
        # Recorded on the stream of the flags' own device, which the copies above were queued on.
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self._pending.append(PendingFlags(host, host_span, event, block))

    def read(self, block: int) -> tuple[bool, bool, torch.Tensor | None]:
        """(block `block` done, span done, the span's tokens on the host) as far as known; deferred, waits for
        all but the newest step (and takes the newest when it has already arrived). The tokens are None when no
        step is known yet or none were pushed."""
        known: tuple[bool, bool, torch.Tensor | None] = (False, False, None)
        while len(self._pending) > 1 or (self._pending and self._arrived(self._pending[0])):
            pending = self._pending.pop(0)
            if pending.event is not None:
                pending.event.synchronize()
            block_done, span_done = (bool(v) for v in pending.flags.tolist())
            known = (block_done and pending.block == block, span_done,
                     None if pending.span is None else pending.span.cpu())
            if known[0] or span_done:
                self._pending.clear()
                break
        return known

    def _arrived(self, pending: PendingFlags) -> bool:
        if not self.deferred:
            return True
        return pending.event is not None and pending.event.query()


def denoise_blockwise(model: CodaModel, canvas: torch.Tensor, span: tuple[int, int], mask_token_id: int,
                      params: SamplingParams, block_size: int, policy: CachePolicy, *,
                      reveal_bar: float | None = None, row_temperatures: Sequence[float] | None = None,
                      generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
                      should_stop: StopCheck | None = None, on_step: StepCallback | None = None,
                      is_finished: FinishCheck | None = None, suppressed_token_ids: tuple[int, ...] = (),
                      pad_tail: PadTail | None = None, use_kernels: bool | None = None,
                      prefill: Prefill | None = None) -> BlockwiseTrace:
    """Fill the masks of canvas[:, span[0]:span[1]] (the same span in every row) in at most `params.steps` passes.

    `reveal_bar`: also reveal every position whose token is at least this probable (see reveal_block); with
    alg "threshold" it is the threshold. `row_temperatures` gives each row its own sampling temperature (one greedy row and sampled candidates in one
    batch); by default every row uses `params.temperature`. `use_kernels`: the Triton kernels for scoring and
    revealing (None: kernels.choice's rule, CODA_KERNELS; True where they cannot run raises ValueError).
    `is_finished`: given the (B, S) span's tokens on the host, whether every row already holds all it needs
    (a single-line completion whose line has ended); decoding then stops with masks left after that point. On
    CUDA it sees each step's tokens one step late, like the done flags. `prefill`: a cache that already holds
    every position outside its window (reused from an earlier call), so the first pass computes only that window
    and the block's. A row without a generator samples from a seed drawn from torch's global generator, on
    either path. Raises Cancelled between passes, carrying the trace so far."""
    run = BlockwiseRun(model, canvas, span, mask_token_id, params, block_size, policy, reveal_bar=reveal_bar,
                       row_temperatures=row_temperatures, generator=generator, on_step=on_step,
                       is_finished=is_finished, suppressed_token_ids=suppressed_token_ids, pad_tail=pad_tail,
                       use_kernels=use_kernels, prefill=prefill)
    return run_alone(run, should_stop)


def run_alone(run: "BlockwiseRun", should_stop: StopCheck | None = None) -> BlockwiseTrace:
    """Decode `run` to the end, one pass after another. Raises Cancelled between passes, carrying the trace so
    far."""
    with on_device(run.trace.canvas.device), torch.inference_mode():
        while (window := run.next_window()) is not None:
            if should_stop is not None and should_stop():
                raise Cancelled(run.trace.num_forward_passes, run.trace)
            # The first pass (a whole cold canvas: seconds on a CPU) also stops between layers; nothing is kept
            # from it then. Later passes are short and stop between passes, keeping their cache.
            run.apply(run.model([window], None, should_stop if run.first_pass else None)[0])
    return run.finish()


class BlockwiseRun:
    """denoise_blockwise's loop as a state machine, one forward pass at a time: `next_window()` says which
    canvas positions the next pass computes (None once finished), the caller runs the model over them (alone,
    or packed with other runs' windows: batching.py), and `apply(states)` reveals from its states. The caller
    runs both on the canvas's device (kernels.runtime.on_device) in inference mode."""

    def __init__(self, model: CodaModel, canvas: torch.Tensor, span: tuple[int, int], mask_token_id: int,
                 params: SamplingParams, block_size: int, policy: CachePolicy, *,
                 reveal_bar: float | None = None, row_temperatures: Sequence[float] | None = None,
                 generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
                 on_step: StepCallback | None = None, is_finished: FinishCheck | None = None,
                 suppressed_token_ids: tuple[int, ...] = (), pad_tail: PadTail | None = None,
                 use_kernels: bool | None = None, prefill: Prefill | None = None) -> None:
        span_start, span_end = span
        check_fast(params.alg, params.alg_temp)
        if not 1 <= span_start < span_end <= canvas.shape[1]:
            raise ValueError(f"the span [{span_start}, {span_end}) must lie inside the canvas after its first "
                             f"position")
        temperatures = tuple(row_temperatures or (params.temperature,) * canvas.shape[0])
        # One generator per row: a candidate's draws then do not depend on how many rows share the batch.
        generators = tuple(generator) if isinstance(generator, Sequence) else (generator,) * canvas.shape[0]
        if len(generators) != canvas.shape[0]:
            raise ValueError(f"{len(generators)} generators for {canvas.shape[0]} rows")
        if len(temperatures) != canvas.shape[0] or any(t < 0 for t in temperatures):
            raise ValueError(f"row_temperatures needs one temperature >= 0 per row, got {temperatures!r}")
        self.blocks = plan_blocks(span_start, span_end, block_size, params.steps)
        if use_kernels is None:
            use_kernels = choose_kernels(canvas.device).use_triton
        elif use_kernels and unavailable_reason(canvas.device) is not None:
            raise ValueError(f"Triton kernels asked for on {canvas.device}, where they cannot run: "
                             f"{unavailable_reason(canvas.device)}")
        x = canvas.clone()
        if prefill is not None and (prefill.cache.keys[0].shape[0], prefill.cache.length) != tuple(x.shape):
            raise ValueError(f"the prefilled cache holds {prefill.cache.keys[0].shape[0]} x "
                             f"{prefill.cache.length} positions, the canvas {tuple(x.shape)}")
        cache = prefill.cache if prefill is not None else KVCache.allocate(model.config, x.shape[0], x.shape[1],
                                                                           x.device, model.compute_dtype)
        self.model, self.span, self.mask_token_id, self.params, self.policy = model, span, mask_token_id, params, \
            policy
        self.reveal_bar, self.temperatures, self.on_step, self.is_finished = reveal_bar, temperatures, on_step, \
            is_finished
        self.pad_tail, self.use_kernels, self.prefill = pad_tail, use_kernels, prefill
        self.trace = BlockwiseTrace(x, cache)
        self._stale = (x.shape[1], 0)
        # Made once: a small tensor built from a list inside the loop would be a host-to-device copy every pass.
        self._suppressed = torch.tensor(suppressed_token_ids, dtype=torch.long, device=x.device)
        self._fillers = torch.tensor(pad_tail.token_ids if pad_tail else (), dtype=torch.long, device=x.device)
        # Made once: a pageable host tensor copied to the device at every block would wait for the GPU each time.
        self._times = {steps: timesteps(steps, params.eps).to(x.device) for steps in {b.steps for b in self.blocks}}
        self._noise = SamplingNoise.of(generators, temperatures,
                                       x.shape[0] * max(b.end - b.start for b in self.blocks), use_kernels)
        self._flags = DoneFlags(x.device)
        self._revealed_per_pass: list[torch.Tensor] = []
        self._passes_since_refresh, self._revealed_since_refresh = 0, 0
        self._block, self._step = 0, 0
        self._refresh, self._window = False, (0, 0)  # the pass next_window planned
        self._scored = (0, 0)  # the block's positions that pass scores (all of them, unless settled ones skipped)
        # CachePolicy.skip_settled and drifted apply on the CPU only (GPU windows keep static shapes and never
        # wait for the host); the block's positions masked before the last pass, (first, last + 1); None: a new
        # block (or no skipping).
        self._skip_settled = policy.skip_settled and x.device.type == "cpu"
        self._unsettled: tuple[int, int] | None = None
        self._drift = DriftEstimate(x.shape[1]) if policy.drifts(x.device.type) else None
        self._side = policy.side(x.device.type)  # cached positions recomputed each side of the block
        self._positions: torch.Tensor | None = None  # the pass's positions when not one contiguous run
        self.done = False

    @property
    def first_pass(self) -> bool:
        return self.trace.num_forward_passes == 0

    def next_window(self) -> Window | None:
        """The positions the next pass computes and the rows whose states `apply` needs; None: finished."""
        if self.done:
            return None
        x, policy, blocks, trace = self.trace.canvas, self.policy, self.blocks, self.trace
        index, block = self._block, self.blocks[self._block]
        new_block = self._step == 0 and index > 0
        refresh = trace.num_forward_passes == 0 or policy.needs_refresh(
            new_block=new_block, passes_since=self._passes_since_refresh,
            revealed_since=self._revealed_since_refresh, span=self.span[1] - self.span[0])
        # The window starts one position before the block (position i scores token i + 1) and, on a new block's
        # first pass, also covers the finished block, whose last tokens were never computed.
        side = self._side
        window_start = 0 if refresh else max(0, (blocks[index - 1].start if new_block else block.start) - 1 - side)
        window_end = x.shape[1] if refresh else min(x.shape[1], block.end + side)
        if refresh and self.prefill is not None and trace.num_forward_passes == 0:
            refresh = False
            window_start = min(self.prefill.window[0], max(0, block.start - 1 - side))
            window_end = max(self.prefill.window[1], min(x.shape[1], block.end + side))
        scored = (block.start, block.end)
        if self._unsettled is not None and not refresh:
            scored = self._unsettled
            window_start = max(0, scored[0] - 1 - side)
            window_end = min(x.shape[1], scored[1] + side)
        # The drifted positions join the window wherever they are; the rows asked for stay one contiguous run.
        drifted = [] if self._drift is None or refresh or trace.num_forward_passes == 0 else self._drift.stalest(
            policy.drifted, (max(0, window_start - policy.reach), min(x.shape[1], window_end + policy.reach)),
            (window_start, window_end))
        rows = slice(scored[0] - 1 - window_start, scored[1] - 1 - window_start)
        self._refresh, self._scored = refresh, scored
        if not drifted:
            self._window, self._positions = (window_start, window_end), None
            return Window(x[:, window_start:window_end], trace.cache, window_start, rows)
        positions = torch.tensor(sorted([*drifted, *range(window_start, window_end)]))
        before = sum(position < window_start for position in drifted)
        self._window, self._positions = (int(positions[0]), int(positions[-1]) + 1), positions
        return Window(x[:, positions], trace.cache, self._window[0], slice(rows.start + before, rows.stop + before),
                      positions)

    def apply(self, hidden: torch.Tensor) -> None:
        """Reveal from the states of the rows next_window asked for (B, scored positions, hidden), then advance."""
        x, trace, refresh, policy = self.trace.canvas, self.trace, self._refresh, self.policy
        span_start, span_end = self.span
        index, block = self._block, self.blocks[self._block]
        window = self._window
        if self._scored != (block.start, block.end):
            # Positions left out are revealed, so reveal_block (on the CPU) scores none of them: zeros stand in.
            full = hidden.new_zeros(hidden.shape[0], block.end - block.start, hidden.shape[2])
            full[:, self._scored[0] - block.start:self._scored[1] - block.start] = hidden
            hidden = full
        if self._skip_settled:
            masked = (x[:, block.start:block.end] == self.mask_token_id).any(dim=0).nonzero().squeeze(1).tolist()
            self._unsettled = (block.start + masked[0], block.start + masked[-1] + 1) if masked else None
        if trace.num_forward_passes > 0:
            # After a refresh every position has seen revealed tokens: none is fit to reuse.
            self._stale = (0, x.shape[1]) if refresh else (min(self._stale[0], window[0]),
                                                           max(self._stale[1], window[1]))
            trace.stale = self._stale
        if trace.num_forward_passes > 0 and not refresh:
            trace.window_rows.append(len(self._positions) if self._positions is not None else window[1] - window[0])
        trace.num_forward_passes += 1
        trace.num_refreshes += refresh
        self._passes_since_refresh = 1 if refresh else self._passes_since_refresh + 1
        masked_before = x[:, span_start:span_end] == self.mask_token_id
        reveal_block(self.model, x, hidden, block.start, block.end, span_end, self.mask_token_id, self.params,
                     self.reveal_bar, self._step, block.steps, self._times[block.steps], self.temperatures,
                     self._noise.at_pass(trace.num_forward_passes - 1), self._suppressed, self.pad_tail,
                     self._fillers, self.use_kernels)
        masked_after = x[:, span_start:span_end] == self.mask_token_id
        revealed = masked_before.sum() - masked_after.sum()
        if self._drift is not None:
            self._drift.computed(slice(0, x.shape[1]) if refresh else
                                 self._positions if self._positions is not None else slice(*window))
            written = (masked_before & ~masked_after).any(dim=0).nonzero().squeeze(1)
            self._drift.revealed(span_start + written)
        self._revealed_per_pass.append(revealed)
        if policy.refresh == "revealed":
            # The one rule that needs a count on the host; the others never wait for the device.
            self._revealed_since_refresh = (0 if refresh else self._revealed_since_refresh) + int(revealed)
        if self.on_step is not None:
            self.on_step(trace.num_forward_passes - 1, x)
        self._flags.push(torch.stack([~(x[:, block.start:block.end] == self.mask_token_id).any(),
                                      ~(x[:, span_start:span_end] == self.mask_token_id).any()]),
                         None if self.is_finished is None else x[:, span_start:span_end], index)
        block_done, span_done, span_tokens = self._flags.read(index)
        if not span_done and span_tokens is not None:
            span_done = self.is_finished(span_tokens)
        if span_done:
            self.done = True
        elif block_done or self._step == block.steps - 1:
            self._block, self._step, self._unsettled = index + 1, 0, None
            self.done = self._block == len(self.blocks)
        else:
            self._step += 1

    def finish(self) -> BlockwiseTrace:
        """The trace, with its per-pass reveal counts read from the device once."""
        trace = self.trace
        trace.tokens_per_step = ([int(n) for n in torch.stack(self._revealed_per_pass).tolist()]
                                 if self._revealed_per_pass else [])
        return trace


@dataclass(frozen=True)
class SamplingNoise:
    """Where each row's sampling randomness comes from: its generator (torch path), or a Philox seed plus the
    counter at which this pass's noise starts (kernel path)."""

    generators: tuple[torch.Generator | None, ...]
    seeds: tuple[int, ...]
    rows_per_pass: int  # counters a pass may use, in rows of the vocabulary: the batch times the widest block
    counter_row: int = 0

    @classmethod
    def of(cls, generators: tuple[torch.Generator | None, ...], temperatures: tuple[float, ...],
           rows_per_pass: int, use_kernels: bool) -> "SamplingNoise":
        seeds = tuple(_kernel_seed(generator) if temperature > 0 else 0
                      for generator, temperature in zip(generators, temperatures)) if use_kernels else ()
        return cls(generators, seeds, rows_per_pass)

    def at_pass(self, index: int) -> "SamplingNoise":
        """The noise of pass `index` of the whole call (not of its block): every pass draws fresh counters, so
        block k's noise never repeats block 0's."""
        return SamplingNoise(self.generators, self.seeds, self.rows_per_pass, index * self.rows_per_pass)


def _kernel_seed(generator: torch.Generator | None) -> int:
    """The Philox seed of a row: its generator's, or one drawn from torch's global generator (which the torch
    path samples from when a row has none), so seed=None is random on both paths."""
    if generator is not None:
        return generator.initial_seed() % 2**62
    return int(torch.randint(0, 2**62, (1,)).item())


def reveal_block(model: CodaModel, x: torch.Tensor, hidden: torch.Tensor, start: int, end: int, span_end: int,
                 mask_token_id: int, params: SamplingParams, reveal_bar: float | None, step: int, steps: int,
                 times: torch.Tensor, temperatures: tuple[float, ...], noise: SamplingNoise,
                 suppressed: torch.Tensor, pad_tail: PadTail | None, fillers: torch.Tensor,
                 use_kernels: bool) -> None:
    """One denoising step of block x[:, start:end], in place, from the (B, end - start, hidden) states that score
    its positions. On CUDA every position of the block is scored, so shapes never depend on how many masks are
    left; on the CPU only the masked ones are (see ScoredRows).

    The schedule's quota of positions is revealed in the algorithm's order; with `reveal_bar`, so is every
    position whose token is at least that probable, and at least one per row (Fast-dLLM's parallel decoding)."""
    block = x[:, start:end]
    is_masked = block == mask_token_id  # (B, b)
    rows = ScoredRows.of(is_masked)
    # Flattened: a strided 3-D input sends the projection down a batched-matmul path several times slower.
    logits = model.lm_head(rows.select(hidden.reshape(-1, hidden.shape[-1])))  # (N, V)
    if suppressed.numel():
        logits[:, suppressed] = torch.finfo(logits.dtype).min
    revealable = is_masked
    if pad_tail is not None:
        tail = block_tail(x, is_masked, rows, logits, start, end, span_end, pad_tail, fillers,
                          last=step == steps - 1)
        revealable = is_masked & ~tail
    scores, probabilities, tokens = block_confidence(logits, rows, params, temperatures, noise, use_kernels)
    scores, probabilities = rows.expand(scores, -torch.inf), rows.expand(probabilities, 0.0)
    tokens = rows.expand(tokens, mask_token_id)
    remaining = is_masked.sum(dim=1)  # (B,): the quota counts every mask, a held-back tail included
    quota = remaining if step == steps - 1 else (remaining.float() * (1 - times[step + 1] / times[step])).long()
    if params.window is not None:
        # Only among the leftmost masks, never narrower than the quota (generate.reveal_step's rule).
        revealable = revealable & (torch.cumsum(is_masked, dim=1) <= torch.clamp(quota, min=params.window)[:, None])
    scores = scores.masked_fill(~revealable, -torch.inf)
    confident = None
    if reveal_bar is not None:
        quota = quota.clamp(min=1)
        confident = revealable & (probabilities >= reveal_bar)
    choose = reveal_by_confidence if use_kernels else reference_reveal_by_confidence
    choose(block, tokens, scores, quota, None, mask_token_id, is_confident=confident)


@dataclass(frozen=True)
class ScoredRows:
    """Which of a (B, b) block's positions get logits, in row-major order.

    On the CPU only the masked positions do: the vocabulary projection and the sampling over it are most of a
    step's cost on a small model, and shapes that change from step to step cost nothing there. On CUDA all of
    them do, keeping every step's shapes static (no host synchronisation, graph capture possible)."""

    shape: tuple[int, int]
    index: torch.Tensor | None  # (N,) flat positions scored; None: all of them
    offsets: tuple[int, ...]    # (B + 1,): where each batch row's positions start among the scored ones

    @classmethod
    def of(cls, is_masked: torch.Tensor) -> "ScoredRows":
        batch, width = is_masked.shape
        if is_masked.is_cuda:
            return cls((batch, width), None, tuple(row * width for row in range(batch + 1)))
        counts = is_masked.sum(dim=1).tolist()
        offsets = tuple(sum(counts[:row]) for row in range(batch + 1))
        return cls((batch, width), is_masked.reshape(-1).nonzero().squeeze(1), offsets)

    def select(self, values: torch.Tensor) -> torch.Tensor:
        """(B * b, ...) -> (N, ...): the scored positions' entries."""
        return values if self.index is None else values[self.index]

    def expand(self, values: torch.Tensor, fill: float | int) -> torch.Tensor:
        """(N,) -> (B, b), `fill` where a position was not scored."""
        if self.index is None:
            return values.view(self.shape)
        full = torch.full((self.shape[0] * self.shape[1],), fill, dtype=values.dtype, device=values.device)
        return full.index_copy_(0, self.index, values).view(self.shape)


def block_tail(x: torch.Tensor, is_masked: torch.Tensor, rows: ScoredRows, logits: torch.Tensor, start: int,
               end: int, span_end: int, pad_tail: PadTail, fillers: torch.Tensor, last: bool) -> torch.Tensor:
    """settle_tail for one block of a span decoded left to right (every later block is still masked): (B, b)
    bool, the block's tail; fillers are forbidden before it, in the scored positions' `logits` (in place)."""
    probability = rows.expand(filler_probability(logits, fillers), 0.0)
    tail = settle_tail(x[:, start:end], is_masked, probability, pad_tail, last, later=x[:, end:span_end])
    forbidden = rows.select((is_masked & ~tail).reshape(-1))
    logits[:, fillers] = logits[:, fillers].masked_fill(forbidden[:, None], torch.finfo(logits.dtype).min)
    return tail


def block_confidence(logits: torch.Tensor, rows: ScoredRows, params: SamplingParams,
                     temperatures: tuple[float, ...], noise: SamplingNoise,
                     use_kernels: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, V) logits of the scored positions -> (the algorithm's score, the chosen token's probability, the
    token), each (N,), every batch row at its own temperature. With the kernels and without top-p/top-k, the
    fused Triton kernel reads the logits once; otherwise the reference sampler runs, so the torch path equals the
    exact loop token for token."""
    count, vocab = logits.shape
    scores = torch.empty(count, dtype=torch.float32, device=logits.device)
    probabilities = torch.empty_like(scores)
    tokens = torch.empty(count, dtype=torch.long, device=logits.device)
    use_kernel = use_kernels and params.top_p is None and params.top_k is None
    for first, last, temperature in _runs(temperatures):
        part, generator = slice(rows.offsets[first], rows.offsets[last]), noise.generators[first]
        if part.start == part.stop:
            continue
        if use_kernel:
            # Each pass starts at its own counter row and a row's positions follow, so no two draws share noise.
            stats = confidence_stats(logits[part], temperature=temperature, seed=noise.seeds[first],
                                     offset=(noise.counter_row + part.start) * vocab)
            scores[part], probabilities[part], tokens[part] = _KERNEL_SCORE[params.alg](stats), stats.max_prob, \
                stats.token
        else:
            probs = filtered_probs(logits[part], temperature, params.top_p, params.top_k)
            chosen_probability, chosen = pick_tokens(probs, temperature, generator)
            scores[part] = CONFIDENCE[params.alg](probs, chosen_probability).float()
            probabilities[part], tokens[part] = chosen_probability.float(), chosen
    return scores, probabilities, tokens


_KERNEL_SCORE: dict[str, Callable[[ConfidenceStats], torch.Tensor]] = {
    "threshold": lambda stats: stats.max_prob,
    "maskgit_plus": lambda stats: stats.max_prob,
    "topk_margin": lambda stats: stats.margin,
    "entropy": lambda stats: stats.neg_entropy,
}


def _runs(temperatures: tuple[float, ...]) -> list[tuple[int, int, float]]:
    """Consecutive greedy rows, and each sampled row alone (it draws from its own generator), as
    (first, last + 1, temperature)."""
    runs: list[tuple[int, int, float]] = []
    for row, temperature in enumerate(temperatures):
        if runs and runs[-1][2] == temperature == 0:
            runs[-1] = (runs[-1][0], row + 1, temperature)
        else:
            runs.append((row, row + 1, temperature))
    return runs
