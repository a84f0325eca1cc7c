"""Regularisation by noise: ``dropout``."""
from __future__ import annotations

import numpy as np

from ...random import Generator, resolve
from ...tensor import Tensor, wrap_array
from ._args import _float_input


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
            generator: Generator | None = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    x = _float_input(input, "dropout")
    if p == 1.0:
        return x * np.zeros(x.shape, dtype=x.dtype)
    keep = resolve(generator).random(x.shape) >= p
    mask = keep.astype(x.dtype) * np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return x * wrap_array(mask)
