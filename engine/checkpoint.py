"""Safetensors checkpoints: find the files (single or sharded), validate headers, memory-map the tensors.

The safetensors layout is an 8-byte little-endian header length, a JSON header mapping each name to
{dtype, shape, data_offsets}, then the raw bytes. Parsing it here (rather than through safe_open) lets every
tensor be a zero-copy view of a private file mapping, and lets each problem be reported with its file.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError
from .quantize import Int8Linear, quantize_rows, replace_module

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Converted tensors are copied in chunks of this size, so loading bf16 from an fp32 file never holds a whole
# fp32 embedding matrix (0.6 GB for CoDA-v0) in memory next to its converted copy.
CONVERT_CHUNK_BYTES = 8 * 1024 * 1024
# A header larger than this is not a safetensors header: it guards against reading garbage lengths.
MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: its file, dtype, shape and byte range after the header."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def find_weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint: model.safetensors, or the shards named by the index."""
    single, index = folder / SINGLE_FILE, folder / INDEX_FILE
    if single.is_file():
        return [single]
    if not index.is_file():
        raise CheckpointError(folder, f"no {SINGLE_FILE} and no {INDEX_FILE}")
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(index, f"not a valid safetensors index ({type(exc).__name__}: {exc})") from None
    files = [folder / name for name in names]
    for path in files:
        if not path.is_file():
            raise CheckpointError(path, f"shard named in {INDEX_FILE} is missing")
    return files


def read_header(path: Path) -> dict[str, TensorEntry]:
    """Parse and validate one safetensors header against the file's real size."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw_length = f.read(8)
        if len(raw_length) < 8:
            raise CheckpointError(path, "truncated: shorter than a safetensors header")
        (header_length,) = struct.unpack("<Q", raw_length)
        if header_length > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(path, f"corrupt or truncated: header length {header_length} exceeds the file")
        try:
            header = json.loads(f.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(path, f"corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "corrupt safetensors header (not a JSON object)")
    data_start = 8 + header_length
    entries = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        entries[name] = _entry(path, name, meta, data_start, size)
    return entries


def _entry(path: Path, name: str, meta: object, data_start: int, file_size: int) -> TensorEntry:
    try:
        dtype = DTYPES[meta["dtype"]]
        shape = tuple(int(d) for d in meta["shape"])
        begin, end = (int(o) for o in meta["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"corrupt header entry for {name} ({type(exc).__name__}: {exc})") from None
    expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if end - begin != expected or begin < 0:
        raise CheckpointError(path, f"corrupt entry for {name}: {end - begin} bytes for shape {list(shape)}")
    if data_start + end > file_size:
        raise CheckpointError(path, f"truncated: tensor {name} ends at byte {data_start + end}, file has {file_size}")
    return TensorEntry(path, dtype, shape, data_start + begin, data_start + end)


def index_checkpoint(folder: Path) -> dict[str, TensorEntry]:
    """name -> TensorEntry over every weight file; a name in two files is an error."""
    entries: dict[str, TensorEntry] = {}
    for path in find_weight_files(folder):
        for name, entry in read_header(path).items():
            if name in entries:
                raise CheckpointError(path, f"tensor {name} also appears in {entries[name].file.name}")
            entries[name] = entry
    return entries


class MappedFiles:
    """Private (copy-on-write) mappings of weight files; tensors are views, so nothing is read until touched."""

    def __init__(self) -> None:
        self._maps: dict[Path, mmap.mmap] = {}

    def tensor(self, entry: TensorEntry) -> torch.Tensor:
        mapping = self._maps.get(entry.file)
        if mapping is None:
            with entry.file.open("rb") as f:
                mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            self._maps[entry.file] = mapping
        count = (entry.end - entry.start) // torch.empty((), dtype=entry.dtype).element_size()
        if count == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        flat = torch.frombuffer(mapping, dtype=entry.dtype, count=count, offset=entry.start)
        return flat.view(entry.shape)

    def chunks(self, entry: TensorEntry, count: int, unit_bytes: int,
               working_bytes: int) -> Iterator[tuple[int, int]]:
        """[first, last) ranges over `count` units of `unit_bytes` in the file, CONVERT_CHUNK_BYTES of
        `working_bytes` each; after each range is used, its mapped pages are dropped from this process."""
        step = max(1, CONVERT_CHUNK_BYTES // working_bytes)
        for first in range(0, count, step):
            last = min(first + step, count)
            yield first, last
            start, end = entry.start + first * unit_bytes, entry.start + last * unit_bytes
            start -= start % mmap.PAGESIZE
            if end > start:
                self._maps[entry.file].madvise(mmap.MADV_DONTNEED, start, end - start)

    def converted(self, entry: TensorEntry, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A copy in `dtype` on `device`, made chunk by chunk so at most one chunk of the source is resident."""
        source = self.tensor(entry).reshape(-1)
        out = torch.empty(source.shape, dtype=dtype, device=device)
        for first, last in self.chunks(entry, source.numel(), source.element_size(), source.element_size()):
            out[first:last].copy_(source[first:last])
        return out.view(entry.shape)

    def column_major(self, entry: TensorEntry, dtype: torch.dtype) -> torch.Tensor:
        """A copy of a 2-D tensor in `dtype` on the CPU, stored transposed (column-major), a chunk of rows at a
        time."""
        source = self.tensor(entry)
        out = torch.empty((source.shape[1], source.shape[0]), dtype=dtype)
        row_bytes = source.shape[1] * source.element_size()
        for first, last in self.chunks(entry, source.shape[0], row_bytes, row_bytes):
            out[:, first:last].copy_(source[first:last].t())
        return out.t()

    def quantized(self, entry: TensorEntry) -> tuple[torch.Tensor, torch.Tensor]:
        """A 2-D weight quantized to int8 rows with fp32 scales (quantize.quantize_rows) on the CPU, a chunk of
        rows at a time, so what stays is the int8 copy."""
        source = self.tensor(entry)
        weight = torch.empty(source.shape, dtype=torch.int8)
        scale = torch.empty(source.shape[0], dtype=torch.float32)
        row_bytes = source.shape[1] * source.element_size()
        # The chunk is made fp32 to quantize.
        for first, last in self.chunks(entry, source.shape[0], row_bytes, source.shape[1] * 4):
            weight[first:last], scale[first:last] = quantize_rows(source[first:last])
        return weight, scale


