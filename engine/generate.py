"""The denoising loop: fill every `<|mask|>` of a canvas in at most `steps` forward passes.

Two ways to get the masked positions' logits: `reference_logits` projects every position onto the vocabulary
(as CoDA's code does), `masked_logits` only the hidden states that feed a masked position. The loop exits once
no mask is left, which changes nothing in the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import torch

from .errors import Cancelled
from .model import CodaModel
from .params import ALGORITHMS, DEFAULT_THRESHOLD, Algorithm
from .sampling import sample_tokens
from .schedule import reveal_probability, reveal_quota, threshold_reveal, timesteps

# A position joins a span's pad tail once the model thinks the span more likely than not ends before it.
TAIL_PROBABILITY = 0.5

StepCallback = Callable[[int, torch.Tensor], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings; validated once, at construction."""

    steps: int
    alg: Algorithm = "entropy"
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    alg_temp: float | None = None
    eps: float = 1e-3
    threshold: float | None = None
    # Reveal only among each row's leftmost `window` masks (widened to the step's quota): a semi-autoregressive
    # order, as LLaDA's block decoding; 1 is left to right. None: anywhere, as CoDA does.
    window: int | None = None

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ValueError(f"unknown alg {self.alg!r}; expected one of {', '.join(ALGORITHMS)}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if self.threshold is not None and self.alg != "threshold":
            raise ValueError("threshold is only used with alg='threshold'")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"window must be a positive integer, got {self.window!r}")
        if self.window is not None and self.alg == "origin":
            raise ValueError("window is not used with alg='origin' (it reveals positions at random)")

    @property
    def confidence_bar(self) -> float:
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


@dataclass(frozen=True)
class PadTail:
    """A span that may end early: `token_ids` (pad, end of text) mean "no text here" and may only form its tail.

    A filler's probability at position k is the model's belief that the span ends by k. Revealed one at a time by
    confidence, each filler would raise the next one's odds until the span is blank; instead the tail starts at
    the model's median length, re-estimated every step, and is written (as `fill_id`) once nothing else is left.
    """

    token_ids: tuple[int, ...]
    fill_id: int


@dataclass
class DenoiseTrace:
    """What one run of the loop did: the final canvas, passes spent, tokens revealed at each step."""

    canvas: torch.Tensor
    num_forward_passes: int = 0
    tokens_per_step: list[int] = field(default_factory=list)


# (B, L) canvas, (B, L) mask flags -> (num_masked, V) logits, in row-major order of the masks.
LogitsAtMasks = Callable[[CodaModel, torch.Tensor, torch.Tensor], torch.Tensor]


def reference_logits(model: CodaModel, canvas: torch.Tensor, is_masked: torch.Tensor) -> torch.Tensor:
    logits = model.logits(canvas)
    # Position i scores token i+1, so shift right by one; position 0 keeps its own scores, as in CoDA.
    logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits[is_masked]


def masked_logits(model: CodaModel, canvas: torch.Tensor, is_masked: torch.Tensor) -> torch.Tensor:
    hidden = model([model.whole(canvas)])[0]
    rows, cols = is_masked.nonzero(as_tuple=True)
    # The same shift as reference_logits, applied to hidden states before the (vocabulary-sized) projection.
    return model.lm_head(hidden[rows, (cols - 1).clamp(min=0)])


def denoise(model: CodaModel, canvas: torch.Tensor, mask_token_id: int, params: SamplingParams, *,
            logits_at_masks: LogitsAtMasks = masked_logits, generator: torch.Generator | None = None,
            should_stop: StopCheck | None = None, on_step: StepCallback | None = None,
            suppressed_token_ids: tuple[int, ...] = (), pad_tail: PadTail | None = None) -> DenoiseTrace:
    """Reveal the canvas's masks step by step; raises Cancelled when `should_stop()` turns True between steps.
    `suppressed_token_ids` are never revealed (a fixed-length span: no pad or end tokens); `pad_tail` lets a
    span end early (see PadTail), one row at a time."""
    if pad_tail is not None and canvas.shape[0] != 1:
        raise ValueError(f"pad_tail decodes one row at a time, got {canvas.shape[0]} rows")
    suppressed = torch.tensor(suppressed_token_ids, dtype=torch.long, device=canvas.device)
    trace = DenoiseTrace(canvas.clone())
    x = trace.canvas
    span = x == mask_token_id
    times = timesteps(params.steps, params.eps).to(x.device)
    for step in range(params.steps):
        if should_stop is not None and should_stop():
            raise Cancelled(trace.num_forward_passes)
        is_masked = x == mask_token_id
        num_masked = int(is_masked.sum())
        if num_masked == 0:
            break
        with torch.inference_mode():
            logits = logits_at_masks(model, x, is_masked)
            if suppressed.numel():
                logits[:, suppressed] = torch.finfo(logits.dtype).min
            revealable = is_masked
            if pad_tail is not None:
                revealable = is_masked & ~exact_tail(x, is_masked, span, logits, pad_tail,
                                                     last=step == params.steps - 1)
        trace.num_forward_passes += 1
        reveal_step(x, is_masked, logits, step, times, mask_token_id, params, generator, revealable)
        trace.tokens_per_step.append(num_masked - int((x == mask_token_id).sum()))
        if on_step is not None:
            on_step(step, x)
    return trace


def filler_probability(logits: torch.Tensor, fillers: torch.Tensor) -> torch.Tensor:
    """(N, V) logits -> (N,) each position's probability of a filler token. In fp32: bf16 log-sum-exps near 32 are
    spaced 0.25 apart, a 28 % error in a probability tested against TAIL_PROBABILITY. log-sum-exp rather than a
    softmax: no second vocabulary-sized tensor."""
    return (logits[:, fillers].float().logsumexp(dim=-1) - logits.float().logsumexp(dim=-1)).exp()


