"""Train the default model's byte-level BPE on the corpus, with CoDA's special tokens, and measure its compression.

The pipeline mirrors Qwen3's (NFC, the same regex split, byte-level BPE), so text the big model handles the same
way is handled the same way here. `<|im_end|>` ends a span and `<|endoftext|>` pads after it: two distinct
tokens, because a lone filler token that also ends answers over-concentrates probability on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from coda_training.errors import TrainingError

# Qwen2/Qwen3's pre-tokenizer split (contractions, letters, single digits, punctuation runs, newlines, spaces).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PAD_TOKEN, IM_START, IM_END, MASK_TOKEN = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END, MASK_TOKEN)


def corpus_texts(folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*.py")):
        yield path.read_text(encoding="utf-8")


def train_bpe(train_dir: Path, vocab_size: int) -> Tokenizer:
    """A byte-level BPE of `vocab_size` entries (special tokens included, at the end of the vocabulary)."""
    files = list(corpus_texts(train_dir))
    if not files:
        raise TrainingError(f"no .py files under {train_dir}")
    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator(files, trainer=trainer, length=len(files))
    # Special tokens after the learned vocabulary, as in Qwen's layout; the ids are recorded in config.json.
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def bytes_per_token(tokenizer: Tokenizer, valid_dir: Path) -> float:
    """Compression on held-out files: higher means shorter sequences for the same code."""
    texts = list(corpus_texts(valid_dir))
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    num_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    return num_bytes / max(num_tokens, 1)


def save_tokenizer(tokenizer: Tokenizer, out: Path) -> None:
    """tokenizer.json plus the HF side files that name the special tokens, loadable by coda_engine unchanged."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    special_map = {"eos_token": IM_END, "pad_token": PAD_TOKEN, "mask_token": MASK_TOKEN,
                   "additional_special_tokens": [IM_START, IM_END]}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "model_max_length": 8192,
        "padding_side": "right",
        "added_tokens_decoder": {str(i): {"content": t, "special": True, "normalized": False, "lstrip": False,
                                          "rstrip": False, "single_word": False} for t, i in ids.items()},
        **special_map,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    (out / "added_tokens.json").write_text(json.dumps(ids, indent=2) + "\n")
