"""The block-wise loop with the Triton kernels (interpreted on CPU) against its torch path, on the shipped model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coda_engine import Engine
from coda_engine.blockwise import denoise_blockwise
from coda_engine.cache import CachePolicy
from coda_engine.generate import PadTail, SamplingParams

SHIPPED_MODEL = Path(__file__).resolve().parents[3] / "models" / "coda-tiny"
PREFIX = "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n    return "
SUFFIX = "\n\n\nprint(mean([1, 2, 3]))\n"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_pretrained(SHIPPED_MODEL)


def run(engine: Engine, alg: str, use_kernels: bool, temperatures: tuple[float, ...] = (0.0,),
        seed: int | None = None) -> list[list[int]]:
    prefix_ids = engine.tokenizer.encode(PREFIX)
    span = 12
    canvas = torch.tensor([prefix_ids + [engine.mask_token_id] * span + engine.tokenizer.encode(SUFFIX)])
    fillers = tuple(sorted(engine.tokenizer.filler_token_ids))
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    trace = denoise_blockwise(engine.model, canvas.repeat(len(temperatures), 1), (len(prefix_ids),
                              len(prefix_ids) + span), engine.mask_token_id, SamplingParams(6, alg), 8,
                              CachePolicy(), reveal_bar=0.9, row_temperatures=temperatures, generator=generator,
                              pad_tail=PadTail(fillers, engine.tokenizer.pad_token_id), use_kernels=use_kernels)
    return trace.canvas[:, len(prefix_ids):len(prefix_ids) + span].tolist()


@pytest.mark.parametrize("alg", ["threshold", "entropy"])
def test_greedy_kernels_write_what_the_torch_path_writes(triton_interpreter, engine, alg):
    assert run(engine, alg, use_kernels=True) == run(engine, alg, use_kernels=False)


def test_sampled_rows_follow_the_seed_and_keep_the_greedy_row(triton_interpreter, engine):
    first = run(engine, "threshold", True, (0.0, 1.0, 1.0), seed=3)
    assert first == run(engine, "threshold", True, (0.0, 1.0, 1.0), seed=3)
    assert first[0] == run(engine, "threshold", False)[0]
    assert first[1] != first[2]


def test_kernels_asked_for_where_triton_cannot_run_raise(engine, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="Triton kernels asked for on cpu"):
        run(engine, "threshold", use_kernels=True)
