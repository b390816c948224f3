"""On-device reveal: write each row's most confident proposals into the canvas, and say which rows are done.

A denoising step ends by choosing, per row, which masked positions take their proposed token: the `quota`
most confident (top-k), or every one above a threshold with at least one per row (Fast-dLLM's rule, so a step
always makes progress). In torch that is five launches (sort, scatter, where, copy, reduction); here one program
per row ranks positions by counting, writes the chosen tokens in place and stores a per-row done flag on the
device: nothing is read back on the host, so the step can loop unsynchronised and be captured in a CUDA graph.

Ranking: confidence descending, ties to the lower column. A position's rank is the number of revealable
positions ahead of it, counted in CHUNK-position slices against the whole row: L^2 int64 comparisons per row,
no sort, no shared memory (its cost: docs/engine.md, Triton kernel design).
"""

from __future__ import annotations

import torch

from .runtime import compile_kernel, next_power_of_2, on_device, tl, unavailable_reason

# Longest row the kernel takes: the ranking holds a row in one program's registers (BLOCK_L = next power of two).
MAX_ROW_LENGTH = 8192
# Compare tiles of BLOCK_L x CHUNK hold at most this many elements: 32 per thread at 8 warps.
MAX_TILE_ELEMENTS = 8192
NUM_WARPS = 8
# The canvas's row stride changes with every request: specialising on it (divisible by 16 or not) would compile a
# second variant during some user's completion, for an alignment worth nothing on a row's few dozen tokens.
REVEAL_UNSPECIALIZED = ("canvas_row_stride",)


