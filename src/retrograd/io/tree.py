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
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..nn.module import Parameter
from ..tensor import Tensor, wrap_array

__all__ = ["flatten", "unflatten"]

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
            out = {k: flatten(v, arrays, sub(k)) for k, v in obj.items()}
        else:
            out = {"__dict__": [[flatten(k, arrays, sub(f"key{i}")), flatten(v, arrays, sub(k))]
                                for i, (k, v) in enumerate(obj.items())]}
        return {"__odict__": out} if isinstance(obj, OrderedDict) else out
    raise _unsupported(obj, path)


def unflatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of ``flatten``: arrays referenced by key are taken from ``arrays``."""
    if isinstance(obj, list):
        return [unflatten(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    for k in ("__ndarray__", "__tensor__"):
        if k in obj:
            v = obj[k]
            if v not in arrays:
                raise KeyError(f"array {v!r} referenced by the saved state is missing")
            if k == "__ndarray__":
                return arrays[v]
            t = wrap_array(arrays[v])
            if obj.get("parameter"):
                return Parameter(t, requires_grad=bool(obj.get("requires_grad")))
            return t.requires_grad_(True) if obj.get("requires_grad") else t
    if len(obj) == 1:
        (k, v), = obj.items()
        if k == "__tuple__":
            return tuple(unflatten(x, arrays) for x in v)
        if k == "__dict__":
            return {_hashable(unflatten(a, arrays)): unflatten(b, arrays) for a, b in v}
        if k == "__odict__":
            return OrderedDict(unflatten(v, arrays))
    if "__npscalar__" in obj:
        return np.dtype(obj["dtype"]).type(obj["__npscalar__"])
    return {k: unflatten(v, arrays) for k, v in obj.items()}


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k
