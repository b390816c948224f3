"""The autoregressive baseline of the benches: transformers' Qwen3ForCausalLM holding the engine's weights."""

from __future__ import annotations

import logging

import torch

from coda_engine import Engine
from coda_engine.model import CodaModel
from coda_engine.quantize import quantize_linears

log = logging.getLogger("coda_engine.tools")


def qwen3_baseline(engine: Engine, float_model: CodaModel | None = None) -> torch.nn.Module | None:
    """transformers' Qwen3ForCausalLM sharing the engine's weights (no copy), or None when transformers is not
    installed (it comes with the test extra). An int8 engine's baseline takes `float_model`'s weights and
    quantizes its linear layers the same way (quantize.Int8Linear), so both multiply in int8."""
    try:
        from transformers import Qwen3Config, Qwen3ForCausalLM
    except ImportError:
        log.warning("transformers is not installed: no autoregressive baseline (pip install -e '.[test]')")
        return None
    config = engine.config
    hf_config = Qwen3Config(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim, rope_theta=config.rope_theta,
        rms_norm_eps=config.rms_norm_eps, max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=False, torch_dtype=engine.dtype)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(hf_config)
    source = float_model if engine.precision.int8 else engine.model
    if source is None:
        raise ValueError("an int8 engine's autoregressive baseline needs the float model to quantize")
    model.load_state_dict(source.state_dict(), strict=False, assign=True)
    if engine.precision.int8:
        quantize_linears(model)
    model.model.rotary_emb = type(model.model.rotary_emb)(hf_config, device=engine.device)
    return model.eval()
