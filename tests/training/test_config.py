"""Config loading: presets, typed dotted overrides, and one-line errors for bad keys, values and shapes."""

from __future__ import annotations

import pytest

from coda_training.config import load_config
from coda_training.errors import TrainingError


@pytest.mark.parametrize("stage", ["pretrain", "midtrain", "sft"])
@pytest.mark.parametrize("preset", ["tiny", "1p7b"])
def test_every_preset_loads(stage: str, preset: str) -> None:
    cfg = load_config(stage, preset)
    assert cfg.stage == stage
    assert cfg.optim.name == ("adamw" if stage == "sft" else "adafactor")
    assert cfg.masking.conditional == (stage == "sft")


def test_1p7b_is_the_coda_shape_and_midtrain_has_the_paper_curriculum() -> None:
    cfg = load_config("midtrain", "1p7b")
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.model.num_kv_heads) == (2048, 28, 8)
    rates = [(p.prefix_prob, p.truncate_prob, p.block_prob) for p in cfg.masking.phases]
    assert rates == [(0.01, 0.01, 0.05), (0.05, 0.05, 0.10), (0.10, 0.10, 0.15), (0.15, 0.15, 0.20), (0.20, 0.20, 0.25)]


def test_overrides_are_typed_and_win_over_the_preset() -> None:
    cfg = load_config("pretrain", "tiny", ["--optim.learning_rate=1e-3", "num_steps=7",
                                          "masking.phases=[{block_prob: 1}]", "model.compute_dtype=bfloat16"])
    assert cfg.optim.learning_rate == 1e-3 and isinstance(cfg.optim.learning_rate, float)
    assert cfg.num_steps == 7
    assert cfg.masking.phases[0].block_prob == 1.0 and cfg.masking.phases[0].block_sizes == [2, 4, 8]
    assert cfg.model.compute_dtype == "bfloat16"


@pytest.mark.parametrize("overrides, message", [
    (["optim.lr=1"], "unknown config key 'optim.lr'"),
    (["nonsense=1"], "unknown config key 'nonsense'"),
    (["masking.phases=[{blocks: 2}]"], "unknown config key 'masking.phases[0].blocks'"),
    (["num_steps=many"], "config key 'num_steps' must be int"),
    (["optim.name=sgd"], "config key 'optim.name' must be one of"),
    (["model.num_kv_heads=3"], "must be a multiple of model.num_kv_heads"),
    (["data.batch_size=3", "data.grad_accum=2"], "must be a positive multiple of data.grad_accum"),
    (["model.mask_token_id=999999"], "outside the vocab"),
    (["optim.warmup_steps=100"], "optim.warmup_steps (100) must be in [0, num_steps=24)"),
    (["masking.phases=[{block_sizes: [64]}]"], "block_sizes must hold"),
    (["optim"], "must look like key.path=value"),
])
def test_bad_config_stops_with_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(TrainingError) as info:
        load_config("pretrain", "tiny", overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_preset_and_bad_yaml_file(tmp_path) -> None:
    with pytest.raises(TrainingError, match="preset 'huge' not found"):
        load_config("pretrain", "huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(TrainingError, match="not valid YAML"):
        load_config("pretrain", str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("optim: {learning_rat: 1.0}\n")
    with pytest.raises(TrainingError, match="unknown config key 'optim.learning_rat'"):
        load_config("pretrain", str(unknown))
