"""scikit-learn's bundled classic data sets (no download): digits, iris,
breast_cancer, wine, as a ``TensorDataset`` of float32 features and int64 labels."""
from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from .dataset import TensorDataset
from .packaged import DataNotInstalledError

SKLEARN_DATASETS = ("digits", "iris", "breast_cancer", "wine")
SKLEARN_INSTALL = "python3 -m pip install scikit-learn  (or: python3 -m pip install -e '.[data]')"


def sklearn_dataset(name: str, *, standardize: bool = False, images: bool = False,
                    transform: Callable | None = None, target_transform: Callable | None = None
                    ) -> TensorDataset:
    """One of scikit-learn's bundled sets: features ``(N, F)`` float32, labels ``(N,)`` int64.

    ``digits`` pixels (0-16) are scaled to [0, 1]; ``images=True`` shapes them
    ``(N, 1, 8, 8)``. ``standardize=True`` gives each feature zero mean and unit
    variance over the whole set. ``classes`` and ``feature_names`` describe it.
    """
    if name not in SKLEARN_DATASETS:
        raise ValueError(f"sklearn_dataset: unknown name {name!r}; expected one of {list(SKLEARN_DATASETS)}")
    if images and name != "digits":
        raise ValueError(f"sklearn_dataset: images=True is only for 'digits', not {name!r}")
    try:
        datasets = importlib.import_module("sklearn.datasets")
    except ImportError:
        raise DataNotInstalledError(f"sklearn_dataset({name!r}): scikit-learn is not installed; install it "
                                    f"with: {SKLEARN_INSTALL}") from None
    bunch = getattr(datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    if name == "digits":
        x = x / 16.0
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std == 0, 1.0, std)
    x = x.astype(np.float32)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    ds = TensorDataset(x, np.asarray(bunch.target, dtype=np.int64), transform=transform,
                       target_transform=target_transform)
    ds.classes = [str(c) for c in bunch.target_names]
    ds.feature_names = [str(f) for f in getattr(bunch, "feature_names", [])] or \
        [f"pixel_{i}" for i in range(64)]
    return ds
