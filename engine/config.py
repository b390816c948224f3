"""ModelConfig: the model shape read from an HF `config.json` (model_type CoDA or qwen3), validated at the boundary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import CheckpointError

SUPPORTED_MODEL_TYPES = ("CoDA", "qwen3")
# Qwen3's padded vocabulary plus CoDA's `<|mask|>`; used when a qwen3 config carries no mask id.
CODA_MASK_TOKEN_ID = 151669
CODA_PAD_TOKEN_ID = 151643


@dataclass(frozen=True)
class ModelConfig:
    """The fields the model needs, named as in HF Qwen3 configs so the mapping is one to one."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 40960
    # Only consulted when the checkpoint has no lm_head.weight: a CoDA checkpoint always carries its own head.
    tie_word_embeddings: bool = False
    mask_token_id: int = CODA_MASK_TOKEN_ID
    pad_token_id: int = CODA_PAD_TOKEN_ID
    model_type: str = "CoDA"

    def __post_init__(self) -> None:
        positive = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "max_position_embeddings")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(f"mask_token_id {self.mask_token_id} is outside the vocabulary (size {self.vocab_size})")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unknown model_type {self.model_type!r}; expected one of {SUPPORTED_MODEL_TYPES}")

    @property
    def num_parameters(self) -> int:
        d, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        per_layer = d * q + 2 * d * kv + q * d + 3 * d * f + 2 * d + 2 * self.head_dim
        return 2 * v * d + self.num_hidden_layers * per_layer + d

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> "ModelConfig":
        """Build from a parsed config.json; raises ValueError naming the bad field."""
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unknown model_type {model_type!r}; expected one of {SUPPORTED_MODEL_TYPES}")
        if raw.get("rope_scaling") not in (None, {}):
            raise ValueError(f"rope_scaling {raw['rope_scaling']!r} is not supported (CoDA uses plain RoPE)")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        if "head_dim" not in values and "hidden_size" in values and "num_attention_heads" in values:
            values["head_dim"] = values["hidden_size"] // values["num_attention_heads"]
        values.setdefault("num_key_value_heads", values.get("num_attention_heads"))
        # CoDA's config.json omits tie_word_embeddings and its class default (True) would silently replace the
        # trained head; the released checkpoints always store lm_head.weight, so CoDA never ties unless asked.
        values["tie_word_embeddings"] = bool(raw.get("tie_word_embeddings", model_type != "CoDA"))
        required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        absent = [name for name in required if name not in values]
        if absent:
            raise ValueError(f"missing required field(s): {', '.join(absent)}")
        return cls(**values)

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json in CoDA's format, loadable by coda_engine and by the original CoDA code."""
        return {**asdict(self), "model_type": "CoDA", "architectures": ["CoDALanguageModel"], "hidden_act": "silu",
                "attention_bias": False, "attention_dropout": 0.0, "rope_scaling": None, "torch_dtype": "float32"}


def load_config(folder: Path) -> ModelConfig:
    """Read and validate `folder/config.json`; every failure is one CheckpointError naming the file."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(folder, "not a CoDA checkpoint folder (Hugging Face format): it has no config.json")
    raw = read_json_object(path)
    quantization = raw.get("quantization_config")
    if quantization:
        method = quantization.get("quant_method", "unknown") if isinstance(quantization, dict) else "unknown"
        raise CheckpointError(path, f"a quantized checkpoint ({method}), which coda-lsp does not read: use the "
                                    f"bf16 or fp32 checkpoint; --dtype int8 quantizes it at load")
    try:
        return ModelConfig.from_hf_dict(raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, str(exc)) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file; CheckpointError naming the file when it is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(path, "expected a JSON object")
    return value
