"""How Python data and mixed operands become Tensors of one dtype, as in PyTorch:
``_to_array`` (``torch.tensor``'s dtype inference: floats to the default dtype,
ints to int64), ``_as_tensor`` and ``_coerce`` (two operands promoted to one
dtype, Python scalars "weak").

Below ``tensor.py``, which imports these helpers (so do ``tensor_math`` and
``tensor_functions``); this module never imports it and tells Tensors apart
through ``engine.state.tensor_type``.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import backend as B
from .engine import state

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module
_PY_SCALARS = (bool, int, float, np.bool_, np.integer, np.floating)


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Build an array as ``torch.tensor`` would: floats default to the default
    dtype, ints to int64, arrays keep their dtype."""
    if isinstance(data, state.tensor_type):
        arr = data._array.copy()
        return arr if dtype is None else B.astype(arr, B.as_dtype(dtype))
    if dtype is not None:
        d = B.as_dtype(dtype)
        try:
            if d is B.bfloat16:
                return B.astype(np.array(_tensor_list_to_nested(data) if isinstance(data, (list, tuple)) else data), d)
            return np.array(data, dtype=d)
        except (TypeError, ValueError) as e:
            raise TypeError(f"tensor: could not convert {type(data).__name__} to {B.dtype_name(d)}: {e}") from e
    if isinstance(data, np.ndarray):
        arr = data.copy()
    elif isinstance(data, (np.generic,)):
        arr = np.array(data)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, state.tensor_type) for x in _flat_iter(data)):
            data = _tensor_list_to_nested(data)
        try:
            arr = np.array(data)
        except ValueError as e:
            raise ValueError(f"tensor: expected a rectangular nested sequence of numbers: {e}") from e
        if arr.dtype.kind in "fV":
            arr = arr.astype(B.defaults.float_dtype)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "O" or arr.dtype.kind in "USV":
            raise TypeError(f"tensor: can't convert {type(data).__name__} of {arr.dtype} objects to a tensor; "
                            "expected numbers, bools or nested sequences of them")
    if arr.dtype not in B._NAMES:
        if arr.dtype.kind in "fV":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"tensor: unsupported dtype {arr.dtype}")
    return arr


def _flat_iter(seq: Any) -> Iterable:
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flat_iter(x)
        else:
            yield x


def _tensor_list_to_nested(seq: Any) -> Any:
    if isinstance(seq, (list, tuple)):
        return [_tensor_list_to_nested(x) for x in seq]
    return seq._array if isinstance(seq, state.tensor_type) else seq


def _as_tensor(x: Any) -> Tensor:
    T = state.tensor_type
    if isinstance(x, T):
        return x
    return T._wrap(_to_array(x))


def _rank(x: Any) -> int:
    if isinstance(x, state.tensor_type):
        return 2 if x._array.ndim else 1
    if isinstance(x, _PY_SCALARS) and not isinstance(x, np.generic):
        return 0
    return 2 if np.ndim(x) else 1


def _coerce(a: Tensor, other: Any, op: str, true_div: bool = False) -> tuple[Tensor, Tensor]:
    """Two Tensors of one dtype, promoted as PyTorch does; ``a`` is a Tensor."""
    ad = a._array.dtype
    if type(other) is state.tensor_type:
        b = other
        bd = b._array.dtype
        if bd is ad or bd == ad:
            if true_div and ad.kind not in "fV":
                d = B.defaults.float_dtype
                return a._cast(d), b._cast(d)
            return a, b
        d = B.promote([(ad, _rank(a)), (bd, _rank(b))])
    else:
        if isinstance(other, (bool, int, float)):
            # Python scalars are "weak": they keep the tensor's dtype unless they raise its category
            k = ad.kind
            if isinstance(other, bool) or (isinstance(other, int) and k != "b") or (k in "fV"):
                if not (true_div and k not in "fV"):
                    # uint8 wraps a negative int around, as torch does (np.array(-3, uint8) raises)
                    return a, a._wrap(B.astype(np.array(other), ad) if k in "uV" else np.array(other, dtype=ad))
            d = B.promote([(ad, _rank(a)), (np.result_type(type(other)), 0)])
            if true_div and d.kind not in "fV":
                d = B.defaults.float_dtype
            return a._cast(d), a._wrap(B.astype(np.array(other), d))
        if other is None or isinstance(other, (str, bytes, dict, set)):
            raise TypeError(f"{op}: unsupported operand type {type(other).__name__} for a Tensor")
        b = _as_tensor(other) if not isinstance(other, np.ndarray) else a._wrap(other)
        bd = b._array.dtype
        if bd == ad:
            d = ad
        else:
            d = B.promote([(ad, _rank(a)), (bd, _rank(b))])
    if true_div and d.kind not in "fV":
        d = B.defaults.float_dtype
    return a._cast(d), b._cast(d)


# ------------------------------------------------------------------ dtype conversion methods (bound by tensor.py)
def astype(self: Tensor, dtype: Any) -> Tensor:
    return self._cast(B.as_dtype(dtype))


def type_as(self: Tensor, other: Tensor) -> Tensor:
    return self._cast(other.dtype)


def _to(dtype: Any, name: str) -> Any:
    def method(self: Tensor) -> Tensor:
        return self._cast(dtype)

    method.__name__ = name
    method.__qualname__ = f"Tensor.{name}"
    return method


float_, double, half, bfloat16 = (_to(d, n) for d, n in ((B.float32, "float"), (B.float64, "double"),
                                                         (B.float16, "half"), (B.bfloat16, "bfloat16")))
long, int_, bool_ = (_to(d, n) for d, n in ((B.int64, "long"), (B.int32, "int"), (B.bool_, "bool")))
