"""The flax model: logits equal coda_engine's for the same checkpoint, attention is bidirectional within a
segment and blind across segments, and bf16 compute stays close to fp32."""

from __future__ import annotations

import dataclasses
import math

import jax

import jax.numpy as jnp
import numpy as np
import pytest

from coda_training import hf_io, model as model_lib
from coda_training.config import MeshConfig, ModelConfig
from coda_training.sharding import ShardingRules, make_mesh, param_shardings

SMALL = ModelConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                    head_dim=8, mask_token_id=127, pad_token_id=126)


def load_hf(folder, mesh_cfg=MeshConfig(1, 1, 1)):
    cfg = hf_io.model_config_from_hf(hf_io.read_hf_config(folder))
    graphdef, abstract = model_lib.abstract_model(cfg)
    shapes = {n: tuple(x.shape) for n, x in model_lib.flatten(abstract).items()}
    devices = jax.devices()[:math.prod((mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor))]
    shardings = param_shardings(make_mesh(mesh_cfg, devices), ShardingRules.fsdp_tp(), shapes)
    return cfg, graphdef, abstract, hf_io.load_params(folder, cfg, shardings, shapes)


def test_logits_match_coda_engine(tiny_checkpoint) -> None:
    torch = pytest.importorskip("torch")
    from coda_engine import Engine

    _, graphdef, abstract, params = load_hf(tiny_checkpoint, MeshConfig(1, 4, 2))  # sharded placement
    ids = np.random.default_rng(0).integers(0, 151_000, (2, 24))
    ours = np.asarray(model_lib.forward(graphdef, abstract, params, jnp.asarray(ids)))
    engine = Engine.from_pretrained(tiny_checkpoint, device="cpu", dtype=torch.float32)
    theirs = engine.forward_logits(torch.tensor(ids)).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_attention_is_bidirectional_without_segments() -> None:
    graphdef, abstract = model_lib.abstract_model(SMALL)
    params = model_lib.init_params(SMALL, 0)
    ids = jnp.arange(1, 13)[None, :]
    base = model_lib.forward(graphdef, abstract, params, ids)
    changed = model_lib.forward(graphdef, abstract, params, ids.at[0, -1].set(99))
    assert not np.allclose(base[0, 0], changed[0, 0])  # the last token reaches position 0


def test_segments_never_see_each_other() -> None:
    graphdef, abstract = model_lib.abstract_model(SMALL)
    params = model_lib.init_params(SMALL, 0)
    ids = jnp.arange(1, 13)[None, :]
    segments = jnp.asarray([[0] * 5 + [1] * 7])
    base = model_lib.forward(graphdef, abstract, params, ids, segments)
    changed = model_lib.forward(graphdef, abstract, params, ids.at[0, 8].set(99), segments)
    np.testing.assert_array_equal(np.asarray(base[0, :5]), np.asarray(changed[0, :5]))
    assert not np.allclose(base[0, 5:], changed[0, 5:])
    # A document alone gives the same logits as inside a packed row (relative RoPE, no leakage).
    alone = model_lib.forward(graphdef, abstract, params, ids[:, :5])
    np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(base[0, :5]), atol=1e-5)


def test_bf16_compute_keeps_fp32_weights_and_stays_close() -> None:
    bf16 = dataclasses.replace(SMALL, compute_dtype="bfloat16")
    graphdef, abstract = model_lib.abstract_model(bf16)
    params = model_lib.init_params(SMALL, 0)
    assert all(p.dtype == jnp.float32 for p in params.values())
    ids = jnp.arange(1, 13)[None, :]
    low = model_lib.forward(graphdef, abstract, params, ids)
    full = model_lib.forward(*model_lib.abstract_model(SMALL), params, ids)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(low), np.asarray(full), atol=0.05)


def test_remat_changes_memory_not_gradients() -> None:
    params = model_lib.init_params(SMALL, 0)
    ids = jnp.arange(1, 13)[None, :]

    def grads(cfg):
        graphdef, abstract = model_lib.abstract_model(cfg)
        return jax.jit(jax.grad(lambda p: model_lib.forward(graphdef, abstract, p, ids).sum()))(params)

    plain, remat = grads(SMALL), grads(dataclasses.replace(SMALL, remat=True))
    for name in plain:
        np.testing.assert_allclose(np.asarray(remat[name]), np.asarray(plain[name]), atol=1e-5, err_msg=name)


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_layers_equal_the_python_loop(remat: bool) -> None:
    params = model_lib.init_params(SMALL, 0)
    ids, segments = jnp.arange(1, 13)[None, :], jnp.asarray([[0] * 5 + [1] * 7])

    def logits_and_grads(cfg):
        graphdef, abstract = model_lib.abstract_model(cfg)
        fn = lambda p: model_lib.forward(graphdef, abstract, p, ids, segments)  # noqa: E731
        return fn(params), jax.jit(jax.grad(lambda p: jnp.sum(fn(p) ** 2)))(params)

    loop = logits_and_grads(dataclasses.replace(SMALL, scan_layers=False, remat=remat))
    scan = logits_and_grads(dataclasses.replace(SMALL, scan_layers=True, remat=remat))
    np.testing.assert_allclose(np.asarray(scan[0]), np.asarray(loop[0]), atol=1e-5)
    for name in params:
        np.testing.assert_allclose(np.asarray(scan[1][name]), np.asarray(loop[1][name]), atol=1e-5, err_msg=name)
