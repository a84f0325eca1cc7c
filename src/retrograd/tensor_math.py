"""Tensor's named arithmetic and elementwise math (``add``, ``div``, ``matmul``,
``maximum``, ``exp``, ``log``, ``tanh``, ``abs``, ``floor``, ``clamp``,
``masked_fill`` ...) as plain functions that ``Tensor`` binds as methods under
their own names (``exp = tensor_math.exp``), and the free functions ``matmul``
and ``where`` (``rg.matmul``, ``rg.where``) that those methods call.

Below ``tensor.py``, like ``tensor_shape``: it makes Tensors through
``self._apply`` / ``self._wrap`` and tells them apart through
``engine.state.tensor_type``.

The functions carry their methods' names, so ``abs``, ``pow`` and ``round`` shadow the builtins in
this module (``builtins.abs`` where the builtin is meant).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import backend as B
from . import ops as O
from . import ops_linalg as OL
from .amp.autocast_mode import outside_autocast, state as _autocast
from .engine import state
from .scalars import _F32
from .tensor_convert import _as_tensor, _coerce, _rank

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module


def matmul(a: Any, b: Any) -> Tensor:
    a, b = _coerce(_as_tensor(a), b, "matmul")
    sa, sb = a.shape, b.shape
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {sa} and {sb}")
    ka = sa[-1]
    kb = sb[0] if b.ndim == 1 else sb[-2]
    if ka != kb:
        raise RuntimeError(f"matmul: shapes {sa} and {sb} do not align ({ka} != {kb})")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise RuntimeError(f"matmul: batch dimensions of shapes {sa} and {sb} do not broadcast") from None
    return a._apply(OL.MATMUL, (a, b))


def where(condition: Any, input: Any = None, other: Any = None) -> Any:  # noqa: A002
    c = condition._array if isinstance(condition, state.tensor_type) else np.asarray(condition)
    if input is None and other is None:
        return tuple(state.tensor_type._wrap(i.astype(np.int64)) for i in np.nonzero(c))
    if c.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {B.dtype_name(c.dtype)}")
    if isinstance(input, state.tensor_type):
        a, b = _coerce(input, other, "where")
    elif isinstance(other, state.tensor_type):
        b, a = _coerce(other, input, "where")
    else:
        a, b = _coerce(_as_tensor(input), other, "where")
    try:
        np.broadcast_shapes(c.shape, a.shape, b.shape)
    except ValueError:
        raise RuntimeError(f"where: shapes of condition {c.shape}, input {a.shape} and other {b.shape} "
                           "do not broadcast") from None
    return a._apply(O.WHERE, (a, b), {"cond": c})


def _nondiff(t: Tensor, f: Callable) -> Tensor:
    """``f`` on the array, as a new Tensor outside the graph."""
    return t._wrap(np.asarray(f(t._array)))


# ====================================================================== methods
def add(self, other: Any, *, alpha: Any = 1) -> "Tensor":
    return self + (other if alpha == 1 else other * alpha)


def sub(self, other: Any, *, alpha: Any = 1) -> "Tensor":
    return self - (other if alpha == 1 else other * alpha)


def mul(self, other: Any) -> "Tensor":
    return self * other


def div(self, other: Any, *, rounding_mode: str | None = None) -> "Tensor":
    if rounding_mode is None:
        return self / other
    a, b = _coerce(self, other, "div")
    if rounding_mode == "floor":
        return self._wrap(np.asarray(np.floor_divide(a._array, b._array)))
    if rounding_mode == "trunc":
        q = np.trunc(a._array / b._array)
        return self._wrap(np.asarray(q.astype(a.dtype) if a.dtype.kind not in "fV" else q))
    raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")


def pow(self, exponent: Any) -> "Tensor":
    return self ** exponent


@outside_autocast  # one kernel in PyTorch, on no autocast list
def dot(self, other: "Tensor") -> "Tensor":
    if self.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"dot: 1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors")
    return matmul(self, other)


def mm(self, other: "Tensor") -> "Tensor":
    if self.ndim != 2 or other.ndim != 2:
        raise RuntimeError(f"mm: two 2-D matrices expected, got {self.ndim}-D and {other.ndim}-D")
    return matmul(self, other)


def bmm(self, other: "Tensor") -> "Tensor":
    if self.ndim != 3 or other.ndim != 3:
        raise RuntimeError(f"bmm: batch1 and batch2 must be 3-D tensors, got {self.ndim}-D and "
                           f"{other.ndim}-D")
    return matmul(self, other)


def neg(self) -> "Tensor":
    return -self


def maximum(self, other: Any) -> "Tensor":
    a, b = _coerce(self, other, "maximum")
    return self._apply(O.MAXIMUM, (a, b), {"max": True})


def minimum(self, other: Any) -> "Tensor":
    a, b = _coerce(self, other, "minimum")
    return self._apply(O.MINIMUM, (a, b), {"max": False})


def atan2(self, other: Any) -> "Tensor":
    a, b = _coerce(self, other, "atan2", true_div=True)
    return self._apply(O.ATAN2, (a, b))


def _unary(self, rule: O.Rule, kw: dict | None = None) -> "Tensor":
    x = self
    if x._array.dtype.kind not in "fV":
        x = x._cast(B.defaults.float_dtype)
    return self._apply(rule, (x,), kw)


def _unary_op(name: str, rule: O.Rule) -> Callable:
    """The method ``name``: ``rule`` on the tensor, an integer or bool one cast to the default float
    dtype first (``_unary`` without its frame: one op's Python cost is what a small tensor pays)."""

    f = rule.array_op

    def method(self: Tensor) -> Tensor:
        a = self._array
        d = a.dtype
        if d is _F32 and f is not None and not _autocast.cpu_enabled:  # _apply1's path, inline
            return self._record1(rule, self, a, f(a), None)
        if d.kind in "fV":
            return self._apply1(rule, self)
        return self._apply1(rule, self._cast(B.defaults.float_dtype))

    method.__name__ = method.__qualname__ = name
    return method


exp = _unary_op("exp", O.EXP)
expm1 = _unary_op("expm1", O.EXPM1)
log = _unary_op("log", O.LOG)
log1p = _unary_op("log1p", O.LOG1P)


def log2(self) -> "Tensor":
    return self.log() / math.log(2.0)


def log10(self) -> "Tensor":
    return self.log() / math.log(10.0)


sqrt = _unary_op("sqrt", O.SQRT)
rsqrt = _unary_op("rsqrt", O.RSQRT)


def square(self) -> "Tensor":
    return self * self


def reciprocal(self) -> "Tensor":
    return 1.0 / self


sin = _unary_op("sin", O.SIN)
cos = _unary_op("cos", O.COS)
tan = _unary_op("tan", O.TAN)
asin = _unary_op("asin", O.ASIN)
acos = _unary_op("acos", O.ACOS)
atan = _unary_op("atan", O.ATAN)
sinh = _unary_op("sinh", O.SINH)
cosh = _unary_op("cosh", O.COSH)
tanh = _unary_op("tanh", O.TANH)
sigmoid = _unary_op("sigmoid", O.SIGMOID)
erf = _unary_op("erf", O.ERF)


def relu(self) -> "Tensor":
    return self._apply(O.RELU, (self,))


def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> "Tensor":
    return _unary(self, O.SOFTPLUS, {"beta": beta, "threshold": threshold})


def abs(self) -> "Tensor":
    if self._array.dtype == np.bool_:
        raise RuntimeError("abs: not implemented for bool tensors")
    return self._apply(O.ABS, (self,))


def sign(self) -> "Tensor":
    if self._array.dtype == np.bool_:
        return _nondiff(self, np.copy)
    return self._apply(O.SIGN, (self,))


def _rounding(self, rule: O.Rule, kw: dict | None = None) -> "Tensor":
    if self._array.dtype == np.bool_:
        raise RuntimeError(f"{rule.name}: not implemented for bool tensors")
    if self._array.dtype.kind not in "fV":  # integers are already whole: a copy of the same dtype
        return _nondiff(self, np.copy)
    return self._apply(rule, (self,), kw)


def floor(self) -> "Tensor":
    return _rounding(self, O.FLOOR)


def ceil(self) -> "Tensor":
    return _rounding(self, O.CEIL)


def round(self, *, decimals: int = 0) -> "Tensor":
    return _rounding(self, O.ROUND, {"decimals": decimals})


def trunc(self) -> "Tensor":
    return _rounding(self, O.TRUNC)


def clamp(self, min: Any = None, max: Any = None) -> "Tensor":  # noqa: A002
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
    if isinstance(min, state.tensor_type) or isinstance(max, state.tensor_type):
        out = self
        if min is not None:
            out = out.maximum(min)
        if max is not None:
            out = out.minimum(max)
        return out
    x = self
    if x._array.dtype.kind not in "fV":  # integer/bool tensors promote with float or int bounds
        x = x._cast(B.promote([(x.dtype, _rank(x))] + [(np.result_type(type(v)), 0) for v in (min, max)
                                                        if v is not None]))
    return self._apply(O.CLAMP, (x,), {"min": min, "max": max})


def where_method(self, condition: Any, other: Any) -> "Tensor":
    """``tensor.where(condition, other)``: ``where(condition, tensor, other)``."""
    return where(condition, self, other)


def masked_fill(self, mask: Any, value: Any) -> "Tensor":
    m = _as_tensor(mask)._array
    if m.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {B.dtype_name(m.dtype)}")
    try:
        np.broadcast_shapes(m.shape, self.shape)
    except ValueError:
        raise RuntimeError(f"masked_fill: mask of shape {m.shape} does not broadcast to the tensor's "
                           f"shape {self.shape}") from None
    if isinstance(value, state.tensor_type):
        if value.ndim != 0:
            raise RuntimeError("masked_fill: only supports a 0-dimensional value tensor")
        return where(m, value.to(self.dtype), self)
    # out of place, the result takes the broadcast shape of mask and tensor (as torch.masked_fill)
    return self._apply(O.MASKED_FILL, (self,), {"mask": m, "value": value})
