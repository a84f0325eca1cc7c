"""What every data source of a training config gives the recipe: a ``DataBundle`` of the three
splits, and the seeded splitting they share. The errors a ``[data]`` table or its files raise
live here too, at the lowest layer that reads them (``retrograd.train.config`` re-exports
``ConfigError``)."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from ..random import Generator
from .dataset import Subset, TensorDataset
from .text import Vocabulary

__all__ = ["ConfigError", "DataFileError", "DataBundle", "StoredDataset", "split_indices", "subset_indices",
           "per_class_indices", "arrays_bundle", "text_bundle"]


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or a value that is not allowed.

    Defined here, at the lowest layer that reads a config table (``[data]``), so that
    ``build_data`` can name a bad ``[data]`` option; ``retrograd.train.config`` re-exports it."""


class DataFileError(ConfigError):
    """A data file (``data.path``, or an input to predict on) cannot be used: the message names the
    file and, where it applies, the column, row or array and what was expected."""


class StoredDataset(TensorDataset):
    """A ``TensorDataset`` whose first array is kept as stored (e.g. uint8 pixels) and turned into
    what the model reads by ``convert`` as each sample or batch is read, before ``transform``.
    ``convert`` works on each element alone (``scale_pixels``), so a batch holds the values that
    converting the whole array first and indexing it gives, bit for bit; Fashion-MNIST's 10,000 test
    images stay 7.8 MB instead of 31 MB as float32."""

    def __init__(self, *tensors: Any, convert: Callable[[np.ndarray], np.ndarray],
                 transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        self.convert = convert
        super().__init__(*tensors, transform=transform, target_transform=target_transform)

    @property
    def arrays(self) -> tuple:
        """What a ``TensorDataset`` of the converted data would hold: the first array converted
        whole (a new array on every access; the loaders read ``stored`` batch by batch instead)."""
        first = self.stored[0]
        return (self.convert(first).reshape(first.shape), *self.stored[1:])

    @arrays.setter
    def arrays(self, value: tuple) -> None:
        self.stored = value

    def __len__(self) -> int:
        return self.stored[0].shape[0]

    def __getitem__(self, index: int) -> tuple:
        return self._finish([a[index] for a in self.stored])

    def get_batch(self, indices: np.ndarray) -> tuple:
        return self._finish([a[indices] for a in self.stored])

    def _finish(self, parts: list) -> tuple:
        parts[0] = self.convert(parts[0]).reshape(parts[0].shape)
        return super()._finish(parts)


@dataclasses.dataclass
class DataBundle:
    """The three splits and what a model needs to know about them.

    ``num_classes``: classes of a classification set (vocabulary size of a text set, 0 for
    regression); ``num_outputs``: the width of the model's output (``num_classes``, or the number
    of regression targets); ``task``: "classification", "regression" or "language_model";
    ``inputs``: the ``retrograd.data.inputs.InputSpec`` that turns raw inputs into model inputs
    exactly as the training data was turned; ``source``: the data's name for messages."""
    train: Any
    val: Any
    test: Any
    in_shape: tuple
    num_classes: int
    vocab: Vocabulary | None = None
    inputs: Any = None
    task: str = "classification"
    num_outputs: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.num_outputs is None:
            self.num_outputs = self.num_classes

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_shape))


def split_indices(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)`` sorted indices of ``range(n)``: ``round(n * fraction)`` held out at random."""
    perm = rng.permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def subset_indices(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """``k`` sorted random indices of ``range(n)``, or None when ``k`` is None or not below ``n``."""
    return None if k is None or k >= n else np.sort(rng.choice(n, k, replace=False))


def per_class_indices(y: np.ndarray, n: int, seed: int, classes: Any = None) -> np.ndarray:
    """``data.labels_per_class``: sorted indices of ``n`` samples of each class of the labels ``y``
    (``0 .. len(classes) - 1``), the first ``n`` of a permutation of each class's indices, drawn
    class by class from a generator of its own seeded by ``seed`` (so the other splits and subsets
    stay as they are). Raises ``ConfigError`` naming a class with fewer than ``n`` samples."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise ConfigError(f"data.labels_per_class: needs class labels, got targets of dtype {y.dtype} and shape "
                          f"{y.shape}")
    names = list(classes) if classes else [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
    rng = np.random.default_rng([seed, 0x1ABE1])
    picks = []
    for c, name in enumerate(names):
        idx = np.flatnonzero(y == c)
        if len(idx) < n:
            label = f"class {c}" if name == str(c) else f"class {c} ({name!r})"
            raise ConfigError(f"data.labels_per_class: {label} has {len(idx)} training samples, fewer than "
                              f"labels_per_class = {n}")
        picks.append(rng.permutation(idx)[:n])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), int(np.prod(x.shape[1:])))


