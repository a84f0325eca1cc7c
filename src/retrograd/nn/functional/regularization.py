"""Regularisation by noise: ``dropout`` and the channel dropouts ``dropout1d``, ``dropout2d``, ``dropout3d``."""
from __future__ import annotations

import warnings

import numpy as np

from ...random import Generator, resolve
from ...tensor import Tensor, wrap_array
from ...tensor_inplace import _apply_inplace
from ._args import _float_input


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
            generator: Generator | None = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    if inplace and training and p != 0:  # written into the input, as PyTorch's dropout_ (tensor_inplace)
        return _apply_inplace(input, "dropout_", lambda x: dropout(x, p, training, False, generator=generator))
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
    if inplace and training and p != 0:  # written into the input, as PyTorch's dropout1d_ (tensor_inplace)
        return _apply_inplace(input, "dropout1d_", lambda x: dropout1d(x, p, training, False, generator=generator))
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input")
    x = _unbatched(input, 3)
    out = _channel_dropout(x, p, training, generator, "dropout1d")
    return input if out is x else (out if x is input else out.squeeze(0))


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel dropout for ``(N, C, H, W)``: each channel is zeroed with probability ``p``. As PyTorch, a
    3-D input is taken as ``(N, C, L)`` and other ranks of at least 2 run with a deprecation warning."""
    if inplace and training and p != 0:  # written into the input, as PyTorch's dropout2d_ (tensor_inplace)
        return _apply_inplace(input, "dropout2d_", lambda x: dropout2d(x, p, training, False, generator=generator))
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and will "
                      "result in an error in a future release (PyTorch); dropout2d expects 3D or 4D inputs",
                      UserWarning, stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim "
                      "(as PyTorch); use dropout1d for that", UserWarning, stacklevel=2)
    if input.ndim < 2:
        raise RuntimeError("dropout2d: feature dropout requires at least 2 dimensions in the input")
    return _channel_dropout(input, p, training, generator, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel dropout for ``(N, C, D, H, W)`` or ``(C, D, H, W)``; other ranks run with a deprecation
    warning, taken as unbatched, as PyTorch."""
    if inplace and training and p != 0:  # written into the input, as PyTorch's dropout3d_ (tensor_inplace)
        return _apply_inplace(input, "dropout3d_", lambda x: dropout3d(x, p, training, False, generator=generator))
    if input.ndim not in (4, 5):
        warnings.warn(f"dropout3d: Received a {input.ndim}-D input to dropout3d, which is deprecated and will "
                      "result in an error in a future release (PyTorch); dropout3d expects 4D or 5D inputs",
                      UserWarning, stacklevel=2)
    x = input if input.ndim == 5 else input.unsqueeze(0)
    out = _channel_dropout(x, p, training, generator, "dropout3d")
    return input if out is x else (out if x is input else out.squeeze(0))
