"""confidence_stats in triton's interpreter against reference_confidence_stats, on the rows a decoder produces."""

from __future__ import annotations

import re

import pytest
import torch

from coda_engine.kernels import confidence_stats, reference_confidence_stats, reference_uniform, triton_available
from coda_engine.kernels.confidence import ConfidenceStats, fast_neg_log_uniform

pytestmark = pytest.mark.usefixtures("triton_interpreter")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# fp32 round-off of the kernel's blocked one-pass sums against the float64 reference: probabilities to ~1e-7
# absolute; the entropy sums V terms as large as |log p| ~ 20, so it gets a relative bound.
PROB_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
ENTROPY_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# scipy.stats.chi2.isf(1e-6, df=7): a correct sampler exceeds it once in a million runs.
CHI2_7_DOF_ONE_IN_A_MILLION = 40.52


def decoder_logits(num_rows: int, vocab_size: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random logits (num_rows >= 6) with the edge rows of real decoding.

    0: a third of the vocabulary at -inf (a forbidden-token mask); 1: one token at 1e4 over the rest;
    2: magnitudes ~1e4 everywhere (near one-hot); 3: all but two tokens at finfo.min (suppressed tokens);
    4: an exact tie for the top at columns 5 and V - 1; 5: a flat row (high entropy).
    """
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_rows, vocab_size, generator=generator) * 4
    logits[0, ::3] = float("-inf")
    logits[1, 17] = 1e4
    logits[2] *= 2500
    logits[4, [5, vocab_size - 1]] = 20.0
    logits[5] *= 0.01
    logits = logits.to(dtype)
    logits[3, 2:] = torch.finfo(dtype).min
    return logits


def assert_stats_close(kernel: ConfidenceStats, reference: ConfidenceStats) -> None:
    assert kernel.token.dtype == torch.int64 and kernel.max_prob.dtype == torch.float32
    torch.testing.assert_close(kernel.max_prob, reference.max_prob, **PROB_TOLERANCE, equal_nan=True)
    torch.testing.assert_close(kernel.margin, reference.margin, **PROB_TOLERANCE, equal_nan=True)
    torch.testing.assert_close(kernel.neg_entropy, reference.neg_entropy, **ENTROPY_TOLERANCE, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("vocab_size", "num_splits"), [(1000, None), (4099, None), (4099, 2)],
                         ids=["one-ragged-block", "ragged-last-block", "two-splits"])
def test_greedy_matches_reference(dtype: torch.dtype, vocab_size: int, num_splits: int | None) -> None:
    logits = decoder_logits(6, vocab_size, dtype)
    kernel = confidence_stats(logits, num_splits=num_splits)
    reference = reference_confidence_stats(logits)
    assert torch.equal(kernel.token, reference.token)
    assert kernel.token[4] == 5, "ties go to the lower column"
    assert kernel.margin[4] == 0
    assert_stats_close(kernel, reference)
    assert bool((kernel.neg_entropy <= 1e-6).all())


def test_qwen_vocabulary_in_bf16_matches_reference() -> None:
    """The real vocabulary size (151936, not a multiple of the block), many blocks per lane, five splits."""
    logits = decoder_logits(6, 151936, torch.bfloat16, seed=1)
    kernel = confidence_stats(logits, num_splits=5)
    reference = reference_confidence_stats(logits)
    assert torch.equal(kernel.token, reference.token)
    assert_stats_close(kernel, reference)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sampled_matches_reference_draw_for_draw(dtype: torch.dtype) -> None:
    """At T > 0 the reference recomputes the kernel's Philox noise, so the draws agree token for token."""
    logits = decoder_logits(6, 4099, dtype, seed=2)
    kernel = confidence_stats(logits, temperature=0.7, seed=11, offset=2**33 + 5, num_splits=2)
    reference = reference_confidence_stats(logits, temperature=0.7, seed=11, offset=2**33 + 5)
    assert torch.equal(kernel.token, reference.token)
    assert_stats_close(kernel, reference)
    tempered = torch.softmax(logits.float() / 0.7, dim=-1)
    expected_prob = tempered.gather(-1, kernel.token[:, None]).squeeze(-1)
    torch.testing.assert_close(kernel.max_prob, expected_prob, **PROB_TOLERANCE)


def test_row_of_only_minus_inf_has_no_distribution() -> None:
    logits = torch.full((2, 300), float("-inf"))
    logits[1, 7] = 0.0
    kernel = confidence_stats(logits)
    assert kernel.token.tolist() == [0, 7]
    assert torch.isnan(kernel.max_prob[0]) and torch.isnan(kernel.neg_entropy[0])
    assert kernel.max_prob[1] == 1.0 and kernel.margin[1] == 1.0 and kernel.neg_entropy[1] == 0.0
    assert_stats_close(kernel, reference_confidence_stats(logits))


def test_single_token_vocabulary() -> None:
    kernel = confidence_stats(torch.tensor([[3.0], [-2.0]]))
    assert kernel.token.tolist() == [0, 0]
    assert kernel.max_prob.tolist() == [1.0, 1.0] and kernel.margin.tolist() == [1.0, 1.0]
    assert kernel.neg_entropy.tolist() == [0.0, 0.0]


def test_no_rows_launches_nothing() -> None:
    kernel = confidence_stats(torch.empty(0, 50, dtype=torch.bfloat16))
    assert kernel.token.shape == (0,) and kernel.neg_entropy.shape == (0,)


def test_rows_with_a_row_stride_wider_than_the_vocabulary() -> None:
    wide = decoder_logits(6, 1100, torch.float32, seed=3)
    logits = wide[:, :1000]  # (6, 1000) view with row stride 1100
    kernel = confidence_stats(logits, temperature=1.3, seed=5)
    reference = reference_confidence_stats(logits.contiguous(), temperature=1.3, seed=5)
    assert torch.equal(kernel.token, reference.token)
    assert_stats_close(kernel, reference)


def test_sampling_is_reproducible_and_keyed_by_seed_and_offset() -> None:
    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(4)) * 0.1  # near-flat: draws vary
    first = confidence_stats(logits, temperature=1.0, seed=7, offset=0).token
    assert torch.equal(confidence_stats(logits, temperature=1.0, seed=7, offset=0).token, first)
    assert not torch.equal(confidence_stats(logits, temperature=1.0, seed=7, offset=8000).token, first)
    assert not torch.equal(confidence_stats(logits, temperature=1.0, seed=8, offset=0).token, first)
    from_tensor = confidence_stats(logits, temperature=1.0, seed=7, offset=torch.tensor([0])).token
    assert torch.equal(from_tensor, first)
    # Row r draws with counters offset + r * V + col: row 3 alone at offset 3 * V repeats row 3's draw.
    alone = confidence_stats(logits[3:4], temperature=1.0, seed=7, offset=3 * 1000).token
    assert alone.item() == first[3].item()


