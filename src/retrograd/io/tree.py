"""Nested Python state (dicts, lists, tuples, numbers, strings, arrays) as JSON plus named arrays.

Optimizer, scheduler, data-loader and RNG states are trees whose leaves are
mostly plain numbers with some arrays. ``flatten`` turns such a tree into a
JSON-able structure in which each array is replaced by a reference
``{"__ndarray__": key}`` (or ``__tensor__`` for an ``rg.Tensor``), collecting the
arrays by dotted key so they can go into one safetensors file; ``unflatten``
reverses it. Tuples, ``OrderedDict``, non-string dict keys, NumPy scalars, and a
Tensor's ``requires_grad`` and ``Parameter`` class survive the round trip (JSON
alone would turn ``betas=(0.9, 0.999)`` into a list and ``state[0]`` into
``state["0"]``). Nothing else is stored: no Python object is ever pickled.
``unflatten`` trusts nothing it reads: a reference to a missing array, a marker
of the wrong shape, a NumPy scalar of a non-numeric dtype (``V2000000000`` would
make 2 GB from a few bytes) or nesting deeper than ``MAX_DEPTH`` raises
``TreeError`` naming the place in the tree.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..nn.module import Parameter
from ..tensor import Tensor, wrap_array
from .safetensors_reader import bfloat16_dtype

__all__ = ["flatten", "unflatten", "TreeError", "MAX_DEPTH"]

MAX_DEPTH = 200  # optimizer, scheduler and RNG states nest a handful of levels


class TreeError(ValueError):
    """Saved tree metadata that does not describe a state ``flatten`` could have written."""

_MARKERS = ("__ndarray__", "__tensor__", "__tuple__", "__dict__", "__npscalar__", "__odict__")


def _plain_str_keys(d: dict) -> bool:
    return all(isinstance(k, str) and k not in _MARKERS for k in d)


def _unsupported(obj: Any, path: str) -> TypeError:
    what = f"{type(obj).__module__}.{type(obj).__qualname__}"
    hint = ""
    if callable(getattr(obj, "state_dict", None)):
        hint = (f"; save its state_dict() instead ({path or 'obj'}.state_dict()) and restore it with "
                "load_state_dict()")
    return TypeError(f"cannot save {path or 'the value'}: {what} is neither a number, string, None, list, tuple, "
                     f"dict, Tensor nor np.ndarray (retrograd never pickles Python objects){hint}")


def flatten(obj: Any, arrays: dict[str, np.ndarray], path: str = "") -> Any:
    """The JSON-able form of ``obj``; arrays are moved into ``arrays`` under dotted keys."""
    if isinstance(obj, Tensor) or isinstance(obj, np.ndarray):
        kind = "__tensor__" if isinstance(obj, Tensor) else "__ndarray__"
        arr = obj._array if isinstance(obj, Tensor) else obj
        if arr.dtype == object:
            raise TypeError(f"cannot save {path or 'the value'}: object arrays are not supported")
        key = path or "value"
        n = 1
        while key in arrays:
            key, n = f"{path}#{n}", n + 1
        arrays[key] = arr if arr.flags.c_contiguous else arr.copy(order="C")
        ref = {kind: key}
        if isinstance(obj, Parameter):
            ref["parameter"] = True
        if isinstance(obj, Tensor) and obj.requires_grad:
            ref["requires_grad"] = True
        return ref
    if isinstance(obj, np.generic):
        bf16 = obj.dtype == bfloat16_dtype() if obj.dtype.kind == "V" else False
        return {"__npscalar__": float(obj) if bf16 else obj.item(), "dtype": "bfloat16" if bf16 else obj.dtype.str}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    sub = (lambda k: f"{path}.{k}" if path else str(k))
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, arrays, sub(i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, arrays, sub(i)) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if _plain_str_keys(obj):
            out = {k: flatten(v, arrays, sub(k)) for k, v in obj.items()}
        else:
            out = {"__dict__": [[flatten(k, arrays, sub(f"key{i}")), flatten(v, arrays, sub(k))]
                                for i, (k, v) in enumerate(obj.items())]}
        return {"__odict__": out} if isinstance(obj, OrderedDict) else out
    raise _unsupported(obj, path)


def unflatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of ``flatten``: arrays referenced by key are taken from ``arrays``."""
    return _unflatten(obj, arrays, "", 0)


