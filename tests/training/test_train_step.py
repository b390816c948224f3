"""The jitted step: 8 fake devices over (data, fsdp, tensor) give the single-device result, and gradient
accumulation equals the big batch exactly."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

from coda_training.config import MeshConfig
from coda_training.curriculum import MaskingSchedule
from coda_training.errors import TrainingError
from coda_training.sharding import check_batch, make_mesh, place
from coda_training.train_step import (build_context, init_groups, make_train_step, param_shapes, place_state,
                                      random_params)
from tests.training.conftest import small_config


def run_steps(cfg, mesh_cfg: MeshConfig, num_devices: int, steps: int = 2) -> tuple[dict, list[dict]]:
    mesh = make_mesh(mesh_cfg, jax.devices()[:num_devices])
    ctx = build_context(cfg, mesh)
    state = place_state(ctx, random_params(ctx, 0))
    step_fn = make_train_step(ctx)
    schedule = MaskingSchedule(cfg.masking, cfg.num_steps)
    rng = np.random.default_rng(0)
    history = []
    for step in range(steps):
        shape = (cfg.data.grad_accum, cfg.data.batch_size // cfg.data.grad_accum, cfg.data.seq_len)
        ids = rng.integers(0, 125, (cfg.data.batch_size, cfg.data.seq_len)).astype(np.int32)
        ids[:, 9] = 125  # an eos mid-row: two packed documents per row
        segments = np.cumsum(ids == 125, axis=1) - (ids == 125)
        batch = {"input_ids": ids.reshape(shape), "segment_ids": segments.reshape(shape).astype(np.int32),
                 "condition": np.zeros(shape, bool)}
        state, metrics = step_fn(state, {k: place(v, ctx.batch_sharding) for k, v in batch.items()},
                                 schedule.rates(step))
        history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return {k: np.asarray(jax.device_get(v)) for k, v in state["params"].items()}, history


def test_sharded_step_equals_single_device_step() -> None:
    assert jax.device_count() == 8, "tests/training/conftest.py must set 8 fake CPU devices before jax loads"
    strategies = "masking.phases=[{prefix_prob: 0.3, truncate_prob: 0.3, block_prob: 0.5}]"
    cfg = small_config(extra=["data.grad_accum=2", strategies])
    single, single_metrics = run_steps(cfg, MeshConfig(1, 1, 1), 1)
    sharded, sharded_metrics = run_steps(cfg, MeshConfig(2, 2, 2), 8)
    for name in single:
        np.testing.assert_allclose(sharded[name], single[name], atol=2e-6, rtol=1e-5, err_msg=name)
    assert [m["num_masked"] for m in sharded_metrics] == [m["num_masked"] for m in single_metrics]
    np.testing.assert_allclose([m["loss"] for m in sharded_metrics], [m["loss"] for m in single_metrics], rtol=1e-5)
    assert not np.allclose(single["embed_tokens"], random_params_numpy(cfg)["embed_tokens"])  # it did train


def random_params_numpy(cfg) -> dict:
    ctx = build_context(cfg, make_mesh(MeshConfig(1, 1, 1), jax.devices()[:1]))
    return {k: np.asarray(v) for k, v in random_params(ctx, 0).items()}


def test_random_params_in_groups_equal_one_program() -> None:
    cfg = small_config()
    ctx = build_context(cfg, make_mesh(MeshConfig(1, 4, 2), jax.devices()))
    shardings = ctx.state_sharding["params"]
    largest = max(math.prod(shardings[name].shard_shape(shape)) * 4 for name, shape in param_shapes(cfg).items())
    groups = init_groups(ctx, largest)
    assert len(groups) > 2 and sorted(sum(groups, [])) == sorted(ctx.state_sharding["params"])
    grouped = random_params(ctx, 3, max_group_bytes=largest)
    whole = random_params(ctx, 3, max_group_bytes=1 << 40)
    for name, value in whole.items():
        assert grouped[name].sharding == value.sharding, name
        np.testing.assert_array_equal(np.asarray(grouped[name]), np.asarray(value), err_msg=name)


def test_gradient_accumulation_equals_the_big_batch() -> None:
    cfg = small_config(extra=["optim.name=adamw"])
    whole, _ = run_steps(cfg, MeshConfig(1, 1, 1), 1, steps=1)
    accumulated, _ = run_steps(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, grad_accum=4)),
                               MeshConfig(1, 1, 1), 1, steps=1)
    for name in whole:
        np.testing.assert_allclose(accumulated[name], whole[name], atol=1e-6, rtol=1e-5, err_msg=name)


def test_meshes_and_batches_that_do_not_fit_are_refused() -> None:
    with pytest.raises(TrainingError, match="needs 4 devices, found 8"):
        make_mesh(MeshConfig(2, 2, 1))
    with pytest.raises(TrainingError, match="at most one -1"):
        make_mesh(MeshConfig(-1, -1, 1))
    with pytest.raises(TrainingError, match="cannot be split over data x fsdp = 8"):
        check_batch(4, make_mesh(MeshConfig(1, 8, 1)))
    cfg = small_config(extra=["model.hidden_size=36"])  # 36 does not split 8 ways over fsdp
    with pytest.raises(TrainingError, match="cannot be split 8 ways"):
        build_context(cfg, make_mesh(MeshConfig(1, 8, 1)))


def test_the_model_learns_to_read_its_context() -> None:
    """Rows count up by one from a random start, so a masked token follows from any visible neighbour. A model that
    reads its bidirectional context drives the masked-token NLL well below log(125) = 4.8, the unigram entropy
    here; one whose attention or logit shift were broken could not get under it. (At t near 1 every neighbour is
    masked too, so the average cannot reach 0.)"""
    cfg = small_config(extra=["optim.name=adamw", "optim.learning_rate=1e-2", "optim.warmup_steps=5",
                              "num_steps=80", "data.seq_len=24", "data.batch_size=16"])
    ctx = build_context(cfg, make_mesh(MeshConfig(1, 1, 1), jax.devices()[:1]))
    state = place_state(ctx, random_params(ctx, 0))
    step_fn = make_train_step(ctx)
    rates = MaskingSchedule(cfg.masking, cfg.num_steps).rates(0)
    rng = np.random.default_rng(0)
    shape = (1, cfg.data.batch_size, cfg.data.seq_len)
    nll = []
    for _ in range(cfg.num_steps):
        starts = rng.integers(0, 125, (cfg.data.batch_size, 1))
        ids = ((starts + np.arange(cfg.data.seq_len)) % 125).astype(np.int32).reshape(shape)
        batch = {"input_ids": ids, "segment_ids": np.zeros(shape, np.int32), "condition": np.zeros(shape, bool)}
        state, metrics = step_fn(state, {k: place(v, ctx.batch_sharding) for k, v in batch.items()}, rates)
        nll.append(float(jax.device_get(metrics)["masked_token_nll"]))
    assert np.mean(nll[:5]) > 4.0
    assert np.mean(nll[-10:]) < 3.2, nll[-10:]


def test_memory_efficient_step_equals_the_einsum_step() -> None:
    """The defaults (blockwise attention, chunked cross-entropy, scanned layers) against the reference path (einsum
    attention, full logits, a Python loop), with remat as in the 1p7b presets, sharded over 8 devices, on packed
    rows whose length (24) is not a multiple of the attention block (16) or of the loss chunk (10). fp32, so the
    trained weights can be compared too (bf16 equality is test_attention's and test_loss's)."""
    base = ["model.remat=true", "data.seq_len=24"]
    fast = small_config(extra=[*base, "model.attention_block=16", "model.loss_chunk=10"])
    reference = small_config(extra=[*base, "model.attention=einsum", "model.loss_chunk=0", "model.scan_layers=false"])
    fast_params, fast_metrics = run_steps(fast, MeshConfig(1, 8, 1), 8, steps=1)
    ref_params, ref_metrics = run_steps(reference, MeshConfig(1, 8, 1), 8, steps=1)
    for metric in ("loss", "grad_norm", "num_masked"):
        np.testing.assert_allclose(fast_metrics[0][metric], ref_metrics[0][metric], rtol=1e-5, err_msg=metric)
    for name in ref_params:
        np.testing.assert_allclose(fast_params[name], ref_params[name], atol=1e-5, err_msg=name)
