"""Confidence statistics of (N, V) logits in one read of the vocabulary: token, its probability, margin, entropy.

A denoising step needs, for each masked position, a proposed token and how sure the model is of it: the token's
probability (maskgit_plus, threshold), top-1 minus top-2 probability (topk_margin) or negative entropy (entropy).
Torch reads the logits five or six times for these; the kernel reads them once, with online statistics in fp32.

Two launches: each row's vocabulary is split over `num_splits` programs (a row a program would leave most SMs
idle), each writing partial statistics; a tiny second kernel merges a row's partials. Sums are kept relative to
a reference m, the largest logit seen so far (at least finfo(fp32).min, so it is finite):
    w = max(z - m, -200),  mass = sum exp(w),  shifted = sum exp(w) * w
    p_v = exp(z_v - m) / mass,  sum p log p = shifted / mass - log(mass).
exp(-200) is 0 in fp32, so -inf entries, finfo.min (suppressed tokens) and anything far below the max weigh
exactly 0 and add 0 to `shifted` with no NaN from 0 * -inf. m is shared by a program's lanes and changes only
when a tile holds a new maximum, which keeps the greedy loop bandwidth-bound. Instruction counts and accuracy
against the float64 reference below: docs/engine.md, Triton kernel design.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from .runtime import cdiv, compile_kernel, interpreted, is_hip, next_power_of_2, on_device, tl, unavailable_reason

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Elements per program per loop trip: 16 per thread at 8 warps for 2-byte logits (two 16-byte loads), 8 for fp32.
BLOCK_V_BY_ELEMENT_SIZE = {2: 4096, 4: 2048}
NUM_WARPS = 8
# Two greedy 8-warp programs share an SM within 128 registers a thread, each with two tiles in flight: the bytes
# DRAM latency needs in flight (docs/engine.md, Triton kernel design). Sampling needs more and runs one program a SM.
GREEDY_MAX_REGISTERS, PIPELINE_STAGES, RESIDENT_PROGRAMS_PER_SM = 128, 3, 2
# The default split makes the grid whole waves of resident programs: a last wave at least this full.
MIN_LAST_WAVE_FILL = 0.9
# Rows per merge program: the merge reads 28 bytes per split, a few hundred bytes per row.
MERGE_BLOCK_ROWS = 16
# One split's partial statistics: top1, top2, reference, mass, shifted mass, best key (its column apart).
NUM_PARTIAL_STATS = 6
# triton.language.random's Philox4x32-10 constants (golden ratio and sqrt(3) - 1 keys, Salmon et al. multipliers).
PHILOX_KEY_A, PHILOX_KEY_B = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUND_A, PHILOX_ROUND_B = 0xD2511F53, 0xCD9E8D57
PHILOX_ROUNDS = 10
UINT32_MASK = 0xFFFFFFFF
# tl.rand's uint32 -> [0, 1) factor: the largest with (2**31 - 1) * factor < 1 in fp32.
UNIFORM_SCALE = 4.6566127342e-10
# Philox counters are 64-bit: offset + row * V + col // 4 must stay below 2**63 (int64 arithmetic).
MAX_COUNTER = 2**63
# Arguments that differ from call to call: a specialised one would compile a new variant on its first odd value.
PARTIALS_UNSPECIALIZED = ("seed", "offset")


class ConfidenceStats(NamedTuple):
    """Per row: chosen token, its probability, top-1 minus top-2 probability, sum of p log p (<= 0)."""

    token: torch.Tensor  # (N,) int64
    max_prob: torch.Tensor  # (N,) fp32
    margin: torch.Tensor  # (N,) fp32
    neg_entropy: torch.Tensor  # (N,) fp32


def _confidence_partials_kernel(
    logits_ptr, row_stride, vocab_size, split_size,
    stats_ptr, cols_ptr, num_splits,
    inv_temperature, seed, offset, offset_ptr,
    SAMPLE: tl.constexpr, OFFSET_IN_MEMORY: tl.constexpr, FAST_MATH: tl.constexpr, BLOCK_V: tl.constexpr,
    PIPELINE_STAGES: tl.constexpr,
):
    """Program (row, split): online statistics of z = logits * (1 / T) over columns [split * split_size, ...)."""
    row = tl.program_id(0)
    split = tl.program_id(1)
    lanes = tl.arange(0, BLOCK_V)
    row_logits = logits_ptr + row.to(tl.int64) * row_stride
    split_start = split * split_size
    split_stop = tl.minimum(split_start + split_size, vocab_size)
    if SAMPLE:
        if OFFSET_IN_MEMORY:
            offset = tl.load(offset_ptr)
        row_counter = offset + row.to(tl.int64) * vocab_size

    # finfo(fp32).min as an fp32 scalar (a loop-carried tensor, not a constant): finite, so z - reference is
    # never NaN.
    reference = tl.to_tensor(-3.4028234663852886e38)
    mass = tl.zeros([BLOCK_V], tl.float32)
    shifted = tl.zeros([BLOCK_V], tl.float32)
    # Lane i sees columns split_start + i, + BLOCK_V, ... in increasing order; a lane's best column is
    # best_block + i, the first (lowest) among equal values because the comparisons are strict.
    top1 = tl.full([BLOCK_V], float("-inf"), tl.float32)
    top2 = tl.full([BLOCK_V], float("-inf"), tl.float32)
    best_key = tl.full([BLOCK_V], float("-inf"), tl.float32)
    best_block = tl.zeros([BLOCK_V], tl.int32) + split_start
    for block_start in tl.range(split_start, split_stop, BLOCK_V, num_stages=PIPELINE_STAGES):
        cols = block_start + lanes
        # The bound is the vocabulary (divisible by 16 for real ones), so triton keeps 16-byte vector loads.
        z = tl.load(row_logits + cols, mask=cols < vocab_size, other=float("-inf")).to(tl.float32)
        if SAMPLE:
            z = z * inv_temperature
        is_better = z > top1
        top2 = tl.maximum(top2, tl.where(is_better, top1, z))
        top1 = tl.where(is_better, z, top1)
        if SAMPLE:
            # Gumbel-max: argmax(z + G), G = -log(-log(U)), is a draw from softmax(z). U = 0 gives -inf (never
            # chosen); fp32 U caps G near 16, a tail of probability ~1e-7. One Philox call gives four uniforms:
            # column c takes output c % 4 of counter c // 4, interleaved back into column order.
            quads = row_counter + block_start // 4 + tl.arange(0, BLOCK_V // 4)
            u0, u1, u2, u3 = tl.rand4x(seed, quads)
            # join stacks along a new minor axis, so the outer join interleaves: (u0, u1, u2, u3) per group.
            uniform = tl.reshape(tl.join(tl.join(u0, u2), tl.join(u1, u3)), [BLOCK_V])
            if FAST_MATH:
                # lg2.approx.ftz: one MUFU op where tl.log is a ~20-instruction polynomial. Its ~2^-22 absolute
                # error matters only for U within a few ulps of 1, where it can return log2(U) >= 0. There
                # 1 - U (exact in fp32 for U >= 1/2, and -ln U >= 1 - U) is the better value: a fixed floor such
                # as 1e-30 would give G ~ +69, a column that wins whatever its logit (fast_neg_log_uniform).
                log2_uniform = tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=f,f", [uniform],
                                                         dtype=tl.float32, is_pure=True, pack=1)
                neg_log_uniform = tl.maximum(-0.6931471805599453 * log2_uniform, 1.0 - uniform)
                log2_neg_log = tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=f,f", [neg_log_uniform],
                                                         dtype=tl.float32, is_pure=True, pack=1)
                key = z - 0.6931471805599453 * log2_neg_log
            else:
                key = z - tl.log(-tl.log(uniform))
            is_best = key > best_key
            best_key = tl.where(is_best, key, best_key)
            best_block = tl.where(is_best, block_start, best_block)
        else:
            best_block = tl.where(is_better, block_start, best_block)
        tile_max = tl.max(z, axis=0)
        if tile_max > reference:
            # Re-base the sums; a scale that underflows to 0 drops them (and keeps shift * mass from overflowing).
            shift = reference - tile_max
            scale = tl.exp(shift)
            shifted = tl.where(scale > 0, scale * (shifted + shift * mass), 0.0)
            mass = mass * scale
            reference = tile_max
        w = tl.maximum(z - reference, -200.0)
        if FAST_MATH:
            # Flush-to-zero ex2: one MUFU op, where tl.exp's ex2.approx.f32 adds three instructions per element
            # to get denormal results right; weights below 1e-38 of the max change nothing here.
            weight = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f", [w * 1.4426950408889634],
                                               dtype=tl.float32, is_pure=True, pack=1)
        else:
            weight = tl.exp(w)
        mass += weight
        shifted += weight * w

    # Merge the lanes (the merge kernel does the same over splits); all lanes share the reference.
    split_top1 = tl.max(top1, axis=0)
    first_lane = tl.min(tl.where(top1 == split_top1, lanes, BLOCK_V), axis=0)
    split_top2 = tl.max(tl.where(lanes == first_lane, top2, top1), axis=0)
    if not SAMPLE:
        best_key = top1
    split_key = tl.max(best_key, axis=0)
    split_col = tl.min(tl.where(best_key == split_key, best_block + lanes, vocab_size), axis=0)

    slot = row.to(tl.int64) * num_splits + split
    stats = stats_ptr + slot * 6  # NUM_PARTIAL_STATS
    tl.store(stats + 0, split_top1)
    tl.store(stats + 1, split_top2)
    tl.store(stats + 2, reference)
    tl.store(stats + 3, tl.sum(mass, axis=0))
    tl.store(stats + 4, tl.sum(shifted, axis=0))
    tl.store(stats + 5, split_key)
    tl.store(cols_ptr + slot, split_col)


def _confidence_merge_kernel(
    stats_ptr, cols_ptr, num_rows, num_splits, vocab_size,
    logits_ptr, row_stride, inv_temperature,
    token_ptr, max_prob_ptr, margin_ptr, neg_entropy_ptr,
    SAMPLE: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_SPLITS: tl.constexpr,
):
    """Program i: merge the split statistics of BLOCK_ROWS rows (as the partials kernel merges lanes)."""
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    splits = tl.arange(0, BLOCK_SPLITS)
    is_row = rows < num_rows
    is_split = is_row[:, None] & (splits[None, :] < num_splits)
    slots = rows.to(tl.int64)[:, None] * num_splits + splits[None, :]  # (BLOCK_ROWS, BLOCK_SPLITS)
    stats = stats_ptr + slots * 6  # NUM_PARTIAL_STATS
    top1 = tl.load(stats + 0, mask=is_split, other=float("-inf"))
    top2 = tl.load(stats + 1, mask=is_split, other=float("-inf"))
    reference = tl.load(stats + 2, mask=is_split, other=-3.4028234663852886e38)
    mass = tl.load(stats + 3, mask=is_split, other=0.0)
    shifted = tl.load(stats + 4, mask=is_split, other=0.0)
    key = tl.load(stats + 5, mask=is_split, other=float("-inf"))
    col = tl.load(cols_ptr + slots, mask=is_split, other=vocab_size)

    row_top1 = tl.max(top1, axis=1)
    first_split = tl.min(tl.where(top1 == row_top1[:, None], splits[None, :], BLOCK_SPLITS), axis=1)
    row_top2 = tl.max(tl.where(splits[None, :] == first_split[:, None], top2, top1), axis=1)
    row_reference = tl.max(reference, axis=1)
    shift = reference - row_reference[:, None]
    scale = tl.exp(shift)
    row_mass = tl.sum(scale * mass, axis=1)
    row_shifted = tl.sum(tl.where(scale > 0, scale * (shifted + shift * mass), 0.0), axis=1)
    row_key = tl.max(key, axis=1)
    token = tl.min(tl.where(key == row_key[:, None], col, vocab_size), axis=1)
    if SAMPLE:
        # The drawn token's own logit, read back: one element per row.
        token_logit = tl.load(logits_ptr + rows.to(tl.int64) * row_stride + token, mask=is_row, other=0.0)
        token_z = token_logit.to(tl.float32) * inv_temperature
    else:
        token_z = row_top1

    # A row of -inf only has no distribution: mass 0, token 0 and NaN statistics, as torch's softmax gives.
    tl.store(token_ptr + rows, token.to(tl.int64), mask=is_row)
    tl.store(max_prob_ptr + rows, tl.exp(token_z - row_reference) / row_mass, mask=is_row)
    margin = (tl.exp(row_top1 - row_reference) - tl.exp(row_top2 - row_reference)) / row_mass
    tl.store(margin_ptr + rows, margin, mask=is_row)
    tl.store(neg_entropy_ptr + rows, row_shifted / row_mass - tl.log(row_mass), mask=is_row)


def confidence_stats(logits: torch.Tensor, temperature: float = 0.0, seed: int = 0,
                     offset: int | torch.Tensor = 0, *, num_splits: int | None = None) -> ConfidenceStats:
    """(N, V) logits -> ConfidenceStats of p = softmax(logits * (1 / T)) (softmax(logits) at T = 0), one read.

    T = 0: token = argmax (lowest index among ties). T > 0: token = argmax(logits * (1 / T) + Gumbel noise), a
    draw from p, the noise from Philox keyed by `seed`, column c of row r using counter offset + r * V + c // 4:
    the same (seed, offset) gives the same tokens, and a caller advances `offset` by N * V per step. `offset`
    may be a one-element int64 tensor on the logits' device, read by the kernel, so a captured CUDA graph can
    replay with a new offset. max_prob is p[token] in both cases. `num_splits` (programs per row) defaults to
    whole waves of programs on the GPU.
    Raises ValueError for input it cannot take (shape, dtype, strides, device without Triton, arguments).
    """
    _check_logits(logits)
    _check_sampling(logits, temperature, seed, offset)
    reason = unavailable_reason(logits.device)
    if reason is not None:
        raise ValueError(f"confidence_stats: {reason}")
    num_rows, vocab_size = logits.shape
    device = logits.device
    outputs = ConfidenceStats(*(torch.empty(num_rows, dtype=dtype, device=device)
                                for dtype in (torch.int64, torch.float32, torch.float32, torch.float32)))
    if num_rows == 0:
        return outputs

    # At least 16 columns, so a tile holds whole groups of four for the sampler.
    block_v = min(BLOCK_V_BY_ELEMENT_SIZE[logits.element_size()], max(16, next_power_of_2(vocab_size)))
    num_blocks = cdiv(vocab_size, block_v)
    if num_splits is None:
        num_splits = default_num_splits(num_rows, num_blocks, _num_sms(device))
    elif num_splits < 1:
        raise ValueError(f"confidence_stats: num_splits must be >= 1, got {num_splits}")
    # Splits are whole blocks, so only the last block of the last split is ragged.
    split_size = cdiv(num_blocks, min(num_splits, num_blocks)) * block_v
    num_splits = cdiv(vocab_size, split_size)

    stats = torch.empty((num_rows, num_splits, NUM_PARTIAL_STATS), dtype=torch.float32, device=device)
    cols = torch.empty((num_rows, num_splits), dtype=torch.int32, device=device)
    sample = temperature > 0
    inv_temperature = inverse_temperature(temperature)
    offset_in_memory = isinstance(offset, torch.Tensor)
    # PTX inline assembly and maxnreg are NVIDIA's: ROCm runs the portable code.
    fast_math = not interpreted() and not is_hip()
    with on_device(device):
        compile_kernel(_confidence_partials_kernel, PARTIALS_UNSPECIALIZED)[(num_rows, num_splits)](
            logits, logits.stride(0), vocab_size, split_size,
            stats, cols, num_splits,
            inv_temperature, seed, 0 if offset_in_memory else offset, offset if offset_in_memory else stats,
            SAMPLE=sample, OFFSET_IN_MEMORY=offset_in_memory, FAST_MATH=fast_math, BLOCK_V=block_v,
            PIPELINE_STAGES=PIPELINE_STAGES, num_warps=NUM_WARPS,
            maxnreg=GREEDY_MAX_REGISTERS if fast_math and not sample else None,
        )
        compile_kernel(_confidence_merge_kernel)[(cdiv(num_rows, MERGE_BLOCK_ROWS),)](
            stats, cols, num_rows, num_splits, vocab_size,
            logits, logits.stride(0), inv_temperature, *outputs,
            SAMPLE=sample, BLOCK_ROWS=MERGE_BLOCK_ROWS, BLOCK_SPLITS=next_power_of_2(num_splits), num_warps=4,
        )
    return outputs


def fast_neg_log_uniform(uniform: torch.Tensor, log2_uniform: torch.Tensor) -> torch.Tensor:
    """-ln U as the FAST_MATH sampler computes it from an approximate log2(U), in torch: the kernel's formula,
    tested here against float64 (the hardware's lg2.approx exists only on a GPU). max(-ln 2 * log2 U, 1 - U) is
    never <= 0 for U < 1 and never above -ln U by more than the log's own error, since -ln U >= 1 - U."""
    return torch.maximum(-0.6931471805599453 * log2_uniform, 1.0 - uniform)


def inverse_temperature(temperature: float) -> float:
    """1 / T as the fp32 the kernel multiplies by (a product, not a division: a GPU's fp32 division is several
    instructions, and both sides then round the same way); 1 at T = 0, where logits are used as they are."""
    return float(torch.tensor(1 / temperature if temperature > 0 else 1.0, dtype=torch.float32))


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"confidence_stats: logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(f"confidence_stats: logits must be (N, V) with V >= 1, got shape {tuple(logits.shape)}")
    if logits.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"confidence_stats: logits dtype must be float32, bfloat16 or float16, got {logits.dtype}")
    if logits.shape[1] > 1 and logits.stride(1) != 1:
        raise ValueError(f"confidence_stats: logits' vocabulary dimension must be contiguous, strides "
                         f"{logits.stride()}")
    if logits.shape[1] >= 2**31:
        raise ValueError(f"confidence_stats: vocabulary of {logits.shape[1]} does not fit int32 column ids")


