"""Infill examples from source files: a random span becomes the response, prefix and suffix the condition.

Row layout matches what `coda_engine` infills: prefix | middle + pad tail | suffix | pad filler. The pad tail
teaches the model to fill surplus slots of a fixed-size span with <|endoftext|>, which the engine drops, so a
span longer than the real middle still yields the right text.
"""

from __future__ import annotations

import numpy as np

from coda_training.errors import TrainingError


def infill_example(tokens: list[int], seq_len: int, rng: np.random.Generator, *, max_middle: int, max_tail: int,
                   pad_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(input_ids [L] uint32, condition [L] bool), or None for a file too short to hold prefix, middle, suffix."""
    if max_middle < 1 or max_tail < 0 or max_middle + max_tail + 2 > seq_len:
        raise TrainingError(f"infill spans (max_middle={max_middle}, max_tail={max_tail}) do not fit seq_len {seq_len}")
    if len(tokens) < 3:
        return None
    middle_len = int(rng.integers(1, min(max_middle, len(tokens) - 2) + 1))
    # start >= 1: the first canvas position cannot be predicted (shifted logits), so a real token leads.
    start = int(rng.integers(1, len(tokens) - middle_len))
    tail = int(rng.integers(0, max_tail + 1))
    prefix, suffix = tokens[:start], tokens[start + middle_len:]
    response = tokens[start:start + middle_len] + [pad_id] * tail
    room = seq_len - len(response)
    # Keep the context nearest the hole: the prefix loses its start, the suffix its end.
    keep_prefix = min(len(prefix), max(1, room - min(len(suffix), room // 2)))
    keep_suffix = min(len(suffix), room - keep_prefix)
    ids = prefix[len(prefix) - keep_prefix:] + response + suffix[:keep_suffix]
    row = np.full(seq_len, pad_id, np.uint32)
    row[:len(ids)] = ids
    condition = np.ones(seq_len, bool)
    condition[keep_prefix:keep_prefix + len(response)] = False
    return row, condition