def test_gumbel_max_frequencies_follow_the_tempered_softmax() -> None:
    """The kernel draws what the reference draws; 20000 reference draws follow softmax(logits / T).

    A chi-square bound that a correct sampler breaks once in a million runs; the same counts must break it
    for a temperature ignored (T = 1), squared (T^2) or doubled.
    """
    temperature = 0.8
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    kernel_rows = logits.expand(24, -1).contiguous()
    kernel = confidence_stats(kernel_rows, temperature=temperature, seed=21, offset=0)
    reference = reference_confidence_stats(kernel_rows, temperature=temperature, seed=21, offset=0)
    assert torch.equal(kernel.token, reference.token)

    num_draws = 20000
    draws = reference_confidence_stats(logits.expand(num_draws, -1), temperature=temperature, seed=21).token
    counts = torch.bincount(draws, minlength=8).double()

    def chi_square(assumed_temperature: float) -> float:
        expected = torch.softmax(logits.double() / assumed_temperature, dim=0) * num_draws
        return float(((counts - expected) ** 2 / expected).sum())

    assert chi_square(temperature) < CHI2_7_DOF_ONE_IN_A_MILLION
    for wrong in (1.0, temperature**2, 2 * temperature):
        assert chi_square(wrong) > CHI2_7_DOF_ONE_IN_A_MILLION, wrong


