import gzip

import numpy as np
import pytest

from retrograd.data import IDXError, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, suffix, dtype):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / f"a.idx{suffix}"
    write_idx(p, a)
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype).newbyteorder("=") and b.shape == (2, 3, 4)
    np.testing.assert_array_equal(b, a)


def test_header_bytes_are_big_endian(tmp_path):
    p = tmp_path / "labels"
    write_idx(p, np.array([3, 1, 4], np.uint8))
    raw = p.read_bytes()
    assert raw == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 3, 1, 4])
    assert read_idx(p, magic=0x00000801).tolist() == [3, 1, 4]
    p2 = tmp_path / "ints"
    write_idx(p2, np.array([258], np.int32))
    assert p2.read_bytes()[-4:] == bytes([0, 0, 1, 2])


def _images(tmp_path, n=5, name="img-idx3-ubyte"):
    p = tmp_path / name
    write_idx(p, np.arange(n * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(n, 28, 28))
    return p


def test_wrong_magic(tmp_path):
    p = _images(tmp_path)
    with pytest.raises(IDXError, match=rf"{p}: bad magic number 0x00000803, expected 0x00000801"):
        read_idx(p, magic=0x00000801)
    raw = bytearray(p.read_bytes())
    raw[0] = 0x12
    p.write_bytes(bytes(raw))
    with pytest.raises(IDXError, match=r"bad magic number 0x12000803: the first two bytes must be zero"):
        read_idx(p)
    raw[0], raw[2] = 0, 0x07
    p.write_bytes(bytes(raw))
    with pytest.raises(IDXError, match=r"unknown dtype byte 0x07 in magic number 0x00000703"):
        read_idx(p)


def test_truncated_and_oversized(tmp_path):
    p = _images(tmp_path)
    raw = p.read_bytes()
    p.write_bytes(raw[:-100])
    with pytest.raises(IDXError, match=rf"{p}: truncated: header says shape \(5, 28, 28\) of uint8 = 3920 data "
                                       r"bytes, file has 3820"):
        read_idx(p, magic=0x803)
    p.write_bytes(raw + b"\0")
    with pytest.raises(IDXError, match=r"size mismatch: .* 3920 data bytes, file has 3921"):
        read_idx(p)
    p.write_bytes(raw[:10])
    with pytest.raises(IDXError, match=r"truncated header: 3 dimensions need 16 bytes, file has 10"):
        read_idx(p)
    p.write_bytes(raw[:2])
    with pytest.raises(IDXError, match="file has 2 bytes, too short for the 4-byte IDX magic number"):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    src = _images(tmp_path)
    gz = tmp_path / "img-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(src.read_bytes())[:200])
    with pytest.raises(IDXError, match=rf"{gz}: cannot decompress: .*truncated or corrupt"):
        read_idx(gz)
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(IDXError, match="cannot decompress"):
        read_idx(gz)


def test_fashion_mnist_loader_on_generated_files(tmp_path):
    import retrograd as rg
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28)).astype(np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 2], np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    ds = rg.data.fashion_mnist("test", root=tmp_path)
    x, y = ds.tensors
    assert x.shape == (6, 1, 28, 28) and x.dtype == rg.float32 and y.dtype == rg.int64
    np.testing.assert_array_equal(x.numpy()[:, 0], imgs.astype(np.float32) / 255)
    assert y.tolist() == [0, 9, 3, 3, 1, 2]
    # mismatched counts, bad label values, wrong kind of file
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:5])
    with pytest.raises(IDXError, match="has 6 images but .*t10k-labels-idx1-ubyte has 5 labels"):
        rg.data.fashion_mnist("test", root=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 10], np.uint8))
    with pytest.raises(IDXError, match="label 10 out of range 0-9"):
        rg.data.fashion_mnist("test", root=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels.astype(np.int32))
    with pytest.raises(IDXError, match="bad magic number 0x00000C01, expected 0x00000801"):
        rg.data.fashion_mnist("test", root=tmp_path)
    with pytest.raises(rg.data.DataNotInstalledError,
                       match=r"train-images-idx3-ubyte\(\.gz\) not found; install Fashion-MNIST with: "
                             r"apt-get update && apt-get install -y dataset-fashion-mnist"):
        rg.data.fashion_mnist("train", root=tmp_path)
