"""The package without triton (the CPU runtime install): imports, reports no Triton path, references still run."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_TRITON = """
import sys
sys.modules["triton"] = None  # import triton now raises ImportError, as where it is not installed
import torch
import coda_engine.kernels as kernels
cpu = torch.device("cpu")
assert not kernels.triton_available(cpu)
try:
    kernels.confidence_stats(torch.randn(2, 5))
except ValueError as exc:
    print(exc)
stats = kernels.reference_confidence_stats(torch.randn(2, 5), temperature=0.5, seed=1)
canvas = torch.full((1, 3), 7)
done = kernels.reference_reveal_by_confidence(canvas, torch.tensor([[1, 2, 3]]), torch.tensor([[0.1, 0.9, 0.5]]),
                                              torch.tensor([3]), None, 7)
print(stats.token.shape[0], canvas.tolist(), done.tolist())
"""


def test_package_works_without_triton() -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_TRITON], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["confidence_stats: triton is not installed (pip install triton; it ships "
                                          "with CUDA builds of torch)", "2 [[1, 2, 3]] [True]"]
