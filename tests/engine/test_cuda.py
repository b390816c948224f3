"""The CUDA path on a real GPU: every compiled kernel against its torch reference (sampled draws by chi-square),
compiled variants fixed at warm-up, and one fast infill per device index from a worker thread.

Skipped without a CUDA device. Run it alone, as the GPU suite does:
    python -m pytest tests/engine/test_cuda.py
(tests/engine/kernels' conftest puts triton in its interpreter for the whole process, which this file skips).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from coda_engine import Engine
from coda_engine.kernels import (confidence_stats, reference_confidence_stats, reference_reveal_by_confidence,
                                 reveal_by_confidence)
from coda_engine.jobs import InfillJob
from coda_engine.params import EngineOptions, InfillParams

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICES = [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
VOCAB = 151936  # CoDA-v0's
MASK = 151669
PREFIX = "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n    return "
SUFFIX = "\n\n\nprint(mean([1, 2, 3]))\n"
# scipy.stats.chi2.isf(1e-6, df=7): a correct sampler exceeds it once in a million runs.
CHI2_7_DOF_ONE_IN_A_MILLION = 40.52


@pytest.fixture(scope="module", autouse=True)
def compiled_triton() -> None:
    pytest.importorskip("triton", reason="triton is not installed")
    from coda_engine.kernels.runtime import interpreted

    if interpreted():
        pytest.skip("triton runs in its interpreter in this process: run tests/engine/test_cuda.py alone")


def cpu_logits(num_rows: int, vocab: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(num_rows, vocab, generator=generator) * 4).to(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_greedy_statistics_equal_the_float64_reference(device: str, dtype: torch.dtype) -> None:
    logits = cpu_logits(64, VOCAB, dtype, seed=0)
    stats = confidence_stats(logits.to(device))
    reference = reference_confidence_stats(logits)
    assert torch.equal(stats.token.cpu(), reference.token)
    torch.testing.assert_close(stats.max_prob.cpu(), reference.max_prob, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.margin.cpu(), reference.margin, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.neg_entropy.cpu(), reference.neg_entropy, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_draws_follow_the_softmax_and_the_tail_stays_silent(device: str, temperature: float) -> None:
    # Eight columns share almost all the mass; the other 151,928 hold ~4e-5 of it per row, so a few thousand
    # rows should almost never draw one. The fast-math noise with a constant floor drew a random column at
    # ~1.4 % of rows.
    weights = torch.arange(1, 9, dtype=torch.float64)
    row = torch.zeros(VOCAB)
    columns = torch.tensor([5, 1000, 40_000, 77_777, 100_003, 120_000, 150_000, VOCAB - 1])
    row[columns] = (20 + weights.log()).float()
    num_rows = 8192
    logits = row.to(torch.bfloat16).repeat(num_rows, 1)
    stats = confidence_stats(logits.to(device), temperature=temperature, seed=12345, offset=7 * VOCAB)
    tokens = stats.token.cpu()
    probabilities = torch.softmax(logits[0].double() / temperature, dim=-1)
    outside = int((~torch.isin(tokens, columns)).sum())
    assert outside <= 5, f"{outside} of {num_rows} draws outside the eight heavy columns"
    inside = probabilities[columns] / probabilities[columns].sum()
    counts = torch.stack([(tokens == column).sum() for column in columns]).double()
    expected = inside * counts.sum()
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < CHI2_7_DOF_ONE_IN_A_MILLION, (chi_square, counts.tolist(), expected.tolist())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("width,threshold,confident", [(24, 0.9, True), (32, None, False), (1024, 0.5, False)])
def test_reveal_equals_the_torch_reference(device: str, width: int, threshold: float | None,
                                           confident: bool) -> None:
    generator = torch.Generator().manual_seed(width)
    canvas = torch.where(torch.rand(8, width, generator=generator) < 0.7, MASK, 3)
    proposal = torch.randint(0, VOCAB, (8, width), generator=generator)
    scores = torch.rand(8, width, generator=generator).masked_fill(canvas != MASK, float("-inf"))
    quota = torch.randint(0, 6, (8,), generator=generator)
    is_confident = torch.rand(8, width, generator=generator) < 0.2 if confident else None
    expected = canvas.clone()
    expected_done = reference_reveal_by_confidence(expected, proposal, scores, quota, threshold, MASK,
                                                   is_confident=is_confident)
    # A column slice of a wider canvas, as the loop passes a block.
    wide = torch.full((8, width + 13), 7).to(device)
    wide[:, 5:5 + width] = canvas.to(device)
    done = reveal_by_confidence(wide[:, 5:5 + width], proposal.to(device), scores.to(device), quota.to(device),
                                threshold, MASK, is_confident=None if is_confident is None else is_confident.to(device))
    assert torch.equal(wide[:, 5:5 + width].cpu(), expected) and torch.equal(done.cpu(), expected_done)
    assert bool((wide[:, :5] == 7).all()) and bool((wide[:, 5 + width:] == 7).all())


def compiled_variants() -> int:
    """Kernel variants triton has compiled in this process, over every device."""
    from coda_engine.kernels import confidence, reveal
    from coda_engine.kernels.runtime import compile_kernel

    launchers = [compile_kernel(confidence._confidence_partials_kernel, confidence.PARTIALS_UNSPECIALIZED),
                 compile_kernel(confidence._confidence_merge_kernel),
                 compile_kernel(reveal._reveal_kernel, reveal.REVEAL_UNSPECIALIZED)]
    return sum(len(caches[0]) for launcher in launchers for caches in launcher.device_caches.values())


@pytest.mark.parametrize("device", DEVICES)
def test_an_infill_from_a_worker_thread_on_every_device(device: str, tiny_checkpoint: Path) -> None:
    # The server's engine runs on a worker thread, whose current CUDA device is 0 whatever the engine's is.
    engine = Engine.from_pretrained(tiny_checkpoint, device=device, dtype="fp32", kernels="triton")
    torch_engine = Engine(engine.model, engine.tokenizer, engine.path, EngineOptions(kernels="torch"))
    assert engine.kernels.use_triton
    results: dict[str, object] = {}

    def serve() -> None:
        try:
            engine.warm_up((24, 64), candidate_temperature=0.8)
            before = compiled_variants()
            results["kernels"] = engine.infill(PREFIX, SUFFIX, 24, InfillParams(alg="threshold"))
            results["candidates"] = engine.run(InfillJob(PREFIX, SUFFIX, 64, InfillParams(), (0.0, 0.8, 0.8), 1))
            results["new variants"] = compiled_variants() - before
            results["torch"] = torch_engine.infill(PREFIX, SUFFIX, 24, InfillParams(alg="threshold"))
        except Exception as exc:  # reported by the assertion below, with the thread's error
            results["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(timeout=600)
    assert "error" not in results, results.get("error")
    assert results["new variants"] == 0, "a completion compiled a kernel variant the warm-up did not"
    assert results["kernels"].token_ids == results["torch"].token_ids
    candidates = results["candidates"]
    assert len(candidates) == 3 and candidates[1].token_ids != candidates[2].token_ids
    assert engine.kernels.use_triton  # nothing fell back
