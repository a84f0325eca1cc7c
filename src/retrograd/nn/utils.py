"""``rg.nn.utils``: gradient clipping and flattening parameters to one vector, as ``torch.nn.utils``.

Gradients are scaled in place (``.grad.data``), so the views an optimizer keeps
into its flat gradient buffer stay valid.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..tensor import Tensor, wrap_array
from ..versions import bump

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "parameters_to_vector",
           "vector_to_parameters"]


def _as_list(parameters: Any) -> list:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def _vector_norm(x: np.ndarray, norm_type: float) -> np.ndarray:
    a = np.abs(x.reshape(-1))
    if norm_type == math.inf:
        return a.max() if a.size else np.zeros((), x.dtype)
    if norm_type == -math.inf:
        return a.min() if a.size else np.full((), np.inf, x.dtype)
    if norm_type == 0:
        return np.asarray((a != 0).sum(), dtype=x.dtype)
    if norm_type == 2:
        return np.sqrt(np.dot(a, a))
    return (a ** norm_type).sum() ** (1.0 / norm_type)


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Tensor:
    """The ``norm_type`` norm of the norms of ``tensors`` (as if concatenated into one vector)."""
    arrays = [t._array for t in _as_list(tensors) if t is not None]
    norm_type = float(norm_type)
    if not arrays:
        return wrap_array(np.zeros((), np.float32))
    norms = np.stack([np.asarray(_vector_norm(a, norm_type), dtype=arrays[0].dtype) for a in arrays])
    total = np.asarray(_vector_norm(norms, norm_type), dtype=arrays[0].dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so "
                           "it cannot be clipped. To disable this error and scale the gradients by the non-finite "
                           "norm anyway, set `error_if_nonfinite=False`")
    return wrap_array(total)


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type``
    norm is at most ``max_norm``: ``g *= min(1, max_norm / (total + 1e-6))``.
    Returns the total norm before clipping (a 0-d Tensor), as PyTorch."""
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    if not grads:
        return total
    coef = np.minimum(float(max_norm) / (total._array + 1e-6), 1.0).astype(total._array.dtype)
    with np.errstate(invalid="ignore"):  # an infinite norm scales by 0 * inf = nan, as torch
        for g in grads:
            g._array *= coef.astype(g._array.dtype)
    return total


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient of ``parameters`` to ``[-clip_value, clip_value]`` in place."""
    v = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            np.clip(p.grad._array, -v, v, out=p.grad._array)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated: shape ``(total numel,)`` (a copy)."""
    arrays = [p._array.reshape(-1) for p in _as_list(parameters)]
    return wrap_array(np.concatenate(arrays))


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy slices of the 1-D ``vec`` into the parameters, in order (in place)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    data = vec._array
    params = _as_list(parameters)
    need = sum(p._array.size for p in params)
    if data.ndim != 1 or data.size != need:
        raise ValueError(f"vector_to_parameters: vec has shape {tuple(data.shape)}, expected ({need},) for "
                         f"{len(params)} parameters")
    o = 0
    for p in params:
        n = p._array.size
        np.copyto(p._array, data[o:o + n].reshape(p._array.shape), casting="unsafe")
        bump(p)
        o += n
