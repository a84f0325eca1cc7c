"""Python numbers as NumPy meets them in an op with an array: ``const(s, x)``.

NumPy 2 converts a Python number to the array's dtype (NEP 50) and then runs the same loop as for two
arrays of that dtype; the conversion costs about as much as the op itself on a small array. ``const``
makes it once per number and dtype, for the tensor-scalar rules (``x * 0.5``) and the engine's backward.
Below ``engine``: plain NumPy, no retrograd import.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

_ndarray = np.ndarray
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_C32: dict = {}
_C64: dict = {}
_F32_MAX = float(np.finfo(np.float32).max)
_CONSTS_MAX = 256  # distinct numbers kept per dtype (a schedule's learning rates would grow it without end)


def const(s: Any, x: Any) -> Any:
    """The Python number ``s`` as ``x`` would meet it in ``x <op> s``, made once: a read-only 0-d array of
    ``x``'s dtype when ``x`` is a float32 or float64 ndarray, else ``s`` itself (a Tensor under
    create_graph, other dtypes, numbers that are not plain float/int: a NumPy scalar is not "weak").

    The bits are those of ``x <op> s``: the same conversion, the same loop; a 0-d array skips NumPy's
    conversion, about half of a small array's op (16 floats: 580 against 280 ns). Zero (whose sign a
    dict key loses), nan, numbers beyond float32's range for float32 (their conversion overflows and
    warns) and integers past 2**53 take the plain path."""
    if type(x) is _ndarray:
        d = x.dtype
        cache = _C32 if d is _F32 else _C64 if d is _F64 else None
        t = type(s)
        if cache is not None and (t is float or t is int):
            c = cache.get(s)
            if c is not None:
                return c
            if s and (t is float or -2 ** 53 < s < 2 ** 53) and abs(s) <= (_F32_MAX if d is _F32 else math.inf):
                if len(cache) >= _CONSTS_MAX:
                    cache.clear()
                c = cache[s] = np.array(s, dtype=d)
                c.flags.writeable = False
                return c
    return s
