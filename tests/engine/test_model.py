"""The torch model against transformers' Qwen3 run with full attention: the same logits."""

from __future__ import annotations

import pytest
import torch

from coda_engine import Engine
from tests.engine.oracle import hf_full_attention_logits, hf_qwen3


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def hf_model(tiny_checkpoint, engine):
    return hf_qwen3(tiny_checkpoint, engine.config)


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 151670, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batch,length", [(1, 1), (1, 37), (3, 64)])
def test_fp32_logits_match_transformers(engine, hf_model, batch, length):
    ids = random_ids(batch, length)
    ours = engine.forward_logits(ids)
    theirs = hf_full_attention_logits(hf_model, ids)
    assert ours.shape == (batch, length, engine.config.vocab_size)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_bf16_logits_match_transformers_within_bf16_tolerance(tiny_checkpoint, engine):
    ours = Engine.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16)
    theirs = hf_qwen3(tiny_checkpoint, engine.config, dtype=torch.bfloat16)
    ids = random_ids(2, 48, seed=1)
    a, b = ours.forward_logits(ids).float(), hf_full_attention_logits(theirs, ids).float()
    exact = engine.forward_logits(ids)
    # Both bf16 runs stay within a few bf16 ulps of the fp32 result and of each other.
    scale = exact.abs().max().item()
    assert (a - b).abs().max().item() <= 0.02 * scale
    assert (a - exact).abs().max().item() <= 0.02 * scale


def test_attention_is_bidirectional(engine):
    ids = random_ids(1, 16, seed=2)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 151670
    first_before = engine.forward_logits(ids)[0, 0]
    first_after = engine.forward_logits(changed)[0, 0]
    assert not torch.allclose(first_before, first_after)


def test_lm_head_is_not_tied_to_embeddings(engine):
    head, embed = engine.model.lm_head.weight, engine.model.model.embed_tokens.weight
    assert head.data_ptr() != embed.data_ptr()
    assert not torch.equal(head, embed)
