"""A minimal TensorBoard event-file writer (scalars) and reader, with no dependencies.

An event file is a sequence of TFRecords: ``uint64 length``, ``uint32
masked_crc32c(length)``, ``data``, ``uint32 masked_crc32c(data)``, where each
``data`` is a serialised ``tensorflow.Event`` protobuf. Scalars need only a few
fields, so they are encoded by hand: Event{wall_time=1 (double), step=2
(int64), file_version=3 (string), summary=5 {value=1 {tag=1 (string),
simple_value=2 (float)}}}. ``tensorboard --logdir`` reads these files.
"""
from __future__ import annotations

import math
import os
import pathlib
import socket
import struct
import time
from typing import Iterator

import numpy as np

__all__ = ["EventWriter", "read_events", "read_scalars"]


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int) -> bytes:
    return _varint(num << 3 | wire)


def _bytes_field(num: int, payload: bytes) -> bytes:
    return _field(num, 2) + _varint(len(payload)) + payload


_VALUE_HEADS: dict[str, bytes] = {}  # tag -> its Summary.Value's bytes before the float (the same every time)


def _value_head(tag: str) -> bytes:
    head = _VALUE_HEADS.get(tag)
    if head is None:
        inner = _bytes_field(1, tag.encode()) + _field(2, 5)  # the tag, then simple_value's key: 4 bytes follow
        head = _field(1, 2) + _varint(len(inner) + 4) + inner
        if len(_VALUE_HEADS) < 10000:
            _VALUE_HEADS[tag] = head
    return head


def _event(wall_time: float, step: int, *, file_version: str | None = None,
           scalars: list[tuple[str, float]] = ()) -> bytes:
    msg = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(int(step))
    if file_version is not None:
        msg += _bytes_field(3, file_version.encode())
    if scalars:
        msg += _bytes_field(5, b"".join([_value_head(tag) + _float32(v) for tag, v in scalars]))
    return msg


def _float32(v: float) -> bytes:
    """``v`` as a little-endian float32; beyond float32's range it is +-inf, as a float32 cast (and
    TensorBoard's own writer) makes it, where ``struct.pack`` raises OverflowError."""
    try:
        return struct.pack("<f", v)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, v))


_HEADS: dict[int, bytes] = {}  # record length -> its length field and that field's CRC (lengths repeat)


def _record(data: bytes) -> bytes:
    n = len(data)
    head = _HEADS.get(n)
    if head is None:
        header = struct.pack("<Q", n)
        head = header + struct.pack("<I", masked_crc(header))
        if len(_HEADS) < 10000:
            _HEADS[n] = head
    return head + data + struct.pack("<I", masked_crc(data))


class EventWriter:
    """Append scalars to ``logdir/events.out.tfevents.<time>.<host>`` (what TensorBoard globs for)."""

    def __init__(self, logdir: str | os.PathLike) -> None:
        self.logdir = pathlib.Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.path = self.logdir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._f = open(self.path, "ab")
        self._f.write(_record(_event(time.time(), 0, file_version="brain.Event:2")))
        self._f.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        self.add_scalars({tag: value}, step, wall_time)

    def add_scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        items = []
        for t, v in values.items():
            if isinstance(v, (int, float, np.floating, np.integer)):
                try:
                    items.append((t, float(v)))
                except OverflowError:  # an int beyond float64: as a float32 cast would make it
                    items.append((t, math.inf if v > 0 else -math.inf))
        if items:
            self._f.write(_record(_event(time.time() if wall_time is None else wall_time, step, scalars=items)))

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()


# --------------------------------------------------------------------------- reader
def read_events(path: str | os.PathLike) -> Iterator[bytes]:
    """The records of an event file, checking both CRCs of each."""
    data = pathlib.Path(path).read_bytes()
    i = 0
    while i < len(data):
        if i + 12 > len(data):
            raise ValueError(f"{path}: truncated record header at byte {i}")
        header = data[i:i + 8]
        (n,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
        if hcrc != masked_crc(header):
            raise ValueError(f"{path}: bad length CRC at byte {i}")
        body = data[i + 12:i + 12 + n]
        (dcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        if dcrc != masked_crc(body):
            raise ValueError(f"{path}: bad data CRC at byte {i}")
        yield body
        i += 16 + n


def _parse(msg: bytes) -> dict[int, list]:
    out: dict[int, list] = {}
    i = 0
    while i < len(msg):
        key, i = _read_varint(msg, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(msg, i)
        elif wire == 1:
            v, i = msg[i:i + 8], i + 8
        elif wire == 5:
            v, i = msg[i:i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(msg, i)
            v, i = msg[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(num, []).append(v)
    return out


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def read_scalars(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from an event file."""
    out: dict[str, list] = {}
    for rec in read_events(path):
        ev = _parse(rec)
        step = ev.get(2, [0])[0]
        for summary in ev.get(5, []):
            for value in _parse(summary).get(1, []):
                v = _parse(value)
                tag = v[1][0].decode()
                if 2 in v:
                    out.setdefault(tag, []).append((step, struct.unpack("<f", v[2][0])[0]))
    return out
