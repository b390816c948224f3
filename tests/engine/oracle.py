"""Test oracles written independently of coda_engine: HF transformers' Qwen3 run with full attention, and a plain
transcription of CoDA's reference `diffusion_generate` loop (research/coda.md section 3.2) on top of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import Qwen3Config, Qwen3ForCausalLM

from coda_engine.config import ModelConfig


def hf_qwen3(folder: Path, config: ModelConfig, dtype: torch.dtype = torch.float32) -> Qwen3ForCausalLM:
    """transformers' Qwen3ForCausalLM holding the checkpoint's weights, with a separate (untied) head."""
    hf_config = Qwen3Config(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim, rope_theta=config.rope_theta,
        rms_norm_eps=config.rms_norm_eps, max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=False, attn_implementation="eager")
    model = Qwen3ForCausalLM(hf_config)
    missing, unexpected = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    assert not unexpected and all("rotary" in name for name in missing), (missing, unexpected)
    return model.to(dtype).eval()


def hf_full_attention_logits(model: Qwen3ForCausalLM, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits with an all-zeros additive 4-D mask: every position attends to every other one."""
    batch, length = input_ids.shape
    dtype = next(model.parameters()).dtype
    full_mask = torch.zeros(batch, 1, length, length, dtype=dtype)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=full_mask).logits


def reference_generate(full_logits: Callable[[torch.Tensor], torch.Tensor], prompt: torch.Tensor, mask_id: int,
                       max_new_tokens: int, steps: int, alg: str, eps: float = 1e-3) -> torch.Tensor:
    """CoDA's loop at temperature 0 without alg_temp, kept as literal as possible.

    `full_logits` maps a (B, L) canvas to (B, L, V) raw logits. Feed it the engine's own network to test the
    sampler alone: with random weights, confidences are near-ties that float noise between two networks flips.
    """
    x = torch.cat([prompt, torch.full((prompt.shape[0], max_new_tokens), mask_id)], dim=1)
    times = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == mask_id
        with torch.no_grad():
            logits = full_logits(x)
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        mask_logits = logits[mask_index]
        t, s = times[i], times[i + 1]
        probs = torch.softmax(mask_logits, dim=-1)
        confidence, x0 = probs.max(dim=-1)
        if alg == "origin":
            # Deterministic part only: at temperature 0 every revealed token is the argmax; reveal all at once
            # on the last step is the only randomness-free schedule, so the oracle is used with steps == 1.
            assert steps == 1
            x[mask_index] = x0
            continue
        if alg == "topk_margin":
            sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)
            confidence = sorted_probs[:, 0] - sorted_probs[:, 1]
        elif alg == "entropy":
            confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
        num_mask_token = mask_index.sum() / mask_index.shape[0]
        k = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
        full_confidence = torch.full_like(x, -torch.inf, dtype=logits.dtype)
        full_confidence[mask_index] = confidence
        if k > 0:
            _, transfer_index = torch.topk(full_confidence, k)
            x_ = torch.zeros_like(x) + mask_id
            x_[mask_index] = x0
            rows = torch.arange(x.size(0)).unsqueeze(1).expand_as(transfer_index)
            x[rows, transfer_index] = x_[rows, transfer_index]
    return x