def _unflatten(obj: Any, arrays: dict[str, np.ndarray], where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise TreeError(f"{where or 'the tree'}: nested deeper than {MAX_DEPTH} levels")
    sub = (lambda k: f"{where}.{k}" if where else str(k))
    if isinstance(obj, list):
        return [_unflatten(v, arrays, sub(i), depth + 1) for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    for k in ("__ndarray__", "__tensor__"):
        if k in obj:
            return _array_ref(obj, k, arrays, where)
    if len(obj) == 1:
        (k, v), = obj.items()
        if k == "__tuple__":
            return tuple(_unflatten(x, arrays, sub(i), depth + 1) for i, x in enumerate(_marker_list(v, k, where)))
        if k == "__dict__":
            out = {}
            for i, pair in enumerate(_marker_list(v, k, where)):
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise TreeError(f"{sub(i)}: a __dict__ item must be a [key, value] pair, got {_short(pair)}")
                key = _hashable(_unflatten(pair[0], arrays, sub(f"key{i}"), depth + 1))
                try:
                    out[key] = _unflatten(pair[1], arrays, sub(i), depth + 1)
                except TypeError:
                    raise TreeError(f"{sub(i)}: dict key {_short(pair[0])} is not hashable") from None
            return out
        if k == "__odict__":
            inner = _unflatten(v, arrays, where, depth + 1)
            if not isinstance(inner, dict):
                raise TreeError(f"{where or 'the tree'}: __odict__ holds a {type(inner).__name__}, expected a dict")
            return OrderedDict(inner)
    if "__npscalar__" in obj:
        return _scalar(obj, where)
    return {k: _unflatten(v, arrays, sub(k), depth + 1) for k, v in obj.items()}


def _short(x: Any) -> str:
    r = repr(x)
    return r if len(r) <= 80 else r[:77] + "..."


def _marker_list(v: Any, marker: str, where: str) -> list:
    if not isinstance(v, list):
        raise TreeError(f"{where or 'the tree'}: {marker} holds a {type(v).__name__}, expected a list")
    return v


def _array_ref(obj: dict, kind: str, arrays: dict, where: str) -> Any:
    v = obj[kind]
    if not isinstance(v, str) or v not in arrays:
        raise TreeError(f"{where or 'the tree'}: array {_short(v)} referenced by the saved state is missing")
    flags = {f: obj.get(f, False) for f in ("parameter", "requires_grad")}
    if not all(isinstance(b, bool) for b in flags.values()):
        raise TreeError(f"{where or 'the tree'}: the flags of array {v!r} must be true or false, got {flags}")
    if kind == "__ndarray__":
        return arrays[v]
    t = wrap_array(arrays[v])
    try:
        if flags["parameter"]:
            return Parameter(t, requires_grad=flags["requires_grad"])
        return t.requires_grad_(True) if flags["requires_grad"] else t
    except (RuntimeError, TypeError, ValueError) as e:
        raise TreeError(f"{where or 'the tree'}: array {v!r}: {e}") from None


def _scalar(obj: dict, where: str) -> Any:
    value, name = obj["__npscalar__"], obj.get("dtype")
    bad = f"{where or 'the tree'}: NumPy scalar"
    if name == "bfloat16" and bfloat16_dtype() is not None:
        dtype = bfloat16_dtype()
    else:
        try:
            dtype = np.dtype(name) if isinstance(name, str) else None
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in "biuf" or dtype.itemsize > 16:
            raise TreeError(f"{bad} of dtype {_short(name)}: expected a boolean, integer or floating dtype")
    if not isinstance(value, (bool, int, float)):
        raise TreeError(f"{bad} of dtype {dtype}: value {_short(value)} is not a number")
    try:
        return dtype.type(value)
    except (OverflowError, TypeError, ValueError) as e:
        raise TreeError(f"{bad}: {value!r} does not fit dtype {dtype}: {e}") from None


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k