def _flat_standardize(spec: Any, x: np.ndarray) -> np.ndarray:
    return spec.standardize(_flat(x)).reshape(x.shape)


def arrays_bundle(x: np.ndarray, y: np.ndarray, xt: np.ndarray | None, yt: np.ndarray | None, *, data: dict,
                  rng: np.random.Generator, seed: int, spec: Any, standardize: bool,
                  std_columns: np.ndarray | None = None, augment: Callable | None = None, num_classes: int,
                  num_outputs: int | None = None, source: str = "", convert: Callable | None = None) -> DataBundle:
    """Split arrays as every source of a config is split, all from ``rng``: test (when ``xt`` is
    None) is ``data["test_fraction"]`` of the samples; then (``standardize``) the statistics of
    what is left are fitted into ``spec`` (``InputSpec.fit_standardize``) and applied to every
    split; then validation is ``data["val_fraction"]`` of the rest; then the optional random
    subsets ``train_samples``/``val_samples``; then ``labels_per_class`` samples of each class of the
    training split (``per_class_indices``). ``augment(Generator(seed + 1))`` is the training
    transform. ``convert`` (e.g. uint8 pixels -> float32 images, elementwise) is applied to the features
    of each batch as it is read (``StoredDataset``; up front when ``standardize``, before the
    statistics), so that a set stored compactly stays so."""
    if convert is not None and standardize:
        x, xt = convert(x), (None if xt is None else convert(xt))
        convert = None
    if xt is None:
        tr, te = split_indices(len(y), data["test_fraction"], rng)
        x, y, xt, yt = x[tr], y[tr], x[te], y[te]
    if standardize:  # statistics of the training part only
        spec.fit_standardize(_flat(x), std_columns)
        x, xt = _flat_standardize(spec, x), _flat_standardize(spec, xt)
    tr, va = split_indices(len(y), data["val_fraction"], rng)
    xv, yv, x, y = x[va], y[va], x[tr], y[tr]
    sel = subset_indices(len(y), data.get("train_samples"), rng)
    if sel is not None:
        x, y = x[sel], y[sel]
    sel = subset_indices(len(yv), data.get("val_samples"), rng)
    if sel is not None:
        xv, yv = xv[sel], yv[sel]
    if data.get("labels_per_class") is not None:
        if spec.task != "classification":
            raise ConfigError(f"data.labels_per_class: only for classification, but {source or 'the data'} is a "
                              f"{spec.task} task")
        sel = per_class_indices(y, data["labels_per_class"], seed, spec.classes or (
            [str(c) for c in range(int(max(y.max(), yt.max() if len(yt) else 0)) + 1)]))
        x, y = x[sel], y[sel]
    aug = augment(Generator(seed + 1)) if augment is not None else None
    # kept as stored, converted batch by batch as the loaders read them (StoredDataset)
    make = TensorDataset if convert is None else functools.partial(StoredDataset, convert=convert)
    return DataBundle(make(x, y, transform=aug), make(xv, yv) if len(yv) else None,
                      make(xt, yt) if len(yt) else None, tuple(x.shape[1:]), num_classes, inputs=spec,
                      task=spec.task, num_outputs=num_outputs, source=source)


def text_bundle(train: Any, val: Any, data: dict, rng: np.random.Generator, spec: Any, source: str) -> DataBundle:
    """The bundle of a character-level text set: its train and val splits (the random subsets
    ``train_samples``/``val_samples`` of their windows when set), no test split."""
    if data.get("labels_per_class") is not None:
        raise ConfigError(f"data.labels_per_class: only for classification, not for the text set {source}")
    sel = subset_indices(len(train), data.get("train_samples"), rng)
    train = train if sel is None else Subset(train, sel)
    sel = subset_indices(len(val), data.get("val_samples"), rng)
    val = val if sel is None else Subset(val, sel)
    vocab = spec.vocab
    return DataBundle(train, val, None, (data["block_size"],), len(vocab), Vocabulary(vocab), inputs=spec,
                      task="language_model", source=source)
