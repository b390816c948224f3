"""The loop: SIGKILL mid-run and resume gives the uninterrupted parameters; a NaN stops the run and keeps the
last good checkpoint; bad inputs stop before compute."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from coda_training.checkpoint import Checkpoints
from coda_training.config import load_config
from coda_training.data.tokenize import TokenizeOptions, tokenize
from coda_training.data.tokenizer import load_tokenizer
from coda_training.errors import TrainingError
from coda_training.cli import main
from coda_training.trainer import context_for, initial_state, load_run_params, train
from tests.training.conftest import SMALL_MODEL, write_word_tokenizer

ROOT = Path(__file__).resolve().parents[2]
# S1/S2/S3 far above the preset's 1 % so the resumed steps exercise every strategy's randomness.
STRATEGIES = "masking.phases=[{prefix_prob: 0.2, truncate_prob: 0.2, block_prob: 0.5}]"


@pytest.fixture(scope="module")
def packed_data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("data")
    write_word_tokenizer(base / "tok")
    rng = np.random.default_rng(0)
    (base / "corpus.txt").write_text("\n".join(" ".join(f"w{i}" for i in rng.integers(1, 125, 400)) for _ in range(4)))
    tokenize([base / "corpus.txt"], load_tokenizer(base / "tok"), base / "packed", TokenizeOptions())
    return base


def overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*SMALL_MODEL, f"data.path={data / 'packed'}", f"run_dir={run_dir}", f"tokenizer_dir={data / 'tok'}",
            "data.seq_len=16", "data.batch_size=8", "data.grad_accum=1", "optim.warmup_steps=2",
            "peak_flops=1e11", *extra]


def final_params(cfg) -> dict[str, np.ndarray]:
    params, _ = load_run_params(cfg, context_for(cfg))
    return {k: np.asarray(jax.device_get(v)) for k, v in params.items()}


def test_sigkill_and_resume_equals_an_uninterrupted_run(packed_data, tmp_path) -> None:
    args = overrides(packed_data, tmp_path / "killed", "num_steps=60", "checkpoint.every=2", "checkpoint.keep=2",
                     "log_every=1", STRATEGIES)
    command = [sys.executable, "-m", "coda_training.cli", "pretrain", "--config", "tiny", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 240
    while not (checkpoints / "6").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    killed_at = Checkpoints(tmp_path / "killed", read_only=True).latest_step()
    assert killed_at is not None and 6 <= killed_at < 60  # really killed mid-run
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"step {killed_at + 1}/60" in resumed.stderr  # picked up after the last checkpoint

    reference = load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "straight", "num_steps=60",
                                                          "checkpoint.every=60", "log_every=60", STRATEGIES))
    train(reference, stream=open(os.devnull, "w"))
    killed_cfg = load_config("pretrain", "tiny", args)
    got, want = final_params(killed_cfg), final_params(reference)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=1e-6, err_msg=name)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(packed_data, tmp_path) -> None:
    cfg = load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "nan", "num_steps=10", "checkpoint.every=1",
                                                    "optim.name=adamw", "optim.learning_rate=1e38",
                                                    "optim.warmup_steps=0", "optim.clip_norm=0"))
    with pytest.raises(TrainingError) as info:
        train(cfg, stream=open(os.devnull, "w"))
    message = str(info.value)
    assert "loss nan" in message and "\n" not in message
    ckpts = Checkpoints(tmp_path / "nan", read_only=True)
    good = ckpts.latest_step()
    assert good is not None and f"last good checkpoint is step {good}" in message
    assert not (tmp_path / "nan" / "checkpoints" / str(good + 1)).exists()
    params = final_params(cfg)
    assert all(np.isfinite(v).all() for v in params.values())  # restorable, no NaN inside


def test_bad_inputs_stop_before_compute(packed_data, tmp_path) -> None:
    with pytest.raises(TrainingError, match="no manifest.json"):
        train(load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "r1", f"data.path={tmp_path}")))
    with pytest.raises(TrainingError, match="nothing has no checkpoints/ folder"):
        train(load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "r2", "init.kind=checkpoint",
                                                        f"init.path={tmp_path / 'nothing'}")))
    with pytest.raises(TrainingError, match="has no config.json"):
        train(load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "r3", "init.kind=hf",
                                                        f"init.path={tmp_path}")))
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3"))  # nothing created


def test_resuming_into_a_different_shape_is_refused(packed_data, tmp_path) -> None:
    short = overrides(packed_data, tmp_path / "run", "num_steps=2", "optim.warmup_steps=1")
    train(load_config("pretrain", "tiny", short), stream=open(os.devnull, "w"))
    bigger = load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "run", "num_steps=4",
                                                       "optim.warmup_steps=1", "model.hidden_size=64"))
    with pytest.raises(TrainingError, match=r"different model shape \(hidden_size 32 != 64\)"):
        train(bigger)
    assert Checkpoints(tmp_path / "run", read_only=True).latest_step() == 2  # untouched


def test_a_new_stage_starts_from_the_previous_stage_weights_with_a_fresh_optimizer(packed_data, tmp_path) -> None:
    first = load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "pre", "num_steps=2",
                                                      "optim.warmup_steps=1"))
    train(first, stream=open(os.devnull, "w"))
    second = load_config("sft", "tiny", overrides(packed_data, tmp_path / "sft", "num_steps=2", "optim.warmup_steps=1",
                                                  "init.kind=checkpoint", f"init.path={tmp_path / 'pre'}"))
    ctx = context_for(second)
    state = initial_state(ctx, second, Checkpoints(tmp_path / "sft", second))
    assert int(state["step"]) == 0 and second.optim.name == "adamw"
    want = final_params(first)
    for name, value in state["params"].items():
        np.testing.assert_array_equal(np.asarray(jax.device_get(value)), want[name])


def test_a_step_that_cannot_fit_is_refused_before_anything_is_written(packed_data, tmp_path) -> None:
    cfg = load_config("pretrain", "tiny", overrides(packed_data, tmp_path / "big", "num_steps=2",
                                                    "optim.warmup_steps=1", "memory.hbm_bytes=100000"))
    with pytest.raises(TrainingError) as info:
        train(cfg)
    message = str(info.value)
    assert message.startswith("the train step needs ") and "per device, more than the 0.10 MiB available " \
        "(memory.hbm_bytes); try " in message and message.endswith("(or --memory.check=false to run anyway)")
    assert "\n" not in message and not (tmp_path / "big").exists()


@pytest.fixture(scope="module")
def long_rows(tmp_path_factory) -> Path:
    """Packed data with one row of LONG tokens (rows repeat across the batch)."""
    base = tmp_path_factory.mktemp("long")
    write_word_tokenizer(base / "tok")
    words = np.random.default_rng(0).integers(1, 125, LONG + 8)
    (base / "corpus.txt").write_text(" ".join(f"w{i}" for i in words))
    tokenize([base / "corpus.txt"], load_tokenizer(base / "tok"), base / "packed", TokenizeOptions())
    return base


LONG = 2**18


def test_out_of_memory_in_a_step_is_one_line_and_keeps_the_last_checkpoint(packed_data, long_rows, tmp_path,
                                                                            capsys) -> None:
    """Resume a 2-step run on rows of 2^18 tokens with the einsum reference and the memory check off: its
    [heads, L, L] fp32 scores are 1 TiB per device, an allocation XLA's CPU client refuses at once (so nothing is
    touched and no OS OOM killer is involved)."""
    run = tmp_path / "oom"
    assert main(["pretrain", "--config", "tiny", *overrides(packed_data, run, "num_steps=2", "optim.warmup_steps=1")]) == 0
    capsys.readouterr()
    huge = overrides(long_rows, run, "num_steps=4", "optim.warmup_steps=1", f"data.seq_len={LONG}", f"model.max_position_embeddings={LONG}",
                     "model.attention=einsum", "memory.check=false")
    assert main(["pretrain", "--config", "tiny", *huge]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("coda-train: error:") == 1
    err = err.splitlines()[-1]  # the progress lines before it say what was compiled
    assert err.startswith("coda-train: error: device memory ran out in step 3, wanted ")
    assert "RESOURCE_EXHAUSTED" in err and "try --model.attention=auto" in err
    assert f"last good checkpoint is step 2 in {run.resolve() / 'checkpoints'}" in err
    assert Checkpoints(run, read_only=True).latest_step() == 2
