"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

Layout: two zero bytes, a dtype byte, the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order, big-endian.
Everything the header promises is checked against the file.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IDXError(ValueError):
    """A file that is not valid IDX, or not the IDX that was expected."""


def _read_bytes(path: str) -> bytes:
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IDXError(f"read_idx: {path}: cannot decompress: {type(e).__name__}: {e} "
                       "(the file is truncated or corrupt)") from e


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Parse an IDX file into an array (native byte order).

    ``magic`` (e.g. ``0x00000803`` for uint8 3-D images, ``0x00000801`` for
    uint8 labels) makes any other header an error.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXError(f"read_idx: {path}: file has {len(raw)} bytes, too short for the 4-byte IDX magic number")
    got = int.from_bytes(raw[:4], "big")
    if magic is not None and got != magic:
        raise IDXError(f"read_idx: {path}: bad magic number 0x{got:08X}, expected 0x{magic:08X}")
    if raw[0] != 0 or raw[1] != 0:
        raise IDXError(f"read_idx: {path}: bad magic number 0x{got:08X}: the first two bytes must be zero")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise IDXError(f"read_idx: {path}: unknown dtype byte 0x{code:02X} in magic number 0x{got:08X} "
                       f"(known: {', '.join(f'0x{c:02X}' for c in IDX_DTYPES)})")
    if ndim == 0:
        raise IDXError(f"read_idx: {path}: magic number 0x{got:08X} declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"read_idx: {path}: truncated header: {ndim} dimensions need {header} bytes, "
                       f"file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have != expected:
        what = "truncated" if have < expected else "size mismatch"
        raise IDXError(f"read_idx: {path}: {what}: header says shape {shape} of {dtype.name} = "
                       f"{expected} data bytes, file has {have}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.itemsize > 1 else arr.copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzipped when ``path`` ends in .gz)."""
    a = np.asarray(array)
    codes = {v.newbyteorder("=").str if v.itemsize > 1 else v.str: k for k, v in IDX_DTYPES.items()}
    key = a.dtype.newbyteorder("=").str if a.dtype.itemsize > 1 else a.dtype.str
    if key not in codes or a.ndim == 0 or a.ndim > 255:
        raise IDXError(f"write_idx: cannot store dtype {a.dtype} with {a.ndim} dimensions in IDX")
    code = codes[key]
    data = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + \
        a.astype(IDX_DTYPES[code], copy=False).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)
