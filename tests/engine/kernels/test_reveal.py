"""reveal_by_confidence in triton's interpreter: the rule on hand-made rows, then equality with the reference."""

from __future__ import annotations

import re

import pytest
import torch

from coda_engine.kernels import reference_reveal_by_confidence, reveal_by_confidence

pytestmark = pytest.mark.usefixtures("triton_interpreter")

MASK = 9
NEG_INF = float("-inf")
IMPLEMENTATIONS = [reveal_by_confidence, reference_reveal_by_confidence]


def one_row(confidence: list[float], quota: int, threshold: float | None, reveal=reveal_by_confidence,
            is_confident: list[bool] | None = None) -> tuple[list[int], bool]:
    """Reveal in a fully masked row whose proposal at column i is 100 + i: (the row after, done)."""
    canvas = torch.full((1, len(confidence)), MASK)
    proposal = torch.arange(100, 100 + len(confidence))[None, :]
    confident = None if is_confident is None else torch.tensor([is_confident])
    done = reveal(canvas, proposal, torch.tensor([confidence]), torch.tensor([quota]), threshold, MASK,
                  is_confident=confident)
    return canvas[0].tolist(), bool(done[0])


@pytest.mark.parametrize("reveal", IMPLEMENTATIONS, ids=["kernel", "reference"])
def test_the_rule_on_hand_made_rows(reveal) -> None:
    row = [0.2, 0.9, NEG_INF, 0.9, 0.5]
    m = MASK
    assert one_row(row, 2, None, reveal) == ([m, 101, m, 103, m], False)
    assert one_row(row, 1, None, reveal) == ([m, 101, m, m, m], False), "ties: the lower column first"
    assert one_row(row, 0, None, reveal) == ([m] * 5, False), "top-k with quota 0 reveals nothing"
    assert one_row(row, 10, None, reveal) == ([100, 101, m, 103, 104], False), "quota capped at revealable"
    assert one_row(row, 0, 0.4, reveal) == ([m, 101, m, 103, 104], False), "threshold: all >= 0.4"
    assert one_row(row, 0, 0.95, reveal) == ([m, 101, m, m, m], False), "threshold: at least one"
    assert one_row(row, 3, 0.95, reveal) == ([m, 101, m, 103, 104], False), "threshold: at least the quota"
    assert one_row(row, -4, None, reveal) == ([m] * 5, False), "negative quota counts as 0"
    assert one_row([NEG_INF] * 3, 2, 0.1, reveal) == ([m] * 3, False), "nothing revealable, nothing revealed"
    assert one_row([0.3, float("nan")], 2, None, reveal) == ([100, m], False), "NaN is not revealable"
    assert one_row([0.3, 0.1], 2, None, reveal) == ([100, 101], True)
    negative = [-2.5, -0.0, 0.0, -0.25, float("inf")]  # negative entropies, signed zeros, +inf
    assert one_row(negative, 3, None, reveal) == ([m, 101, 102, m, 104], False), "-0.0 ties 0.0: lower column"
    assert one_row(negative, 1, -0.3, reveal) == ([m, 101, 102, 103, 104], False)
    marked = [True, False, True, False, False]
    assert one_row(row, 1, None, reveal, marked) == ([100, 101, m, m, m], False), "marked and revealable: too"
    assert one_row(row, 0, None, reveal, marked) == ([100, m, m, m, m], False)


def random_case(num_rows: int, row_length: int, seed: int) -> dict:
    """A (num_rows, row_length) slice of a wider canvas, 60% masked, with ragged rows, ties and odd quotas.

    Row 0 has nothing revealable; the last row's quota exceeds its masked count; row 1's is 0.
    """
    generator = torch.Generator().manual_seed(seed)
    wide = torch.randint(0, 5, (num_rows, row_length + 7), generator=generator)
    canvas = wide[:, 3:3 + row_length]
    canvas[torch.rand(num_rows, row_length, generator=generator) < 0.6] = MASK
    # In [-1, 1) to one decimal: many ties, negative values (entropy scores) and signed zeros.
    confidence = (torch.rand(num_rows, row_length, generator=generator) * 2 - 1).round(decimals=1)
    confidence[canvas != MASK] = NEG_INF
    confidence[0] = NEG_INF
    quota = torch.randint(0, 6, (num_rows,), generator=generator, dtype=torch.int32)
    quota[-1] = row_length + 3
    if num_rows > 2:
        quota[1] = 0
    proposal = torch.randint(100, 200, (num_rows, row_length), generator=generator)
    is_confident = torch.rand(num_rows, row_length, generator=generator) < 0.1
    return {"wide": wide, "proposal": proposal, "confidence": confidence, "quota": quota,
            "is_confident": is_confident}


# Every rule on the small rows, with and without a confident mask; each rule once on a long row (the interpreter
# takes seconds per long row).
CASES = [(1, 1, None, False), (1, 1, 0.55, True), (3, 5, None, True), (3, 5, 0.55, False), (8, 37, None, False),
         (8, 37, 0.55, False), (8, 37, None, True), (4, 1000, 0.55, False), (8, 1024, None, True)]


