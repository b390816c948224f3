"""batch_at(seed, step): the data order is a pure function, so resuming at step k needs nothing but k.

Row k of the run (k = step * batch_size + j) is row perm_epoch[k mod N] of the data set, where epoch = k div N
and perm_epoch is a seeded permutation of the N rows. Packed data is a stream cut into seq_len blocks; segment
ids count the eos tokens before each position (the eos closes its own document), as CoDA's seg_attn does.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coda_training.data.tokenize import FORMAT, TOKEN_DTYPE, sha256_file
from coda_training.errors import TrainingError


@dataclass(frozen=True)
class TokenSet:
    """An opened `coda-train tokenize` folder, checked against its manifest."""

    path: Path
    manifest: dict
    tokens: list[np.memmap]  # packed: the shards in order; examples: [input_ids [N, L]]
    condition: np.memmap | None  # examples only: [N, L] uint8
    seq_len: int

    @property
    def is_packed(self) -> bool:
        return self.manifest["kind"] == "packed"

    @functools.cached_property
    def shard_offsets(self) -> np.ndarray:
        return np.cumsum([0] + [len(t) for t in self.tokens])

    @property
    def num_rows(self) -> int:
        if self.is_packed:
            return int(self.shard_offsets[-1]) // self.seq_len
        return len(self.tokens[0])

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids [n, L] int32, condition [n, L] bool) for the given row indices."""
        if not self.is_packed:
            return np.asarray(self.tokens[0][indices], np.int32), np.asarray(self.condition[indices], bool)
        out = np.stack([self._stream(int(i) * self.seq_len, self.seq_len) for i in indices]).astype(np.int32)
        return out, np.zeros(out.shape, bool)

    def _stream(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) of the concatenated shards (a block may straddle two shards)."""
        pieces, offsets = [], self.shard_offsets
        while length > 0:
            shard = int(np.searchsorted(offsets, start, side="right")) - 1
            local = start - int(offsets[shard])
            take = min(length, len(self.tokens[shard]) - local)
            pieces.append(self.tokens[shard][local:local + take])
            start, length = start + take, length - take
        return np.concatenate(pieces)


def _fail(path: Path, reason: str) -> TrainingError:
    return TrainingError(f"data {path}: {reason}")


def open_tokens(path: str | Path, seq_len: int, *, vocab_size: int, mask_id: int, pad_id: int,
                verify_hashes: bool) -> TokenSet:
    """Open and validate before any compute: manifest present and well-formed, shard sizes (and optionally
    hashes) match, ids fit the model, at least one full row."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise _fail(path, "no manifest.json (write one with `coda-train tokenize`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        kind, shards, tok = manifest["kind"], manifest["shards"], manifest["tokenizer"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise _fail(path, f"manifest.json is malformed ({type(exc).__name__}: {exc})") from None
    if manifest.get("format") != FORMAT or kind not in ("packed", "examples"):
        raise _fail(path, f"manifest format {manifest.get('format')!r} / kind {kind!r} is not {FORMAT}")
    if tok["vocab_size"] > vocab_size or tok["mask_id"] != mask_id or tok["pad_id"] != pad_id:
        raise _fail(path, f"tokenized with vocab {tok['vocab_size']}, mask {tok['mask_id']}, pad {tok['pad_id']}; the "
                          f"model has vocab {vocab_size}, mask {mask_id}, pad {pad_id}")
    arrays = []
    for shard in shards:
        file = path / shard["file"]
        itemsize = 1 if shard["file"] == "condition.bin" else np.dtype(TOKEN_DTYPE).itemsize
        if not file.is_file() or file.stat().st_size != shard["num_tokens"] * itemsize:
            raise _fail(path, f"shard {shard['file']} is missing or not {shard['num_tokens']} entries long")
        if shard["num_tokens"] == 0:
            raise _fail(path, f"shard {shard['file']} is empty")
        if verify_hashes and sha256_file(file) != shard["sha256"]:
            raise _fail(path, f"shard {shard['file']} does not match its sha256 in the manifest")
        arrays.append(np.memmap(file, dtype=np.uint8 if itemsize == 1 else TOKEN_DTYPE, mode="r"))
    if not arrays:
        raise _fail(path, "the manifest lists no shards")
    if kind == "packed":
        tokens = TokenSet(path, manifest, arrays, None, seq_len)
    else:
        if manifest["seq_len"] != seq_len:
            raise _fail(path, f"examples are {manifest['seq_len']} tokens long but data.seq_len is {seq_len}")
        shape = (manifest["num_examples"], seq_len)
        tokens = TokenSet(path, manifest, [arrays[0].reshape(shape)], arrays[1].reshape(shape), seq_len)
    if tokens.num_rows < 1:
        raise _fail(path, f"{tokens.shard_offsets[-1]} tokens hold no full sequence of {seq_len}")
    return tokens


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, num_rows: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_rows)


def row_indices(seed: int, step: int, batch_size: int, num_rows: int) -> np.ndarray:
    """Data-set rows of global batch `step`: epochs are seeded permutations laid end to end."""
    k = step * batch_size + np.arange(batch_size)
    epochs, positions = np.divmod(k, num_rows)
    return np.array([_permutation(seed, int(e), num_rows)[p] for e, p in zip(epochs, positions)])


def segment_ids(input_ids: np.ndarray, eos_id: int) -> np.ndarray:
    """Number of eos tokens strictly before each position: the eos belongs to the document it closes."""
    is_eos = (input_ids == eos_id).astype(np.int32)
    return np.cumsum(is_eos, axis=-1) - is_eos


def batch_at(tokens: TokenSet, seed: int, step: int, batch_size: int, grad_accum: int, eos_id: int) -> dict:
    """The step's batch as numpy [grad_accum, batch_size // grad_accum, L]: input_ids, segment_ids, condition."""
    ids, condition = tokens.rows(row_indices(seed, step, batch_size, tokens.num_rows))
    # Example rows (SFT, infill) are single documents: an eos inside a response must not split it.
    segments = segment_ids(ids, eos_id) if tokens.is_packed else np.zeros_like(ids)
    shape = (grad_accum, batch_size // grad_accum, tokens.seq_len)
    return {"input_ids": ids.reshape(shape), "segment_ids": segments.reshape(shape).astype(np.int32),
            "condition": condition.reshape(shape)}
