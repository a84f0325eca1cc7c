"""Array namespace, dtypes, the default float dtype and PyTorch's type promotion.

Everything above this module gets its arrays from ``xp`` so that a CuPy backend
can be swapped in later without touching the ops.
"""
from __future__ import annotations

import builtins as _builtins

import ml_dtypes as _ml_dtypes
import numpy as np

xp = np

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
int16 = np.dtype(np.int16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)
# bfloat16 is ml_dtypes' NumPy dtype (the one JAX uses). NumPy files it under kind "V", not "f":
# test floating point with ``is_floating`` or ``dtype.kind in FLOAT_KINDS``, never ``kind == "f"``.
bfloat16 = np.dtype(_ml_dtypes.bfloat16)
FLOAT_KINDS = "fV"  # "V": bfloat16, the only non-"f" floating dtype retrograd accepts

half, float, double = float16, float32, float64  # noqa: A001  (PyTorch aliases)
int, long = int32, int64  # noqa: A001

_FLOATS = (float16, bfloat16, float32, float64)
_NAMES = {
    float16: "float16", bfloat16: "bfloat16", float32: "float32", float64: "float64", int8: "int8",
    uint8: "uint8", int16: "int16", int32: "int32", int64: "int64", bool_: "bool",
}


class _Defaults:
    """Process-wide settings, kept in one object rather than loose globals."""

    __slots__ = ("float_dtype",)

    def __init__(self) -> None:
        self.float_dtype = float32


defaults = _Defaults()


def get_default_dtype() -> np.dtype:
    return defaults.float_dtype


def set_default_dtype(dtype) -> None:
    d = np.dtype(dtype)
    if d not in _FLOATS:
        raise TypeError(f"set_default_dtype: only floating dtypes are allowed, got {dtype_name(d)}")
    defaults.float_dtype = d


def dtype_name(dtype) -> str:
    d = np.dtype(dtype)
    return _NAMES.get(d, str(d))


def as_dtype(dtype) -> np.dtype:
    """Accept rg dtypes, numpy dtypes, Python types and strings."""
    if dtype is None:
        return defaults.float_dtype
    if dtype is builtins_float:
        return defaults.float_dtype
    if dtype is builtins_int:
        return int64
    if dtype is builtins_bool:
        return bool_
    try:
        d = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(set(_NAMES.values()))}") from e
    if d not in _NAMES:
        raise TypeError(f"unsupported dtype {d}; expected one of {sorted(set(_NAMES.values()))}")
    return d


builtins_float, builtins_int, builtins_bool = _builtins.float, _builtins.int, _builtins.bool


def is_floating(dtype) -> bool:
    return dtype.kind in FLOAT_KINDS


def _category(dtype) -> int:
    k = dtype.kind
    return 2 if k in FLOAT_KINDS else (0 if k == "b" else 1)


def promote(dtypes_by_rank: list[tuple[np.dtype, int]]) -> np.dtype:
    """PyTorch's promotion: ``(dtype, rank)`` pairs where rank 2 is a tensor with
    dimensions, 1 a zero-dim tensor and 0 a Python scalar. The highest category
    (bool < int < float) wins; among the operands of that category, the highest
    rank decides the dtype; categories held only by Python scalars give the
    default dtype (float) or int64."""
    cat = max(_category(d) for d, _ in dtypes_by_rank)
    best_rank = max(r for d, r in dtypes_by_rank if _category(d) == cat)
    if best_rank == 0:
        if cat == 2:
            # scalar floats join a tensor category below: default dtype
            return defaults.float_dtype
        return int64 if cat == 1 else bool_
    return np.result_type(*[d for d, r in dtypes_by_rank if _category(d) == cat and r == best_rank])


# ------------------------------------------------------------------ bfloat16 arithmetic
# PyTorch computes a bfloat16 op on the CPU in float32 and rounds its result once to bfloat16;
# retrograd does the same (``ops.lowp_rule``), with these two conversions.
def astype(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr.astype(dtype)`` as PyTorch casts: float64 (and int64) reach bfloat16 through float32
    (two roundings, as ``c10::BFloat16(float)``), where ml_dtypes would round once."""
    if dtype is bfloat16 and arr.dtype != float32 and arr.dtype != bfloat16 and arr.dtype.kind != "b":
        return arr.astype(float32).astype(bfloat16)
    return arr.astype(dtype)


def round_bfloat16(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to bfloat16 (round to nearest even), returned as float32: bfloat16
    arithmetic emulated in float32 (float64 goes through float32 first, as PyTorch's cast)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = np.isnan(bits.view(np.float32))
    bits = (bits + (((bits >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF))) & np.uint32(0xFFFF0000)
    out = bits.view(np.float32)
    if nan.any():
        out = np.where(nan, np.float32(np.nan), out)
    return out
