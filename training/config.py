"""Typed training config: nested dataclasses fed by defaults < a YAML stage preset < dotted command-line overrides."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from coda_training.errors import TrainingError

PRESET_DIR = Path(__file__).parent / "configs"
Stage = Literal["pretrain", "midtrain", "sft"]


@dataclass
class ModelConfig:
    """Shape of the bidirectional Qwen3; defaults are CoDA-1.7B (Qwen3-1.7B with an untied head)."""

    vocab_size: int = 151936  # rows of embed_tokens and lm_head: Qwen3's padded vocab (tokenizer has 151670)
    hidden_size: int = 2048  # model width D
    intermediate_size: int = 6144  # SwiGLU width F
    num_layers: int = 28  # transformer blocks
    num_heads: int = 16  # query heads
    num_kv_heads: int = 8  # key/value heads (GQA); num_heads must be a multiple
    head_dim: int = 128  # per-head width; q_norm/k_norm and RoPE act on this
    rope_theta: float = 1_000_000.0  # RoPE base (Qwen3)
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon (Qwen3)
    max_position_embeddings: int = 40960  # written to config.json; data.seq_len may not exceed it
    mask_token_id: int = 151669  # <|mask|>: the absorbing state of the diffusion
    pad_token_id: int = 151643  # <|endoftext|>: S2 truncation filler and SFT/infill tail
    compute_dtype: Literal["float32", "bfloat16"] = "float32"  # matmul dtype; params stay fp32 master weights
    init_std: float = 0.02  # stddev of random init (Qwen3 initializer_range); norms start at 1
    remat: bool = False  # recompute each block in the backward pass: one layer of activations live, ~1/3 more FLOPs
    # auto: splash on TPU, cuDNN on GPU (bf16), blockwise elsewhere; einsum is the O(L^2) reference (attention.py)
    attention: Literal["auto", "einsum", "blockwise", "splash", "cudnn"] = "auto"
    attention_block: int = 512  # query and key block of blockwise / splash attention (splash rounds to 128s)
    loss_chunk: int = 1024  # positions per cross-entropy chunk: [B, chunk, V] logits at a time; 0 = all of L at once
    scan_layers: bool = True  # one compiled block under lax.scan; False unrolls a Python loop (compile grows)


@dataclass
class InitConfig:
    """Where the weights of a fresh run come from (ignored when the run's own checkpoint exists: that resumes)."""

    kind: Literal["random", "hf", "checkpoint"] = "random"  # hf: an HF Qwen3/CoDA folder; checkpoint: a run dir
    path: str = ""  # the HF folder or the earlier stage's run_dir (its latest step's params; optimizer is fresh)


@dataclass
class DataConfig:
    """Which tokens, how many per step, and in which order."""

    path: str = ""  # folder written by `coda-train tokenize` (manifest.json + shards)
    eval_path: str = ""  # held-out folder for `coda-train eval-loss`; empty = use `path`
    seq_len: int = 8192  # tokens per sequence; packed data is cut into blocks of this length
    batch_size: int = 512  # sequences per optimizer step (global, all hosts together)
    grad_accum: int = 1  # micro-batches per step; batch_size must be a multiple
    seed: int = 0  # data order: batch k is a pure function of (seed, k)
    eos_token_id: int = 151645  # closes each packed document; segment ids count these (CoDA seg_attn)
    verify_hashes: bool = True  # sha256 every shard against the manifest at start (slow for 100s of GB)


@dataclass
class PhaseConfig:
    """Masking-strategy rates for one equal slice of training (CoDA Table 3 "epochs")."""

    prefix_prob: float = 0.01  # S1: per-row probability of an unmaskable prefix of uniform length
    truncate_prob: float = 0.01  # S2: per-row probability (rows without S1) of a pad-filled, unmaskable suffix
    block_prob: float = 0.01  # S3: per-batch probability of block masking instead of token masking
    block_sizes: list[int] = field(default_factory=lambda: [2, 4, 8])  # S3: one size per batch, drawn uniformly


@dataclass
class MaskingConfig:
    """The forward (noising) process; the MaskingSchedule turns it into per-step rates."""

    eps: float = 1e-3  # t ~ U[eps, 1]: the floor keeps the 1/t weight bounded
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])  # equal slices of num_steps
    conditional: bool = False  # SFT/infill: condition tokens (prompt, infill context) are never masked
    cond_ramp_fraction: float = 0.0  # conditioning grows from none to full over this fraction of steps