def settle_tail(region: torch.Tensor, is_masked: torch.Tensor, probability: torch.Tensor, pad_tail: PadTail,
                last: bool, later: torch.Tensor | None = None) -> torch.Tensor:
    """The pad-tail rule, for both loops: (B, n) bool, the tail of `region` (B, n positions of the span, written
    in place), given `probability` (B, n), each masked position's filler probability (see PadTail).

    The tail starts at the first mask after the region's last written token whose filler probability passes the
    median, and runs to the end (text cannot follow a pad). Once nothing but the tail is masked, or at the last
    step, it is written as fill, with `later` (the span's still masked positions after the region). The caller
    forbids fillers at the masks before the tail."""
    after_text = (~is_masked).flip(1).cumsum(dim=1).flip(1) == 0
    starts = is_masked & after_text & (probability > TAIL_PROBABILITY)
    # Every position from a start on is a mask (no text after it), so spreading the start right is the tail.
    tail = starts.to(torch.int8).cummax(dim=1).values.bool()
    settled = tail.any(dim=1, keepdim=True) & (~(is_masked & ~tail).any(dim=1, keepdim=True) | last)
    region.masked_fill_(tail & settled, pad_tail.fill_id)
    if later is not None:
        later.masked_fill_(settled, pad_tail.fill_id)
    return tail


def exact_tail(x: torch.Tensor, is_masked: torch.Tensor, span: torch.Tensor, logits: torch.Tensor,
               pad_tail: PadTail, last: bool) -> torch.Tensor:
    """settle_tail for the exact loop's one row, whose span is one run of positions: (1, L) bool, the tail;
    fillers are forbidden at the masks before it, in `logits` (in place)."""
    first, end = int(span[0].nonzero()[0]), int(span[0].nonzero()[-1]) + 1
    fillers = torch.tensor(pad_tail.token_ids, dtype=torch.long, device=x.device)
    probability = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    probability[is_masked] = filler_probability(logits, fillers)
    tail = torch.zeros_like(is_masked)
    tail[:, first:end] = settle_tail(x[:, first:end], is_masked[:, first:end], probability[:, first:end],
                                     pad_tail, last)
    before_tail = (is_masked & ~tail)[is_masked]
    logits[:, fillers] = logits[:, fillers].masked_fill(before_tail[:, None], torch.finfo(logits.dtype).min)
    return tail


def reveal_step(x: torch.Tensor, is_masked: torch.Tensor, logits: torch.Tensor, step: int, times: torch.Tensor,
                mask_token_id: int, params: SamplingParams, generator: torch.Generator | None,
                revealable: torch.Tensor | None = None) -> None:
    """Write this step's revealed tokens into `x` in place, only at `revealable` masks (default: all of them).
    The quota counts every mask, so a span whose tail is held back reveals its text at the full span's pace."""
    revealable = is_masked if revealable is None else revealable
    if params.alg == "origin":
        _reveal_random(x, is_masked, logits, step, times, mask_token_id, params, generator, revealable)
        return
    confidence, tokens = sample_tokens(logits, params.alg, params.temperature, params.top_p, params.top_k,
                                       generator)
    # Masks averaged over the batch: the reference reveals the same count in every row.
    quota = reveal_quota(is_masked.sum() / is_masked.shape[0], step, params.steps, times)
    full_confidence = torch.full(x.shape, -torch.inf, dtype=logits.dtype, device=x.device)
    full_confidence[is_masked] = confidence
    full_confidence.masked_fill_(~revealable, -torch.inf)
    if params.window is not None:
        # Never narrower than the quota, so every scheduled reveal finds a candidate and the last step empties
        # the canvas.
        beyond = torch.cumsum(is_masked, dim=1) > max(params.window, quota)
        full_confidence.masked_fill_(beyond, -torch.inf)
    proposal = torch.full_like(x, mask_token_id)
    proposal[is_masked] = tokens
    if params.alg == "threshold":
        chosen = threshold_reveal(full_confidence, revealable, params.confidence_bar, quota)
        x.copy_(torch.where(chosen, proposal, x))
        return
    # Sampling without replacement needs as many candidates as picks; a held-back pad tail can leave fewer.
    quota = min(quota, int(revealable.sum(dim=1).min()))
    if quota == 0:
        return
    if params.alg_temp:
        weights = torch.softmax(full_confidence / params.alg_temp, dim=-1)
        picked = torch.multinomial(weights, quota, generator=generator)
    else:
        picked = torch.topk(full_confidence, quota).indices
    rows = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(picked)
    x[rows, picked] = proposal[rows, picked]


def _reveal_random(x: torch.Tensor, is_masked: torch.Tensor, logits: torch.Tensor, step: int,
                   times: torch.Tensor, mask_token_id: int, params: SamplingParams,
                   generator: torch.Generator | None, revealable: torch.Tensor) -> None:
    """`origin`: every revealable masked position is revealed independently with probability 1 - s/t."""
    probability = reveal_probability(step, params.steps, times)
    tokens = torch.full((logits.shape[0],), mask_token_id, dtype=x.dtype, device=x.device)
    chosen = torch.rand(tokens.shape, generator=generator, device=x.device) < probability
    chosen &= revealable[is_masked]
    if chosen.any():
        _, tokens[chosen] = sample_tokens(logits[chosen], params.alg, params.temperature, params.top_p,
                                          params.top_k, generator)
    x[is_masked] = torch.where(chosen, tokens, x[is_masked])
