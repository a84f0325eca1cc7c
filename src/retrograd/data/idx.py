"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

Layout: two zero bytes, a dtype byte, the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order, big-endian.
Everything the header promises is checked against the file, and the header
is checked before the data is read (or a gzipped file inflated).
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


MAX_IDX_BYTES = 1 << 34  # 16 GiB of data: far beyond any IDX data set; a larger header is corrupt
_MAX_NDIM = 64 if int(np.__version__.split(".")[0]) >= 2 else 32


def _read(f, n: int, path: str) -> bytearray:
    """Up to ``n`` bytes, read in chunks (a file that only claims to be long costs what it holds)."""
    buf = bytearray()
    try:
        while len(buf) < n:
            chunk = f.read(min(n - len(buf), 1 << 20))
            if not chunk:
                break
            buf += chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise IDXError(f"read_idx: {path}: cannot decompress: {type(e).__name__}: {e} "
                       "(the file is truncated or corrupt)") from e
    except OSError as e:
        raise IDXError(f"read_idx: {path}: cannot read: {e}") from e
    return buf


def read_idx(path: str | os.PathLike, *, magic: int | None = None, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse an IDX file into an array (native byte order).

    ``magic`` (e.g. ``0x00000803`` for uint8 3-D images, ``0x00000801`` for
    uint8 labels) makes any other header an error. The header is checked
    before any data is read or inflated; a gzipped file is inflated as a
    stream to exactly the size its header declares (at most ``max_bytes``),
    so a file that is not IDX, or whose dimensions promise more than the file
    holds, fails fast with ``IDXError`` instead of exhausting memory.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return _parse(f, path, magic, max_bytes, None if opener is gzip.open else os.fstat(f.fileno()).st_size)


def _parse(f, path: str, magic: int | None, max_bytes: int, file_size: int | None) -> np.ndarray:
    raw = _read(f, 4, path)
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
    if ndim > _MAX_NDIM:
        raise IDXError(f"read_idx: {path}: magic number 0x{got:08X} declares {ndim} dimensions; NumPy holds at "
                       f"most {_MAX_NDIM}")
    header = 4 + 4 * ndim
    dims = _read(f, 4 * ndim, path)
    if len(dims) < 4 * ndim:
        raise IDXError(f"read_idx: {path}: truncated header: {ndim} dimensions need {header} bytes, "
                       f"file has {4 + len(dims)}")
    shape = tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
    dtype = IDX_DTYPES[code]
    expected = dtype.itemsize
    for d in shape:
        expected *= d  # Python ints: no wrap-around
    if expected > max_bytes:
        raise IDXError(f"read_idx: {path}: header says shape {shape} of {dtype.name} = {expected} data bytes, "
                       f"more than max_bytes={max_bytes} (a corrupt header?)")
    if file_size is not None and file_size - header != expected:
        have = file_size - header
        what = "truncated" if have < expected else "size mismatch"
        raise IDXError(f"read_idx: {path}: {what}: header says shape {shape} of {dtype.name} = "
                       f"{expected} data bytes, file has {have}")
    data = _read(f, expected + 1, path)  # one byte more shows a file longer than its header says
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "size mismatch"
        have = f"{len(data)}" if len(data) <= expected else "more"
        raise IDXError(f"read_idx: {path}: {what}: header says shape {shape} of {dtype.name} = "
                       f"{expected} data bytes, file has {have}")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)  # owns ``data``, which nothing else holds
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.itemsize > 1 else arr


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
