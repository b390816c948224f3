"""`coda-train plan`: the per-device table, XLA's compiled numbers, the fit verdict with an override, and one-line
descriptions of XLA failures."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

import coda_training
from coda_training import plan
from coda_training.cli import main
from tests.training.conftest import SMALL_MODEL, small_config

# 16 rows of 32 tokens over 8 fake devices: 2 rows per device, so a doubled grad_accum still splits.
SHAPE = ["data.seq_len=32", "data.batch_size=16", "data.grad_accum=1"]


def test_plan_prints_the_table_and_fits_a_chip(capsys) -> None:
    assert main(["plan", "--config", "tiny", "--devices", "8", "--chip", "v5e", *SMALL_MODEL, *SHAPE]) == 0
    out = capsys.readouterr().out
    for line in ("parameters (fp32, sharded)", "optimizer state", "gradients", "activations (estimate)",
                 "XLA compiled step", "total (args + out + temp - alias)", "data 1 x fsdp 8 x tensor 1 (8 devices)",
                 "2 sequence(s) per device", "TPU v5e: 16.00 GiB per device", "-> FITS"):
        assert line in out, out


def test_a_plan_that_cannot_fit_names_an_override(capsys) -> None:
    args = ["plan", "--config", "tiny", "--devices", "8", "--no-compile", *SMALL_MODEL, *SHAPE]
    assert main([*args, "--hbm", "1000"]) == 0
    out = capsys.readouterr().out
    assert "XLA compiled step" not in out and "-> DOES NOT FIT" in out and "\ntry: " in out


def test_analytic_state_bytes_equal_the_compiled_arguments() -> None:
    """Params + optimizer state counted from eval_shape and the sharding rules are what XLA's compiled step
    receives per device, give or take the batch shard and the masking rates (XLA drops inputs it never reads)."""
    cfg = small_config(extra=SHAPE)
    result, _ = plan.plan(cfg, jax.devices())
    state = result.params_bytes + result.opt_state_bytes
    batch_shard = 2 * (2 * 32 * 4) + 2 * 32  # input_ids + segment_ids int32, condition bool: 2 rows x 32
    rates_and_step = 5 * 4 + 8 * 4 + 4  # five scalars, block sizes int32[8], the step counter
    assert state <= result.compiled.argument_bytes <= state + batch_shard + rates_and_step


def test_cheaper_settings_turn_remat_on_first_then_double_grad_accum() -> None:
    cfg = small_config(extra=[*SHAPE, "data.batch_size=32"])
    options = [override for override, _ in plan.cheaper_settings(cfg, {"data": 1, "fsdp": 8, "tensor": 1})]
    assert options == ["--model.remat=true", "--model.remat=true --data.grad_accum=2",
                       "--model.remat=true --data.grad_accum=4"]


@pytest.mark.parametrize("message, wanted", [
    # XLA's TPU compile-time OOM, as research/jax-scale.md section 5 recorded it on a v4 AOT compile.
    ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries (42.12G) "
     "exceeds available HBM (30.75G).\nstack frame 1", "wanted 42.12 GiB"),
    ("RESOURCE_EXHAUSTED: Out of memory allocating 1099511627776 bytes.", "wanted 1024.00 GiB"),
])
def test_out_of_memory_is_described_in_one_line(message: str, wanted: str) -> None:
    cfg = small_config(extra=SHAPE)
    line = plan.describe_failure(cfg, {"data": 1, "fsdp": 8, "tensor": 1}, RuntimeError(message), "in step 3")
    assert "\n" not in line and line.startswith("device memory ran out in step 3") and wanted in line
    assert line.endswith("try --model.remat=true")  # the tiny preset already runs the efficient attention and loss


def test_largest_rows_per_device_is_the_compiled_boundary() -> None:
    cfg = small_config(extra=["data.seq_len=32"])
    rows, measured = plan.largest_rows_per_device(cfg, jax.devices()[:1], 3_000_000)
    compiled = dict(measured)
    assert rows >= 2 and compiled[rows] <= 3_000_000 < compiled[rows + 1]


def test_largest_rows_per_device_reuses_known_compiles() -> None:
    cfg = small_config(extra=["data.seq_len=32"])
    known = {1: 1_000, 2: 10**15}  # bytes by rows, as if compiled already: nothing is left to compile
    rows, measured = plan.largest_rows_per_device(cfg, jax.devices()[:1], 3_000_000, known)
    assert rows == 1 and dict(measured) == known


def test_importing_coda_training_selects_the_memory_minimising_cpu_scheduler() -> None:
    # A fresh interpreter: in this one jax (and the conftest's XLA_FLAGS) may have come first.
    probe = "import os, coda_training; print(os.environ['XLA_FLAGS'])"
    flags = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           env={key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}).stdout
    assert f"{coda_training.CPU_SCHEDULER_FLAG}=false" in flags.split()
