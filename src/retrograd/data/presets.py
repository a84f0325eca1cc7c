"""Data presets: the data sets a training config's ``[data] name`` can name, how each is
loaded, and how every preset is split into train, validation and test.

``PRESETS`` is the one table of them: config validation takes its names and options from it
and ``build_data`` loads from it, so a data set added here is available to the ``retrograd``
command, to ``rg.tune`` and to Python alike::

    from retrograd.data.presets import build_data
    bundle = build_data({"name": "digits", ...}, seed=0)   # a validated [data] table
    bundle.train, bundle.val, bundle.test, bundle.in_shape, bundle.num_classes
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from . import transforms
from .dataset import Subset, TensorDataset
from .images import fashion_mnist, mnist_5k
from .tabular import sklearn_dataset
from .text import Vocabulary, shakespeare
from ..random import Generator

__all__ = ["ConfigError", "DataBundle", "DataPreset", "PRESETS", "build_data"]


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or a value that is not allowed.

    Defined here, at the lowest layer that reads a config table (``[data]``), so that
    ``build_data`` can name a bad ``[data]`` option; ``retrograd.train.config`` re-exports it."""


@dataclasses.dataclass
class DataBundle:
    """The three splits and what a model needs to know about them."""
    train: Any
    val: Any
    test: Any
    in_shape: tuple
    num_classes: int
    vocab: Vocabulary | None = None

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_shape))


@dataclasses.dataclass(frozen=True)
class DataPreset:
    """One ``[data] name``.

    ``load(data)`` gives ``(x, y, x_test, y_test)`` arrays for the ``[data]`` table ``data``;
    ``x_test`` is None when the set has no test split (``data.test_fraction`` of it is held out).
    A ``"text"`` preset's ``load`` gives ``(train, val)`` datasets with a ``vocab`` instead.
    """
    load: Callable[[dict], tuple]
    kind: str = "features"  # "images", "features" or "text"
    # data.augment: the transform of training images, made from its own generator
    augment: Callable[[Generator], Callable] | None = None
    standardize: bool | None = None  # default of data.standardize; None: the option does not apply
    images_option: bool = False  # data.images = true gives the features as (1, H, W) images


def _fashion_mnist(data: dict) -> tuple:
    return (*fashion_mnist("train").arrays, *fashion_mnist("test").arrays)


def _mnist_5k(data: dict) -> tuple:
    return (*mnist_5k().arrays, None, None)


def _sklearn(name: str, data: dict) -> tuple:
    return (*sklearn_dataset(name, images=data["images"]).arrays, None, None)


def _shakespeare(data: dict) -> tuple:
    return tuple(shakespeare(data["block_size"], split, data["val_fraction"]) for split in ("train", "val"))


def _crop_flip_28(g: Generator) -> Callable:
    return transforms.Compose([transforms.RandomCrop(28, padding=2, generator=g),
                               transforms.RandomHorizontalFlip(generator=g)])


def _crop_28(g: Generator) -> Callable:
    return transforms.RandomCrop(28, padding=2, generator=g)


def _crop_8(g: Generator) -> Callable:
    return transforms.RandomCrop(8, padding=1, generator=g)


PRESETS: dict[str, DataPreset] = {
    "fashion_mnist": DataPreset(_fashion_mnist, "images", augment=_crop_flip_28),
    "mnist_5k": DataPreset(_mnist_5k, "images", augment=_crop_28),
    "digits": DataPreset(functools.partial(_sklearn, "digits"), augment=_crop_8, standardize=False,
                         images_option=True),
    "iris": DataPreset(functools.partial(_sklearn, "iris"), standardize=True),
    "breast_cancer": DataPreset(functools.partial(_sklearn, "breast_cancer"), standardize=True),
    "wine": DataPreset(functools.partial(_sklearn, "wine"), standardize=True),
    "shakespeare": DataPreset(_shakespeare, "text"),
}


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def _subset(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray | None:
    return None if k is None or k >= n else np.sort(rng.choice(n, k, replace=False))


def _text_bundle(preset: DataPreset, data: dict, rng: np.random.Generator) -> DataBundle:
    train, val = preset.load(data)
    vocab = val.vocab
    sel = _subset(len(train), data["train_samples"], rng)
    train = train if sel is None else Subset(train, sel)
    sel = _subset(len(val), data["val_samples"], rng)
    val = val if sel is None else Subset(val, sel)
    return DataBundle(train, val, None, (data["block_size"],), len(vocab), vocab)


def build_data(data: dict, seed: int) -> DataBundle:
    """Load ``[data]`` and split it: validation from the training set (``val_fraction``), test
    from the set's own test split or ``test_fraction`` of it; all splits seeded by ``seed``."""
    name = data["name"]
    preset = PRESETS[name]
    rng = np.random.default_rng(seed)
    if preset.kind == "text":
        return _text_bundle(preset, data, rng)
    x, y, xt, yt = preset.load(data)
    if xt is None:
        tr, te = _split(len(y), data["test_fraction"], rng)
        x, y, xt, yt = x[tr], y[tr], x[te], y[te]
    standardize = data["standardize"] if data["standardize"] is not None else preset.standardize
    if preset.standardize is not None and standardize:  # statistics of the training part only
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std == 0, 1, std)
        x, xt = ((x - mean) / std).astype(np.float32), ((xt - mean) / std).astype(np.float32)
    tr, va = _split(len(y), data["val_fraction"], rng)
    xv, yv, x, y = x[va], y[va], x[tr], y[tr]
    sel = _subset(len(y), data["train_samples"], rng)
    if sel is not None:
        x, y = x[sel], y[sel]
    sel = _subset(len(yv), data["val_samples"], rng)
    if sel is not None:
        xv, yv = xv[sel], yv[sel]
    aug = None
    if data["augment"]:
        if preset.augment is None or x.ndim != 4:
            raise ConfigError(f"data.augment: needs images; {name} gives features of shape {x.shape[1:]}"
                              + (" (set data.images = true)" if preset.images_option else ""))
        aug = preset.augment(Generator(seed + 1))
    num_classes = int(max(y.max(), yt.max()) + 1)
    return DataBundle(TensorDataset(x, y, transform=aug), TensorDataset(xv, yv) if len(yv) else None,
                      TensorDataset(xt, yt), tuple(x.shape[1:]), num_classes)