def load_weights(model: torch.nn.Module, folder: Path, *, dtype: torch.dtype, device: torch.device,
                 tie_head_when_absent: bool, column_major: tuple[str, ...] = (), int8: tuple[str, ...] = ()) -> None:
    """Assign every parameter of a meta-device `model` from the checkpoint, checking names and shapes. On the CPU
    a tensor already in `dtype` stays a zero-copy view of the file mapping; one converted, or 2-D and named in
    `column_major` (stored transposed), is copied a chunk at a time, and a linear layer's weight named in `int8`
    is quantized so and its nn.Linear replaced by a quantize.Int8Linear: peak memory stays near the result's."""
    entries = index_checkpoint(folder)
    expected = dict(model.named_parameters())
    tie_head = "lm_head.weight" in expected and "lm_head.weight" not in entries and tie_head_when_absent
    for name, param in expected.items():
        entry = entries.get(name)
        if entry is None and not (tie_head and name == "lm_head.weight"):
            raise CheckpointError(folder, f"missing tensor {name}")
        if entry is not None and param.is_floating_point() and not entry.dtype.is_floating_point:
            raise CheckpointError(entry.file, f"tensor {name} is {str(entry.dtype)[6:]}: a quantized checkpoint, "
                                              f"which coda-lsp does not read (use the bf16 or fp32 one; --dtype int8 "
                                              f"quantizes at load)")
        if entry is not None and tuple(entry.shape) != tuple(param.shape):
            raise CheckpointError(entry.file, f"tensor {name} has shape {list(entry.shape)}, the config implies "
                                              f"{list(param.shape)}")
    files = MappedFiles()
    order = sorted((n for n in expected if n in entries), key=lambda n: (entries[n].file, entries[n].start))
    for name in order:
        entry = entries[name]
        if name in int8:
            replace_module(model, name.removesuffix(".weight"), Int8Linear(*files.quantized(entry)))
            continue
        if name in column_major and device.type == "cpu" and len(entry.shape) == 2:
            value = files.column_major(entry, dtype)
        elif entry.dtype == dtype and device.type == "cpu":
            value = files.tensor(entry)
        else:
            value = files.converted(entry, dtype, device)
        _assign(model, name, value)
    if tie_head:
        # Qwen3-style tied head: only when the file has none and the config asks for it (never for CoDA).
        model.lm_head.weight = model.get_parameter("model.embed_tokens.weight")


def _assign(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
