"""HF import/export: round trip, engine loads the export, tied sources, bf16 sources, and refusals."""

from __future__ import annotations

import json

import jax
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from coda_training import hf_io, model as model_lib
from coda_training.errors import TrainingError
from tests.training.test_model import SMALL, load_hf


@pytest.fixture
def small_params():
    return model_lib.init_params(SMALL, 0)


def test_round_trip_is_exact(tmp_path, small_params, word_tokenizer_dir) -> None:
    out = hf_io.export(small_params, SMALL, word_tokenizer_dir, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "CoDA" and config["architectures"] == ["CoDALanguageModel"]
    assert (config["mask_token_id"], config["pad_token_id"], config["tie_word_embeddings"]) == (127, 126, False)
    assert (out / "tokenizer.json").is_file()
    cfg, _, _, loaded = load_hf(out)
    assert cfg == SMALL
    for name, value in small_params.items():
        np.testing.assert_array_equal(np.asarray(loaded[name]), np.asarray(value))


def test_sharded_export_writes_an_index(tmp_path, small_params, word_tokenizer_dir) -> None:
    out = hf_io.export(small_params, SMALL, word_tokenizer_dir, tmp_path / "hf", max_shard_bytes=20_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and len(index["weight_map"]) == len(small_params)
    _, _, _, loaded = load_hf(out)
    np.testing.assert_array_equal(np.asarray(loaded["lm_head.kernel"]), np.asarray(small_params["lm_head.kernel"]))


def test_engine_checkpoint_round_trips_through_export(tmp_path, tiny_checkpoint, reference_dir) -> None:
    torch = pytest.importorskip("torch")
    from coda_engine import Engine

    cfg, graphdef, abstract, params = load_hf(tiny_checkpoint)
    out = hf_io.export(params, cfg, reference_dir, tmp_path / "again")
    ids = np.random.default_rng(1).integers(0, 151_000, (1, 16))
    ours = np.asarray(model_lib.forward(graphdef, abstract, params, jax.numpy.asarray(ids)))
    engine = Engine.from_pretrained(out, device="cpu", dtype=torch.float32)
    np.testing.assert_allclose(engine.forward_logits(torch.tensor(ids)).numpy(), ours, atol=1e-4, rtol=0)


def write_qwen3(folder, params, dtype=np.float32, tied=True) -> None:
    """An autoregressive Qwen3 folder as HF writes it: model_type qwen3, and no lm_head when tied."""
    folder.mkdir()
    tensors = {}
    for name, value in params.items():
        hf, transpose = hf_io.hf_name(name)
        if tied and hf == "lm_head.weight":
            continue
        array = np.asarray(value)
        tensors[hf] = np.ascontiguousarray(array.T if transpose else array).astype(dtype)
    save_file(tensors, str(folder / "model.safetensors"))
    config = hf_io.to_hf_config(SMALL) | {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
                                          "tie_word_embeddings": tied}
    (folder / "config.json").write_text(json.dumps(config))


def test_tied_bf16_qwen3_source_gets_a_separate_head(tmp_path, small_params) -> None:
    write_qwen3(tmp_path / "qwen3", small_params, dtype=ml_dtypes.bfloat16, tied=True)
    _, _, _, loaded = load_hf(tmp_path / "qwen3")
    embed = np.asarray(small_params["embed_tokens"]).astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded["lm_head.kernel"]), embed.T)
    np.testing.assert_array_equal(np.asarray(loaded["embed_tokens"]), embed)


def test_refusals(tmp_path, small_params, word_tokenizer_dir, reference_dir) -> None:
    write_qwen3(tmp_path / "qwen3", small_params, tied=False)
    _, _, _, loaded = load_hf(tmp_path / "qwen3")
    wrong = SMALL.__class__(**{**SMALL.__dict__, "hidden_size": 64})
    shapes = {n: tuple(x.shape) for n, x in model_lib.flatten(model_lib.abstract_model(wrong)[1]).items()}
    with pytest.raises(TrainingError, match=r"different model shape than the run config \(hidden_size 32 != 64\)"):
        hf_io.load_params(tmp_path / "qwen3", wrong, {}, shapes)
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(TrainingError, match="model_type 'llama'"):
        load_hf(tmp_path / "llama")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(TrainingError, match="already exists"):
        hf_io.export(small_params, SMALL, word_tokenizer_dir, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(TrainingError, match="tokenizer mask id 151669 != model.mask_token_id 127"):
        hf_io.export(small_params, SMALL, reference_dir, tmp_path / "new")
    assert not (tmp_path / "new").exists()
