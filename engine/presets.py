"""Named model shapes and a writer of random-weight checkpoints in CoDA's HF format (for tests and benchmarks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ModelConfig

QWEN3_VOCAB = 151936  # Qwen3's padded vocabulary; the tokenizer uses the first 151670 ids
PRESETS: dict[str, ModelConfig] = {
    # The test shape: the real vocabulary (so the real tokenizer works) around a model small enough for CI.
    "tiny": ModelConfig(vocab_size=QWEN3_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=8192),
    # A CPU benchmark shape: real vocabulary, a few real-width-ish layers.
    "small": ModelConfig(vocab_size=QWEN3_VOCAB, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, head_dim=64, max_position_embeddings=40960),
    # CoDA-v0 (Qwen3-1.7B) itself, for GPU benchmarks with random weights.
    "coda-v0": ModelConfig(vocab_size=QWEN3_VOCAB, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                           num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960),
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
                   "tokenizer_config.json", "generation_config.json")
# Std of the random weights; Qwen3's initializer_range.
INIT_STD = 0.02


def random_state_dict(config: ModelConfig, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """HF-named tensors for `config`: normal(0, 0.02) matrices, unit norms, and a separate lm_head."""
    from .model import CodaModel

    with torch.device("meta"):
        shapes = {name: p.shape for name, p in CodaModel(config).named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.ones(shape, dtype=dtype) if name.endswith("norm.weight")
            else (torch.randn(shape, generator=generator) * INIT_STD).to(dtype) for name, shape in shapes.items()}


def write_checkpoint(folder: Path, config: ModelConfig, state: dict[str, torch.Tensor], tokenizer_dir: Path,
                     num_shards: int = 1) -> Path:
    """Write config.json, safetensors (one file or `num_shards` shards plus an index) and tokenizer files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
    for name in TOKENIZER_FILES:
        source = Path(tokenizer_dir) / name
        if source.is_file():
            shutil.copyfile(source, folder / name)
    metadata = {"format": "pt"}
    if num_shards == 1:
        save_file(state, str(folder / "model.safetensors"), metadata=metadata)
        return folder
    names = list(state)
    weight_map = {}
    for index in range(num_shards):
        shard_name = f"model-{index + 1:05d}-of-{num_shards:05d}.safetensors"
        shard = {n: state[n] for n in names[index::num_shards]}
        save_file(shard, str(folder / shard_name), metadata=metadata)
        weight_map.update({n: shard_name for n in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")
    return folder


def write_random_checkpoint(folder: Path, preset: str = "tiny", seed: int = 0, tokenizer_dir: Path | None = None,
                            num_shards: int = 1, dtype: torch.dtype = torch.float32) -> Path:
    """A random-weight checkpoint of a named shape with real tokenizer files; returns the folder."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if tokenizer_dir is None:
        raise ValueError("tokenizer_dir is required: a checkpoint needs tokenizer files")
    config = PRESETS[preset]
    return write_checkpoint(folder, config, random_state_dict(config, seed, dtype), tokenizer_dir, num_shards)