@dataclass
class OptimConfig:
    """optax chain: clip by global norm, then Adafactor or AdamW on a warmup + decay schedule."""

    name: Literal["adafactor", "adamw"] = "adafactor"  # CoDA: Adafactor for pre/mid-training, AdamW for SFT
    learning_rate: float = 3e-4  # peak learning rate after warmup
    warmup_steps: int = 2000  # linear warmup from 0
    decay: Literal["cosine", "linear", "constant"] = "cosine"  # shape after warmup
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) / weight_decay_rate (Adafactor)
    clip_norm: float = 1.0  # global gradient-norm clip; 0 disables
    b1: float = 0.9  # AdamW first-moment decay
    b2: float = 0.999  # AdamW second-moment decay (HF default, as CoDA's SFT used)


@dataclass
class CheckpointConfig:
    """Orbax CheckpointManager policy; checkpoints live in <run_dir>/checkpoints."""

    every: int = 1000  # save every N steps (and always at the last step)
    keep: int = 3  # newest N kept, older ones deleted
    async_save: bool = True  # write in the background while training continues


@dataclass
class MeshConfig:
    """Device mesh (data, fsdp, tensor); at most one axis may be -1 (= all remaining devices)."""

    data: int = 1  # pure data parallelism (replicated params), e.g. across TPU slices
    fsdp: int = -1  # data parallelism with params/optimizer state sharded over it
    tensor: int = 1  # tensor parallelism: heads, MLP width and vocab split


@dataclass
class MemoryConfig:
    """The check every training command runs on the compiled step before the first batch (plan.py)."""

    check: bool = True  # refuse a step whose compiled per-device memory exceeds the budget below
    hbm_bytes: int = 0  # per-device budget in bytes; 0 = the device's own limit (CPU: MemAvailable / devices)


@dataclass
class Config:
    """One training run of one stage."""

    stage: Stage = "pretrain"  # which recipe this is; selects the data kind the run expects
    run_dir: str = "runs/pretrain"  # checkpoints/, metrics.jsonl and config.yaml go here
    num_steps: int = 50_000  # optimizer steps; also sets schedule and curriculum lengths
    log_every: int = 10  # progress line and metrics row every N steps
    seed: int = 0  # random init and masking noise (per step, fold_in(seed, step))
    tokenizer_dir: str = ""  # tokenizer files (vocab.json/merges.txt/added_tokens.json or tokenizer.json)
    peak_flops: float = 0.0  # per-device peak FLOP/s for MFU; 0 = measure a matmul at start
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)


# The fields that decide tensor shapes; dtype and init settings may change between stages.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                "head_dim")


def model_shape(cfg: ModelConfig) -> dict[str, int]:
    return {name: getattr(cfg, name) for name in SHAPE_FIELDS}


def shape_mismatch(expected: dict, found: dict) -> str | None:
    """'hidden_size 64 != 32' for the first differing field, else None."""
    for name in SHAPE_FIELDS:
        if expected.get(name) != found.get(name):
            return f"{name} {found.get(name)} != {expected.get(name)}"
    return None


def preset_path(stage: str, preset: str) -> Path:
    """`tiny` with stage `sft` -> configs/sft_tiny.yaml; anything ending in .yaml/.yml is a file path."""
    if preset.endswith((".yaml", ".yml")):
        path = Path(preset)
    else:
        path = PRESET_DIR / f"{stage}_{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise TrainingError(f"config preset {preset!r} not found at {path} (presets: {', '.join(known)})")
    return path


def load_config(stage: str, preset: str | None, overrides: list[str] = ()) -> Config:
    """Defaults < preset file < `a.b=value` overrides; every key checked against the dataclasses."""
    tree = dataclasses.asdict(Config())
    if preset is not None:
        path = preset_path(stage, preset)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise TrainingError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise TrainingError(f"config {path} must be a mapping of keys, got {type(loaded).__name__}")
        _merge(tree, loaded, prefix="")
    for item in overrides:
        _apply_override(tree, item)
    tree["stage"] = stage  # the subcommand names the stage; a preset file cannot contradict it
    cfg = _build(Config, tree, prefix="")
    validate(cfg)
    return cfg


def _merge(base: dict, update: dict, prefix: str) -> None:
    """Deep-merge `update` into `base`, refusing keys that `base` (the defaults) does not have."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise TrainingError(f"unknown config key {dotted!r} (known here: {', '.join(sorted(base))})")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, prefix=f"{dotted}.")
        else:
            base[key] = value


def _apply_override(tree: dict, item: str) -> None:
    """`--optim.learning_rate=1e-3` or `optim.learning_rate=1e-3`; the value is parsed as YAML."""
    text = item[2:] if item.startswith("--") else item
    if "=" not in text:
        raise TrainingError(f"override {item!r} must look like key.path=value")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    *parents, leaf = dotted.split(".")
    nested: dict[str, Any] = {leaf: value}
    for name in reversed(parents):
        nested = {name: nested}
    _merge(tree, nested, prefix="")


def _build(cls: type, values: dict, prefix: str) -> Any:
    """Instantiate dataclass `cls` from a dict (keys already checked by _merge / _known), checking each value
    against the field's annotation."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        kwargs[f.name] = _coerce(hints[f.name], values[f.name], dotted)
    return cls(**kwargs)


