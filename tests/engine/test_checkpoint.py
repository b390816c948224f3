"""Loading checkpoints: the real CoDA config and tokenizer, sharded files, head policy, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from coda_engine import CheckpointError, Engine
from coda_engine.checkpoint import index_checkpoint
from coda_engine.config import ModelConfig, load_config
from coda_engine.presets import PRESETS, write_checkpoint, write_random_checkpoint
from coda_engine.tokenizer import load_tokenizer


def test_real_coda_config_loads_with_an_untied_head(reference_dir):
    config = load_config(reference_dir)
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (2048, 28, 8)
    assert config.mask_token_id == 151669 and config.pad_token_id == 151643
    assert config.tie_word_embeddings is False  # absent from CoDA's config.json: never tie
    assert round(config.num_parameters / 1e9, 2) == 2.03  # Qwen3-1.7B with a separate lm_head


def test_real_tokenizer_special_ids_and_round_trip(reference_dir):
    tok = load_tokenizer(reference_dir)
    assert (tok.mask_token_id, tok.pad_token_id, tok.im_end_token_id) == (151669, 151643, 151645)
    assert tok.encode("hello") == [14990]
    text = "def f(x):\n\treturn x * 2  # ünïcode ✓\n"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("a<|mask|>b") == tok.encode("a") + [151669] + tok.encode("b")


def test_tokenizer_json_is_preferred_when_present(tmp_path, reference_dir):
    tok = load_tokenizer(reference_dir)
    tok.backend.save(str(tmp_path / "tokenizer.json"))
    from_json = load_tokenizer(tmp_path)
    assert from_json.encode("for i in range(10):") == tok.encode("for i in range(10):")
    assert from_json.mask_token_id == 151669


def test_sharded_checkpoint_loads_the_same_weights(tmp_path, tiny_checkpoint, reference_dir):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    sharded = write_checkpoint(tmp_path / "sharded", PRESETS["tiny"], state, reference_dir, num_shards=3)
    assert len(list(sharded.glob("model-*-of-00003.safetensors"))) == 3
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    single = Engine.from_pretrained(tiny_checkpoint).forward_logits(ids)
    assert torch.equal(Engine.from_pretrained(sharded).forward_logits(ids), single)


def test_fp32_weights_on_cpu_are_views_of_the_file_mapping_but_the_head(tiny_checkpoint):
    engine = Engine.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    entries = index_checkpoint(tiny_checkpoint)
    params = dict(engine.model.named_parameters())
    head = params.pop("lm_head.weight")
    base = params["model.embed_tokens.weight"].data_ptr() - entries["model.embed_tokens.weight"].start
    # Views of one mapping sit at the same distances in memory as the tensors' byte offsets in the file.
    for name, param in params.items():
        assert param.data_ptr() - base == entries[name].start, name
    # The head is the one copy: column-major, for the thin products of the fast path (column_major_head).
    assert head.stride() == (1, engine.config.vocab_size)
    stored = load_file(str(tiny_checkpoint / "model.safetensors"))["lm_head.weight"]
    assert torch.equal(head, stored)
    hidden = torch.randn(5, engine.config.hidden_size)
    assert torch.allclose(engine.model.lm_head(hidden), hidden @ stored.t(), atol=1e-5)
    bf16 = Engine.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16)
    assert bf16.model.lm_head.weight.is_contiguous()


def test_qwen3_checkpoint_without_head_ties_only_when_config_says_so(tmp_path, tiny_checkpoint, reference_dir):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    del state["lm_head.weight"]
    folder = write_checkpoint(tmp_path / "qwen3", PRESETS["tiny"], state, reference_dir)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="qwen3", tie_word_embeddings=True)
    (folder / "config.json").write_text(json.dumps(config))
    engine = Engine.from_pretrained(folder)
    assert torch.equal(engine.model.lm_head.weight, engine.model.model.embed_tokens.weight)
    config["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing tensor lm_head.weight"):
        Engine.from_pretrained(folder)


def test_bf16_load_converts_every_weight(tiny_checkpoint):
    engine = Engine.from_pretrained(tiny_checkpoint, dtype="bf16")
    assert engine.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in engine.model.parameters())


@pytest.fixture
def broken(tmp_path, tiny_checkpoint) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


BAD_CASES = {
    "missing folder": (lambda f: shutil.rmtree(f), "model folder not found"),
    "missing config": (lambda f: (f / "config.json").unlink(),
                       r"not a CoDA checkpoint folder \(Hugging Face format\): it has no config\.json"),
    "invalid config json": (lambda f: (f / "config.json").write_text("{nope"), "not valid JSON"),
    "unknown model_type": (lambda f: edit_config(f, model_type="llama"), "unknown model_type 'llama'"),
    "impossible shape": (lambda f: edit_config(f, num_key_value_heads=3), "not a multiple"),
    "missing field": (lambda f: edit_config(f, hidden_size=None), "missing required field"),
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    "truncated safetensors": (lambda f: truncate(f / "model.safetensors", 50_000), "truncated"),
    "garbage safetensors": (lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 64), "corrupt or truncated"),
    "wrong shape": (lambda f: edit_config(f, intermediate_size=96), "has shape"),
    "no tokenizer": (lambda f: [(f / n).unlink() for n in ("vocab.json", "merges.txt")], "no tokenizer.json"),
    "tokenizer without mask": (
        lambda f: [(f / n).unlink() for n in ("added_tokens.json", "tokenizer_config.json")], "no <|mask|> token"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_checkpoint_raises_one_checkpoint_error(broken, case):
    damage, message = BAD_CASES[case]
    damage(broken)
    with pytest.raises(CheckpointError, match=message.replace("|", r"\|")) as caught:
        Engine.from_pretrained(broken)
    assert "\n" not in str(caught.value)
    assert str(broken) in str(caught.value)


def test_missing_tensor_is_named(broken):
    state = load_file(str(broken / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing tensor model.layers.1.mlp.up_proj.weight"):
        Engine.from_pretrained(broken)


def test_missing_shard_is_named(tmp_path, reference_dir):
    folder = write_random_checkpoint(tmp_path / "sharded", tokenizer_dir=reference_dir, num_shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors: shard named in"):
        Engine.from_pretrained(folder)


def test_config_round_trips_through_hf_dict():
    config = PRESETS["small"]
    assert ModelConfig.from_hf_dict(config.to_hf_dict()) == config


PEAK_RSS_SCRIPT = """
import sys, torch
from pathlib import Path
from coda_engine.checkpoint import load_weights
from coda_engine.config import load_config
from coda_engine.model import CodaModel
def kib(field):
    return next(int(l.split()[1]) for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(field))
folder = Path(sys.argv[1])
with torch.device('meta'):
    model = CodaModel(load_config(folder))
before = kib('VmRSS:')
Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM, the peak resident set
load_weights(model, folder, dtype=getattr(torch, sys.argv[2]), device=torch.device('cpu'), tie_head_when_absent=False)
for p in model.parameters():
    p.sum()  # touch every weight, so lazily mapped pages count too
print((kib('VmHWM:') - before) * 1024)
"""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_peak_memory_while_loading_stays_under_1_3x_the_weights(tiny_checkpoint, dtype):
    import subprocess
    import sys

    file_bytes = (tiny_checkpoint / "model.safetensors").stat().st_size
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(tiny_checkpoint), dtype],
                         capture_output=True, text=True, check=True)
    peak_growth = int(out.stdout.strip())
    assert peak_growth <= 1.3 * file_bytes, (peak_growth, file_bytes)
