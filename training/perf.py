"""Throughput arithmetic: model FLOPs per token and a matmul peak measured on the devices at hand (for MFU)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from coda_training.config import ModelConfig


def matmul_params(cfg: ModelConfig) -> int:
    """Weights that take part in a matmul per token: every projection plus the lm_head (not the embedding
    lookup, which is a gather)."""
    d, h = cfg.hidden_size, cfg.head_dim
    attn = d * h * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
    mlp = 3 * d * cfg.intermediate_size
    return cfg.num_layers * (attn + mlp) + d * cfg.vocab_size


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward + backward = 3 x forward. Forward: 2 FLOPs per matmul weight, plus attention's two L-long
    products (QK^T and PV) of 2 x L x heads x head_dim each (the PaLM appendix B accounting, full attention)."""
    attention = 2 * 2 * seq_len * cfg.num_heads * cfg.head_dim * cfg.num_layers
    return 3.0 * (2.0 * matmul_params(cfg) + attention)


def measure_matmul_peak(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """Best-of-N FLOP/s of one square matmul on the default device: the practical peak that MFU is a
    fraction of, measured rather than read off a spec sheet so CPU runs get a meaningful number too."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (size, size), jnp.dtype(dtype))
    b = jax.random.normal(key_b, (size, size), jnp.dtype(dtype))
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best
