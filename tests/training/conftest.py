"""Training test fixtures: 8 fake CPU devices (set before jax is imported) and tiny configs."""

from __future__ import annotations

import os

# Must run before the first `import jax` anywhere in the test session: XLA reads the flag once.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from coda_training.config import Config, load_config  # noqa: E402

# A model small enough that a train step compiles and runs in about a second on two CPU cores.
SMALL_MODEL = ["model.vocab_size=128", "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2",
               "model.num_heads=4", "model.num_kv_heads=2", "model.head_dim=8", "model.mask_token_id=127",
               "model.pad_token_id=126", "model.max_position_embeddings=256", "data.eos_token_id=125"]


def small_config(stage: str = "pretrain", extra: list[str] = ()) -> Config:
    """The tiny preset of `stage`, shrunk to a 128-token vocab so tests need no tokenizer."""
    overrides = SMALL_MODEL + ["data.seq_len=16", "data.batch_size=8", "data.grad_accum=1", "num_steps=4",
                               "optim.warmup_steps=1", "mesh.fsdp=-1"]
    return load_config(stage, "tiny", overrides + list(extra))


@pytest.fixture
def small_cfg() -> Config:
    return small_config()
