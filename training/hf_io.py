"""HF folder <-> flat params: the name table, sharded per-tensor import, and CoDA-format export.

Import reads config.json (Qwen3 autoregressive or CoDA), checks it against the run's model shape, and places
each safetensors tensor directly on its sharding (shapes come from nnx.eval_shape, so the model is never
built unsharded). A tied source head (Qwen3-1.7B) is copied into the separate lm_head CoDA trains.
Export writes config.json with model_type CoDA, safetensors (sharded past a size limit) and the tokenizer
files, into a staging folder that is renamed only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import jax
import ml_dtypes
import numpy as np
from jax.sharding import NamedSharding
from safetensors.numpy import save_file

from coda_training.config import ModelConfig, model_shape, shape_mismatch
from coda_training.data.tokenizer import TOKENIZER_FILES, load_tokenizer
from coda_training.errors import TrainingError

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64}
SOURCE_MODEL_TYPES = ("qwen3", "CoDA")
MAX_SHARD_BYTES = 5 * 1024**3  # HF's default shard size: files stay under the 5 GB many hosts limit


def hf_name(name: str) -> tuple[str, bool]:
    """Flat param name -> (HF tensor name, whether the tensor is transposed: our kernels are [in, out])."""
    if name == "embed_tokens":
        return "model.embed_tokens.weight", False
    if name == "lm_head.kernel":
        return "lm_head.weight", True
    if name.endswith(".kernel"):
        return f"model.{name.removesuffix('.kernel')}.weight", True
    return f"model.{name}", False


def read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise TrainingError(f"{folder} has no config.json; not an HF model folder")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{path} is not valid JSON ({exc.msg})") from None
    if config.get("model_type") not in SOURCE_MODEL_TYPES:
        raise TrainingError(f"{path}: model_type {config.get('model_type')!r} is not one of {SOURCE_MODEL_TYPES}")
    if config.get("rope_scaling"):
        raise TrainingError(f"{path}: rope_scaling is not supported (CoDA uses plain RoPE)")
    return config


def model_config_from_hf(config: dict, base: ModelConfig = ModelConfig()) -> ModelConfig:
    """The model section of a run config from an HF config.json (training-only fields kept from `base`)."""
    try:
        return ModelConfig(
            vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"], num_layers=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"], num_kv_heads=config["num_key_value_heads"],
            head_dim=config.get("head_dim", config["hidden_size"] // config["num_attention_heads"]),
            rope_theta=float(config.get("rope_theta", base.rope_theta)),
            rms_norm_eps=float(config.get("rms_norm_eps", base.rms_norm_eps)),
            max_position_embeddings=config.get("max_position_embeddings", base.max_position_embeddings),
            mask_token_id=config.get("mask_token_id", base.mask_token_id),
            pad_token_id=config.get("pad_token_id") if config.get("pad_token_id") is not None else base.pad_token_id,
            compute_dtype=base.compute_dtype, init_std=base.init_std)
    except KeyError as exc:
        raise TrainingError(f"config.json lacks {exc.args[0]!r}") from None


def to_hf_config(cfg: ModelConfig) -> dict:
    """config.json for coda_engine and the original CoDA code (HF Qwen3 field names, never tied)."""
    return {
        "architectures": ["CoDALanguageModel"], "model_type": "CoDA",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "rope_theta": cfg.rope_theta, "rope_scaling": None, "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings, "attention_bias": False, "attention_dropout": 0.0,
        # Explicit False: the HF class defaults to True and would silently replace lm_head by the embeddings.
        "tie_word_embeddings": False,
        "mask_token_id": cfg.mask_token_id, "pad_token_id": cfg.pad_token_id, "torch_dtype": "float32",
    }


class SafetensorsFolder:
    """Lazy, memory-mapped tensors of a single-file or sharded (index.json) safetensors checkpoint.

    The header is parsed directly so bf16 sources (Qwen3's own weights) load without torch: numpy has no
    bfloat16, ml_dtypes provides it.
    """

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        elif (folder / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise TrainingError(f"{folder} has neither model.safetensors nor model.safetensors.index.json")
        self.entries: dict[str, tuple[Path, dict, int]] = {}
        for file in files:
            path = folder / file
            if not path.is_file():
                raise TrainingError(f"{folder}: shard {file} listed in the index is missing")
            with path.open("rb") as handle:
                header_len = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(header_len))
            for name, info in header.items():
                if name != "__metadata__":
                    self.entries[name] = (path, info, 8 + header_len)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name][1]["shape"])

    def get(self, name: str) -> np.ndarray:
        path, info, data_start = self.entries[name]
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise TrainingError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start + begin, shape=(end - begin,))
        return raw.view(SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])


def _source_tensor(tensors: SafetensorsFolder, hf: str, tied: bool, folder: Path) -> tuple[str, bool]:
    """Which stored tensor feeds `hf`: lm_head falls back to the embeddings for a tied source."""
    if hf in tensors:
        return hf, False
    if hf == "lm_head.weight" and tied and "model.embed_tokens.weight" in tensors:
        return "model.embed_tokens.weight", True
    raise TrainingError(f"{folder} lacks tensor {hf}")


def check_shape(folder: Path, model: ModelConfig) -> dict:
    """The folder's config.json, refused if its model shape differs from the run's; returns the config."""
    config = read_hf_config(folder)
    reason = shape_mismatch(model_shape(model), model_shape(model_config_from_hf(config, model)))
    if reason:
        raise TrainingError(f"{folder} is a different model shape than the run config ({reason})")
    return config


def load_params(folder: str | Path, model: ModelConfig, shardings: dict[str, NamedSharding],
                shapes: dict[str, tuple[int, ...]]) -> dict[str, jax.Array]:
    """Read an HF folder into fp32 params, each created directly on its sharding; every shape is checked
    before the first tensor is read."""
    folder = Path(folder)
    config = check_shape(folder, model)
    tensors = SafetensorsFolder(folder)
    tied = config.get("tie_word_embeddings", True) and "lm_head.weight" not in tensors
    plan = {}
    for name, shape in shapes.items():
        hf, transpose = hf_name(name)
        stored, from_embed = _source_tensor(tensors, hf, tied, folder)
        expected = shape[::-1] if transpose else shape
        if tensors.shape(stored) != tuple(expected):
            raise TrainingError(f"{folder}: {stored} has shape {tensors.shape(stored)}, expected {tuple(expected)}")
        plan[name] = (stored, transpose)
    return {name: _place(lambda s=stored, t=transpose: tensors.get(s).T if t else tensors.get(s),
                         shapes[name], shardings[name])
            for name, (stored, transpose) in plan.items()}


def _place(read: Callable[[], np.ndarray], shape: tuple[int, ...], sharding: NamedSharding) -> jax.Array:
    """Each device copies only its own slice out of the memory-mapped tensor."""
    source = read()
    return jax.make_array_from_callback(shape, sharding, lambda index: np.asarray(source[index], np.float32))


def _shard_groups(tensors: dict[str, np.ndarray], limit: int) -> list[dict[str, np.ndarray]]:
    groups, current, size = [], {}, 0
    for name, array in tensors.items():
        if current and size + array.nbytes > limit:
            groups.append(current)
            current, size = {}, 0
        current[name] = array
        size += array.nbytes
    groups.append(current)
    return groups


def export(params: dict[str, jax.Array], model: ModelConfig, tokenizer_dir: str | Path, out_dir: str | Path,
           max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    """Write an HF CoDA folder; refuses an existing non-empty out_dir, leaves nothing on failure."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingError(f"export target {out} already exists and is not empty")
    tokenizer = load_tokenizer(tokenizer_dir)  # refuses a tokenizer without a mask token
    if tokenizer.mask_id != model.mask_token_id:
        raise TrainingError(f"tokenizer mask id {tokenizer.mask_id} != model.mask_token_id {model.mask_token_id}")
    tensors = {}
    for name in sorted(params):
        hf, transpose = hf_name(name)
        array = np.asarray(jax.device_get(params[name]), np.float32)
        tensors[hf] = np.ascontiguousarray(array.T if transpose else array)
    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        groups = _shard_groups(tensors, max_shard_bytes)
        if len(groups) == 1:
            save_file(groups[0], str(staging / "model.safetensors"), metadata={"format": "pt"})
        else:
            weight_map = {}
            for i, group in enumerate(groups, 1):
                file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
                save_file(group, str(staging / file), metadata={"format": "pt"})
                weight_map.update({name: file for name in group})
            total = sum(a.nbytes for a in tensors.values())
            (staging / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
        (staging / "config.json").write_text(json.dumps(to_hf_config(model), indent=2))
        for file in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / file).is_file():
                shutil.copyfile(Path(tokenizer_dir) / file, staging / file)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