def _coerce(annotation: Any, value: Any, dotted: str) -> Any:
    """Check one value; ints are accepted for floats, nothing else is converted."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise TrainingError(f"config key {dotted!r} must be a mapping, got {value!r}")
        with_defaults = {**dataclasses.asdict(annotation()), **_known(annotation, value, dotted)}
        return _build(annotation, with_defaults, f"{dotted}.")
    if origin is Literal:
        if value not in typing.get_args(annotation):
            choices = list(typing.get_args(annotation))
            raise TrainingError(f"config key {dotted!r} must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise TrainingError(f"config key {dotted!r} must be a list, got {value!r}")
        return [_coerce(inner, v, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-3` (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise TrainingError(f"config key {dotted!r} must be {annotation.__name__}, got {value!r}")
    return value


def _known(cls: type, value: dict, dotted: str) -> dict:
    """Refuse keys a nested dataclass (e.g. a phase inside a list) does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in value:
        if key not in names:
            raise TrainingError(f"unknown config key '{dotted}.{key}' (known here: {', '.join(sorted(names))})")
    return value


def validate(cfg: Config) -> None:
    """Impossible shapes and rates, reported before anything is built."""
    m, d, o = cfg.model, cfg.data, cfg.optim
    sizes = (m.vocab_size, m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads, m.head_dim)
    if min(sizes) <= 0:
        raise TrainingError(f"model sizes must be positive, got {sizes}")
    checks = [
        (m.num_heads % m.num_kv_heads == 0,
         f"model.num_heads ({m.num_heads}) must be a multiple of model.num_kv_heads ({m.num_kv_heads})"),
        (m.head_dim % 2 == 0, f"model.head_dim ({m.head_dim}) must be even for rotate-half RoPE"),
        (m.attention_block > 0 and m.loss_chunk >= 0,
         "model.attention_block must be positive and model.loss_chunk non-negative"),
        (0 <= m.mask_token_id < m.vocab_size,
         f"model.mask_token_id {m.mask_token_id} is outside the vocab ({m.vocab_size})"),
        (0 <= m.pad_token_id < m.vocab_size,
         f"model.pad_token_id {m.pad_token_id} is outside the vocab ({m.vocab_size})"),
        (2 <= d.seq_len <= m.max_position_embeddings,
         f"data.seq_len {d.seq_len} must be in [2, model.max_position_embeddings={m.max_position_embeddings}]"),
        (d.batch_size > 0 and d.grad_accum > 0 and d.batch_size % d.grad_accum == 0,
         f"data.batch_size ({d.batch_size}) must be a positive multiple of data.grad_accum ({d.grad_accum})"),
        (cfg.num_steps > 0, f"num_steps must be positive, got {cfg.num_steps}"),
        (cfg.memory.hbm_bytes >= 0, "memory.hbm_bytes must be non-negative"),
        (cfg.log_every > 0 and cfg.checkpoint.every > 0 and cfg.checkpoint.keep > 0,
         "log_every, checkpoint.every and checkpoint.keep must be positive"),
        (0 < cfg.masking.eps < 1, f"masking.eps must be in (0, 1), got {cfg.masking.eps}"),
        (0 <= cfg.masking.cond_ramp_fraction <= 1, "masking.cond_ramp_fraction must be in [0, 1]"),
        (len(cfg.masking.phases) > 0, "masking.phases must hold at least one phase"),
        (o.learning_rate > 0, f"optim.learning_rate must be positive, got {o.learning_rate}"),
        (0 <= o.warmup_steps < cfg.num_steps,
         f"optim.warmup_steps ({o.warmup_steps}) must be in [0, num_steps={cfg.num_steps})"),
        (0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]"),
        (cfg.init.kind == "random" or cfg.init.path, f"init.kind {cfg.init.kind!r} needs init.path"),
    ]
    for i, phase in enumerate(cfg.masking.phases):
        rates = (phase.prefix_prob, phase.truncate_prob, phase.block_prob)
        checks.append((all(0 <= r <= 1 for r in rates), f"masking.phases[{i}] probabilities must be in [0, 1]"))
        fits = 0 < len(phase.block_sizes) <= MAX_BLOCK_SIZES and all(1 <= k < d.seq_len for k in phase.block_sizes)
        checks.append((fits, f"masking.phases[{i}].block_sizes must hold 1..{MAX_BLOCK_SIZES} sizes in [1, seq_len)"))
    for ok, message in checks:
        if not ok:
            raise TrainingError(message)


# The jitted step takes block sizes as a fixed-length array so a new curriculum phase does not recompile.
MAX_BLOCK_SIZES = 8


def to_yaml(cfg: Config) -> str:
    """The fully resolved config, saved beside each run so it can be rerun exactly."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
