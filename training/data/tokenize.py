"""`coda-train tokenize`: text / JSONL / folders of source files -> token shards (uint32 memmaps) + manifest.json.

Three kinds of output:
- packed: documents tokenized, each closed by the eos token, concatenated and cut into shards; training cuts
  the stream into seq_len blocks (segment ids come from the eos tokens, so documents never attend to each other);
- sft: one fixed-length row per conversation plus a per-token condition mask (data/sft.py);
- infill: random-span rows from source files (data/infill.py).
The folder is written under a temporary name and renamed at the end, so a failed run leaves nothing behind
and an existing folder is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from coda_training.data.infill import infill_example
from coda_training.data.sft import messages_of, sft_example
from coda_training.data.tokenizer import TokenizerInfo
from coda_training.errors import TrainingError

FORMAT = "coda-tokens/1"
TOKEN_DTYPE = np.uint32  # the Qwen3 vocab (151936) does not fit uint16
# Files picked up when a folder is given; everything else (binaries, lock files) is skipped.
SOURCE_SUFFIXES = frozenset({".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".h",
                             ".cc", ".cpp", ".hpp", ".cs", ".rb", ".php", ".swift", ".scala", ".sh", ".lua", ".sql",
                             ".md", ".txt", ".rst", ".toml", ".yaml", ".yml", ".json", ".jsonl", ".html", ".css"})
Kind = Literal["packed", "sft", "infill"]


@dataclass(frozen=True)
class TokenizeOptions:
    kind: Kind = "packed"
    seq_len: int = 1024  # sft/infill row length (packed data is cut at training time)
    shard_tokens: int = 1 << 26  # packed: tokens per shard file (256 MiB of uint32)
    seed: int = 0  # infill: span positions
    examples_per_file: int = 4  # infill: spans drawn per source file
    max_middle: int = 64  # infill: longest middle, tokens
    max_tail: int = 16  # infill: longest pad tail after the middle, tokens
    max_spans: int = 1  # infill: most holes per row (each with its own pad tail)


def collect_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders expanded (sorted, recursive, source suffixes only); all checked before work."""
    if not paths:
        raise TrainingError("no input files given")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)
            if not found:
                raise TrainingError(f"folder {path} holds no source or text files")
            files.extend(found)
        else:
            raise TrainingError(f"input {path} does not exist")
    return files


def _jsonl_records(path: Path) -> Iterator[tuple[dict, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise TrainingError(f"{where}: each line must be a JSON object")
            yield record, where


def read_documents(files: list[Path]) -> Iterator[str]:
    """JSONL lines give their "text" field; any other file is one document."""
    for path in files:
        if path.suffix == ".jsonl":
            for record, where in _jsonl_records(path):
                if not isinstance(record.get("text"), str):
                    raise TrainingError(f"{where}: expected a string field 'text'")
                yield record["text"]
        else:
            try:
                yield path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise TrainingError(f"{path} is not UTF-8 text") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_array(folder: Path, name: str, array: np.ndarray) -> dict:
    path = folder / name
    array.tofile(path)
    return {"file": name, "num_tokens": int(array.size), "sha256": sha256_file(path)}


def _write_packed(files: list[Path], info: TokenizerInfo, folder: Path, opts: TokenizeOptions) -> dict:
    shards, buffer, num_docs, buffered = [], [], 0, 0

    def flush() -> None:
        nonlocal buffer, buffered
        if buffered:
            tokens = np.concatenate(buffer).astype(TOKEN_DTYPE)
            shards.append(_write_array(folder, f"tokens_{len(shards):05d}.bin", tokens))
        buffer, buffered = [], 0

    for text in read_documents(files):
        ids = info.encode(text)
        if not ids:
            continue
        buffer.append(np.asarray(ids + [info.eos_id], TOKEN_DTYPE))  # eos closes the document
        buffered += len(ids) + 1
        num_docs += 1
        if buffered >= opts.shard_tokens:
            flush()
    flush()
    return {"kind": "packed", "num_documents": num_docs, "shards": shards}


def _example_rows(files: list[Path], info: TokenizerInfo, opts: TokenizeOptions) -> tuple[list, int]:
    rows, dropped = [], 0
    if opts.kind == "sft":
        for path in files:
            for record, where in _jsonl_records(path):
                example = sft_example(info, messages_of(record, where), opts.seq_len)
                dropped += example is None
                if example is not None:
                    rows.append(example)
    else:
        rng = np.random.default_rng(opts.seed)
        line_end_ids = info.line_end_ids()
        for text in read_documents(files):
            tokens = info.encode(text)
            for _ in range(opts.examples_per_file):
                example = infill_example(tokens, opts.seq_len, rng, max_middle=opts.max_middle,
                                         max_tail=opts.max_tail, pad_id=info.pad_id, line_end_ids=line_end_ids,
                                         max_spans=opts.max_spans)
                dropped += example is None
                if example is not None:
                    rows.append(example)
    return rows, dropped


def _write_examples(files: list[Path], info: TokenizerInfo, folder: Path, opts: TokenizeOptions) -> dict:
    rows, dropped = _example_rows(files, info, opts)
    if not rows:
        raise TrainingError(f"no {opts.kind} example fits seq_len {opts.seq_len} ({dropped} dropped)")
    ids = np.stack([r[0] for r in rows]).astype(TOKEN_DTYPE)
    condition = np.stack([r[1] for r in rows]).astype(np.uint8)
    return {"kind": "examples", "source": opts.kind, "seq_len": opts.seq_len, "num_examples": len(rows),
            "num_dropped": dropped,
            "shards": [_write_array(folder, "input_ids.bin", ids), _write_array(folder, "condition.bin", condition)]}


def tokenize(inputs: list[str | Path], info: TokenizerInfo, out_dir: str | Path, opts: TokenizeOptions) -> dict:
    """Write the folder and return its manifest. Refuses an existing non-empty out_dir before reading input."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingError(f"output {out} already exists and is not empty; choose another --out")
    if opts.kind in ("sft", "infill") and opts.seq_len < 4:
        raise TrainingError(f"--seq-len must be at least 4 for {opts.kind} examples, got {opts.seq_len}")
    files = collect_inputs(inputs)
    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        body = _write_packed(files, info, staging, opts) if opts.kind == "packed" else \
            _write_examples(files, info, staging, opts)
        manifest = {"format": FORMAT, **body, "dtype": "uint32",
                    "num_tokens": sum(s["num_tokens"] for s in body["shards"] if s["file"] != "condition.bin"),
                    "tokenizer": {"mask_id": info.mask_id, "pad_id": info.pad_id, "eos_id": info.eos_id,
                                  "vocab_size": info.tokenizer.get_vocab_size()},
                    "inputs": [str(f) for f in files]}
        if manifest["num_tokens"] == 0:
            raise TrainingError("the inputs hold no tokens")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if out.exists():
            out.rmdir()  # checked empty above
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
