"""Training test fixtures: 8 fake CPU devices (set before jax is imported) and tiny configs."""

from __future__ import annotations

import os

# Must run before the first `import jax` anywhere in the test session: XLA reads the flags once. The two
# optimisation flags cut CPU compile time by about a third; test models are too small for codegen to matter.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true").strip()
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


def write_word_tokenizer(folder) -> None:
    """A 128-id word-level tokenizer (w0..w124, then <|im_end|>, <|endoftext|>, <|mask|>) matching SMALL_MODEL."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(125)}
    vocab.update({"<|im_end|>": 125, "<|endoftext|>": 126, "<|mask|>": 127})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ("<|im_end|>", "<|endoftext|>", "<|mask|>")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


@pytest.fixture
def word_tokenizer_dir(tmp_path):
    folder = tmp_path / "tokenizer"
    write_word_tokenizer(folder)
    return folder
