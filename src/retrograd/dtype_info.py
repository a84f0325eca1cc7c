"""``rg.finfo`` and ``rg.iinfo``: the limits of a dtype, as ``torch.finfo``/``torch.iinfo``
(``torch.finfo(x.dtype).min`` is how real attention code masks)."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend as B

__all__ = ["finfo", "iinfo"]


def _np_finfo(d: np.dtype) -> Any:
    try:
        return np.finfo(d)
    except (ValueError, TypeError):  # ml_dtypes' bfloat16 carries its own finfo
        import ml_dtypes
        return ml_dtypes.finfo(d)


class finfo:  # noqa: N801 - PyTorch's name
    """Machine limits of a floating dtype (the default dtype when none is given): ``bits``, ``eps``,
    ``max``, ``min``, ``tiny`` (= ``smallest_normal``), ``resolution`` and ``dtype`` (its name)."""

    def __init__(self, type: Any = None) -> None:  # noqa: A002 - PyTorch's argument name
        d = B.as_dtype(type)
        if d.kind != "f" and B.dtype_name(d) != "bfloat16":
            raise TypeError(f"finfo() requires a floating point input type, got {B.dtype_name(d)}; "
                            "use rg.iinfo for integer types")
        info = _np_finfo(d)
        self.bits = int(info.bits)
        self.eps = float(info.eps)
        self.max = float(info.max)
        self.min = float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)
        self.resolution = 10.0 ** -int(info.precision)  # exact decimal, as PyTorch (NumPy rounds to the dtype)
        self.dtype = B.dtype_name(d)

    def __repr__(self) -> str:
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, eps={self.eps:g}, "
                f"smallest_normal={self.smallest_normal:g}, tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:  # noqa: N801 - PyTorch's name
    """Limits of an integer dtype: ``bits``, ``max``, ``min`` and ``dtype`` (its name)."""

    def __init__(self, type: Any) -> None:  # noqa: A002
        d = B.as_dtype(type)
        if d.kind not in "iu":
            raise TypeError(f"iinfo() requires an integer input type, got {B.dtype_name(d)}; "
                            "use rg.finfo for floating point types")
        info = np.iinfo(d)
        self.bits, self.max, self.min = int(info.bits), int(info.max), int(info.min)
        self.dtype = B.dtype_name(d)

    def __repr__(self) -> str:
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype})"
