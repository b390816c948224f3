"""The default model's corpus and tokenizer recipe: filters, dedup, decontamination, split, BPE special tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coda_training.errors import TrainingError
from coda_training.recipe import corpus
from coda_training.recipe.tokenizer import SPECIAL_TOKENS, bytes_per_token, save_tokenizer, train_bpe

FUNCTION = "def area(width, height):\n    \"\"\"Area of a rectangle.\"\"\"\n    return width * height\n" * 4


def test_python_files_skip_test_suites_and_vendored_code(tmp_path):
    for relative in ["pkg/mod.py", "pkg/tests/test_mod.py", "pkg/_vendor/x.py", "test/a.py", "top.py", "notes.txt"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(FUNCTION)
    found = [p.relative_to(tmp_path).as_posix() for p in corpus.python_files(tmp_path)]
    assert found == ["pkg/mod.py", "top.py"]


def test_trainable_rejects_tiny_huge_and_minified_files():
    assert corpus.is_trainable(FUNCTION)
    assert not corpus.is_trainable("x = 1\n")
    assert not corpus.is_trainable("x = [" + "1, " * 300 + "]\n" + FUNCTION)
    assert not corpus.is_trainable(FUNCTION * 3000)


def test_content_key_ignores_trailing_spaces_and_blank_lines():
    assert corpus.content_key(FUNCTION) == corpus.content_key(FUNCTION.replace("\n", "  \n\n"))
    assert corpus.content_key(FUNCTION) != corpus.content_key(FUNCTION.replace("width", "w"))


def test_humaneval_solutions_are_recognised_as_contamination(humaneval_dir):
    import gzip

    banned = corpus.humaneval_lines(humaneval_dir)
    with gzip.open(humaneval_dir / "HumanEval.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert corpus.is_contaminated(first["prompt"] + first["canonical_solution"], banned)
    assert not corpus.is_contaminated(FUNCTION, banned)
    with pytest.raises(TrainingError, match="HumanEval data not found"):
        corpus.humaneval_lines(humaneval_dir / "missing")


def test_validation_split_is_a_stable_small_share():
    names = [f"stdlib/module_{i}.py" for i in range(5000)]
    share = sum(map(corpus.is_validation, names)) / len(names)
    assert 0.01 < share < 0.03
    assert [corpus.is_validation(n) for n in names[:50]] == [corpus.is_validation(n) for n in names[:50]]


def test_build_corpus_refuses_an_existing_folder_and_unknown_packages(tmp_path, humaneval_dir):
    (tmp_path / "out").mkdir()
    with pytest.raises(TrainingError, match="already exists"):
        corpus.build_corpus(tmp_path / "out", humaneval_dir)
    with pytest.raises(TrainingError, match="not on the permissive list"):
        corpus.build_corpus(tmp_path / "new", humaneval_dir, packages=["left-pad"])
    assert not (tmp_path / "new").exists()


def test_bpe_has_distinct_special_tokens_and_loads_in_the_engine(tmp_path):
    from coda_engine.tokenizer import load_tokenizer

    train = tmp_path / "train"
    train.mkdir()
    for i in range(20):
        (train / f"m{i}.py").write_text(FUNCTION.replace("area", f"area_{i}"))
    tokenizer = train_bpe(train, vocab_size=400)
    size = tokenizer.get_vocab_size()
    assert size <= 400  # a small corpus runs out of merges before the budget
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    ids = {loaded.pad_token_id, loaded.mask_token_id, loaded.im_end_token_id}
    assert len(ids) == 3 and max(ids) == size - 1
    assert [loaded.backend.id_to_token(i) for i in range(size - 4, size)] == list(SPECIAL_TOKENS)
    text = "def area_3(width, height):\n    return width * height  # ü\n"
    assert loaded.decode(loaded.encode(text)) == text
    assert bytes_per_token(tokenizer, train) > 2.0
