"""A strict reader of the safetensors format, in NumPy (no third-party parser is trusted with a file).

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
then the data, tensors packed one after another with no gap and no overlap.
Everything the header says is checked against the file before a byte of data
is read, and every array is allocated only once its bytes are known to be in
the file, so a hostile file costs at most its own size in memory. Any defect
raises ``SafetensorsFileError`` naming the file, the tensor and what was wrong.
BF16 becomes ``bfloat16`` (ml_dtypes) when that package is installed, float32
(exactly: bfloat16 is the top half of a float32) otherwise or when asked.
"""
from __future__ import annotations

import json
import os
import struct
import sys
from collections import OrderedDict
from typing import Any, BinaryIO, NamedTuple

import numpy as np

__all__ = ["SafetensorsFileError", "SafetensorsEntry", "read_safetensors", "parse_header", "check_header_length",
           "MAX_HEADER", "bfloat16_dtype"]

# a real safetensors header is JSON of a few KB to a few MB; a larger "length" means another format
MAX_HEADER = 100_000_000
_MAX_NDIM = 64 if int(np.__version__.split(".")[0]) >= 2 else 32

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?", "BF16": "<u2"}


class SafetensorsFileError(ValueError):
    """A file that is not a readable safetensors file (missing, truncated, corrupted)."""


class SafetensorsEntry(NamedTuple):
    name: str
    dtype: str      # the header's dtype string ("F32", "BF16", ...)
    shape: tuple
    begin: int      # byte offsets into the data section
    end: int


