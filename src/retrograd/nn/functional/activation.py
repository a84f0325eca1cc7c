"""Activations: ReLU family, ELU family, GELU, SiLU, Mish, sigmoid, tanh, hardtanh, softplus, softsign,
softmax and log-softmax.

Most are compositions of Tensor methods; the hot or numerically delicate ones (leaky ReLU, the ELU
family, GELU with its compiled kernels (those of the tanh form in ``retrograd.kernels``), SiLU,
hardtanh) are ``Rule``s with their backward written next to their forward.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ... import accel, kernels
from ...amp.autocast_mode import lower_precision_op
from ... import ops as O
from ...ops import Rule, call
from ... import special
from ...special import erf_array
from ...tensor import Tensor, where
from ...tensor_inplace import _apply_inplace
from ._args import _float_input


_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


# ====================================================================== activation rules
def _leaky_f(ins, kw):
    x = ins[0]
    return np.where(x > 0, x, x * np.asarray(kw["slope"], dtype=x.dtype))


def _leaky_b(g, out, ins, kw, needs):
    x = ins[0]
    return (np.where(x > 0, g, g * kw["slope"]),)
LEAKY_RELU = Rule("leaky_relu", _leaky_f, _leaky_b)


def _elu_f(ins, kw):
    # out = scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1)): ELU, SELU and CELU
    x = ins[0]
    a, s, i = kw["alpha"], kw["scale"], kw["input_scale"]
    neg = np.expm1(np.minimum(x, 0) * np.asarray(i, dtype=x.dtype)) * np.asarray(a * s, dtype=x.dtype)
    return np.where(x > 0, x * np.asarray(s, dtype=x.dtype), neg)


def _elu_b(g, out, ins, kw, needs):
    x = ins[0]
    a, s, i = kw["alpha"], kw["scale"], kw["input_scale"]
    neg = g * (a * s * i) * np.exp(np.minimum(x, 0) * i)
    return (np.where(x > 0, g * s, neg),)
ELU = Rule("elu", _elu_f, _elu_b)


@accel.jit
def _gelu32_kernel(x, out, cdf, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4, inv_sqrt2, lo, hi, one, half):
    """float32 ``out = x * Phi(x)`` and ``cdf = Phi(x)`` in one pass, rounded as the NumPy
    path: ``Phi = (erf(x / sqrt 2) + 1) / 2`` with ``special._erf32_block``'s clipped rational
    approximation, each operation in the same order in float32 (the Horner steps written
    out, so that the loop vectorises)."""
    for i in range(x.shape[0]):
        xi = x[i]
        t = xi * inv_sqrt2
        t = lo if t < lo else (hi if t > hi else t)  # np.clip: a NaN stays NaN
        x2 = t * t
        p = ((((((x2 * p0 + p1) * x2 + p2) * x2 + p3) * x2 + p4) * x2 + p5) * x2) + p6
        q = (((x2 * q0 + q1) * x2 + q2) * x2 + q3) * x2 + q4
        c = (p * t / q + one) * half
        cdf[i] = c
        out[i] = xi * c


@accel.jit
def _gelu_back_arg_kernel(x, e, m_half, lo, hi):
    """``e[:hi - lo] = (x * x) * -0.5`` for ``x[lo:hi]``: the argument of the exp (NumPy's follows in place)."""
    xs = x[lo:hi]
    for i in range(xs.shape[0]):
        e[i] = (xs[i] * xs[i]) * m_half


@accel.jit
def _gelu_back_kernel(e, x, cdf, g, out, inv_sqrt_2pi, lo, hi):
    """``out = g * (cdf + x * e / sqrt(2 pi))`` from ``e = exp(-x^2 / 2)`` (``e[:hi - lo]`` for
    items ``lo:hi``), rounded as the NumPy path (``pdf = e; pdf *= x; pdf *= c; pdf += cdf; pdf *= g``)."""
    xs, cs, gs, os = x[lo:hi], cdf[lo:hi], g[lo:hi], out[lo:hi]
    for i in range(xs.shape[0]):
        os[i] = ((e[i] * xs[i]) * inv_sqrt_2pi + cs[i]) * gs[i]


def _gelu_backward_fast(x: np.ndarray, cdf: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The exact GELU's input gradient by ``_gelu_back_arg_kernel``, NumPy's exp and
    ``_gelu_back_kernel`` on pieces of at most ``kernels._CHUNK`` items, side by side on threads."""
    xd = x.dtype.type
    xf, cf = np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(cdf).reshape(-1)
    gf = np.ascontiguousarray(np.broadcast_to(g, x.shape)).reshape(-1)
    out = np.empty_like(xf)
    m_half, c = xd(-0.5), xd(_INV_SQRT_2PI)

    def piece(lo: int, hi: int) -> None:
        e = np.empty(min(kernels._CHUNK, hi - lo), x.dtype)
        for a in range(lo, hi, kernels._CHUNK):
            b = min(a + kernels._CHUNK, hi)
            ea = e[:b - a]
            _gelu_back_arg_kernel(xf, ea, m_half, a, b)
            np.exp(ea, out=ea)
            _gelu_back_kernel(ea, xf, cf, gf, out, c, a, b)

    accel.run_ranges(piece, (), xf.shape[0], kernels.MIN_PER_THREAD)
    return out.reshape(x.shape)


def _gelu_f(ins, kw):
    x = ins[0]
    if kw["approximate"] == "tanh":
        y, kw["t"] = kernels.gelu_tanh(x)  # the backward needs tanh(...) again: keep it
        return y
    if x.dtype == np.float32 and x.size and accel.available():
        f = np.float32
        xf = x.reshape(-1)
        out, cdf = np.empty_like(xf), np.empty_like(xf)
        accel.run_split(_gelu32_kernel, [xf, out, cdf], (*special._ERF32_P, *special._ERF32_Q, f(1.0 / _SQRT2),
                                                          f(-4.0), f(4.0), f(1.0), f(0.5)), kernels.MIN_PER_THREAD)
        kw["cdf"] = cdf.reshape(x.shape)
        return out.reshape(x.shape)
    cdf = erf_array(x * x.dtype.type(1.0 / _SQRT2))
    cdf += 1.0
    cdf *= 0.5
    kw["cdf"] = cdf  # the backward needs Phi(x) again: keep it rather than recompute erf
    return (x * cdf).astype(x.dtype, copy=False)


def _gelu_b(g, out, ins, kw, needs):
    x = ins[0]
    if kw["approximate"] == "tanh":
        if isinstance(x, np.ndarray) and isinstance(g, np.ndarray) and "t" in kw:
            return (kernels.gelu_tanh_backward(x, kw["t"], g),)
        x2 = x * x  # create_graph: the same formula from recorded ops
        t = call(O.TANH, (_SQRT_2_OVER_PI * (x + 0.044715 * x2 * x),))
        dinner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x2)
        return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner),)
    if isinstance(x, np.ndarray) and "cdf" in kw:
        xd = x.dtype.type
        if g.dtype == x.dtype and x.size and accel.handles(x, g, kw["cdf"]):
            return (_gelu_backward_fast(x, kw["cdf"], g),)
        pdf = np.exp(x * x * xd(-0.5))
        pdf *= x
        pdf *= xd(_INV_SQRT_2PI)
        pdf += kw["cdf"]
        pdf *= g
        return (pdf,)
    cdf = 0.5 * (1.0 + call(O.ERF, (x * (1.0 / _SQRT2),)))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return (g * (cdf + x * pdf),)
GELU = Rule("gelu", _gelu_f, _gelu_b)


def _silu_f(ins, kw):
    x = ins[0]
    return x * O._sigmoid_f((x,), None)


def _silu_b(g, out, ins, kw, needs):
    x = ins[0]
    s = call(O.SIGMOID, (x,))
    return (g * s * (1.0 + x * (1.0 - s)),)
SILU = Rule("silu", _silu_f, _silu_b)


def _hardtanh_f(ins, kw):
    x = ins[0]
    return np.clip(x, np.asarray(kw["min"], dtype=x.dtype), np.asarray(kw["max"], dtype=x.dtype))


def _hardtanh_b(g, out, ins, kw, needs):
    x = ins[0]
    # PyTorch passes no gradient at the kinks themselves (strict inequalities)
    return (g * ((x > kw["min"]) & (x < kw["max"])),)
HARDTANH = Rule("hardtanh", _hardtanh_f, _hardtanh_b)


def _hardsigmoid_f(ins, kw):
    x = ins[0]
    return np.clip(x + np.asarray(3, dtype=x.dtype), 0, 6) / np.asarray(6, dtype=x.dtype)


def _hardsigmoid_b(g, out, ins, kw, needs):
    x = ins[0]
    return (g * (((x > -3) & (x < 3)) / np.asarray(6, dtype=x.dtype)).astype(x.dtype),)
HARDSIGMOID = Rule("hardsigmoid", _hardsigmoid_f, _hardsigmoid_b)


def _hardswish_f(ins, kw):
    x = ins[0]
    return x * np.clip(x + np.asarray(3, dtype=x.dtype), 0, 6) / np.asarray(6, dtype=x.dtype)


def _hardswish_b(g, out, ins, kw, needs):
    x = ins[0]
    # PyTorch: 0 up to -3, x/3 + 1/2 strictly between -3 and 3, 1 from 3 on
    slope = np.where(x <= -3, 0, np.where(x < 3, x / np.asarray(3, dtype=x.dtype) + np.asarray(0.5, dtype=x.dtype), 1))
    return (g * slope.astype(x.dtype),)
HARDSWISH = Rule("hardswish", _hardswish_f, _hardswish_b)


def _threshold_f(ins, kw):
    x = ins[0]
    return np.where(x > kw["threshold"], x, np.asarray(kw["value"], dtype=x.dtype))


def _threshold_b(g, out, ins, kw, needs):
    return (g * (ins[0] > kw["threshold"]),)
THRESHOLD = Rule("threshold", _threshold_f, _threshold_b)


# ====================================================================== activations
# ``inplace=True`` (and the ``relu_``-style names) write the result into the input, as PyTorch:
# the input is returned, its version is bumped, and the op is recorded on its history
# (tensor_inplace), so a leaf that requires grad refuses, and a graph that saved the input's old
# value refuses to backpropagate.
def _maybe_inplace(input: Tensor, inplace: bool, name: str, f: Any) -> Tensor:  # noqa: A002
    if not inplace:
        return f(input)
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: inplace=True needs a Tensor input, got {type(input).__name__}")
    return _apply_inplace(input, name, f)


def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return input.relu_() if inplace else input.relu()


def relu_(input: Tensor) -> Tensor:  # noqa: A002
    return input.relu_()


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    return _maybe_inplace(input, inplace, "leaky_relu_", lambda x: Tensor._apply(
        LEAKY_RELU, (_float_input(x, "leaky_relu"),), {"slope": float(negative_slope)}))


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:  # noqa: A002
    return leaky_relu(input, negative_slope, True)


@lower_precision_op  # PyTorch's CPU autocast runs it in the autocast dtype
def prelu(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """``max(0, x) + weight * min(0, x)``, ``weight`` of shape ``(1,)`` or ``(channels,)`` (dim 1)."""
    x = _float_input(input, "prelu")
    w = weight
    if w.numel() != 1:
        ch = x.shape[1] if x.ndim >= 2 else (x.shape[0] if x.ndim == 1 else 1)
        if w.numel() != ch:
            raise RuntimeError(f"prelu: mismatch of parameter numbers and input channel size: weight has "
                               f"{w.numel()} parameters, input of shape {tuple(x.shape)} has {ch} channels")
        if x.ndim >= 2:
            w = w.reshape((1, ch) + (1,) * (x.ndim - 2))
    else:
        w = w.reshape(())
    return where(x > 0, x, w * x)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    return _maybe_inplace(input, inplace, "elu_", lambda x: Tensor._apply(
        ELU, (_float_input(x, "elu"),), {"alpha": float(alpha), "scale": 1.0, "input_scale": 1.0}))


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:  # noqa: A002
    return elu(input, alpha, True)


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _maybe_inplace(input, inplace, "selu_", lambda x: Tensor._apply(
        ELU, (_float_input(x, "selu"),), {"alpha": _SELU_ALPHA, "scale": _SELU_SCALE, "input_scale": 1.0}))


def selu_(input: Tensor) -> Tensor:  # noqa: A002
    return selu(input, True)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    if alpha == 0:
        raise RuntimeError("celu: ZeroDivisionError: alpha cannot be 0 for CELU")
    return _maybe_inplace(input, inplace, "celu_", lambda x: Tensor._apply(
        ELU, (_float_input(x, "celu"),), {"alpha": float(alpha), "scale": 1.0, "input_scale": 1.0 / alpha}))


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:  # noqa: A002
    return celu(input, alpha, True)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """``x * Phi(x)`` with the exact erf (``'none'``) or the tanh approximation (``'tanh'``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Tensor._apply(GELU, (_float_input(input, "gelu"),), {"approximate": approximate})


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _maybe_inplace(input, inplace, "silu_", lambda x: Tensor._apply(SILU, (_float_input(x, "silu"),)))


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    def f(x: Tensor) -> Tensor:
        x = _float_input(x, "mish")
        return x * x.softplus().tanh()
    return _maybe_inplace(input, inplace, "mish_", f)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``relu6(x + 3) / 6``."""
    return _maybe_inplace(input, inplace, "hardsigmoid_", lambda x: Tensor._apply(
        HARDSIGMOID, (_float_input(x, "hardsigmoid"),)))


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * relu6(x + 3) / 6``."""
    return _maybe_inplace(input, inplace, "hardswish_", lambda x: Tensor._apply(
        HARDSWISH, (_float_input(x, "hardswish"),)))


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` where ``x > threshold``, else ``value``."""
    return _maybe_inplace(input, inplace, "threshold_", lambda x: Tensor._apply(
        THRESHOLD, (_float_input(x, "threshold"),), {"threshold": float(threshold), "value": float(value)}))


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:  # noqa: A002
    return globals()["threshold"](input, threshold, value, True)


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    return input.tanh()


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,  # noqa: A002
             inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    return _maybe_inplace(input, inplace, "hardtanh_", lambda x: Tensor._apply(
        HARDTANH, (_float_input(x, "hardtanh"),), {"min": float(min_val), "max": float(max_val)}))


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:  # noqa: A002
    return hardtanh(input, min_val, max_val, True)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    return input.softplus(beta, threshold)


def _logsigmoid_f(ins, kw):
    x = ins[0]
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))  # no overflow for either sign


def _logsigmoid_b(g, out, ins, kw, needs):
    return (g * call(O.SIGMOID, (-ins[0],)),)  # d/dx log(sigmoid(x)) = sigmoid(-x)
LOGSIGMOID = Rule("logsigmoid", _logsigmoid_f, _logsigmoid_b)


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """``log(sigmoid(x))``, computed as ``min(x, 0) - log1p(exp(-|x|))`` (stable for large ``|x|``)."""
    return Tensor._apply(LOGSIGMOID, (_float_input(input, "logsigmoid"),))


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    x = _float_input(input, "softsign")
    return x / (x.abs() + 1)


def _softmax_dim(name: str, ndim: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
                  "dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim)
    return input.softmax(dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,  # noqa: A002
                dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim)
    return input.log_softmax(dim, dtype=dtype)
