"""Regularisation by noise: ``dropout`` and the channel dropouts ``dropout1d``, ``dropout2d``, ``dropout3d``."""
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


def _channel_dropout(x: Tensor, p: float, training: bool, generator: Generator | None, op: str) -> Tensor:
    """Zero whole channels: one Bernoulli draw per ``x.shape[:2]`` entry (``(N, C)`` or, unbatched,
    ``(C, first spatial)``), as PyTorch's feature dropout."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    x = _float_input(x, op)
    mask_shape = x.shape[:2] + (1,) * (x.ndim - 2)
    if p == 1.0:
        return x * np.zeros(mask_shape, dtype=x.dtype)
    keep = resolve(generator).random(mask_shape) >= p
    return x * wrap_array(keep.astype(x.dtype) * np.asarray(1.0 / (1.0 - p), dtype=x.dtype))


def _unbatched(x: Tensor, batched_ndim: int) -> Tensor:
    return x.unsqueeze(0) if x.ndim == batched_ndim - 1 else x


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel dropout for ``(N, C, L)`` or ``(C, L)``: each channel is zeroed with probability ``p``."""
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input")
    out = _channel_dropout(_unbatched(input, 3), p, training, generator, "dropout1d")
    return out.squeeze(0) if input.ndim == 2 else out


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel dropout for ``(N, C, H, W)``: each channel is zeroed with probability ``p`` (a 3-D input is
    taken as ``(N, C, L)``, as PyTorch does)."""
    if input.ndim < 2:
        raise RuntimeError("dropout2d: feature dropout requires at least 2 dimensions in the input")
    return _channel_dropout(input, p, training, generator, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel dropout for ``(N, C, D, H, W)`` or ``(C, D, H, W)``."""
    if input.ndim not in (4, 5):
        raise RuntimeError(f"dropout3d: Expected 4D or 5D input, but received a {input.ndim}D input")
    out = _channel_dropout(_unbatched(input, 5), p, training, generator, "dropout3d")
    return out.squeeze(0) if input.ndim == 4 else out
