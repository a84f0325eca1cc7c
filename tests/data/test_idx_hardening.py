"""Issue 12, item 5: the IDX reader checks the header before inflating and never inflates (or
allocates) more than the header declares."""
import gzip
import time
import tracemalloc

import numpy as np
import pytest

from retrograd.data import IDXError, read_idx, write_idx


def _gzip_stream(path, head: bytes, fill: bytes, total: int) -> None:
    """A gzip file of ``head`` then ``total`` bytes of ``fill``, compressed chunk by chunk."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head)
        chunk = fill * (1 << 20)
        for _ in range(total >> 20):
            f.write(chunk)


def _peak(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, time.perf_counter() - t0


def test_non_idx_gzip_is_refused_before_inflating(tmp_path):
    p = tmp_path / "bomb.gz"
    _gzip_stream(p, b"", b"\x01", 64 << 20)  # 64 MiB inflates from a few hundred KB
    assert p.stat().st_size < 2 << 20

    def load():
        with pytest.raises(IDXError, match="bad magic number 0x01010101"):
            read_idx(p)
    peak, seconds = _peak(load)
    assert peak < 1 << 20 and seconds < 2.0


def test_gzip_claiming_more_than_it_holds_stops_at_its_real_size(tmp_path):
    p = tmp_path / "claims.gz"
    head = bytes([0, 0, 0x08, 2]) + np.array([60000, 60000], ">u4").tobytes()  # 3.6 GB promised
    _gzip_stream(p, head, b"\x00", 8 << 20)  # 8 MiB held

    def load():
        with pytest.raises(IDXError, match=r"truncated: header says shape \(60000, 60000\).*file has 8388608"):
            read_idx(p)
    peak, _ = _peak(load)
    assert peak < 40 << 20  # what the file holds (plus read chunks), not the 3.6 GB its header promises


def test_gzip_longer_than_its_header_is_refused(tmp_path):
    p = tmp_path / "long.gz"
    p.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + np.array([3], ">u4").tobytes() + b"abcd"))
    with pytest.raises(IDXError, match="size mismatch.*3 data bytes, file has more"):
        read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
def test_dimensions_that_wrap_int64_are_refused(tmp_path, gz):
    raw = bytes([0, 0, 0x0E, 3]) + np.array([2 ** 32 - 1] * 3, ">u4").tobytes() + b"\0" * 64
    p = tmp_path / ("wrap.idx.gz" if gz else "wrap.idx")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(IDXError, match="more than max_bytes"):
        read_idx(p)


def test_more_dimensions_than_numpy_holds_are_refused(tmp_path):
    p = tmp_path / "dims.idx"
    p.write_bytes(bytes([0, 0, 8, 65]) + np.ones(65, ">u4").tobytes() + b"\x07")
    with pytest.raises(IDXError, match="65 dimensions"):
        read_idx(p)


def test_max_bytes_is_a_knob(tmp_path):
    p = tmp_path / "a.idx.gz"
    write_idx(p, np.arange(100, dtype=np.uint8).reshape(10, 10))
    with pytest.raises(IDXError, match="more than max_bytes=50"):
        read_idx(p, max_bytes=50)
    np.testing.assert_array_equal(read_idx(p, max_bytes=100), np.arange(100).reshape(10, 10))


def test_corrupt_gzip_is_an_idx_error(tmp_path):
    p = tmp_path / "c.idx.gz"
    write_idx(p, np.arange(1000, dtype=np.uint8))
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(IDXError):
        read_idx(p)
    p.write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(IDXError, match="decompress|truncated"):
        read_idx(p)


def test_fuzz_idx_files(tmp_path):
    """Seeded bit flips, truncations and header edits of plain and gzipped IDX files: a correct array
    or IDXError, and never more memory than the header could honestly ask for."""
    import random
    rng = random.Random(99)
    bases = {}
    for gz in (False, True):
        p = tmp_path / ("base.idx.gz" if gz else "base.idx")
        write_idx(p, np.arange(600, dtype=">i2").reshape(10, 6, 10))
        bases[gz] = p.read_bytes() if not gz else gzip.decompress(p.read_bytes())
    outcomes = {"loaded": 0, "IDXError": 0}
    for case in range(150):
        gz = rng.random() < 0.5
        raw = bytearray(bases[gz])
        kind = rng.choice(["flip", "header", "truncate", "extend"])
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        elif kind == "header":
            raw[rng.randrange(16)] = rng.randrange(256)
        elif kind == "truncate":
            del raw[rng.randrange(len(raw)):]
        else:
            raw += bytes(rng.randrange(1, 64))
        blob = gzip.compress(bytes(raw)) if gz else bytes(raw)
        if gz and rng.random() < 0.3:  # damage the compressed stream itself
            blob = blob[:rng.randrange(len(blob))]
        p = tmp_path / f"{case}.idx" if not gz else tmp_path / f"{case}.idx.gz"
        p.write_bytes(blob)
        def load():
            try:
                read_idx(p)
                outcomes["loaded"] += 1
            except IDXError:
                outcomes["IDXError"] += 1
        peak, _ = _peak(load)
        assert peak < 4 * len(raw) + (2 << 20), f"case {case}: {peak} bytes for a {len(raw)}-byte file"  # + 1 MiB chunks
    assert outcomes["IDXError"] > 50 and outcomes["loaded"] > 10, outcomes