def _reveal_kernel(
    canvas_ptr, canvas_row_stride, proposal_ptr, proposal_row_stride, confidence_ptr, confidence_row_stride,
    quota_ptr, done_ptr, row_length, threshold, mask_token_id, confident_ptr, confident_row_stride,
    USE_THRESHOLD: tl.constexpr, USE_CONFIDENT: tl.constexpr, BLOCK_L: tl.constexpr, CHUNK: tl.constexpr,
):
    """Program row: rank the row's revealable positions, write the chosen proposals, store the done flag."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_L)
    in_row = cols < row_length
    row_confidence = confidence_ptr + row * confidence_row_stride
    confidence = tl.load(row_confidence + cols, mask=in_row, other=float("-inf"))
    # NaN compares false: not revealable, like -inf.
    is_revealable = confidence > float("-inf")

    # One int64 key per position whose order is the ranking, so "ahead of" is one integer comparison: the
    # confidence's fp32 bits made order-preserving as a signed integer (negative floats flip their magnitude
    # bits; + 0.0 first turns -0.0 into 0.0, which compare equal) above the reversed column (ties to the lower
    # column). Unrevealable positions get the smallest int64: never ahead of anything.
    bits = (confidence + 0.0).to(tl.int32, bitcast=True)
    key = (tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64) << 32) | (0x7FFFFFFF - cols).to(tl.int64)
    key = tl.where(is_revealable, key, -9223372036854775807 - 1)
    rank = tl.zeros([BLOCK_L], tl.int32)
    for chunk_start in range(0, row_length, CHUNK):
        others = chunk_start + tl.arange(0, CHUNK)
        other_confidence = tl.load(row_confidence + others, mask=others < row_length, other=float("-inf"))
        other_bits = (other_confidence + 0.0).to(tl.int32, bitcast=True)
        other_key = ((tl.where(other_bits < 0, other_bits ^ 0x7FFFFFFF, other_bits).to(tl.int64) << 32)
                     | (0x7FFFFFFF - others).to(tl.int64))
        other_key = tl.where(other_confidence > float("-inf"), other_key, -9223372036854775807 - 1)
        # Others along the outer axis: each thread holds a whole column of the tile, so the sum stays in-thread.
        rank += tl.sum((other_key[:, None] > key[None, :]).to(tl.int32), axis=0)

    quota = tl.maximum(tl.load(quota_ptr + row).to(tl.int64), 0)
    if USE_THRESHOLD:
        is_chosen = is_revealable & ((rank < tl.maximum(quota, 1)) | (confidence >= threshold))
    else:
        is_chosen = is_revealable & (rank < quota)
    if USE_CONFIDENT:
        is_confident = tl.load(confident_ptr + row * confident_row_stride + cols, mask=in_row, other=0) != 0
        is_chosen = is_chosen | (is_revealable & is_confident)

    row_canvas = canvas_ptr + row * canvas_row_stride
    proposal = tl.load(proposal_ptr + row * proposal_row_stride + cols, mask=is_chosen, other=0)
    tl.store(row_canvas + cols, proposal, mask=is_chosen)
    written = tl.where(is_chosen, proposal, tl.load(row_canvas + cols, mask=in_row & ~is_chosen, other=0))
    num_masked = tl.sum((in_row & (written == mask_token_id)).to(tl.int32), axis=0)
    tl.store(done_ptr + row, num_masked == 0)


def reveal_by_confidence(canvas: torch.Tensor, proposal: torch.Tensor, confidence: torch.Tensor,
                         quota: torch.Tensor, threshold: float | None, mask_token_id: int, *,
                         is_confident: torch.Tensor | None = None) -> torch.Tensor:
    """Write the chosen proposals into `canvas` in place; return done (B,) bool: the row has no mask left.

    canvas (B, L) int64, may be a column slice of a wider canvas (any row stride, unit column stride);
    proposal (B, L) int64, the token proposed at each position; confidence (B, L) fp32, -inf (or NaN) where a
    position may not be revealed; quota (B,) int32/int64 on the same device, negative counts as 0.
    threshold None: reveal the min(quota, revealable) most confident positions of each row. threshold t:
    reveal every revealable position with confidence >= t, plus the max(quota, 1) most confident, so every row
    with a revealable position makes progress. Ties rank the lower column first. is_confident (B, L) bool, if
    given: every revealable position it marks is revealed too, whatever its rank (a bar on another score than
    the ranking one, e.g. rank by entropy, reveal every token above a probability). Done looks at these L
    columns. Raises ValueError for input it cannot take (shapes, dtypes, strides, devices, L > MAX_ROW_LENGTH).
    """
    _check_reveal_inputs(canvas, proposal, confidence, quota, threshold, mask_token_id, is_confident)
    reason = unavailable_reason(canvas.device)
    if reason is not None:
        raise ValueError(f"reveal_by_confidence: {reason}")
    num_rows, row_length = canvas.shape
    done = torch.empty(num_rows, dtype=torch.bool, device=canvas.device)
    if num_rows == 0:
        return done
    if row_length == 0:
        return done.fill_(True)
    block_l = next_power_of_2(row_length)
    with on_device(canvas.device):
        compile_kernel(_reveal_kernel, REVEAL_UNSPECIALIZED)[(num_rows,)](
            canvas, canvas.stride(0), proposal, proposal.stride(0), confidence, confidence.stride(0),
            quota, done, row_length, 0.0 if threshold is None else float(threshold), mask_token_id,
            canvas if is_confident is None else is_confident, 0 if is_confident is None else is_confident.stride(0),
            USE_THRESHOLD=threshold is not None, USE_CONFIDENT=is_confident is not None, BLOCK_L=block_l,
            CHUNK=compare_chunk(block_l), num_warps=NUM_WARPS,
        )
    return done


def compare_chunk(block_l: int) -> int:
    """Columns compared against the whole row per loop trip: tiles of at most MAX_TILE_ELEMENTS."""
    return max(1, min(block_l, MAX_TILE_ELEMENTS // block_l))


def _check_reveal_inputs(canvas: torch.Tensor, proposal: torch.Tensor, confidence: torch.Tensor,
                         quota: torch.Tensor, threshold: float | None, mask_token_id: int,
                         is_confident: torch.Tensor | None) -> None:
    tensors = {"canvas": canvas, "proposal": proposal, "confidence": confidence, "quota": quota}
    if is_confident is not None:
        tensors["is_confident"] = is_confident
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"reveal_by_confidence: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if canvas.dim() != 2:
        raise ValueError(f"reveal_by_confidence: canvas must be (B, L), got shape {tuple(canvas.shape)}")
    num_rows, row_length = canvas.shape
    expected = {"canvas": ((num_rows, row_length), (torch.int64,)),
                "proposal": ((num_rows, row_length), (torch.int64,)),
                "confidence": ((num_rows, row_length), (torch.float32,)),
                "quota": ((num_rows,), (torch.int32, torch.int64)),
                "is_confident": ((num_rows, row_length), (torch.bool,))}
    for name, tensor in tensors.items():
        shape, dtypes = expected[name]
        if tuple(tensor.shape) != shape:
            raise ValueError(f"reveal_by_confidence: {name} must have shape {shape}, got {tuple(tensor.shape)}")
        if tensor.dtype not in dtypes:
            names = " or ".join(str(dtype).removeprefix("torch.") for dtype in dtypes)
            raise ValueError(f"reveal_by_confidence: {name} must be {names}, got {tensor.dtype}")
        if tensor.device != canvas.device:
            raise ValueError(f"reveal_by_confidence: {name} is on {tensor.device}, canvas on {canvas.device}")
        if tensor.dim() == 2 and row_length > 1 and tensor.stride(1) != 1:
            raise ValueError(f"reveal_by_confidence: {name} needs unit column stride, strides {tensor.stride()}")
    if quota.dim() == 1 and num_rows > 1 and quota.stride(0) != 1:
        raise ValueError(f"reveal_by_confidence: quota must be contiguous, stride {quota.stride()}")
    if row_length > MAX_ROW_LENGTH:
        raise ValueError(f"reveal_by_confidence: rows of {row_length} positions exceed the kernel's "
                         f"{MAX_ROW_LENGTH}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or threshold != threshold):
        raise ValueError(f"reveal_by_confidence: threshold must be a number or None, got {threshold!r}")
    if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int):
        raise ValueError(f"reveal_by_confidence: mask_token_id must be an int, got {mask_token_id!r}")


def reference_reveal_by_confidence(canvas: torch.Tensor, proposal: torch.Tensor, confidence: torch.Tensor,
                                   quota: torch.Tensor, threshold: float | None, mask_token_id: int, *,
                                   is_confident: torch.Tensor | None = None) -> torch.Tensor:
    """Plain torch, the same rule and results: a stable sort gives each position its rank."""
    _check_reveal_inputs(canvas, proposal, confidence, quota, threshold, mask_token_id, is_confident)
    is_revealable = confidence > float("-inf")  # (B, L); NaN is not
    ranked = torch.where(is_revealable, confidence, float("-inf"))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (B, L)
    positions = torch.arange(canvas.shape[1], device=canvas.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    quota = quota.to(torch.int64).clamp(min=0)[:, None]  # (B, 1)
    if threshold is None:
        is_chosen = is_revealable & (rank < quota)
    else:
        is_chosen = is_revealable & ((rank < quota.clamp(min=1)) | (confidence >= threshold))
    if is_confident is not None:
        is_chosen |= is_revealable & is_confident
    canvas.copy_(torch.where(is_chosen, proposal, canvas))
    return ~(canvas == mask_token_id).any(dim=1)
