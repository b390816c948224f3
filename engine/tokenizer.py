"""Tokenizer: Qwen3 byte-level BPE from tokenizer.json, or from vocab.json + merges.txt + added_tokens.json."""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

from .config import read_json_object
from .errors import CheckpointError

MASK_TOKEN = "<|mask|>"
PAD_TOKEN = "<|endoftext|>"
IM_END_TOKEN = "<|im_end|>"
# The split Qwen2/Qwen3 apply before byte-level BPE (letters, single digits, punctuation runs, newlines, spaces).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class Tokenizer:
    """Text <-> ids with the special ids the engine needs as attributes."""

    def __init__(self, backend: HFTokenizer, source: Path) -> None:
        self.backend = backend
        self.source = source
        self.mask_token_id = self._required_id(MASK_TOKEN)
        self.pad_token_id = self._required_id(PAD_TOKEN)
        self.im_end_token_id = backend.token_to_id(IM_END_TOKEN)
        # Ids that end or pad a span: the model writes them to say "no more code here".
        self.filler_token_ids = frozenset(
            i for i in (self.pad_token_id, self.im_end_token_id, self.mask_token_id) if i is not None)

    def _required_id(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise CheckpointError(self.source, f"tokenizer has no {token} token")
        return token_id

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def load_tokenizer(folder: Path) -> Tokenizer:
    """Load the tokenizer stored beside a checkpoint; raises CheckpointError naming the file at fault."""
    folder = Path(folder)
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            return Tokenizer(HFTokenizer.from_file(str(tokenizer_json)), tokenizer_json)
        except Exception as exc:  # the Rust loader raises a bare Exception on malformed files
            raise CheckpointError(tokenizer_json, f"cannot load tokenizer ({exc})") from None
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise CheckpointError(folder, "no tokenizer.json and no vocab.json + merges.txt")
    return Tokenizer(_build_byte_level_bpe(vocab, merges, _added_tokens(folder)), vocab)


def _added_tokens(folder: Path) -> dict[int, tuple[str, bool]]:
    """id -> (content, special) from added_tokens.json and tokenizer_config.json's added_tokens_decoder."""
    found: dict[int, tuple[str, bool]] = {}
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = read_json_object(config_path)
        for token_id, entry in config.get("added_tokens_decoder", {}).items():
            found[int(token_id)] = (entry["content"], bool(entry.get("special", True)))
    added_path = folder / "added_tokens.json"
    if added_path.is_file():
        for content, token_id in read_json_object(added_path).items():
            found.setdefault(int(token_id), (content, True))
    return found


def _build_byte_level_bpe(vocab: Path, merges: Path, added: dict[int, tuple[str, bool]]) -> HFTokenizer:
    """The same pipeline as transformers' Qwen2TokenizerFast: NFC, regex split, byte-level BPE."""
    try:
        bpe = models.BPE.from_file(str(vocab), str(merges), unk_token=None, fuse_unk=False, byte_fallback=False)
    except Exception as exc:
        raise CheckpointError(vocab, f"cannot build BPE from vocab.json + merges.txt ({exc})") from None
    backend = HFTokenizer(bpe)
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    for token_id in sorted(added):
        content, special = added[token_id]
        if backend.token_to_id(content) is not None:
            continue
        backend.add_tokens([AddedToken(content, special=special, normalized=not special)])
        assigned = backend.token_to_id(content)
        if assigned != token_id:
            raise CheckpointError(vocab.parent, f"added token {content!r} should have id {token_id}, got {assigned} "
                                                "(added_tokens ids must follow the vocabulary without gaps)")
    return backend
