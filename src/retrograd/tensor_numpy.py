"""NumPy interop of ``Tensor``: NumPy ufuncs and functions called on Tensors run
as Tensor ops.

Rules in ``ops.py`` are written in array code (``np.exp(x) * g``, ``np.sum(g, axis)``).
With ``create_graph=True`` the engine hands them Tensors; NumPy then calls
``Tensor.__array_ufunc__`` / ``__array_function__``, which look the ufunc or
function up in the two tables this module fills, so the gradient is itself
recorded and differentiable. The first-order path never comes here.

This module sits right above ``tensor.py`` and fills its tables on import
(``retrograd/__init__`` imports it); ``tensor.py`` never imports it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .tensor import NUMPY_FUNCTIONS, NUMPY_UFUNCS, Tensor, _as_tensor, wrap_array
from .tensor_functions import cat, einsum
from .tensor_math import matmul, where


def _t(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else _as_tensor(x)


def _fn_sum(a, axis=None, keepdims=False, **_):
    return _t(a).sum(axis, keepdims)


def _fn_mean(a, axis=None, keepdims=False, **_):
    return _t(a).mean(axis, keepdims)


def _fn_max(a, axis=None, keepdims=False, **_):
    return _t(a).amax(() if axis is None else axis, keepdims)


def _fn_reshape(a, newshape=None, shape=None, **_):
    return _t(a).reshape(shape if newshape is None else newshape)


def _fn_expand_dims(a, axis):
    return _t(a).unsqueeze(axis)


def _fn_squeeze(a, axis=None):
    return _t(a).squeeze(axis)


def _fn_transpose(a, axes=None):
    a = _t(a)
    return a.permute(*(axes if axes is not None else reversed(range(a.ndim))))


def _fn_ones_like(a, dtype=None, **_):
    a = _t(a)
    return wrap_array(np.ones_like(a._array, dtype=dtype))


def _fn_zeros_like(a, dtype=None, **_):
    a = _t(a)
    return wrap_array(np.zeros_like(a._array, dtype=dtype))


def _fn_flip(a, axis=None):
    a = _t(a)
    return a.flip(*(range(a.ndim) if axis is None else ((axis,) if isinstance(axis, int) else axis)))


def _fn_where(c, x, y):
    c = c._array if isinstance(c, Tensor) else np.asarray(c)
    return where(c, x, y)


def _fn_einsum(eq, *ops, **_):
    return einsum(eq, *ops)


def _fn_concatenate(seq, axis=0, **_):
    return cat(list(seq), axis)


def _fn_cumsum(a, axis=None, **_):
    return _t(a).cumsum(axis)


def _fn_take_along_axis(a, indices, axis):
    return _t(a).gather(axis, wrap_array(np.asarray(indices)))


def _fn_roll(a, shift, axis=None):
    return _t(a).roll(shift, axis)


def _fn_tril(a, k=0):
    return _t(a).tril(k)


def _fn_triu(a, k=0):
    return _t(a).triu(k)


NUMPY_UFUNCS.update({
    np.add: lambda a, b: _t(a) + b if isinstance(a, Tensor) else _t(b).__radd__(a),
    np.subtract: lambda a, b: _t(a) - b if isinstance(a, Tensor) else _t(b).__rsub__(a),
    np.multiply: lambda a, b: _t(a) * b if isinstance(a, Tensor) else _t(b).__rmul__(a),
    np.true_divide: lambda a, b: _t(a) / b if isinstance(a, Tensor) else _t(b).__rtruediv__(a),
    np.power: lambda a, b: _t(a) ** b if isinstance(a, Tensor) else _t(b).__rpow__(a),
    np.matmul: lambda a, b: matmul(_t(a), b),
    np.negative: lambda a: -_t(a),
    np.maximum: lambda a, b: _t(a).maximum(b) if isinstance(a, Tensor) else _t(b).maximum(a),
    np.minimum: lambda a, b: _t(a).minimum(b) if isinstance(a, Tensor) else _t(b).minimum(a),
    np.exp: lambda a: _t(a).exp(), np.log: lambda a: _t(a).log(), np.sqrt: lambda a: _t(a).sqrt(),
    np.expm1: lambda a: _t(a).expm1(), np.log1p: lambda a: _t(a).log1p(),
    np.sin: lambda a: _t(a).sin(), np.cos: lambda a: _t(a).cos(), np.tanh: lambda a: _t(a).tanh(),
    np.sinh: lambda a: _t(a).sinh(), np.cosh: lambda a: _t(a).cosh(),
    np.abs: lambda a: _t(a).abs(), np.sign: lambda a: _t(a).sign(),
    np.greater: lambda a, b: _t(a) > b if isinstance(a, Tensor) else _t(b) < a,
    np.greater_equal: lambda a, b: _t(a) >= b if isinstance(a, Tensor) else _t(b) <= a,
    np.less: lambda a, b: _t(a) < b if isinstance(a, Tensor) else _t(b) > a,
    np.less_equal: lambda a, b: _t(a) <= b if isinstance(a, Tensor) else _t(b) >= a,
    np.equal: lambda a, b: _t(a) == b if isinstance(a, Tensor) else _t(b) == a,
    np.isfinite: lambda a: _t(a).isfinite(),
})

NUMPY_FUNCTIONS.update({
    np.sum: _fn_sum, np.mean: _fn_mean, np.max: _fn_max, np.amax: _fn_max,
    np.reshape: _fn_reshape, np.broadcast_to: lambda a, shape, **_: _t(a).expand(shape),
    np.expand_dims: _fn_expand_dims, np.squeeze: _fn_squeeze,
    np.swapaxes: lambda a, x, y: _t(a).transpose(x, y), np.transpose: _fn_transpose,
    np.where: _fn_where, np.ones_like: _fn_ones_like, np.zeros_like: _fn_zeros_like,
    np.flip: _fn_flip, np.einsum: _fn_einsum, np.concatenate: _fn_concatenate, np.cumsum: _fn_cumsum,
    np.take_along_axis: _fn_take_along_axis, np.roll: _fn_roll, np.tril: _fn_tril, np.triu: _fn_triu,
    np.shape: lambda a: _t(a).shape, np.ndim: lambda a: _t(a).ndim,
})
