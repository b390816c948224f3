"""Infill examples from source files: a random span becomes the response, prefix and suffix the condition.

Row layout matches what `coda_engine` infills: prefix | middle + pad tail | suffix | pad filler (with several
holes, the suffix of one is the prefix of the next). The pad tail teaches the model to fill surplus slots of a
fixed-size span with <|endoftext|>, which the engine drops, so a span longer than the real middle still yields
the right text.

Editors ask for the rest of a line or a few whole lines, and HumanEval-infilling removes whole lines, so when the
tokenizer's line-ending ids are known, LINE_SPAN_SHARE of the spans follow line boundaries.
"""

from __future__ import annotations

import numpy as np

from coda_training.errors import TrainingError

LINE_SPAN_SHARE = 0.6  # of spans that cover whole lines (or the rest of one line) rather than any tokens
REST_OF_LINE_SHARE = 0.3  # of line spans that start mid-line: the cursor sits after some of the line's code
MAX_SPAN_LINES = 3


def line_span(tokens: list[int], rng: np.random.Generator, max_middle: int,
              line_end_ids: frozenset[int]) -> tuple[int, int] | None:
    """(start, length) of 1..MAX_SPAN_LINES whole lines ending at a line break, or None if none fits."""
    line_starts = [i for i in range(1, len(tokens)) if tokens[i - 1] in line_end_ids]
    if len(line_starts) < 2:
        return None
    first = int(rng.integers(0, len(line_starts) - 1))
    num_lines = int(rng.integers(1, MAX_SPAN_LINES + 1))
    start = line_starts[first]
    end = line_starts[min(first + num_lines, len(line_starts) - 1)]
    if end - start > max_middle:
        end = line_starts[first + 1]
    if not 1 <= end - start <= max_middle:
        return None
    if end - start > 1 and rng.random() < REST_OF_LINE_SHARE:
        start = int(rng.integers(start + 1, end))
    return start, end - start


def random_span(tokens: list[int], rng: np.random.Generator, max_middle: int,
                line_end_ids: frozenset[int]) -> tuple[int, int]:
    """(start, length) of a line-aligned span (LINE_SPAN_SHARE of draws, when possible) or of any tokens."""
    span = line_span(tokens, rng, max_middle, line_end_ids) if rng.random() < LINE_SPAN_SHARE else None
    if span is None:
        middle_len = int(rng.integers(1, min(max_middle, len(tokens) - 2) + 1))
        # start >= 1: the first canvas position cannot be predicted (shifted logits), so a real token leads.
        span = (int(rng.integers(1, len(tokens) - middle_len)), middle_len)
    return span


def infill_example(tokens: list[int], seq_len: int, rng: np.random.Generator, *, max_middle: int, max_tail: int,
                   pad_id: int, line_end_ids: frozenset[int] = frozenset(),
                   max_spans: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """(input_ids [L] uint32, condition [L] bool), or None for a file too short to hold prefix, middle, suffix.

    A row holds 1..max_spans holes in one window of the file, each a middle plus its own pad tail, separated by
    at least one clean token. Several holes per row give several times the learned tokens for the same forward
    pass, while each hole still sits in mostly clean context, as an editor's or HumanEval-infilling's does.
    """
    if max_middle < 1 or max_tail < 0 or max_spans < 1 or max_spans * (max_middle + max_tail) + 2 > seq_len:
        raise TrainingError(f"infill spans (max_spans={max_spans}, max_middle={max_middle}, max_tail={max_tail}) "
                            f"do not fit seq_len {seq_len}")
    if len(tokens) < 3:
        return None
    tails = rng.integers(0, max_tail + 1, size=int(rng.integers(1, max_spans + 1)))
    window_len = min(len(tokens), seq_len - int(tails.sum()))
    offset = int(rng.integers(0, len(tokens) - window_len + 1))
    window = tokens[offset:offset + window_len]
    holes: list[tuple[int, int, int]] = []  # (start, middle length, tail length) in the window
    for tail in tails.tolist():
        start, length = random_span(window, rng, max_middle, line_end_ids)
        if all(start + length < other or start > other + other_len for other, other_len, _ in holes):
            holes.append((start, length, tail))
    ids: list[int] = []
    condition: list[bool] = []
    cursor = 0
    for start, length, tail in sorted(holes):
        ids += window[cursor:start] + window[start:start + length] + [pad_id] * tail
        condition += [True] * (start - cursor) + [False] * (length + tail)
        cursor = start + length
    ids += window[cursor:]
    condition += [True] * (len(window) - cursor)
    row = np.full(seq_len, pad_id, np.uint32)
    row[:len(ids)] = ids
    mask = np.ones(seq_len, bool)
    mask[:len(condition)] = condition
    return row, mask
