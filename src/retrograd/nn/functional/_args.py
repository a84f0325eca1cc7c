"""Argument handling that more than one op family shares: the float ``input`` check and int-or-tuple
arguments (kernel sizes, strides, ...)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import backend as B
from ...tensor import Tensor


def _float_input(x: Any, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(x).__name__}")
    return x if x._array.dtype.kind in "fV" else x._cast(B.defaults.float_dtype)


def _tuple(v: Any, n: int, name: str, op: str) -> tuple:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v}")
    return v