@pytest.mark.parametrize(("num_rows", "row_length", "threshold", "use_confident"), CASES,
                         ids=[f"{rows}x{length}-{'top-k' if t is None else 'threshold'}{'-marked' if marked else ''}"
                              for rows, length, t, marked in CASES])
def test_kernel_equals_reference(num_rows: int, row_length: int, threshold: float | None,
                                 use_confident: bool) -> None:
    case = random_case(num_rows, row_length, seed=num_rows * 10000 + row_length)
    is_confident = case["is_confident"] if use_confident else None
    results = []
    for reveal in IMPLEMENTATIONS:
        wide = case["wide"].clone()
        canvas = wide[:, 3:3 + row_length]
        done = reveal(canvas, case["proposal"], case["confidence"], case["quota"], threshold, MASK,
                      is_confident=is_confident)
        results.append((wide, done))
    (kernel_wide, kernel_done), (reference_wide, reference_done) = results
    assert torch.equal(kernel_wide, reference_wide)
    assert torch.equal(kernel_done, reference_done)
    assert kernel_done.dtype == torch.bool and kernel_done.shape == (num_rows,)
    untouched = torch.cat([case["wide"][:, :3], case["wide"][:, 3 + row_length:]], dim=1)
    assert torch.equal(torch.cat([kernel_wide[:, :3], kernel_wide[:, 3 + row_length:]], dim=1), untouched)
    revealed = (kernel_wide != case["wide"]).sum(dim=1)
    assert int(revealed[0]) == 0


def test_done_once_the_last_mask_is_revealed() -> None:
    canvas = torch.tensor([[1, MASK, 2], [MASK, MASK, 3]])
    proposal = torch.tensor([[5, 6, 7], [8, 9, 10]])
    confidence = torch.tensor([[NEG_INF, 0.5, NEG_INF], [0.1, 0.7, NEG_INF]])
    done = reveal_by_confidence(canvas, proposal, confidence, torch.tensor([1, 1]), None, MASK)
    assert done.tolist() == [True, False]
    assert canvas.tolist() == [[1, 6, 2], [MASK, 9, 3]]
    # The proposal itself may be the mask token: that row is not done.
    done = reveal_by_confidence(canvas, torch.full_like(proposal, MASK), confidence, torch.tensor([0, 1]), None,
                                MASK)
    assert done.tolist() == [True, False]


def test_empty_shapes() -> None:
    empty_rows = torch.empty(0, 4, dtype=torch.int64)
    assert reveal_by_confidence(empty_rows, empty_rows, torch.empty(0, 4), torch.empty(0, dtype=torch.int64),
                                None, MASK).shape == (0,)
    no_columns = torch.empty(2, 0, dtype=torch.int64)
    done = reveal_by_confidence(no_columns, no_columns, torch.empty(2, 0), torch.tensor([1, 1]), 0.5, MASK)
    assert done.tolist() == [True, True]


def good_inputs() -> dict:
    return {"canvas": torch.full((2, 4), MASK), "proposal": torch.zeros(2, 4, dtype=torch.int64),
            "confidence": torch.rand(2, 4), "quota": torch.tensor([1, 1]), "threshold": None,
            "mask_token_id": MASK}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("canvas", torch.full((2, 4, 1), MASK), "canvas must be (B, L)"),
    ("canvas", torch.full((2, 4), MASK, dtype=torch.int32), "canvas must be int64"),
    ("canvas", torch.full((4, 2), MASK).t(), "canvas needs unit column stride"),
    ("proposal", torch.zeros(2, 5, dtype=torch.int64), "proposal must have shape (2, 4)"),
    ("confidence", torch.rand(2, 4, dtype=torch.float64), "confidence must be float32"),
    ("quota", torch.tensor([1.0, 1.0]), "quota must be int32 or int64"),
    ("quota", torch.tensor([1, 1, 1]), "quota must have shape (2,)"),
    ("quota", 3, "quota must be a torch.Tensor"),
    ("threshold", "high", "threshold must be a number or None"),
    ("mask_token_id", 9.0, "mask_token_id must be an int"),
    ("canvas", torch.full((1, 9000), MASK), "exceed the kernel's 8192"),
    ("is_confident", torch.ones(2, 4, dtype=torch.int64), "is_confident must be bool"),
    ("is_confident", torch.ones(2, 3, dtype=torch.bool), "is_confident must have shape (2, 4)"),
], ids=["3-d", "int32-canvas", "strided-canvas", "proposal-shape", "float64-confidence", "float-quota",
        "quota-shape", "int-quota", "string-threshold", "float-mask-id", "too-long", "int-confident",
        "confident-shape"])
def test_bad_input_is_one_value_error(name: str, value, message: str) -> None:
    inputs = good_inputs()
    inputs[name] = value
    if name == "canvas" and value.dim() == 2 and value.shape != (2, 4):
        rows, length = value.shape
        inputs.update(proposal=torch.zeros(rows, length, dtype=torch.int64), confidence=torch.rand(rows, length),
                      quota=torch.ones(rows, dtype=torch.int64))
    with pytest.raises(ValueError, match=re.escape(message)):
        reveal_by_confidence(**inputs)
