"""Variable-length spans: fillers (pad, end) may only form a span's tail, which starts at the model's median length.

The denoising loop is driven here by scripted beliefs (a logits function standing in for the forward pass), so
each test can state exactly what the model believes at every position and how it reacts to revealed tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from coda_engine.generate import PadTail, SamplingParams, denoise

VOCAB, PAD, END, MASK = 100, 97, 98, 99
PROMPT, SPAN, SUFFIX = [1, 2, 3], 8, [4, 5]
TAIL = PadTail((PAD, END), PAD)

# Belief: (span position, span so far as a list of token ids or None for a mask) -> {token: logit}.
Belief = Callable[[int, list], dict[int, float]]


def scripted(belief: Belief):
    def logits_at_masks(model, canvas: torch.Tensor, is_masked: torch.Tensor) -> torch.Tensor:
        rows, cols = is_masked.nonzero(as_tuple=True)
        logits = torch.zeros(len(cols), VOCAB)
        for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist())):
            span = [None if t == MASK else t for t in canvas[row, len(PROMPT):len(PROMPT) + SPAN].tolist()]
            for token, logit in belief(col - len(PROMPT), span).items():
                logits[i, token] = logit
        return logits
    return logits_at_masks


def run(belief: Belief, steps: int = SPAN, alg: str = "entropy", pad_tail: PadTail | None = TAIL,
        suppressed: tuple[int, ...] = (), alg_temp: float | None = None, seed: int = 0) -> tuple[list[int], int]:
    canvas = torch.tensor([PROMPT + [MASK] * SPAN + SUFFIX])
    trace = denoise(None, canvas, MASK, SamplingParams(steps, alg, alg_temp=alg_temp),
                    logits_at_masks=scripted(belief), pad_tail=pad_tail, suppressed_token_ids=suppressed,
                    generator=torch.Generator().manual_seed(seed))
    assert trace.canvas[0, :len(PROMPT)].tolist() == PROMPT and trace.canvas[0, -len(SUFFIX):].tolist() == SUFFIX
    return trace.canvas[0, len(PROMPT):len(PROMPT) + SPAN].tolist(), trace.num_forward_passes


def three_tokens_then_pads(position: int, span: list) -> dict[int, float]:
    # Text 10, 11, 12 (p ~ 0.8 each), then pads (p ~ 0.6).
    return {10 + position: 6.0} if position < 3 else {PAD: 5.0}


@pytest.mark.parametrize("alg", ["entropy", "maskgit_plus", "topk_margin", "threshold", "origin"])
@pytest.mark.parametrize("steps", [SPAN, 2])
def test_span_ends_where_the_model_expects_and_stops_early(alg, steps):
    tokens, passes = run(three_tokens_then_pads, steps=steps, alg=alg)
    assert tokens == [10, 11, 12] + [PAD] * 5
    assert passes <= steps
    if steps == SPAN and alg != "origin":  # origin reveals each position by chance, maybe only at the last step
        assert passes < SPAN  # the pads cost no pass of their own


@pytest.mark.parametrize("seed", range(5))
def test_sampled_reveal_order_ends_the_span_too(seed):
    # In one step the quota is all 8 masks but only 3 are text: sampling must not ask for more than there are.
    tokens, passes = run(three_tokens_then_pads, steps=1, alg="maskgit_plus", alg_temp=1.0, seed=seed)
    assert tokens == [10, 11, 12] + [PAD] * 5 and passes == 1
    tokens, _ = run(three_tokens_then_pads, alg="maskgit_plus", alg_temp=1.0, seed=seed)
    assert tokens == [10, 11, 12] + [PAD] * 5


def test_one_row_at_a_time():
    canvas = torch.tensor([PROMPT + [MASK] * SPAN + SUFFIX] * 2)
    with pytest.raises(ValueError, match="one row"):
        denoise(None, canvas, MASK, SamplingParams(SPAN), logits_at_masks=scripted(three_tokens_then_pads),
                pad_tail=TAIL)


def test_pads_revealed_one_by_one_blank_the_span_and_the_tail_does_not():
    def cascading(position: int, span: list) -> dict[int, float]:
        # Each pad makes the one before it near certain (as a model trained on pad tails believes), while the
        # text is only likely: by confidence alone the pads win every step, from the right end to the start.
        right_is_pad = position + 1 < SPAN and span[position + 1] == PAD
        if right_is_pad:
            return {PAD: 9.0}
        return {10 + position: 5.0, PAD: 3.0} if position < 3 else {PAD: 5.0}

    blank, _ = run(cascading, pad_tail=None)
    assert blank == [PAD] * SPAN
    tokens, _ = run(cascading)
    assert tokens == [10, 11, 12] + [PAD] * 5


def test_text_never_follows_a_filler():
    def pad_then_text(position: int, span: list) -> dict[int, float]:
        return {PAD: 6.0} if position == 1 else {10 + position: 9.0}

    tokens, _ = run(pad_then_text)
    assert tokens == [10] + [PAD] * 7


def test_tail_moves_right_when_the_written_text_needs_more_room():
    def longer_after_11(position: int, span: list) -> dict[int, float]:
        length = 5 if span[1] == 11 else 2
        return {10 + position: 6.0} if position < length else {PAD: 5.0}

    tokens, _ = run(longer_after_11)
    assert tokens == [10, 11, 12, 13, 14] + [PAD] * 3


def test_unsure_pads_leave_the_whole_span_to_text():
    def weak_pads(position: int, span: list) -> dict[int, float]:
        return {10 + position: 5.0, PAD: 4.9}  # pad is never the more likely half

    tokens, passes = run(weak_pads)
    assert tokens == [10 + i for i in range(SPAN)] and passes == SPAN


def test_suppressed_tokens_are_never_written_even_when_certain():
    tokens, _ = run(lambda position, span: {PAD: 9.0, END: 8.0, 10 + position: 1.0}, pad_tail=None,
                    suppressed=(PAD, END))
    assert tokens == [10 + i for i in range(SPAN)]


def bf16_logits_whose_tail_probability_rounds_below_a_half() -> torch.Tensor:
    """(1, VOCAB) bf16 logits: the fillers hold 51.4 % of the probability, but bf16 log-sum-exps (0.25 apart near
    32) put it at 47.3 %."""
    logits = torch.full((1, VOCAB), -30.0, dtype=torch.bfloat16)
    logits[0, PAD], logits[0, 10], logits[0, 11] = 32.0, 31.25, 31.25
    exact = (logits.double()[0, list(TAIL.token_ids)].logsumexp(-1) - logits.double().logsumexp(-1)).exp()
    rounded = (logits[:, list(TAIL.token_ids)].logsumexp(-1) - logits.logsumexp(-1)).exp()
    assert float(exact) > 0.5 > float(rounded)  # the case is one where bf16 arithmetic decides wrongly
    return logits


def test_bf16_logits_decide_the_tail_in_fp32_in_both_loops():
    from coda_engine.blockwise import ScoredRows, block_tail
    from coda_engine.generate import exact_tail

    logits = bf16_logits_whose_tail_probability_rounds_below_a_half()
    canvas = torch.tensor([PROMPT + [MASK] + SUFFIX])
    is_masked = canvas == MASK
    span = torch.zeros_like(is_masked)
    span[0, len(PROMPT)] = True
    tail = exact_tail(canvas.clone(), is_masked, span, logits.clone(), TAIL, last=True)
    assert tail[0, len(PROMPT)]
    start = len(PROMPT)
    block = canvas[:, start:start + 1]
    fast_x = canvas.clone()
    fast_tail = block_tail(fast_x, block == MASK, ScoredRows.of(block == MASK), logits.clone(), start, start + 1,
                           start + 1, TAIL, torch.tensor(TAIL.token_ids), last=True)
    assert fast_tail.tolist() == [[True]] and fast_x[0, start] == PAD