def _check_sampling(logits: torch.Tensor, temperature: float, seed: int, offset: int | torch.Tensor) -> None:
    if not isinstance(temperature, (int, float)) or not 0 <= temperature < float("inf"):
        raise ValueError(f"confidence_stats: temperature must be a finite number >= 0, got {temperature!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"confidence_stats: seed must be an int in [0, 2**63), got {seed!r}")
    if isinstance(offset, torch.Tensor):
        if offset.dtype != torch.int64 or offset.numel() != 1 or offset.device != logits.device:
            raise ValueError(f"confidence_stats: a tensor offset must be one int64 element on {logits.device}, "
                             f"got {offset.dtype} {tuple(offset.shape)} on {offset.device}")
        return
    num_counters = logits.shape[0] * logits.shape[1]
    if not isinstance(offset, int) or offset < 0 or offset + num_counters > MAX_COUNTER:
        raise ValueError(f"confidence_stats: offset must be an int >= 0 with offset + N * V < 2**63, got "
                         f"{offset!r}")


@functools.cache
def _num_sms(device: torch.device) -> int:
    """SMs of a tensor's CUDA device (indexed); 0 elsewhere (the interpreter runs one program at a time)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 0


def default_num_splits(num_rows: int, num_blocks: int, num_sms: int) -> int:
    """Programs per row: the fewest that fill at least one wave of resident programs and leave the last wave at
    least MIN_LAST_WAVE_FILL full (a 64-row step on 132 SMs: 8), never more than one block each; 1 without SMs."""
    if num_sms == 0:
        return 1
    slots = RESIDENT_PROGRAMS_PER_SM * num_sms
    for requested in range(max(1, cdiv(slots, num_rows)), num_blocks + 1):
        splits = cdiv(num_blocks, cdiv(num_blocks, requested))  # what whole-block splits make of the request
        num_programs = num_rows * splits
        if num_programs / (cdiv(num_programs, slots) * slots) >= MIN_LAST_WAVE_FILL:
            return splits
    return num_blocks


def reference_confidence_stats(logits: torch.Tensor, temperature: float = 0.0, seed: int = 0,
                               offset: int | torch.Tensor = 0) -> ConfidenceStats:
    """Plain torch: the same statistics from a float64 softmax (the yardstick: the kernel's fp32 sums beat torch's
    fp32 softmax), and at T > 0 the same draws, from fp32 logits and `reference_uniform`'s noise: they agree
    with the kernel except where rounding of the noise's logs flips a near-tie."""
    _check_logits(logits)
    _check_sampling(logits, temperature, seed, offset)
    z = logits.float()
    if temperature > 0:
        z = z * torch.tensor(inverse_temperature(temperature), dtype=torch.float32)
    probs = torch.softmax(z.double(), dim=-1)  # (N, V)
    if temperature > 0:
        num_rows, vocab_size = z.shape
        first = int(offset.item()) if isinstance(offset, torch.Tensor) else offset
        columns = torch.arange(vocab_size, device=z.device)
        counters = first + torch.arange(num_rows, device=z.device)[:, None] * vocab_size + columns[None, :] // 4
        uniform = reference_uniform(seed, counters, output=columns % 4)  # (N, V)
        token = torch.argmax(z - torch.log(-torch.log(uniform)), dim=-1)
    else:
        token = torch.argmax(z, dim=-1)
    top = torch.topk(probs, min(2, probs.shape[1]), dim=-1).values  # (N, 1 or 2)
    second = top[:, 1] if top.shape[1] == 2 else torch.zeros_like(top[:, 0])
    return ConfidenceStats(
        token=token,
        max_prob=torch.gather(probs, -1, token[:, None]).squeeze(-1).float(),
        margin=(top[:, 0] - second).float(),
        neg_entropy=torch.xlogy(probs, probs).sum(dim=-1).float(),
    )


def reference_uniform(seed: int, counters: torch.Tensor, output: torch.Tensor | int = 0) -> torch.Tensor:
    """`tl.rand4x(seed, counters)[output]` in torch (output 0 is `tl.rand`): Philox4x32-10 (Salmon et al., SC'11)
    of (counter low, counter high, 0, 0) keyed by the seed, with triton's constants and [0, 1) map; uint32
    values live in int64 tensors."""
    c0, c1 = counters & UINT32_MASK, (counters >> 32) & UINT32_MASK
    c2, c3 = torch.zeros_like(c0), torch.zeros_like(c0)
    k0, k1 = seed & UINT32_MASK, (seed >> 32) & UINT32_MASK
    for _ in range(PHILOX_ROUNDS):
        hi_b, lo_b = _mul_hi_lo(PHILOX_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(PHILOX_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + PHILOX_KEY_A) & UINT32_MASK, (k1 + PHILOX_KEY_B) & UINT32_MASK
    words = torch.stack([c0, c1, c2, c3])  # (4, ...)
    bits = torch.gather(words, 0, torch.as_tensor(output, device=counters.device).expand_as(c0)[None]).squeeze(0)
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)  # the bits read as int32
    folded = torch.where(signed < 0, ~signed, signed)  # [0, 2**31)
    return folded.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32)


def _mul_hi_lo(constant: int, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(constant * values) >> 32 and its low 32 bits, for uint32 operands, without overflowing int64."""
    high_part = constant * (values >> 16)  # < 2**48
    low_part = constant * (values & 0xFFFF)  # < 2**48
    high = (high_part + (low_part >> 16)) >> 16
    low = (((high_part & 0xFFFF) << 16) + low_part) & UINT32_MASK
    return high, low
