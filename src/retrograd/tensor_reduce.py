"""Tensor's reductions (``sum``, ``mean``, ``var``, ``amax``, ``max``, ``argmax``,
``sort``, ``topk``, ``logsumexp``, ``cumsum``, ``norm``, ``softmax`` ...) as
plain functions that ``Tensor`` binds as methods under their own names
(``sum = tensor_reduce.sum``). Below ``tensor.py``, like ``tensor_shape``.

The functions carry their methods' names, so ``sum``, ``max``, ``min``, ``any`` and ``all`` shadow the
builtins in this module (``builtins.sum`` where the builtin is meant). The never-differentiable tests
(``equal``, ``allclose``, ``isnan``, ``logical_and``, ``any`` ...) are here too.
"""
from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any, Callable

import numpy as np

from . import backend as B
from . import ops as O
from .engine import state
from .tensor_convert import _as_tensor
from .tensor_shape import _norm_dim, _norm_dims

values_indices = namedtuple("values_indices", ["values", "indices"])

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module


def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None) -> "Tensor":
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    if x._array.dtype.kind in "biu" and dtype is None:
        x = x._cast(B.int64)
    dim = axis if dim is None else dim
    return self._apply(O.SUM, (x,), {"dim": _norm_dims(dim, x.ndim, "sum"), "keepdim": keepdim})


def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> "Tensor":
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    if x._array.dtype.kind not in "fV":
        raise RuntimeError(f"mean: could not infer output dtype. Input dtype must be either a floating "
                           f"point or complex dtype. Got: {B.dtype_name(x.dtype)}")
    return self._apply(O.MEAN, (x,), {"dim": _norm_dims(dim, x.ndim, "mean"), "keepdim": keepdim})


def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: Any = None) -> "Tensor":
    if unbiased is not None and not isinstance(unbiased, bool):  # var(dim) positional form
        dim, unbiased = unbiased, None
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    x = _float(self)
    return self._apply(O.VAR, (x,), {"dim": _norm_dims(dim, x.ndim, "var"), "keepdim": keepdim,
                                       "correction": correction})


def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: Any = None) -> "Tensor":
    return self.var(dim, unbiased, keepdim, correction=correction).sqrt()


def _float(self) -> "Tensor":
    return self if self._array.dtype.kind in "fV" else self._cast(B.defaults.float_dtype)


def amax(self, dim: Any = (), keepdim: bool = False) -> "Tensor":
    return _amax(self, dim, keepdim, True)


def amin(self, dim: Any = (), keepdim: bool = False) -> "Tensor":
    return _amax(self, dim, keepdim, False)


def _amax(self, dim: Any, keepdim: bool, is_max: bool) -> "Tensor":
    name = "amax" if is_max else "amin"
    if dim == () or dim == []:
        dim = None
    d = _norm_dims(dim, self.ndim, name)
    if self.numel() == 0 and (d is None or builtins.any(self.shape[i] == 0 for i in d)):
        raise IndexError(f"{name}: expected reduction dim to have non-zero size")
    return self._apply(O.AMAX, (self,), {"dim": d, "keepdim": keepdim, "max": is_max})


def max(self, dim: Any = None, keepdim: bool = False) -> Any:
    return _maxmin(self, dim, keepdim, True)


def min(self, dim: Any = None, keepdim: bool = False) -> Any:
    return _maxmin(self, dim, keepdim, False)


def _maxmin(self, dim: Any, keepdim: bool, is_max: bool) -> Any:
    if isinstance(dim, state.tensor_type):  # torch.max(a, b): elementwise
        return self.maximum(dim) if is_max else self.minimum(dim)
    if dim is None:
        return _amax(self, None, False, is_max)
    name = "max" if is_max else "min"
    d = _norm_dim(dim, self.ndim, name)
    if self.ndim and self.shape[d] == 0:
        raise IndexError(f"{name}: expected reduction dim {d} to have non-zero size")
    if self.ndim == 0:
        return values_indices(self, self._wrap(np.asarray(0, dtype=np.int64)))
    kw = {"dim": d, "keepdim": keepdim, "max": is_max}
    vals = self._apply(O.MAX_DIM, (self,), kw)
    idx = kw["idx"] if keepdim else np.squeeze(kw["idx"], d)
    return values_indices(vals, self._wrap(idx.astype(np.int64)))