def test_reference_uniform_is_uniform_on_the_unit_interval() -> None:
    num_draws = 50000
    uniform = reference_uniform(3, torch.arange(num_draws))
    assert float(uniform.min()) >= 0.0 and float(uniform.max()) < 1.0
    # Mean and variance of U(0, 1) within 6 standard errors (sd of U: sqrt(1/12); of (U - 1/2)^2: 0.0745).
    assert abs(float(uniform.double().mean()) - 0.5) < 6 * (1 / 12) ** 0.5 / num_draws**0.5
    assert abs(float(uniform.double().var()) - 1 / 12) < 6 * 0.0745 / num_draws**0.5


@pytest.mark.parametrize(("make_logits", "kwargs", "message"), [
    (lambda: torch.randn(2, 3, 5), {}, "must be (N, V)"),
    (lambda: torch.randn(2, 0), {}, "must be (N, V)"),
    (lambda: torch.randint(0, 5, (2, 5)), {}, "dtype must be"),
    (lambda: torch.randn(2, 5, dtype=torch.float64), {}, "dtype must be"),
    (lambda: torch.randn(6, 4).t(), {}, "must be contiguous"),
    (lambda: [[1.0, 2.0]], {}, "must be a torch.Tensor"),
    (lambda: torch.randn(2, 5), {"temperature": -1.0}, "temperature"),
    (lambda: torch.randn(2, 5), {"temperature": float("nan")}, "temperature"),
    (lambda: torch.randn(2, 5), {"temperature": 1.0, "seed": -1}, "seed"),
    (lambda: torch.randn(2, 5), {"temperature": 1.0, "offset": -3}, "offset"),
    (lambda: torch.randn(2, 5), {"temperature": 1.0, "offset": torch.tensor([1, 2])}, "offset"),
    (lambda: torch.randn(2, 5), {"temperature": 1.0, "offset": torch.tensor([1], dtype=torch.int32)}, "offset"),
    (lambda: torch.randn(2, 5), {"num_splits": 0}, "num_splits"),
], ids=["3-d", "empty-vocab", "int", "float64", "strided-vocab", "list", "negative-temperature",
        "nan-temperature", "negative-seed", "negative-offset", "two-element-offset", "int32-offset",
        "zero-splits"])
def test_bad_input_is_one_value_error(make_logits, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        confidence_stats(make_logits(), **kwargs)


def test_cpu_without_the_interpreter_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert triton_available(torch.device("cpu"))
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not triton_available(torch.device("cpu"))
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        confidence_stats(torch.randn(2, 5))
    assert reference_confidence_stats(torch.randn(2, 5)).token.shape == (2,)


def _fp32_values_below_one(count: int) -> torch.Tensor:
    """The `count` largest fp32 values below 1, where an approximate log2 can reach 0."""
    one = torch.tensor(1.0, dtype=torch.float32).view(torch.int32)
    return (one - torch.arange(1, count + 1, dtype=torch.int32)).view(torch.float32)


def test_fast_math_gumbel_noise_never_exceeds_the_exact_noise_near_one() -> None:
    # U from the far tail (within 4096 ulps of 1) and the bulk, with lg2.approx's absolute error of up to
    # 2^-22 either way (PTX ISA: lg2.approx.f32 max absolute error 2^-22.6 on [0.5, 2]).
    bulk = torch.linspace(1e-6, 1 - 1e-3, 20_001, dtype=torch.float32)
    uniform = torch.cat([_fp32_values_below_one(4096), bulk])
    exact_neg_log = -torch.log(uniform.double())
    exact_gumbel = -torch.log(exact_neg_log)
    for error in (-2.0**-22, 0.0, 2.0**-22):
        log2_uniform = (torch.log2(uniform.double()) + error).float()
        neg_log = fast_neg_log_uniform(uniform, log2_uniform)
        assert bool((neg_log > 0).all())
        gumbel = -torch.log(neg_log.double())
        # Near 1 the floor 1 - U keeps G at most -log(1 - U), within (1 - U) / 2 of the exact noise: no column
        # wins by an inflated draw (a 1e-30 floor gave G = 69 wherever the approximate log2 reached 0). In the
        # bulk the log's own error moves G by at most 2^-22 ln 2 / -ln U.
        assert float((gumbel - exact_gumbel).max()) <= 1e-3
        assert float((gumbel - exact_gumbel)[4096:].abs().max()) <= 1e-3
