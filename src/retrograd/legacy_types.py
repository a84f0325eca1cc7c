"""PyTorch's legacy typed constructors: ``rg.LongTensor([1, 2])``, ``rg.FloatTensor(2, 3)`` ...

Each name builds a CPU tensor of its dtype from data (a list, an array, a tensor of the same type) or
from sizes (uninitialised, as PyTorch), and ``isinstance(x, rg.LongTensor)`` is True for an int64
tensor, as ``isinstance(x, torch.LongTensor)`` is. They are not subclasses of ``Tensor``: what they make
is a plain ``Tensor``. New code should write ``rg.tensor(data, dtype=...)`` or ``rg.empty(...)``."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend as B
from . import devices
from .tensor import Tensor, _to_array, wrap_array
from .tensor_compat import LEGACY_NAMES


class _LegacyType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Tensor) and obj.dtype == cls.legacy_dtype

    def __call__(cls, *args: Any, device: Any = None) -> Tensor:
        devices.check(device, cls.__name__)
        dt = cls.legacy_dtype
        if not args:
            return wrap_array(np.empty((0,), dt))
        if len(args) == 1 and isinstance(args[0], Tensor):
            if args[0].dtype != dt:
                raise TypeError(f"{cls.__name__}: expected {B.dtype_name(dt)} (got {B.dtype_name(args[0].dtype)}); "
                                f"use tensor.to({B.dtype_name(dt)}) to convert")
            return args[0]
        if all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args) or (
                len(args) == 1 and isinstance(args[0], tuple) and all(isinstance(a, int) for a in args[0])
                and type(args[0]).__name__ == "Size"):
            shape = tuple(int(a) for a in args)
            if any(s < 0 for s in shape):
                raise RuntimeError(f"{cls.__name__}: trying to create tensor with negative dimension: {list(shape)}")
            return wrap_array(np.empty(shape, dt))
        if len(args) != 1:
            raise TypeError(f"{cls.__name__}(): expected sizes (ints) or one sequence of data, got {args!r}")
        return wrap_array(_to_array(args[0], dt))


def _legacy(dtype: np.dtype) -> type:
    name = LEGACY_NAMES[dtype]
    doc = f"``{name}(data)`` or ``{name}(*sizes)``: a {B.dtype_name(dtype)} tensor (PyTorch's legacy constructor)."
    return _LegacyType(name, (), {"legacy_dtype": dtype, "__doc__": doc, "__module__": "retrograd"})


FloatTensor = _legacy(B.float32)
DoubleTensor = _legacy(B.float64)
HalfTensor = _legacy(B.float16)
BFloat16Tensor = _legacy(B.bfloat16)
LongTensor = _legacy(B.int64)
IntTensor = _legacy(B.int32)
ShortTensor = _legacy(B.int16)
CharTensor = _legacy(B.int8)
ByteTensor = _legacy(B.uint8)
BoolTensor = _legacy(B.bool_)