def argmax(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
    return _argm(self, dim, keepdim, np.argmax)


def argmin(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
    return _argm(self, dim, keepdim, np.argmin)


def _argm(self, dim: Any, keepdim: bool, f: Callable) -> "Tensor":
    if self._array.dtype == np.bool_:
        raise RuntimeError(f"{f.__name__}: not implemented for bool tensors")
    if self._array.size == 0 and (dim is None or self.shape[_norm_dim(dim, self.ndim, f.__name__)] == 0):
        raise IndexError(f"{f.__name__}: expected reduction dim to have non-zero size (input shape "
                         f"{tuple(self.shape)})")
    if dim is None:
        r = f(self._array.reshape(-1))
        r = np.asarray(r).reshape((1,) * self.ndim if keepdim else ())
    else:
        d = _norm_dim(dim, self.ndim, f.__name__)
        r = f(self._array, axis=d, keepdims=keepdim) if self.ndim else np.asarray(0)
    return self._wrap(np.asarray(r, dtype=np.int64))


def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> "Tensor":
    d = _norm_dim(dim, self.ndim, "argsort")
    if self.ndim == 0:
        return self._wrap(np.asarray(0, dtype=np.int64))
    x = -self._array if descending and self.dtype.kind != "b" else self._array
    idx = np.argsort(x, axis=d, kind="stable")
    if descending and self.dtype.kind == "b":
        idx = np.flip(np.argsort(x, axis=d, kind="stable"), axis=d)
    return self._wrap(idx.astype(np.int64))


def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    idx = self.argsort(dim, descending, stable)
    return values_indices(self.gather(dim, idx) if self.ndim else self, idx)


def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
    d = _norm_dim(dim, self.ndim, "topk")
    n = self.shape[d] if self.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for dimension {d} of size {n}")
    idx = self.argsort(d, descending=largest, stable=True)._array
    idx = np.take(idx, np.arange(k), axis=d)
    idx_t = self._wrap(idx.astype(np.int64))
    return values_indices(self.gather(d, idx_t), idx_t)


def logsumexp(self, dim: Any, keepdim: bool = False) -> "Tensor":
    x = _float(self)
    return self._apply(O.LOGSUMEXP, (x,), {"dim": _norm_dims(dim, x.ndim, "logsumexp"),
                                             "keepdim": keepdim})


def prod(self, dim: int | None = None, keepdim: bool = False, *, dtype: Any = None) -> "Tensor":
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    if x._array.dtype.kind in "biu" and dtype is None:
        x = x._cast(B.int64)
    d = None if dim is None else _norm_dims(dim, x.ndim, "prod")
    return self._apply(O.PROD, (x,), {"dim": d, "keepdim": keepdim})


def cumsum(self, dim: int, *, dtype: Any = None) -> "Tensor":
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    if x._array.dtype.kind in "biu" and dtype is None:
        x = x._cast(B.int64)
    return self._apply(O.CUMSUM, (x,), {"dim": _norm_dim(dim, x.ndim, "cumsum")})


def cumprod(self, dim: int, *, dtype: Any = None) -> "Tensor":
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    return self._apply(O.CUMPROD, (x,), {"dim": _norm_dim(dim, x.ndim, "cumprod")})


def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> "Tensor":
    if p in ("fro", None):
        p = 2
    if p == "nuc":
        raise NotImplementedError("norm: the nuclear norm is not supported")
    x = _float(self)
    return self._apply(O.NORM, (x,), {"p": float(p), "dim": _norm_dims(dim, x.ndim, "norm"),
                                        "keepdim": keepdim})


def softmax(self, dim: int, *, dtype: Any = None) -> "Tensor":
    if dtype is None and self._array.dtype.kind not in "fV":
        raise RuntimeError(f"softmax: not implemented for {B.dtype_name(self.dtype)} tensors; pass dtype= or "
                           "convert with .float()")
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    return self._apply(O.SOFTMAX, (x,), {"dim": _norm_dim(dim, x.ndim, "softmax")})


def log_softmax(self, dim: int, *, dtype: Any = None) -> "Tensor":
    if dtype is None and self._array.dtype.kind not in "fV":
        raise RuntimeError(f"log_softmax: not implemented for {B.dtype_name(self.dtype)} tensors; pass dtype= or "
                           "convert with .float()")
    x = self if dtype is None else self._cast(B.as_dtype(dtype))
    return self._apply(O.LOG_SOFTMAX, (x,), {"dim": _norm_dim(dim, x.ndim, "log_softmax")})


# ---------------------------------------------------------------- comparisons of whole tensors, logic, tests
# (never differentiable)
def equal(self, other: "Tensor") -> bool:
    return self.shape == other.shape and bool(np.array_equal(self._array, other._array))


def allclose(self, other: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    return bool(np.allclose(self._array, _as_tensor(other)._array, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(self, other: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> "Tensor":
    return self._wrap(np.isclose(self._array, _as_tensor(other)._array, rtol=rtol, atol=atol,
                                 equal_nan=equal_nan))


def logical_not(self) -> "Tensor":
    return self._wrap(np.logical_not(self._array))


def logical_and(self, other: Any) -> "Tensor":
    return self._wrap(np.logical_and(self._array, _as_tensor(other)._array))


def logical_or(self, other: Any) -> "Tensor":
    return self._wrap(np.logical_or(self._array, _as_tensor(other)._array))


def isnan(self) -> "Tensor":
    return self._wrap(np.isnan(self._array))


def isinf(self) -> "Tensor":
    return self._wrap(np.isinf(self._array))


def isfinite(self) -> "Tensor":
    return self._wrap(np.isfinite(self._array))


def any(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
    d = _norm_dims(dim, self.ndim, "any")
    r = np.asarray(np.any(self._array, axis=d, keepdims=keepdim))
    return self._wrap(r.astype(np.uint8) if self._array.dtype == np.uint8 else r)  # torch keeps uint8


def all(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
    d = _norm_dims(dim, self.ndim, "all")
    r = np.asarray(np.all(self._array, axis=d, keepdims=keepdim))
    return self._wrap(r.astype(np.uint8) if self._array.dtype == np.uint8 else r)
