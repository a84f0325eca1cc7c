"""Factories: ``rg.zeros``, ``rg.arange``, ``rg.randn`` ... with PyTorch's signatures and defaults."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend as B
from . import devices
from .random import Generator, resolve
from .tensor import Tensor, _to_array, wrap_array
from .tensor_shape import _as_shape


def _finish(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = wrap_array(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _check_size(shape: tuple, op: str) -> tuple:
    if any(s < 0 for s in shape):
        raise RuntimeError(f"{op}: trying to create tensor with negative dimension: {list(shape)}")
    return shape


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """A new leaf tensor holding a copy of ``data`` (lists keep PyTorch's dtype
    inference; NumPy arrays keep their dtype)."""
    devices.check(device, "tensor")
    return _finish(_to_array(data, dtype), requires_grad)


def as_tensor(data: Any, dtype: Any = None, *, device: Any = None) -> Tensor:
    devices.check(device, "as_tensor")
    if isinstance(data, Tensor) and (dtype is None or B.as_dtype(dtype) == data.dtype):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or B.as_dtype(dtype) == data.dtype) \
            and data.dtype in B._NAMES:
        return wrap_array(data)
    return tensor(data, dtype)


def from_numpy(arr: np.ndarray) -> Tensor:
    """Shares memory with ``arr``, as ``torch.from_numpy``."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray (got {type(arr).__name__})")
    if arr.dtype not in B._NAMES:
        raise TypeError(f"from_numpy: can't convert np.ndarray of type {arr.dtype}")
    return wrap_array(arr)


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "zeros")
    return _finish(np.zeros(_check_size(_as_shape(size), "zeros"), B.as_dtype(dtype)), requires_grad)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "ones")
    return _finish(np.ones(_check_size(_as_shape(size), "ones"), B.as_dtype(dtype)), requires_grad)


def empty(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "empty")
    return _finish(np.empty(_check_size(_as_shape(size), "empty"), B.as_dtype(dtype)), requires_grad)


def full(size: Any, fill_value: Any, *, dtype: Any = None, requires_grad: bool = False,
         device: Any = None) -> Tensor:
    devices.check(device, "full")
    if dtype is None:
        dtype = B.bool_ if isinstance(fill_value, bool) else (
            B.int64 if isinstance(fill_value, (int, np.integer)) else None)
    return _finish(np.full(_check_size(_as_shape((size,)), "full"), fill_value, B.as_dtype(dtype)),
                   requires_grad)


def _like(t: Tensor, dtype: Any) -> np.dtype:
    return t.dtype if dtype is None else B.as_dtype(dtype)


def zeros_like(t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "zeros_like")
    return _finish(np.zeros(t.shape, _like(t, dtype)), requires_grad)


def ones_like(t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "ones_like")
    return _finish(np.ones(t.shape, _like(t, dtype)), requires_grad)


def empty_like(t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "empty_like")
    return _finish(np.empty(t.shape, _like(t, dtype)), requires_grad)


def full_like(t: Tensor, fill_value: Any, *, dtype: Any = None, requires_grad: bool = False,
              device: Any = None) -> Tensor:
    devices.check(device, "full_like")
    return _finish(np.full(t.shape, fill_value, _like(t, dtype)), requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None,
           requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "arange")
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) / step < 0:
        raise RuntimeError(f"arange: upper bound and larger bound inconsistent with step sign "
                           f"(start={start}, end={end}, step={step})")
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = B.int64 if is_int else B.defaults.float_dtype
    d = B.as_dtype(dtype)
    n = int(np.ceil((end - start) / step))
    arr = (start + np.arange(n, dtype=np.float64 if d.kind in "fV" else np.int64) * step).astype(d)
    return _finish(arr, requires_grad)


def linspace(start: float, end: float, steps: int, *, dtype: Any = None,
             requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "linspace")
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    return _finish(np.linspace(start, end, steps).astype(B.as_dtype(dtype)), requires_grad)


def logspace(start: float, end: float, steps: int, base: float = 10.0, *, dtype: Any = None,
             device: Any = None) -> Tensor:
    devices.check(device, "logspace")
    return _finish(np.logspace(start, end, steps, base=base).astype(B.as_dtype(dtype)), False)


def eye(n: int, m: int | None = None, *, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "eye")
    return _finish(np.eye(n, m, dtype=B.as_dtype(dtype)), requires_grad)


def rand(*size: Any, generator: Generator | None = None, dtype: Any = None,
         requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "rand")
    d = B.as_dtype(dtype)
    return _finish(resolve(generator).random(_check_size(_as_shape(size), "rand")).astype(d), requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None,
          requires_grad: bool = False, device: Any = None) -> Tensor:
    devices.check(device, "randn")
    d = B.as_dtype(dtype)
    return _finish(resolve(generator).standard_normal(_check_size(_as_shape(size), "randn")).astype(d),
                   requires_grad)


def randint(low: int, high: int | None = None, size: Any = None, *, generator: Generator | None = None,
            dtype: Any = None, device: Any = None) -> Tensor:
    devices.check(device, "randint")
    if size is None:
        if high is None or not isinstance(high, (tuple, list)):
            raise TypeError("randint: size must be given, e.g. randint(0, 10, (3,))")
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if high <= low:
        raise RuntimeError(f"randint: random_ expects 'from' to be less than 'to', but got from={low} >= "
                           f"to={high}")
    d = B.int64 if dtype is None else B.as_dtype(dtype)
    return _finish(resolve(generator).integers(low, high, _as_shape((size,))).astype(d), False)


def randperm(n: int, *, generator: Generator | None = None, dtype: Any = None, device: Any = None) -> Tensor:
    devices.check(device, "randperm")
    d = B.int64 if dtype is None else B.as_dtype(dtype)
    return _finish(resolve(generator).permutation(n).astype(d), False)


def rand_like(t: Tensor, *, generator: Generator | None = None, dtype: Any = None, device: Any = None) -> Tensor:
    devices.check(device, "rand_like")
    return rand(t.shape, generator=generator, dtype=_like(t, dtype))


def randn_like(t: Tensor, *, generator: Generator | None = None, dtype: Any = None, device: Any = None) -> Tensor:
    devices.check(device, "randn_like")
    return randn(t.shape, generator=generator, dtype=_like(t, dtype))


def normal(mean: float, std: float, size: Any, *, generator: Generator | None = None,
           dtype: Any = None, device: Any = None) -> Tensor:
    devices.check(device, "normal")
    return _finish(resolve(generator).normal(mean, std, _as_shape((size,))).astype(B.as_dtype(dtype)), False)


def bernoulli(p: Tensor, *, generator: Generator | None = None) -> Tensor:
    return _finish((resolve(generator).random(p.shape) < p._array).astype(p.dtype), False)


def multinomial(probs: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Generator | None = None) -> Tensor:
    g = resolve(generator)
    p = np.atleast_2d(probs._array.astype(np.float64))
    rows = []
    for row in p:
        rows.append(g.choice(row.shape[0], num_samples, replace=replacement, p=row / row.sum()))
    out = np.stack(rows).astype(np.int64)
    return _finish(out if probs.ndim == 2 else out[0], False)
