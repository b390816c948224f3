"""Load the Qwen3/CoDA tokenizer from tokenizer.json or vocab.json + merges.txt + added_tokens.json, and render
the chat template; the special ids the pipeline needs (mask, pad, eos) are checked here, once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from coda_training.errors import TrainingError

MASK_TOKEN = "<|mask|>"
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
# Files copied verbatim into an exported checkpoint.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
                   "tokenizer_config.json")
# Qwen2/Qwen3 pre-tokenizer split (contractions, letters, single digits, punctuation runs, newlines, spaces).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class TokenizerInfo:
    tokenizer: Tokenizer
    directory: Path
    mask_id: int
    pad_id: int
    eos_id: int
    chat_template: str | None  # jinja source from tokenizer_config.json

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def line_end_ids(self) -> frozenset[int]:
        """Ids whose text holds a line break (byte-level BPE keeps newlines out of word tokens)."""
        vocab = self.tokenizer.get_vocab()
        return frozenset(i for i in vocab.values() if "\n" in self.tokenizer.decode([i]))


def _from_vocab_merges(directory: Path) -> Tokenizer:
    tok = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    added_path = directory / "added_tokens.json"
    added = json.loads(added_path.read_text()) if added_path.is_file() else {}
    for content, token_id in sorted(added.items(), key=lambda kv: kv[1]):
        tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])
        if tok.token_to_id(content) != token_id:
            raise TrainingError(f"{added_path}: {content!r} should be id {token_id}, but vocab.json has "
                                f"{tok.get_vocab_size()} entries; the ids are not contiguous")
    return tok


def load_tokenizer(directory: str | Path) -> TokenizerInfo:
    """Refuses a folder without tokenizer files or without a mask token, with a one-line reason."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TrainingError(f"tokenizer folder {directory} does not exist (set tokenizer_dir)")
    try:
        if (directory / "tokenizer.json").is_file():
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            tok = _from_vocab_merges(directory)
        else:
            raise TrainingError(f"{directory} has neither tokenizer.json nor vocab.json + merges.txt")
    except (OSError, ValueError, Exception) as exc:  # tokenizers raises plain Exception on malformed files
        if isinstance(exc, TrainingError):
            raise
        raise TrainingError(f"tokenizer in {directory} does not load: {str(exc).splitlines()[0]}") from None
    ids = {name: tok.token_to_id(name) for name in (MASK_TOKEN, PAD_TOKEN, EOS_TOKEN)}
    missing = [name for name, i in ids.items() if i is None]
    if missing:
        raise TrainingError(f"tokenizer in {directory} has no {' / '.join(missing)} token; a diffusion model "
                            f"needs {MASK_TOKEN} (CoDA adds it to Qwen3's vocab as id 151669)")
    config_path = directory / "tokenizer_config.json"
    template = json.loads(config_path.read_text()).get("chat_template") if config_path.is_file() else None
    return TokenizerInfo(tok, directory, ids[MASK_TOKEN], ids[PAD_TOKEN], ids[EOS_TOKEN], template)


def render_chat(info: TokenizerInfo, messages: list[dict], add_generation_prompt: bool) -> str:
    """The tokenizer's own jinja chat template, as transformers renders it (sandboxed, thinking disabled as in
    CoDA's SFT, so every target starts with an empty think block)."""
    if info.chat_template is None:
        raise TrainingError(f"tokenizer in {info.directory} has no chat_template in tokenizer_config.json")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_template_error
    return env.from_string(info.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                      enable_thinking=False)


def _raise_template_error(message: str) -> None:
    raise TrainingError(f"chat template refused the messages: {message}")