def bfloat16_dtype() -> np.dtype | None:
    """NumPy's bfloat16 (from ml_dtypes), or None when ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def check_header_length(head: bytes, name: str) -> int:
    """The header length in the first 8 bytes; a torch.save file or another format is named as such."""
    (n,) = struct.unpack("<Q", head)
    if n <= MAX_HEADER:
        return n
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise SafetensorsFileError(
            f"{name}: this is a torch.save file (a pickle), which rg.load does not read: retrograd never "
            "unpickles. Import PyTorch weights with retrograd.io.import_torch_state_dict(path) (PyTorch "
            "installed), or re-save them with safetensors.torch.save_file")
    raise SafetensorsFileError(f"{name}: not a safetensors file (its first 8 bytes give a header of {n} bytes)")


def _no_duplicates(pairs: list) -> dict:
    d = {}
    for k, v in pairs:
        if k in d:
            raise SafetensorsFileError(f"the key {k!r} appears twice in the header")
        d[k] = v
    return d


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _entry(name: str, info: Any, where: str) -> SafetensorsEntry:
    bad = f"{where}: tensor {name!r}:"
    if not isinstance(info, dict):
        raise SafetensorsFileError(f"{bad} its header entry is a {type(info).__name__}, expected an object with "
                                   "dtype, shape and data_offsets")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise SafetensorsFileError(f"{bad} its header entry lacks {', '.join(missing)}")
    dt, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dt, str) or dt not in _DTYPES:
        raise SafetensorsFileError(f"{bad} dtype {dt!r} is not one retrograd reads "
                                   f"(known: {', '.join(_DTYPES)})")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise SafetensorsFileError(f"{bad} shape {shape!r} is not a list of integers")
    if any(d < 0 for d in shape):
        raise SafetensorsFileError(f"{bad} shape {shape} has a negative dimension")
    if len(shape) > _MAX_NDIM:
        raise SafetensorsFileError(f"{bad} shape has {len(shape)} dimensions, NumPy holds at most {_MAX_NDIM}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise SafetensorsFileError(f"{bad} data_offsets {offsets!r} is not a list of two integers")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise SafetensorsFileError(f"{bad} data_offsets {offsets} do not give a byte range (0 <= begin <= end)")
    count = 1
    for d in shape:
        count *= d  # Python ints: no wrap-around
    need = count * np.dtype(_DTYPES[dt]).itemsize
    if end - begin != need:
        raise SafetensorsFileError(f"{bad} shape {tuple(shape)} of {dt} needs {need} bytes, its data_offsets "
                                   f"{offsets} give {end - begin}")
    return SafetensorsEntry(name, dt, tuple(shape), begin, end)


def parse_header(header_bytes: bytes, data_len: int | None, where: str
                 ) -> tuple[list[SafetensorsEntry], dict[str, str]]:
    """Entries (sorted by offset) and metadata of a header; ``data_len`` is the size of the data section
    (None: not known yet, as when reading a stream; the caller checks the end of the last tensor)."""
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except SafetensorsFileError as e:
        raise SafetensorsFileError(f"{where}: corrupted safetensors header: {e}") from None
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SafetensorsFileError(f"{where}: corrupted safetensors header: {type(e).__name__}: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsFileError(f"{where}: corrupted safetensors header: a JSON {type(header).__name__}, "
                                   "expected an object")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise SafetensorsFileError(f"{where}: corrupted safetensors header: __metadata__ must map strings to "
                                   f"strings, got {str(meta)[:200]}")
    entries = sorted((_entry(k, v, where) for k, v in header.items()), key=lambda e: (e.begin, e.end))
    pos, prev = 0, None
    for e in entries:
        if e.begin > pos:
            raise SafetensorsFileError(f"{where}: tensor {e.name!r}: data_offsets [{e.begin}, {e.end}] leave a gap "
                                       f"of {e.begin - pos} bytes after " +
                                       (f"tensor {prev!r}" if prev is not None else "the header"))
        if e.begin < pos:
            raise SafetensorsFileError(f"{where}: tensor {e.name!r}: data_offsets [{e.begin}, {e.end}] overlap "
                                       f"tensor {prev!r}, which ends at byte {pos}")
        pos, prev = e.end, e.name
    if data_len is not None and pos != data_len:
        what = "truncated" if pos > data_len else "corrupted"
        raise SafetensorsFileError(f"{where}: {what}: the header's tensors end at data byte {pos}, the file has "
                                   f"{data_len} data bytes")
    return entries, meta


def _array(f: BinaryIO, e: SafetensorsEntry, data_start: int, where: str, bf16_as_float32: bool) -> np.ndarray:
    bf16 = bfloat16_dtype() if e.dtype == "BF16" and not bf16_as_float32 else None
    dtype = bf16 if bf16 is not None else np.dtype(_DTYPES[e.dtype])
    arr = np.empty(e.shape, dtype=dtype)
    if arr.nbytes:
        f.seek(data_start + e.begin)
        got = f.readinto(memoryview(arr.reshape(-1).view(np.uint8)))
        if got != arr.nbytes:
            raise SafetensorsFileError(f"{where}: truncated: tensor {e.name!r} needs {arr.nbytes} bytes, the file "
                                       f"gave {got}")
    if sys.byteorder == "big" and dtype.itemsize > 1:  # pragma: no cover - the data is little-endian
        if bf16 is not None:
            arr.byteswap(inplace=True)
        else:
            arr = arr.astype(arr.dtype.newbyteorder("="))
    if e.dtype == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
        raise SafetensorsFileError(f"{where}: tensor {e.name!r} of dtype BOOL holds bytes other than 0 and 1")
    if e.dtype == "BF16" and bf16 is None:
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def read_safetensors(f: BinaryIO, size: int, where: str, *, bf16_as_float32: bool = False
                     ) -> tuple["OrderedDict[str, np.ndarray]", dict[str, str]]:
    """Every tensor of the safetensors file ``f`` (seekable, ``size`` bytes), in offset order, and the metadata."""
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise SafetensorsFileError(f"{where}: truncated safetensors file ({len(head)} bytes)")
    n = check_header_length(head, where)
    if 8 + n > size:
        raise SafetensorsFileError(f"{where}: truncated safetensors file (header of {n} bytes, file of {size})")
    header_bytes = f.read(n)
    if len(header_bytes) != n:
        raise SafetensorsFileError(f"{where}: truncated safetensors header ({len(header_bytes)} of {n} bytes)")
    entries, meta = parse_header(header_bytes, size - 8 - n, where)
    out = OrderedDict((e.name, _array(f, e, 8 + n, where, bf16_as_float32)) for e in entries)
    return out, meta


def read_safetensors_path(path: str | os.PathLike, *, bf16_as_float32: bool = False
                          ) -> tuple["OrderedDict[str, np.ndarray]", dict[str, str]]:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return read_safetensors(f, os.fstat(f.fileno()).st_size, path, bf16_as_float32=bf16_as_float32)
    except IsADirectoryError:
        raise SafetensorsFileError(f"{path}: is a folder, not a safetensors file") from None
