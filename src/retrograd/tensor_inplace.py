"""Tensor's in-place methods (``add_``, ``mul_``, ``copy_``, ``fill_``,
``normal_`` ...) as plain functions that ``Tensor`` binds as methods under
their own names. Each one bumps the tensor's version counter so the engine can
tell when an array a graph saved was changed. Below ``tensor.py``, like
``tensor_shape``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import backend as B
from .engine import state

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module


def _arr(x: Any) -> Any:
    return x._array if isinstance(x, state.tensor_type) else x


def _check_inplace(self, name: str) -> None:
    if self.requires_grad and state.enabled:
        what = ("a leaf Variable that requires grad" if self._node is None else
                "a tensor that is part of a graph")
        raise RuntimeError(f"{name}: in-place operation on {what} is not supported while grad is "
                           "enabled; use the out-of-place version, or wrap the update in "
                           "`with rg.no_grad():` (as optimizers do)")


def _inplace(self, name: str, f: Callable, other: Any = None) -> "Tensor":
    self._check_inplace(name)
    o = other._array if isinstance(other, state.tensor_type) else other
    try:
        if other is None:
            f(self._array, out=self._array)
        else:
            f(self._array, o, out=self._array, casting="same_kind")
    except TypeError as e:  # NumPy's output-casting error is a TypeError
        raise RuntimeError(f"{name}: result type of {B.dtype_name(np.result_type(self._array, o))} "
                           f"can't be cast to the desired output type {B.dtype_name(self.dtype)}") from e
    except ValueError as e:
        raise RuntimeError(f"{name}: shape {np.shape(o)} does not broadcast to the tensor's shape "
                           f"{self.shape}") from e
    self._vc[0] += 1
    return self


def add_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
    if alpha != 1:
        other = (other._array if isinstance(other, state.tensor_type) else other) * alpha
    return _inplace(self, "add_", np.add, other)


def sub_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
    if alpha != 1:
        other = (other._array if isinstance(other, state.tensor_type) else other) * alpha
    return _inplace(self, "sub_", np.subtract, other)


def mul_(self, other: Any) -> "Tensor":
    return _inplace(self, "mul_", np.multiply, other)


def div_(self, other: Any) -> "Tensor":
    return _inplace(self, "div_", np.true_divide, other)


def pow_(self, other: Any) -> "Tensor":
    return _inplace(self, "pow_", np.power, other)


def neg_(self) -> "Tensor":
    return _inplace(self, "neg_", np.negative)


def sqrt_(self) -> "Tensor":
    return _inplace(self, "sqrt_", np.sqrt)


def exp_(self) -> "Tensor":
    return _inplace(self, "exp_", np.exp)


def clamp_(self, min: Any = None, max: Any = None) -> "Tensor":  # noqa: A002
    self._check_inplace("clamp_")
    np.clip(self._array, min, max, out=self._array)
    self._vc[0] += 1
    return self


def addcmul_(self, t1: Any, t2: Any, *, value: Any = 1) -> "Tensor":
    return _inplace(self, "addcmul_", np.add, _arr(t1) * _arr(t2) * value)


def addcdiv_(self, t1: Any, t2: Any, *, value: Any = 1) -> "Tensor":
    return _inplace(self, "addcdiv_", np.add, _arr(t1) / _arr(t2) * value)


def lerp_(self, end: Any, weight: Any) -> "Tensor":
    return _inplace(self, "lerp_", np.add, (_arr(end) - self._array) * _arr(weight))


def zero_(self) -> "Tensor":
    return self.fill_(0)


def fill_(self, value: Any) -> "Tensor":
    self._check_inplace("fill_")
    self._array[...] = _arr(value)
    self._vc[0] += 1
    return self


def copy_(self, src: Any) -> "Tensor":
    self._check_inplace("copy_")
    s = _arr(src)
    try:
        np.copyto(self._array, np.broadcast_to(s, self.shape), casting="unsafe")
    except ValueError as e:
        raise RuntimeError(f"copy_: source of shape {np.shape(s)} does not broadcast to the "
                           f"destination's shape {self.shape}") from e
    self._vc[0] += 1
    return self


def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> "Tensor":
    from .random import resolve
    return self.copy_(resolve(generator).uniform(a, b, self.shape))


def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> "Tensor":
    from .random import resolve
    return self.copy_(resolve(generator).normal(mean, std, self.shape))
