"""Datasets: ``Dataset``, ``IterableDataset``, ``TensorDataset``, ``Subset``,
``ConcatDataset`` and ``random_split``, with PyTorch's names and semantics.

A map-style dataset may also define ``get_batch(indices)``: given a 1-D int64
array of indices it returns the whole collated batch at once (one fancy-index
per array). ``DataLoader`` uses it when no ``collate_fn`` is given, so
array-backed datasets are batched without a Python loop over samples.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ..random import Generator, resolve
from ..tensor import Tensor, wrap_array
from .collate import concat_batches

T_co = TypeVar("T_co", covariant=True)


class Dataset(Generic[T_co]):
    """A map-style dataset: ``__getitem__(i)`` and ``__len__``.

    Subclasses that can fetch many samples at once should add
    ``get_batch(indices) -> batch`` (see the module docstring).
    """

    def __getitem__(self, index: int) -> T_co:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """A stream of samples: ``__iter__`` yields them (no indexing, no sampler)."""

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other: Dataset) -> "Dataset":
        raise TypeError("IterableDataset does not support +; chain the iterables instead")


def _as_array(x: Any, op: str) -> np.ndarray:
    if isinstance(x, Tensor):
        return x._array
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{op}: expected Tensors or NumPy arrays, got {type(x).__name__}")


def _wrap(x: Any) -> Any:
    """Transforms may return arrays or Tensors; the loader hands out Tensors."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return wrap_array(x)
    return x


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays: ``ds[i] == (a[i], b[i], ...)``.

    ``transform`` applies to the first array, ``target_transform`` to the last
    (when there are at least two). In ``get_batch`` they receive the whole batch,
    e.g. images ``(batch, C, H, W)``, so vectorised transforms run once per batch.
    """

    def __init__(self, *tensors: Any, transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        arrays = tuple(_as_array(t, "TensorDataset") for t in tensors)
        if any(a.ndim == 0 for a in arrays):
            raise ValueError("TensorDataset: tensors must have a first (sample) dimension, got a 0-d one")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError(f"TensorDataset: size mismatch between tensors: first dimensions "
                             f"{[a.shape[0] for a in arrays]}")
        self.arrays = arrays
        self.transform = transform
        self.target_transform = target_transform

    @property
    def tensors(self) -> tuple:
        return tuple(wrap_array(a) for a in self.arrays)

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def _finish(self, parts: list) -> tuple:
        if self.transform is not None:
            parts[0] = self.transform(parts[0])
        if self.target_transform is not None and len(parts) > 1:
            parts[-1] = self.target_transform(parts[-1])
        return tuple(_wrap(p) for p in parts)

    def __getitem__(self, index: int) -> tuple:
        return self._finish([a[index] for a in self.arrays])

    def get_batch(self, indices: np.ndarray) -> tuple:
        """One fancy-index per array: ``(a[indices], b[indices], ...)`` as Tensors."""
        return self._finish([a[indices] for a in self.arrays])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, list):
            return [self.dataset[int(self.indices[i])] for i in index]
        return self.dataset[int(self.indices[index])]

    def __len__(self) -> int:
        return len(self.indices)

    def __getattr__(self, name: str) -> Any:
        # get_batch exists exactly when the wrapped dataset has it
        if name == "get_batch" and hasattr(self.__dict__.get("dataset"), "get_batch"):
            return lambda indices: self.dataset.get_batch(self.indices[np.asarray(indices, np.int64)])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class ConcatDataset(Dataset):
    """The samples of several datasets one after another."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if index < 0:
            if -index > n:
                raise IndexError(f"ConcatDataset: index {index} out of range for length {n}")
            index += n
        if index >= n:
            raise IndexError(f"ConcatDataset: index {index} out of range for length {n}")
        k = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        start = self.cumulative_sizes[k - 1] if k else 0
        return self.datasets[k][index - start]

    def __getattr__(self, name: str) -> Any:
        if name == "get_batch" and all(hasattr(d, "get_batch") for d in self.__dict__.get("datasets", [None])):
            return self._get_batch
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _get_batch(self, indices: np.ndarray) -> Any:
        idx = np.asarray(indices, np.int64)
        cum = np.asarray(self.cumulative_sizes)
        which = np.searchsorted(cum, idx, side="right")
        starts = np.concatenate([[0], cum[:-1]])
        order = np.argsort(which, kind="stable")
        parts = []
        for k in np.unique(which):
            sel = idx[which == k] - starts[k]
            parts.append(self.datasets[k].get_batch(sel))
        if len(parts) == 1:
            return parts[0]
        # parts are grouped by dataset; put samples back in the requested order
        return concat_batches(parts, np.argsort(order, kind="stable"))


def random_split(dataset: Dataset, lengths: Sequence[int | float], generator: Generator | None = None
                 ) -> list[Subset]:
    """Split into non-overlapping ``Subset`` s of the given lengths (ints summing to
    ``len(dataset)``, or fractions summing to 1), from one random permutation."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and \
            not all(isinstance(x, (int, np.integer)) for x in lengths):
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1: {frac}")
        sizes = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):  # the remainder goes round-robin, as in PyTorch
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if any(int(x) != x or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length "
                         f"of the input dataset ({n})")
    perm = resolve(generator).permutation(n)
    bounds = np.cumsum([0] + [int(x) for x in lengths])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
