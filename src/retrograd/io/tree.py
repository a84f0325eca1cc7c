"""Nested Python state (dicts, lists, tuples, numbers, strings, arrays) as JSON plus named arrays.

Optimizer, scheduler, data-loader and RNG states are trees whose leaves are
mostly plain numbers with some arrays. ``flatten`` turns such a tree into a
JSON-able structure in which each array is replaced by a reference
``{"__ndarray__": key}`` (or ``__tensor__`` for an ``rg.Tensor``), collecting the
arrays by dotted key so they can go into one safetensors file; ``unflatten``
reverses it. Tuples, non-string dict keys and NumPy scalars survive the round
trip (JSON alone would turn ``betas=(0.9, 0.999)`` into a list and ``state[0]``
into ``state["0"]``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor, wrap_array

__all__ = ["flatten", "unflatten"]

_MARKERS = ("__ndarray__", "__tensor__", "__tuple__", "__dict__", "__npscalar__")


def _plain_str_keys(d: dict) -> bool:
    return all(isinstance(k, str) and k not in _MARKERS for k in d)


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
        return {kind: key}
    if isinstance(obj, np.generic):
        return {"__npscalar__": obj.item(), "dtype": obj.dtype.str}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    sub = (lambda k: f"{path}.{k}" if path else str(k))
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, arrays, sub(i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, arrays, sub(i)) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if _plain_str_keys(obj):
            return {k: flatten(v, arrays, sub(k)) for k, v in obj.items()}
        return {"__dict__": [[flatten(k, arrays, sub(f"key{i}")), flatten(v, arrays, sub(k))]
                             for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"cannot save {path or 'the value'}: {type(obj).__module__}.{type(obj).__qualname__} is "
                    "neither a number, string, list, tuple, dict nor array")


def unflatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of ``flatten``: arrays referenced by key are taken from ``arrays``."""
    if isinstance(obj, list):
        return [unflatten(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (k, v), = obj.items()
        if k in ("__ndarray__", "__tensor__"):
            if v not in arrays:
                raise KeyError(f"array {v!r} referenced by the saved state is missing")
            return wrap_array(arrays[v]) if k == "__tensor__" else arrays[v]
        if k == "__tuple__":
            return tuple(unflatten(x, arrays) for x in v)
        if k == "__dict__":
            return {_hashable(unflatten(a, arrays)): unflatten(b, arrays) for a, b in v}
    if "__npscalar__" in obj:
        return np.dtype(obj["dtype"]).type(obj["__npscalar__"])
    return {k: unflatten(v, arrays) for k, v in obj.items()}


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k
