"""Tokenize to shards + manifest, SFT / infill rows, and batches as a pure function of (seed, step)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coda_training.data.batches import batch_at, open_tokens, row_indices, segment_ids
from coda_training.data.infill import infill_example
from coda_training.data.sft import sft_example
from coda_training.data.tokenize import TokenizeOptions, tokenize
from coda_training.data.tokenizer import load_tokenizer
from coda_training.errors import TrainingError

OPEN = dict(vocab_size=128, mask_id=127, pad_id=126, verify_hashes=True)


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(f"w{i}" for i in rng.integers(1, 125, n))


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    for i in range(5):
        (tmp_path / "src" / f"m{i}.py").write_text(words(rng, 30 + 7 * i))
    (tmp_path / "src" / "image.png").write_bytes(b"\x89PNG")  # skipped: not a source suffix
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"text": words(rng, 20)}) for _ in range(3)) + "\n")
    return tmp_path


def test_packed_shards_and_manifest(corpus, word_tokenizer_dir) -> None:
    info = load_tokenizer(word_tokenizer_dir)
    manifest = tokenize([corpus / "src", corpus / "docs.jsonl"], info, corpus / "out",
                        TokenizeOptions(kind="packed", shard_tokens=100))
    expected = sum(30 + 7 * i + 1 for i in range(5)) + 3 * 21  # each document closed by eos
    assert manifest["num_documents"] == 8 and manifest["num_tokens"] == expected
    assert len(manifest["shards"]) > 1  # shard_tokens forces several files
    on_disk = json.loads((corpus / "out" / "manifest.json").read_text())
    assert on_disk["shards"] == manifest["shards"]
    tokens = open_tokens(corpus / "out", 16, **OPEN)
    assert tokens.num_rows == expected // 16
    stream = np.concatenate([np.fromfile(corpus / "out" / s["file"], np.uint32) for s in manifest["shards"]])
    ids, _ = tokens.rows(np.arange(tokens.num_rows))
    assert np.array_equal(ids.reshape(-1), stream[:tokens.num_rows * 16])  # blocks straddle shards correctly
    assert int(np.sum(stream == 125)) == 8


def test_batches_are_a_pure_function_of_seed_and_step(corpus, word_tokenizer_dir) -> None:
    tokenize([corpus / "src"], load_tokenizer(word_tokenizer_dir), corpus / "out", TokenizeOptions())
    tokens = open_tokens(corpus / "out", 8, **OPEN)
    a = batch_at(tokens, seed=3, step=5, batch_size=4, grad_accum=2, eos_id=125)
    b = batch_at(tokens, seed=3, step=5, batch_size=4, grad_accum=2, eos_id=125)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape == (2, 2, 8) and a["input_ids"].dtype == np.int32
    other = batch_at(tokens, seed=4, step=5, batch_size=4, grad_accum=2, eos_id=125)
    assert not np.array_equal(a["input_ids"], other["input_ids"])
    n = tokens.num_rows
    epoch = np.concatenate([row_indices(3, s, 1, n) for s in range(n)])
    assert sorted(epoch.tolist()) == list(range(n))  # every row once per epoch


def test_segment_ids_close_each_document_with_its_eos() -> None:
    ids = np.array([[4, 5, 125, 6, 7, 125, 8]])
    assert segment_ids(ids, 125).tolist() == [[0, 0, 0, 1, 1, 1, 2]]


def test_sft_rows_condition_on_the_prompt(reference_dir) -> None:
    info = load_tokenizer(reference_dir)
    row, condition = sft_example(info, [{"role": "user", "content": "add two numbers"},
                                        {"role": "assistant", "content": "def add(a, b): return a + b"}], 64)
    cond_len = int(condition.sum())
    assert np.all(condition[:cond_len]) and not condition[cond_len:].any()
    assert row[cond_len - 2:cond_len].tolist() == [151644, 77091]  # ends with <|im_start|>assistant
    assert info.decode(row[cond_len:].tolist()).startswith("\n<think>\n\n</think>\n\ndef add")
    assert row[-1] == info.pad_id  # right-padded with <|endoftext|>
    too_long = [{"role": "user", "content": "x " * 100}, {"role": "assistant", "content": "y"}]
    assert sft_example(info, too_long, 64) is None


def test_sft_jsonl_to_examples(tmp_path, reference_dir) -> None:
    records = [{"prompt": "add two numbers", "response": "def add(a, b):\n    return a + b"},
               {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                             {"role": "assistant", "content": "hello"}]},
               {"prompt": "long " * 200, "response": "dropped"}]
    (tmp_path / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    info = load_tokenizer(reference_dir)
    manifest = tokenize([tmp_path / "sft.jsonl"], info, tmp_path / "out", TokenizeOptions(kind="sft", seq_len=64))
    assert (manifest["num_examples"], manifest["num_dropped"]) == (2, 1)
    tokens = open_tokens(tmp_path / "out", 64, vocab_size=151936, mask_id=151669, pad_id=151643, verify_hashes=True)
    ids, condition = tokens.rows(np.arange(2))
    assert "be brief" in info.decode(ids[1][condition[1]].tolist())  # the system turn is part of the prompt
    assert info.decode(ids[1][~condition[1]].tolist()).startswith("\n<think>\n\n</think>\n\nhello<|im_end|>")
    batch = batch_at(tokens, seed=0, step=0, batch_size=2, grad_accum=1, eos_id=151645)
    assert not batch["segment_ids"].any()  # an example is one document even though it holds <|im_end|>


@pytest.mark.parametrize("seed", range(5))
def test_infill_rows_hold_prefix_middle_tail_suffix(seed: int) -> None:
    tokens = list(range(1000, 1100))
    rng = np.random.default_rng(seed)
    row, condition = infill_example(tokens, 48, rng, max_middle=10, max_tail=4, pad_id=7)
    hole = np.flatnonzero(~condition)
    assert condition[0] and len(hole) >= 1 and np.all(np.diff(hole) == 1)  # one contiguous response span
    response = row[hole].tolist()
    middle = [t for t in response if t != 7]
    assert 1 <= len(middle) <= 10 and response[len(middle):] == [7] * (len(response) - len(middle))
    before, after = row[:hole[0]].tolist(), [t for t in row[hole[-1] + 1:].tolist() if t != 7]
    joined = before + middle + after
    assert joined == tokens[tokens.index(before[0]):tokens.index(before[0]) + len(joined)]  # order preserved


def test_infill_rows_with_several_holes_keep_the_file_in_order() -> None:
    tokens = list(range(1000, 1300))
    holes_seen = set()
    for seed in range(40):
        row, condition = infill_example(tokens, 128, np.random.default_rng(seed), max_middle=8, max_tail=4,
                                        pad_id=7, max_spans=4)
        edges = np.flatnonzero(np.diff(np.concatenate([[1], condition.astype(int), [1]])))
        holes = list(zip(edges[::2], edges[1::2]))  # [start, end) of each run of response tokens
        holes_seen.add(len(holes))
        assert 1 <= len(holes) <= 4 and condition[0]
        text = []
        for (start, end), next_start in zip(holes, [h[0] for h in holes[1:]] + [len(row)]):
            response = row[start:end].tolist()
            middle = [t for t in response if t != 7]
            assert 1 <= len(middle) <= 8 and response[len(middle):] == [7] * (len(response) - len(middle))
            text += middle
            text += [t for t in row[end:next_start].tolist() if t != 7]
        text = row[:holes[0][0]].tolist() + text
        first = tokens.index(text[0])
        assert text == tokens[first:first + len(text)]  # holes cut out nothing and reorder nothing
    assert holes_seen >= {1, 2, 3}


def test_bad_inputs_stop_before_anything_is_written(corpus, word_tokenizer_dir) -> None:
    info = load_tokenizer(word_tokenizer_dir)
    with pytest.raises(TrainingError, match="does not exist"):
        tokenize([corpus / "missing.txt"], info, corpus / "o1", TokenizeOptions())
    (corpus / "bad.jsonl").write_text('{"text": "w1"}\n{not json\n')
    with pytest.raises(TrainingError, match=r"bad.jsonl:2: not valid JSON"):
        tokenize([corpus / "bad.jsonl"], info, corpus / "o2", TokenizeOptions())
    assert not (corpus / "o2").exists() and not list(corpus.glob(".o2*"))  # staging folder cleaned up
    (corpus / "sft.jsonl").write_text('{"question": "w1"}\n')
    with pytest.raises(TrainingError, match="expected keys 'prompt' and 'response'"):
        tokenize([corpus / "sft.jsonl"], info, corpus / "o3", TokenizeOptions(kind="sft", seq_len=16))
    (corpus / "keep").mkdir()
    (corpus / "keep" / "precious.bin").write_text("x")
    with pytest.raises(TrainingError, match="already exists"):
        tokenize([corpus / "src"], info, corpus / "keep", TokenizeOptions())
    assert (corpus / "keep" / "precious.bin").read_text() == "x"


def test_tokenizer_without_mask_token_is_refused(tmp_path) -> None:
    from tokenizers import Tokenizer, models

    (tmp_path / "t").mkdir()
    no_mask = Tokenizer(models.WordLevel({"a": 0, "<|endoftext|>": 1, "<|im_end|>": 2}, unk_token="a"))
    no_mask.save(str(tmp_path / "t" / "tokenizer.json"))
    with pytest.raises(TrainingError, match=r"has no <\|mask\|> token"):
        load_tokenizer(tmp_path / "t")


def test_damaged_or_mismatched_data_is_refused(corpus, word_tokenizer_dir) -> None:
    tokenize([corpus / "src"], load_tokenizer(word_tokenizer_dir), corpus / "out", TokenizeOptions())
    with pytest.raises(TrainingError, match="tokenized with vocab 128, mask 127"):
        open_tokens(corpus / "out", 8, vocab_size=128, mask_id=5, pad_id=126, verify_hashes=False)
    with pytest.raises(TrainingError, match="hold no full sequence"):
        open_tokens(corpus / "out", 100_000, **OPEN)
    shard = corpus / "out" / "tokens_00000.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="does not match its sha256"):
        open_tokens(corpus / "out", 8, **OPEN)
    shard.write_bytes(b"")
    with pytest.raises(TrainingError, match="missing or not"):
        open_tokens(corpus / "out", 8, **OPEN)
    manifest = json.loads((corpus / "out" / "manifest.json").read_text())
    manifest["shards"][0]["num_tokens"] = 0
    (corpus / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainingError, match="tokens_00000.bin is empty"):
        open_tokens(corpus / "out", 8, **OPEN)
    (corpus / "out" / "manifest.json").write_text("{}")
    with pytest.raises(TrainingError, match="manifest.json is malformed"):
        open_tokens(corpus / "out", 8, **OPEN)
    with pytest.raises(TrainingError, match="no manifest.json"):
        open_tokens(corpus / "src", 8, **OPEN)


def test_line_spans_cover_whole_lines_or_the_rest_of_one() -> None:
    from coda_training.data.infill import line_span

    newline = 0
    # Lines of 3 tokens each: a, b, newline.
    tokens = [t for line in range(10) for t in (100 + line, 200 + line, newline)]
    starts_mid_line = 0
    for seed in range(200):
        start, length = line_span(tokens, np.random.default_rng(seed), 8, frozenset({newline}))
        assert 1 <= length <= 8
        assert tokens[start + length - 1] == newline  # ends at a line break
        starts_mid_line += tokens[start - 1] != newline
    assert 0 < starts_mid_line < 200
    assert line_span([1, 2, 3], np.random.default_rng(0), 8, frozenset({newline})) is None
