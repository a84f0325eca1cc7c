"""Composite functions built from ops, as ``torch.nn.functional`` (``import retrograd.nn.functional as F``).

Activations, normalisations, dropout, embedding, losses, convolution, pooling,
resizing and attention. Most are short compositions of Tensor methods (so they
get second-order gradients for free); the hot or numerically delicate ones
(GELU, ELU family, leaky ReLU, hardtanh, SiLU, embedding, the fused log-softmax +
NLL of ``cross_entropy``, conv2d and its two adjoints, max/avg pooling, the
attention core ``softmax(Q K^T scale + mask) V`` and CTC's forward-backward)
are ``Rule``s with their backward written next to their forward.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import accel
from . import backend as B
from . import ops as O
from .ops import Rule, call
from .random import Generator, resolve
from .tensor import Tensor, _as_tensor, where
from .tensor_functions import pad

__all__ = [
    "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "hardtanh", "softplus", "softsign", "softmax", "log_softmax", "linear", "bilinear", "embedding",
    "dropout", "layer_norm", "rms_norm", "group_norm", "batch_norm", "mse_loss", "l1_loss",
    "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss", "margin_ranking_loss",
    "pairwise_distance", "triplet_margin_loss", "poisson_nll_loss", "gaussian_nll_loss", "sigmoid_focal_loss",
    "ctc_loss", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d",
    "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "interpolate",
    "scaled_dot_product_attention", "multi_head_attention_forward", "pad",
]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _float_input(x: Any, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(x).__name__}")
    return x if x.data.dtype.kind == "f" else x._cast(B.defaults.float_dtype)


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
    path: ``Phi = (erf(x / sqrt 2) + 1) / 2`` with ``ops._erf32_block``'s clipped rational
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
def _gelu_back_kernel(e, x, cdf, g, out, inv_sqrt_2pi):
    """``out = g * (cdf + x * e / sqrt(2 pi))`` from ``e = exp(-x^2 / 2)``, rounded as the
    NumPy path (``pdf = e; pdf *= x; pdf *= c; pdf += cdf; pdf *= g``)."""
    for i in range(x.shape[0]):
        out[i] = ((e[i] * x[i]) * inv_sqrt_2pi + cdf[i]) * g[i]


def _gelu_f(ins, kw):
    x = ins[0]
    if kw["approximate"] == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype, copy=False)
    if x.dtype == np.float32 and x.size and accel.available():
        f = np.float32
        xf = x.reshape(-1)
        out, cdf = np.empty_like(xf), np.empty_like(xf)
        _gelu32_kernel(xf, out, cdf, *O._ERF32_P, *O._ERF32_Q, f(1.0 / _SQRT2), f(-4.0), f(4.0), f(1.0), f(0.5))
        kw["cdf"] = cdf.reshape(x.shape)
        return out.reshape(x.shape)
    cdf = O.erf_array(x * x.dtype.type(1.0 / _SQRT2))
    cdf += 1.0
    cdf *= 0.5
    kw["cdf"] = cdf  # the backward needs Phi(x) again: keep it rather than recompute erf
    return (x * cdf).astype(x.dtype, copy=False)


def _gelu_b(g, out, ins, kw, needs):
    x = ins[0]
    if kw["approximate"] == "tanh":
        x2 = x * x
        t = call(O.TANH, (_SQRT_2_OVER_PI * (x + 0.044715 * x2 * x),))
        dinner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x2)
        return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner),)
    if isinstance(x, np.ndarray) and "cdf" in kw:
        xd = x.dtype.type
        if g.dtype == x.dtype and x.size and accel.handles(x, g):
            e = np.exp(x * x * xd(-0.5)).reshape(-1)  # NumPy's exp: the kernel fuses the other passes
            out = np.empty(x.shape, x.dtype)
            _gelu_back_kernel(e, x.reshape(-1), kw["cdf"].reshape(-1), np.broadcast_to(g, x.shape).reshape(-1),
                              out.reshape(-1), xd(_INV_SQRT_2PI))
            return (out,)
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


# ====================================================================== activations
def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return input.relu()


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    return Tensor._apply(LEAKY_RELU, (_float_input(input, "leaky_relu"),), {"slope": float(negative_slope)})


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
    return Tensor._apply(ELU, (_float_input(input, "elu"),), {"alpha": float(alpha), "scale": 1.0,
                                                              "input_scale": 1.0})


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return Tensor._apply(ELU, (_float_input(input, "selu"),), {"alpha": _SELU_ALPHA, "scale": _SELU_SCALE,
                                                               "input_scale": 1.0})


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    if alpha == 0:
        raise RuntimeError("celu: ZeroDivisionError: alpha cannot be 0 for CELU")
    return Tensor._apply(ELU, (_float_input(input, "celu"),), {"alpha": float(alpha), "scale": 1.0,
                                                               "input_scale": 1.0 / alpha})


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """``x * Phi(x)`` with the exact erf (``'none'``) or the tanh approximation (``'tanh'``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Tensor._apply(GELU, (_float_input(input, "gelu"),), {"approximate": approximate})


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return Tensor._apply(SILU, (_float_input(input, "silu"),))


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    x = _float_input(input, "mish")
    return x * x.softplus().tanh()


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    return input.tanh()


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,  # noqa: A002
             inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    return Tensor._apply(HARDTANH, (_float_input(input, "hardtanh"),), {"min": float(min_val),
                                                                         "max": float(max_val)})


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    return input.softplus(beta, threshold)


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


# ====================================================================== linear and embedding
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight.T + bias``: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)``."""
    if weight.ndim == 2 and input.ndim >= 1 and input.dtype == weight.dtype and (
            bias is None or (bias.dtype == weight.dtype and bias.shape == (weight.shape[0],))):
        if input.shape[-1] != weight.shape[1]:
            raise RuntimeError(f"linear: input shape {tuple(input.shape)} and weight shape "
                               f"{tuple(weight.shape)} do not align ({input.shape[-1]} != {weight.shape[1]})")
        # one fused node: the graph never holds the bare product input @ weight.T
        return Tensor._apply(O.LINEAR, (input, weight) if bias is None else (input, weight, bias))
    out = input @ weight.t() if weight.ndim == 2 else input @ weight
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y_k = x1 W_k x2 + b_k``: inputs ``(*, in1)`` and ``(*, in2)``, weight ``(out, in1, in2)``."""
    lead = input1.shape[:-1]
    if input2.shape[:-1] != lead:
        raise RuntimeError(f"bilinear: input1 of shape {tuple(input1.shape)} and input2 of shape "
                           f"{tuple(input2.shape)} must have the same leading dimensions")
    x1 = input1.reshape(-1, input1.shape[-1])
    x2 = input2.reshape(-1, input2.shape[-1])
    from .tensor_functions import einsum
    out = einsum("bi,oij,bj->bo", x1, weight, x2)
    if bias is not None:
        out = out + bias
    return out.reshape(lead + (weight.shape[0],))


def _embedding_f(ins, kw):
    return ins[0][kw["index"]]


def _embedding_b(g, out, ins, kw, needs):
    return (call(EMBEDDING_BACKWARD, (g,), kw),)


@accel.jit
def _rows_add_at_kernel(z, idx, gg):
    """``np.add.at(z, idx, gg)`` for rows: row ``r`` of ``gg`` added to ``z[idx[r]]`` in the order of ``r``."""
    d = gg.shape[1]
    for r in range(idx.shape[0]):
        row = idx[r]
        for j in range(d):
            z[row, j] += gg[r, j]


def _embedding_backward_f(ins, kw):
    g = ins[0]
    d = g.shape[-1]
    z = np.zeros((kw["num_weights"], d), dtype=g.dtype)
    idx = kw["index"].reshape(-1)
    gg = g.reshape(-1, d)
    if kw["scale_grad_by_freq"]:
        counts = np.bincount(idx, minlength=kw["num_weights"])
        gg = gg / counts[idx][:, None]
    if gg.size and accel.handles(gg):
        _rows_add_at_kernel(z, idx, gg)  # the same additions in the same order, without add.at's overhead
    else:
        np.add.at(z, idx, gg)
    if kw["padding_idx"] is not None:
        z[kw["padding_idx"]] = 0
    return z


def _embedding_backward_b(g, out, ins, kw, needs):
    return (call(EMBEDDING, (g,), kw),)
EMBEDDING = Rule("embedding", _embedding_f, _embedding_b, needs_inputs=False)
EMBEDDING_BACKWARD = Rule("embedding_backward", _embedding_backward_f, _embedding_backward_b,
                          needs_inputs=False)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,  # noqa: A002
              max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of ``weight`` ``(num_embeddings, dim)`` picked by integer ``input`` of any shape;
    the ``padding_idx`` row gets no gradient."""
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"embedding: expected indices of an integer dtype (int64 or int32), got "
                           f"{B.dtype_name(idx.dtype)}")
    n = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.max() if idx.max() >= n else idx.min())
        raise IndexError(f"embedding: index {bad} is out of range for an embedding of {n} rows "
                         f"(expected 0 <= index < {n})")
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx must be within num_embeddings ({n}), got {padding_idx}")
        padding_idx = padding_idx % n
    if max_norm is not None:
        rows = np.unique(idx)
        w = weight.data
        norms = np.linalg.norm(w[rows], ord=norm_type, axis=1, keepdims=True)
        scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        w[rows] = w[rows] * scale.astype(w.dtype)  # in place, as torch.embedding_renorm_
        weight._vc[0] += 1
    return Tensor._apply(EMBEDDING, (weight,), {"index": idx, "num_weights": n, "padding_idx": padding_idx,
                                                "scale_grad_by_freq": scale_grad_by_freq})


# ====================================================================== dropout
def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
            generator: Generator | None = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    x = _float_input(input, "dropout")
    if p == 1.0:
        return x * np.zeros(x.shape, dtype=x.dtype)
    keep = resolve(generator).random(x.shape) >= p
    mask = keep.astype(x.dtype) * np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return x * Tensor._wrap(mask)


# ====================================================================== normalisation
def _check_normalized(input: Tensor, shape: tuple, op: str) -> None:
    if tuple(input.shape[input.ndim - len(shape):]) != shape or input.ndim < len(shape):
        raise RuntimeError(f"{op}: expected input with trailing shape {shape} (normalized_shape), got "
                           f"input of shape {tuple(input.shape)}")


def layer_norm(input: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims (biased variance), then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = _float_input(input, "layer_norm")
    _check_normalized(x, shape, "layer_norm")
    ins = [x]
    for p in (weight, bias):
        if p is not None:
            if tuple(p.shape) != shape:
                raise RuntimeError(f"layer_norm: weight/bias of shape {tuple(p.shape)} do not match "
                                   f"normalized_shape {shape}")
            ins.append(p if p.dtype == x.dtype else p.to(x.dtype))
    return Tensor._apply(LAYER_NORM, tuple(ins), {"d": math.prod(shape), "eps": eps,
                                                   "affine": (weight is not None, bias is not None)})


def _ln_stats(x2: Any, eps: float) -> tuple:
    """(x - mean) * rstd and rstd over the last axis of ``x2`` ``(rows, D)``."""
    mu = np.mean(x2, axis=1, keepdims=True)
    xc = x2 - mu
    var = np.mean(xc * xc, axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return xc * rstd, rstd


def _layer_norm_f(ins, kw):
    x = ins[0]
    xhat, rstd = _ln_stats(x.reshape(-1, kw["d"]), kw["eps"])
    kw["xhat"], kw["rstd"] = xhat, rstd
    y = xhat
    has_w, has_b = kw["affine"]
    if has_w:
        y = y * ins[1].reshape(-1)
    if has_b:
        b = ins[1 + has_w].reshape(-1)
        y = y + b if y is xhat else np.add(y, b, out=y)
    return y.reshape(x.shape)


def _layer_norm_b(g, out, ins, kw, needs):
    # one node for the whole normalisation: dx = rstd * (gxh - mean(gxh) - xhat * mean(gxh * xhat))
    x = ins[0]
    d = kw["d"]
    has_w, has_b = kw["affine"]
    if isinstance(x, np.ndarray) and "xhat" in kw:
        xhat, rstd = kw["xhat"], kw["rstd"]
    else:  # create_graph: recompute the statistics differentiably
        xhat, rstd = _ln_stats(np.reshape(x, (-1, d)), kw["eps"])
    g2 = np.reshape(g, (-1, d))
    grads = []
    gxh = g2 * np.reshape(ins[1], (-1,)) if has_w else g2
    if needs[0]:
        t = gxh - np.mean(gxh, axis=1, keepdims=True) - xhat * np.mean(gxh * xhat, axis=1, keepdims=True)
        grads.append(np.reshape(t * rstd, x.shape))
    else:
        grads.append(None)
    if has_w:
        grads.append(np.reshape(np.sum(g2 * xhat, axis=0), ins[1].shape) if needs[1] else None)
    if has_b:
        grads.append(np.reshape(np.sum(g2, axis=0), ins[-1].shape) if needs[-1] else None)
    return tuple(grads)
LAYER_NORM = Rule("layer_norm", _layer_norm_f, _layer_norm_b, needs_inputs=True)


def rms_norm(input: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,  # noqa: A002
             eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x**2) + eps) * weight``; ``eps=None`` is the dtype's machine epsilon (PyTorch)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = _float_input(input, "rms_norm")
    _check_normalized(x, shape, "rms_norm")
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    y = x * ((x * x).mean(dims, keepdim=True) + eps).rsqrt()
    return y if weight is None else y * weight


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Input ``(N, C, *)``; statistics over each group of ``C // num_groups`` channels and all of ``*``."""
    x = _float_input(input, "group_norm")
    if x.ndim < 2:
        raise RuntimeError(f"group_norm: expected input of shape (N, C, *), got {tuple(x.shape)}")
    n, c = x.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"group_norm: expected number of channels in input ({c}) to be divisible by "
                           f"num_groups ({num_groups}), input shape {tuple(x.shape)}")
    xg = x.reshape(n, num_groups, -1)
    mu = xg.mean(-1, keepdim=True)
    xc = xg - mu
    var = (xc * xc).mean(-1, keepdim=True)
    y = (xc * (var + eps).rsqrt()).reshape(x.shape)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Input ``(N, C, *)``. Training: batch statistics over all dims but ``C`` (biased variance to
    normalise; ``running_* = (1 - momentum) * running_* + momentum * stat`` with the unbiased
    variance, in place). Otherwise the running statistics."""
    x = _float_input(input, "batch_norm")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    dims = (0,) + tuple(range(2, x.ndim))
    if training:
        count = x.numel() // c
        if count == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{tuple(x.shape)}")
        mu = x.mean(dims, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dims, keepdim=True)
        y = xc * (var + eps).rsqrt()
        if running_mean is not None:
            m = momentum
            rm = running_mean.data
            rm *= (1 - m)
            rm += m * mu.data.reshape(c).astype(rm.dtype)
            running_mean._vc[0] += 1
        if running_var is not None:
            m = momentum
            rv = running_var.data
            rv *= (1 - m)
            rv += m * (var.data.reshape(c) * (count / (count - 1))).astype(rv.dtype)
            running_var._vc[0] += 1
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        rm = running_mean.reshape(bshape).detach()
        rv = running_var.reshape(bshape).detach()
        y = (x - rm.to(x.dtype)) * (rv.to(x.dtype) + eps).rsqrt()
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


# ====================================================================== losses
_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str, allowed: tuple = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction; expected one of {allowed}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _pointwise_pair(input: Tensor, target: Any, op: str) -> tuple[Tensor, Tensor]:  # noqa: A002
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    if tuple(t.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({tuple(t.shape)}) that is different to the input size "
                      f"({tuple(input.shape)}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)
    x = _float_input(input, op)
    if t.dtype != x.dtype:
        t = t.to(x.dtype)
    return x, t


def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "mse_loss")
    d = x - t
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "l1_loss")
    loss = (x - t).abs()
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``; ``beta=0`` is L1."""
    _check_reduction(reduction)
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    x, t = _pointwise_pair(input, target, "smooth_l1_loss")
    d = x - t
    ad = d.abs()
    if beta == 0:
        return _reduce(ad, reduction)
    loss = where(ad < beta, (0.5 / beta) * d * d, ad - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,  # noqa: A002
               weight: Tensor | None = None) -> Tensor:
    """``0.5 d**2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``."""
    _check_reduction(reduction)
    if delta <= 0:
        raise RuntimeError(f"huber_loss: delta must be positive, got {delta}")
    x, t = _pointwise_pair(input, target, "huber_loss")
    d = x - t
    ad = d.abs()
    loss = where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- fused log-softmax + NLL
def _ce_f(ins, kw):
    """Rows ``(M, C)`` of logits; per-row loss
    ``(1-eps) w_i (-logp[i, t_i]) + eps/C m_i sum_c W_c (-logp[i, c])``, then reduced."""
    x = ins[0]
    t, wi, mi, W, eps = kw["target"], kw["w_i"], kw["m_i"], kw["W"], kw["eps"]
    s = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(s).sum(axis=1, keepdims=True))
    logp = s - lse
    kw["p"] = np.exp(logp)
    picked = logp[np.arange(len(t)), t]
    loss = -(1.0 - eps) * picked if wi is None else -(1.0 - eps) * wi * picked
    if eps:
        smooth = -(logp @ W if W is not None else np.sum(logp, axis=1))
        loss = loss + (eps / x.shape[1]) * (smooth if mi is None else mi * smooth)
    red = kw["reduction"]
    if red == "none":
        return loss.astype(x.dtype, copy=False)
    total = loss.sum()
    if red == "mean":
        if kw["denom"]:
            total = total / kw["denom"]
        else:  # every target ignored: 0/0 = nan, as PyTorch
            with np.errstate(invalid="ignore", divide="ignore"):
                total = total / kw["denom"]
    return np.asarray(total, dtype=x.dtype)


def _ce_b(g, out, ins, kw, needs):
    x = ins[0]
    t, wi, mi, W, eps = kw["target"], kw["w_i"], kw["m_i"], kw["W"], kw["eps"]
    c = x.shape[1]
    p = kw["p"] if isinstance(x, np.ndarray) else call(O.SOFTMAX, (x,), {"dim": 1})
    red = kw["reduction"]
    gi = g if red == "none" else (g / kw["denom"] if red == "mean" else g)
    gi = np.reshape(gi, (-1, 1)) if red == "none" else gi
    if wi is None:  # every target valid, no class weights (cross_entropy's common case)
        if not eps and isinstance(p, np.ndarray):
            d = p.copy()
            d[np.arange(len(t)), t] -= 1
            return (gi * d,)
        wi = mi = np.ones(len(t), p.dtype)
    sw = c if W is None else float(np.sum(W))
    coef = ((1.0 - eps) * wi + (eps / c) * mi * sw).astype(p.dtype)[:, None]
    onehot = (np.arange(c)[None, :] == t[:, None])
    sub = ((1.0 - eps) * wi)[:, None] * onehot
    if eps:
        sub = sub + ((eps / c) * mi)[:, None] * (np.ones(c) if W is None else W)[None, :]
    return (gi * (p * coef - sub.astype(p.dtype)),)
CROSS_ENTROPY = Rule("cross_entropy", _ce_f, _ce_b, needs_inputs=False)


def _class_rows(input: Tensor, target: Any, op: str) -> tuple[Tensor, np.ndarray, tuple, int]:  # noqa: A002
    """Logits ``(N, C, d1, ...)``/``(C,)`` as rows ``(M, C)``, targets as ``(M,)`` and the output shape."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if input.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    if t.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: expected target of integer class indices (int64) of shape "
                           f"{(input.shape[:1] + input.shape[2:]) if input.ndim > 1 else ()} or class "
                           f"probabilities of the input's shape {tuple(input.shape)}; got a "
                           f"{B.dtype_name(t.dtype)} target of shape {tuple(t.shape)}")
    want = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if tuple(t.shape) != tuple(want):
        raise ValueError(f"{op}: expected target of shape {tuple(want)} for input of shape "
                         f"{tuple(input.shape)}, got target of shape {tuple(t.shape)}")
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    if input.ndim == 1:
        rows = input.reshape(1, c)
    elif input.ndim == 2:
        rows = input
    else:
        rows = input.movedim(1, -1).reshape(-1, c)
    return rows, t.reshape(-1).astype(np.int64, copy=False), tuple(want), c


def _all_targets_valid(t: np.ndarray, c: int, ignore_index: int) -> bool:
    """Whether every target is a class in ``[0, c)`` and none can equal ``ignore_index``
    (two reductions instead of ``_check_targets``' masks; False sends the caller there)."""
    if not t.size:
        return False
    lo, hi = t.min(), t.max()
    return 0 <= lo and hi < c and not lo <= ignore_index <= hi


def _check_targets(t: np.ndarray, c: int, ignore_index: int, op: str) -> np.ndarray:
    valid = t != ignore_index
    tv = t[valid]
    if tv.size and (tv.min() < 0 or tv.max() >= c):
        bad = int(tv.max() if tv.max() >= c else tv.min())
        raise IndexError(f"{op}: target {bad} is out of bounds for {c} classes (expected 0 <= target < {c} "
                         f"or target == ignore_index ({ignore_index}))")
    return valid


def _weights_array(weight: Any, c: int, dtype: np.dtype, op: str) -> np.ndarray | None:
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    if w.shape != (c,):
        raise RuntimeError(f"{op}: weight tensor should be defined either for all {c} classes or no "
                           f"classes but got weight tensor of shape {tuple(w.shape)}")
    return w.astype(dtype, copy=False)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Logits ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)`` against class indices ``(N, d1, ...)``
    (fused log-softmax + NLL; mean divides by the summed weights of non-ignored targets) or
    class probabilities of the input's shape."""
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    x = _float_input(input, "cross_entropy")
    tgt = target if isinstance(target, Tensor) else _as_tensor(target)
    if tgt.dtype.kind == "f" and tuple(tgt.shape) == tuple(x.shape):
        return _cross_entropy_probs(x, tgt.to(x.dtype), weight, reduction, label_smoothing)
    rows, t, out_shape, c = _class_rows(x, tgt, "cross_entropy")
    W = _weights_array(weight, c, x.dtype, "cross_entropy")
    if W is None and _all_targets_valid(t, c, ignore_index):
        # w_i = m_i = 1 for every row: None spares the rule the multiplications by one
        kw = {"target": t, "w_i": None, "m_i": None, "W": None, "eps": float(label_smoothing),
              "reduction": reduction, "denom": float(t.size)}
    else:
        valid = _check_targets(t, c, ignore_index, "cross_entropy")
        tsafe = np.where(valid, t, 0)
        mi = valid.astype(x.dtype)
        wi = mi if W is None else W[tsafe] * mi
        kw = {"target": tsafe, "w_i": wi, "m_i": mi, "W": W, "eps": float(label_smoothing),
              "reduction": reduction, "denom": float(np.sum(wi, dtype=np.float64))}
    out = Tensor._apply(CROSS_ENTROPY, (rows,), kw)
    return out.reshape(out_shape) if reduction == "none" else out


def _cross_entropy_probs(x: Tensor, t: Tensor, weight: Any, reduction: str, eps: float) -> Tensor:
    cdim = 1 if x.ndim > 1 else 0
    c = x.shape[cdim]
    logp = x.log_softmax(cdim)
    if eps:
        t = t * (1.0 - eps) + eps / c
    prod = logp * t
    if weight is not None:
        w = _weights_array(weight, c, x.dtype, "cross_entropy")
        prod = prod * Tensor._wrap(w.reshape((c,) + (1,) * (x.ndim - 2)) if cdim else w)
    loss = -prod.sum(cdim)
    if reduction == "mean":
        return loss.sum() / (x.numel() // c) if x.ndim > 1 else loss.sum()
    return _reduce(loss, reduction)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,  # noqa: A002
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``-input[i, t_i] * weight[t_i]`` for log-probabilities ``(N, C, d1, ...)``; mean divides by
    the summed weights of non-ignored targets."""
    _check_reduction(reduction)
    x = _float_input(input, "nll_loss")
    rows, t, out_shape, c = _class_rows(x, target, "nll_loss")
    valid = _check_targets(t, c, ignore_index, "nll_loss")
    W = _weights_array(weight, c, x.dtype, "nll_loss")
    tsafe = np.where(valid, t, 0)
    mi = valid.astype(x.dtype)
    wi = mi if W is None else W[tsafe] * mi
    picked = rows.gather(1, Tensor._wrap(tsafe[:, None]))[:, 0]
    loss = -picked * Tensor._wrap(wi)
    if reduction == "none":
        return loss.reshape(out_shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / Tensor._wrap(np.asarray(np.sum(wi), dtype=x.dtype))


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                         size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``-w (t log x + (1 - t) log(1 - x))`` with each log clamped to >= -100 (PyTorch)."""
    _check_reduction(reduction)
    x = _float_input(input, "binary_cross_entropy")
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(f"Using a target size ({tuple(t.shape)}) that is different to the input size "
                         f"({tuple(x.shape)}) is deprecated. Please ensure they have the same size.")
    if x.numel() and (np.any(x.data < 0) or np.any(x.data > 1)):
        raise RuntimeError("binary_cross_entropy: all elements of input should be between 0 and 1 "
                           "(apply sigmoid first, or use binary_cross_entropy_with_logits)")
    t = t.to(x.dtype)
    loss = -(t * x.log().clamp(min=-100.0) + (1 - t) * (1 - x).log().clamp(min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                     size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """``(1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x)``, times ``weight``: finite for any logit."""
    _check_reduction(reduction)
    x = _float_input(input, "binary_cross_entropy_with_logits")
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(f"Target size ({tuple(t.shape)}) must be the same as input size ({tuple(x.shape)})")
    t = t.to(x.dtype)
    neg_log_sig = (-x).softplus()  # -log(sigmoid(x)), stable for any magnitude
    if pos_weight is not None:
        lw = (pos_weight - 1) * t + 1
        loss = (1 - t) * x + lw * neg_log_sig
    else:
        loss = (1 - t) * x + neg_log_sig
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """Pointwise ``target * (log(target) - input)`` with ``input`` log-probabilities
    (``exp(t) * (t - input)`` when ``log_target``); ``'batchmean'`` divides the sum by ``N``."""
    _check_reduction(reduction, _REDUCTIONS + ("batchmean",))
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      UserWarning, stacklevel=2)
    x = _float_input(input, "kl_div")
    t = (target if isinstance(target, Tensor) else _as_tensor(target)).to(x.dtype)
    if log_target:
        loss = t.exp() * (t - x)
    else:
        pos = t > 0
        loss = t * where(pos, t, 1.0).log() - t * x
    if reduction == "batchmean":
        return loss.sum() / x.shape[0] if x.ndim else loss.sum()
    return _reduce(loss, reduction)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``1 - cos(x1, x2)`` where ``target == 1``, ``max(0, cos - margin)`` where ``target == -1``;
    inputs ``(N, D)`` or ``(D,)``, ``cos`` with torch's ``1e-12`` added to each squared norm."""
    _check_reduction(reduction)
    if input1.ndim not in (1, 2) or input1.shape != input2.shape:
        raise RuntimeError(f"cosine_embedding_loss: expected two 1-D or 2-D inputs of the same shape, got "
                           f"{tuple(input1.shape)} and {tuple(input2.shape)}")
    x1 = _float_input(input1, "cosine_embedding_loss")
    x2 = input2.to(x1.dtype)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.shape != tuple(x1.shape[:-1]):
        raise RuntimeError(f"cosine_embedding_loss: expected target of shape {tuple(x1.shape[:-1])}, got "
                           f"{tuple(t.shape)}")
    eps = 1e-12
    cos = (x1 * x2).sum(-1) / (((x1 * x1).sum(-1) + eps) * ((x2 * x2).sum(-1) + eps)).sqrt()
    zero = Tensor._wrap(np.zeros(cos.shape, dtype=cos.dtype))
    loss = where(Tensor._wrap(t == 1), 1 - cos, zero) + where(Tensor._wrap(t == -1), (cos - margin).clamp(min=0),
                                                            zero)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``max(0, -target (x1 - x2) + margin)``."""
    _check_reduction(reduction)
    if input1.ndim != input2.ndim or input1.ndim != np.ndim(target):
        raise RuntimeError(f"margin_ranking_loss: all inputs should have the same dimension, got input1 "
                           f"{tuple(input1.shape)}, input2 {tuple(input2.shape)}, target {tuple(np.shape(target))}")
    x1 = _float_input(input1, "margin_ranking_loss")
    t = (target if isinstance(target, Tensor) else _as_tensor(target)).to(x1.dtype)
    return _reduce((-t * (x1 - input2) + margin).clamp(min=0), reduction)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dim."""
    return (x1 - x2 + eps).norm(p, dim=-1, keepdim=keepdim)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """``max(0, margin + d(a, p) - d(a, n))`` with ``d`` the ``pairwise_distance``; ``swap`` uses
    ``min(d(a, n), d(p, n))``."""
    _check_reduction(reduction)
    if not (anchor.ndim == positive.ndim == negative.ndim) or anchor.ndim not in (1, 2):
        raise RuntimeError(f"triplet_margin_loss: expected anchor, positive and negative of the same rank (1 or 2), "
                           f"got {tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}")
    if margin <= 0:
        raise ValueError(f"triplet_margin_loss: expected margin to be greater than 0, got {margin} instead")
    a = _float_input(anchor, "triplet_margin_loss")
    d_ap = pairwise_distance(a, positive, p, eps)
    d_an = pairwise_distance(a, negative, p, eps)
    if swap:
        d_an = d_an.minimum(pairwise_distance(positive, negative, p, eps))
    return _reduce((d_ap - d_an + margin).clamp(min=0), reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,  # noqa: A002
                     size_average: Any = None, eps: float = 1e-8, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """``exp(x) - t x`` (``log_input``) or ``x - t log(x + eps)``; ``full`` adds Stirling's
    ``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``."""
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "poisson_nll_loss")
    loss = x.exp() - t * x if log_input else x - t * (x + eps).log()
    if full:
        td = t.data
        safe = np.where(td > 1, td, 1.0)
        stirling = np.where(td > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * math.pi * safe), 0.0)
        if t.requires_grad:
            big = Tensor._wrap(td > 1)
            ts = where(big, t, 1.0)
            loss = loss + where(big, ts * ts.log() - ts + 0.5 * (2 * math.pi * ts).log(), 0.0)
        else:
            loss = loss + Tensor._wrap(stirling.astype(x.dtype))
    return _reduce(loss, reduction)


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Any, full: bool = False, eps: float = 1e-6,  # noqa: A002
                      reduction: str = "mean") -> Tensor:
    """``0.5 (log(var) + (x - t)**2 / var)`` (+ ``0.5 log(2 pi)`` if ``full``); ``var`` of the input's
    shape, one dim short, or with one dim of size 1; clamped to ``eps`` without blocking its gradient
    (as torch)."""
    x = _float_input(input, "gaussian_nll_loss")
    v = var if isinstance(var, Tensor) else _as_tensor(np.asarray(var, dtype=x.dtype))
    if tuple(v.shape) != tuple(x.shape):
        if tuple(x.shape[:-1]) == tuple(v.shape):
            v = v.unsqueeze(-1)
        elif x.ndim == v.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1:
            pass
        else:
            raise ValueError(f"gaussian_nll_loss: var is of incorrect size: expected {tuple(x.shape)}, "
                             f"{tuple(x.shape[:-1])} or one dim of size 1, got {tuple(v.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not valid")
    if np.any(v.data < 0):
        raise ValueError("var has negative entry/entries")
    v = v.to(x.dtype)
    # clamp the value but pass the gradient straight through, as torch's in-place clamp under no_grad
    v = v + Tensor._wrap(np.maximum(v.data, eps) - v.data)
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    d = x - t.to(x.dtype)
    loss = 0.5 * (v.log() + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """torchvision's focal loss (Lin et al. 2017): ``BCE-with-logits * (1 - p_t)**gamma``, times
    ``alpha_t`` if ``alpha >= 0``; ``p_t = p t + (1 - p)(1 - t)``, ``p = sigmoid(inputs)``."""
    x = _float_input(inputs, "sigmoid_focal_loss")
    t = (targets if isinstance(targets, Tensor) else _as_tensor(targets)).to(x.dtype)
    p = x.sigmoid()
    ce = binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if reduction == "none":
        return loss
    if reduction in ("mean", "sum"):
        return _reduce(loss, reduction)
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', "
                     "'mean', 'sum'")


# ---------------------------------------------------------------- CTC
def _ctc_f(ins, kw):
    """Per-sample ``-log p(target | input)`` by the forward-backward algorithm in log space over the
    blank-extended label ``l'`` (length ``2S+1``); the gradient with respect to ``log_probs`` is kept."""
    lp = ins[0]  # (T, N, C)
    T, N, C = lp.shape
    ext, il, tl = kw["ext"], kw["il"], kw["tl"]  # ext (N, 2Smax+1)
    S2 = ext.shape[1]
    ninf = -np.inf
    n_idx = np.arange(N)[:, None]
    em = lp[:, n_idx, ext]  # (T, N, S2): emission log-prob of each extended label
    s_idx = np.arange(S2)[None, :]
    valid = s_idx < (2 * tl[:, None] + 1)
    # a skip s-2 -> s is allowed onto a non-blank that differs from the label two back
    skip = np.zeros((N, S2), dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != kw["blank"]) & (ext[:, 2:] != ext[:, :-2])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alpha = np.full((T, N, S2), ninf, dtype=lp.dtype)
        alpha[0, :, 0] = em[0, :, 0]
        if S2 > 1:
            alpha[0, :, 1] = np.where(tl > 0, em[0, :, 1], ninf)
        alpha[0] = np.where(valid, alpha[0], ninf)
        for t in range(1, T):
            a = alpha[t - 1]
            a1 = np.concatenate([np.full((N, 1), ninf, lp.dtype), a[:, :-1]], axis=1)
            a2 = np.where(skip, np.concatenate([np.full((N, 2), ninf, lp.dtype), a[:, :-2]], axis=1), ninf)
            alpha[t] = np.where(valid, np.logaddexp(np.logaddexp(a, a1), a2) + em[t], ninf)
        beta = np.full((T, N, S2), ninf, dtype=lp.dtype)
        last = 2 * tl
        tlast = il - 1
        beta[tlast, np.arange(N), last] = em[tlast, np.arange(N), last]
        has_lab = tl > 0
        beta[tlast[has_lab], np.arange(N)[has_lab], last[has_lab] - 1] = \
            em[tlast[has_lab], np.arange(N)[has_lab], last[has_lab] - 1]
        skip_next = np.zeros((N, S2), dtype=bool)  # from s to s+2 allowed iff skip[s+2]
        skip_next[:, :-2] = skip[:, 2:]
        for t in range(T - 2, -1, -1):
            b = beta[t + 1]
            b1 = np.concatenate([b[:, 1:], np.full((N, 1), ninf, lp.dtype)], axis=1)
            b2 = np.where(skip_next, np.concatenate([b[:, 2:], np.full((N, 2), ninf, lp.dtype)], axis=1), ninf)
            new = np.where(valid, np.logaddexp(np.logaddexp(b, b1), b2) + em[t], ninf)
            active = (t < tlast)[:, None]  # samples whose input ends later take the recursion
            beta[t] = np.where(active, new, beta[t])
        end = alpha[tlast, np.arange(N), last]
        end1 = np.where(has_lab, alpha[tlast, np.arange(N), np.maximum(last - 1, 0)], ninf)
        nll = -np.logaddexp(end, end1)
        # d nll / d lp[t, n, c] = -sum_{s: l'_s = c} exp(alpha + beta - lp + nll)
        post = np.exp(alpha + beta - em + nll[None, :, None])
        post = np.where(np.isfinite(nll)[None, :, None] & (np.arange(T)[:, None, None] < il[None, :, None]),
                        post, 0.0)
        grad = np.zeros((T, N, C), dtype=lp.dtype)
        tt = np.broadcast_to(np.arange(T)[:, None, None], post.shape)
        nn_ = np.broadcast_to(np.arange(N)[None, :, None], post.shape)
        cc = np.broadcast_to(ext[None], post.shape)
        np.add.at(grad, (tt.reshape(-1), nn_.reshape(-1), cc.reshape(-1)), -post.reshape(-1))
    inf = ~np.isfinite(nll)
    if kw["zero_infinity"]:
        nll = np.where(inf, 0.0, nll)
        grad[:, inf] = 0.0
    kw["grad"] = grad
    return nll.astype(lp.dtype)


def _ctc_b(g, out, ins, kw, needs):
    if not isinstance(g, np.ndarray):
        raise NotImplementedError("ctc_loss: double backward (create_graph=True) is not supported yet")
    return (kw["grad"] * g[None, :, None],)
CTC_LOSS = Rule("ctc_loss", _ctc_f, _ctc_b, needs_inputs=False)


def ctc_loss(log_probs: Tensor, targets: Any, input_lengths: Any, target_lengths: Any, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """Connectionist temporal classification: ``log_probs`` ``(T, N, C)`` (or ``(T, C)``), ``targets``
    padded ``(N, S)`` or concatenated ``(sum(target_lengths),)``; ``'mean'`` divides each loss by its
    target length, then averages over the batch. The gradient is the exact one with respect to
    ``log_probs`` (torch's adds ``exp(log_probs)``, which cancels once behind ``log_softmax``)."""
    _check_reduction(reduction)
    x = _float_input(log_probs, "ctc_loss")
    unbatched = x.ndim == 2
    if x.ndim not in (2, 3):
        raise RuntimeError(f"ctc_loss: expected log_probs of shape (T, N, C) or (T, C), got {tuple(x.shape)}")
    if unbatched:
        x = x.unsqueeze(1)
    T, N, C = x.shape
    arr = lambda v: (v.data if isinstance(v, Tensor) else np.asarray(v)).astype(np.int64).reshape(-1)  # noqa: E731
    tg = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    tg = tg.astype(np.int64)
    il, tl = arr(input_lengths), arr(target_lengths)
    if il.shape != (N,) or tl.shape != (N,):
        raise RuntimeError(f"ctc_loss: expected input_lengths and target_lengths of {N} elements, got "
                           f"{il.shape[0]} and {tl.shape[0]}")
    if np.any(il > T) or np.any(il < 1):
        raise RuntimeError(f"ctc_loss: input_lengths must be in [1, {T}], got {il.tolist()}")
    if unbatched and tg.ndim == 1:
        tg = tg.reshape(1, -1)
    if tg.ndim == 2:
        if tg.shape[0] != N or (N and tg.shape[1] < tl.max(initial=0)):
            raise RuntimeError(f"ctc_loss: expected targets of shape ({N}, >= {tl.max(initial=0)}), got "
                               f"{tuple(tg.shape)}")
        rows = [tg[i, :tl[i]] for i in range(N)]
    else:
        if tg.shape[0] != tl.sum():
            raise RuntimeError(f"ctc_loss: concatenated targets have {tg.shape[0]} labels but target_lengths "
                               f"sum to {int(tl.sum())}")
        offs = np.concatenate([[0], np.cumsum(tl)])
        rows = [tg[offs[i]:offs[i + 1]] for i in range(N)]
    smax = int(tl.max(initial=0))
    ext = np.full((N, 2 * smax + 1), blank, dtype=np.int64)
    for i, r in enumerate(rows):
        if r.size and (r.min() < 0 or r.max() >= C or np.any(r == blank)):
            raise RuntimeError(f"ctc_loss: targets must be in [0, {C}) and differ from blank ({blank}), got "
                               f"{r.tolist()}")
        ext[i, 1:2 * len(r):2] = r
    nll = Tensor._apply(CTC_LOSS, (x,), {"ext": ext, "il": il, "tl": tl, "blank": int(blank),
                                         "zero_infinity": bool(zero_infinity)})
    if reduction == "mean":
        return (nll / Tensor._wrap(np.maximum(tl, 1).astype(x.dtype))).mean()
    if reduction == "sum":
        return nll.sum()
    return nll.squeeze(0) if unbatched else nll


# ====================================================================== convolution
# A convolution is one fused node: im2col of the padded input as a strided view, one GEMM per
# group. Its two adjoints (the input gradient, which is also conv_transpose's forward, and the
# weight gradient) are Rules too, each with a backward written with the other two, so gradients
# of any order are themselves convolutions.
def _pad_hw(x: np.ndarray, pad: tuple, value: float = 0.0) -> np.ndarray:
    (pt, pb), (pl, pr) = pad
    if pt or pb or pl or pr:
        return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)
    return x


def _windows(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int,
             ow: int) -> np.ndarray:
    """``(N, C, OH, OW, kh, kw)`` read-only view of the windows of padded ``xp`` ``(N, C, Hp, Wp)``."""
    n, c = xp.shape[:2]
    s = xp.strides
    return as_strided(xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw),
                      writeable=False)


def _conv_out(size: int, k: int, s: int, pad: tuple, d: int) -> int:
    return (size + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


# Convolutions work in channels-last layout internally: the im2col copy then
# moves runs of kw*C contiguous values instead of gathering single elements,
# which is what makes it cheap (see bench/RESULTS.md).
def _nhwc_padded(x: np.ndarray, pad: tuple) -> np.ndarray:
    """``(N, C, H, W)`` -> zero-padded channels-last ``(N, Hp, Wp, C)``."""
    (pt, pb), (pl, pr) = pad
    n, c, h, w = x.shape
    xh = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype) if pt or pb or pl or pr else \
        np.empty((n, h, w, c), dtype=x.dtype)
    xh[:, pt:pt + h, pl:pl + w, :] = x.transpose(0, 2, 3, 1)
    return xh


def _conv_cols_all(x: np.ndarray, k_hw: tuple, kw: dict, oh: int, ow: int) -> np.ndarray:
    """im2col ``(N*OH*OW, kh*kw*C)``, columns ordered (kh, kw, C)."""
    (sh, sw), (dh, dw) = kw["stride"], kw["dilation"]
    xh = _nhwc_padded(x, kw["padding"])
    n, c = x.shape[0], x.shape[1]
    s = xh.strides
    win = as_strided(xh, (n, oh, ow, k_hw[0], k_hw[1], c),
                     (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)
    return win.reshape(n * oh * ow, -1)


def _group_cols(cols: np.ndarray, k_hw: tuple, groups: int, gi: int, cg: int) -> np.ndarray:
    if groups == 1:
        return cols
    m = cols.shape[0]
    return cols.reshape(m, k_hw[0] * k_hw[1], groups * cg)[:, :, gi * cg:(gi + 1) * cg].reshape(m, -1)


def _wmat(w: np.ndarray) -> np.ndarray:
    """``(O, C, kh, kw)`` weights as ``(O, kh*kw*C)``, matching the im2col column order."""
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def _conv2d_f(ins, kw):
    x, w = ins[0], ins[1]
    (sh, sw), pad, (dh, dw), groups = kw["stride"], kw["padding"], kw["dilation"], kw["groups"]
    n, c, h, wd = x.shape
    o, cg, kh, kww = w.shape
    oh, ow = _conv_out(h, kh, sh, pad[0], dh), _conv_out(wd, kww, sw, pad[1], dw)
    og = o // groups
    cols = _conv_cols_all(x, (kh, kww), kw, oh, ow)
    # (O, K) @ (K, N*OH*OW): the result is already channel-major
    if groups == 1:
        out_t = _wmat(w) @ cols.T
    else:
        out_t = np.concatenate([_wmat(w[gi * og:(gi + 1) * og]) @ _group_cols(cols, (kh, kww), groups, gi, cg).T
                                for gi in range(groups)], axis=0)
    out = np.ascontiguousarray(out_t.reshape(o, n, oh * ow).transpose(1, 0, 2)).reshape(n, o, oh, ow)
    if len(ins) == 3:
        out += ins[2].reshape(1, o, 1, 1)
    return out


def _conv_dx(g2: np.ndarray, w: np.ndarray, n: int, oh: int, ow: int, in_hw: tuple, kw: dict) -> np.ndarray:
    """Input gradient from ``g2`` ``(O, N*OH*OW)``: one GEMM, then a kh*kw loop of strided adds (col2im)."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw), groups = kw["stride"], kw["padding"], kw["dilation"], kw["groups"]
    o, cg, kh, kww = w.shape
    h, wd = in_hw
    og = o // groups
    gxh = np.zeros((n, h + pt + pb, wd + pl + pr, cg * groups), dtype=np.result_type(g2, w))
    for gi in range(groups):
        gcols = (g2[gi * og:(gi + 1) * og].T @ _wmat(w[gi * og:(gi + 1) * og])).reshape(n, oh, ow, kh, kww, cg)
        for i in range(kh):
            for j in range(kww):
                gxh[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw,
                    gi * cg:(gi + 1) * cg] += gcols[:, :, :, i, j]
    return np.ascontiguousarray(gxh[:, pt:pt + h, pl:pl + wd].transpose(0, 3, 1, 2))


def _conv_dw(x: np.ndarray, g2: np.ndarray, oh: int, ow: int, k_hw: tuple, kw: dict) -> np.ndarray:
    groups = kw["groups"]
    o = g2.shape[0]
    og, cg = o // groups, x.shape[1] // groups
    cols = _conv_cols_all(x, k_hw, kw, oh, ow)
    parts = [(g2[gi * og:(gi + 1) * og] @ _group_cols(cols, k_hw, groups, gi, cg))
             .reshape(og, k_hw[0], k_hw[1], cg).transpose(0, 3, 1, 2) for gi in range(groups)]
    return np.ascontiguousarray(parts[0] if groups == 1 else np.concatenate(parts, axis=0))


def _gmat(g: np.ndarray) -> np.ndarray:
    """``(N, O, OH, OW)`` -> ``(O, N*OH*OW)``: a copy whose inner runs stay contiguous."""
    return g.transpose(1, 0, 2, 3).reshape(g.shape[1], -1)


def _conv2d_b(g, out, ins, kw, needs):
    x, w = ins[0], ins[1]
    gb = np.sum(g, axis=(0, 2, 3)) if len(ins) == 3 and needs[2] else None
    if isinstance(g, np.ndarray) and isinstance(x, np.ndarray) and isinstance(w, np.ndarray):
        g2 = _gmat(g)  # shared by both products
        gx = _conv_dx(g2, w, x.shape[0], g.shape[2], g.shape[3], x.shape[2:], kw) if needs[0] else None
        gw = _conv_dw(x, g2, g.shape[2], g.shape[3], w.shape[2:], kw) if needs[1] else None
    else:  # create_graph: record the adjoints
        gx = call(CONV2D_INPUT_GRAD, (g, w), kw | {"in_hw": tuple(x.shape[2:])}) if needs[0] else None
        gw = call(CONV2D_WEIGHT_GRAD, (x, g), kw | {"k_hw": tuple(w.shape[2:])}) if needs[1] else None
    return (gx, gw, gb) if len(ins) == 3 else (gx, gw)
CONV2D = Rule("conv2d", _conv2d_f, _conv2d_b)


def _conv_dx_f(ins, kw):
    g, w = ins
    return _conv_dx(_gmat(g), w, g.shape[0], g.shape[2], g.shape[3], kw["in_hw"], kw)


def _conv_dx_b(gg, out, ins, kw, needs):
    g, w = ins
    base = {k: kw[k] for k in ("stride", "padding", "dilation", "groups")}
    ggo = call(CONV2D, (gg, w), base) if needs[0] else None
    gw = call(CONV2D_WEIGHT_GRAD, (gg, g), base | {"k_hw": tuple(w.shape[2:])}) if needs[1] else None
    return ggo, gw
CONV2D_INPUT_GRAD = Rule("conv_transpose2d", _conv_dx_f, _conv_dx_b)


def _conv_dw_f(ins, kw):
    x, g = ins
    return _conv_dw(x, _gmat(g), g.shape[2], g.shape[3], kw["k_hw"], kw)


def _conv_dw_b(ggw, out, ins, kw, needs):
    x, g = ins
    base = {k: kw[k] for k in ("stride", "padding", "dilation", "groups")}
    gx = call(CONV2D_INPUT_GRAD, (g, ggw), base | {"in_hw": tuple(x.shape[2:])}) if needs[0] else None
    ggo = call(CONV2D, (x, ggw), base) if needs[1] else None
    return gx, ggo
CONV2D_WEIGHT_GRAD = Rule("conv2d_weight_backward", _conv_dw_f, _conv_dw_b)


def _tuple(v: Any, n: int, name: str, op: str) -> tuple:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v}")
    return v


def _conv_args(op: str, input: Tensor, weight: Tensor, bias: Any, nd: int) -> tuple[Tensor, bool]:  # noqa: A002
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{op}: expected a {nd + 2}-D weight, got weight of shape {tuple(weight.shape)}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: expected {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got input "
                           f"of shape {tuple(input.shape)}")
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    x = x if x.dtype == weight.dtype else x.to(weight.dtype)
    return x, unbatched


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,  # noqa: A002
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """Input ``(N, C_in, H, W)`` (or ``(C_in, H, W)``), weight ``(C_out, C_in/groups, kH, kW)``,
    bias ``(C_out,)``; ``padding`` an int, a pair, ``'valid'`` or ``'same'``."""
    x, unbatched = _conv_args("conv2d", input, weight, bias, 2)
    o, cg, kh, kww = weight.shape
    stride, dilation = _tuple(stride, 2, "stride", "conv2d"), _tuple(dilation, 2, "dilation", "conv2d")
    if x.shape[1] != cg * groups:
        raise RuntimeError(f"conv2d: expected input with {cg * groups} channels (weight of shape "
                           f"{tuple(weight.shape)}, groups={groups}), got input of shape {tuple(input.shape)}")
    if groups < 1 or x.shape[1] % groups or o % groups:
        raise RuntimeError(f"conv2d: groups={groups} must divide both in_channels ({x.shape[1]}) and "
                           f"out_channels ({o})")
    pad = _conv_padding(padding, (kh, kww), stride, dilation, "conv2d")
    for d, (size, k) in enumerate(zip(x.shape[2:], (kh, kww))):
        if size + sum(pad[d]) < dilation[d] * (k - 1) + 1:
            raise RuntimeError(f"conv2d: padded input size {size + sum(pad[d])} in spatial dim {d} is smaller "
                               f"than the (dilated) kernel size {dilation[d] * (k - 1) + 1} (input of shape "
                               f"{tuple(input.shape)}, weight of shape {tuple(weight.shape)})")
    kw = {"stride": stride, "padding": pad, "dilation": dilation, "groups": int(groups)}
    ins = (x, weight) if bias is None else (x, weight, bias)
    out = Tensor._apply(CONV2D, ins, kw)
    return out.squeeze(0) if unbatched else out


def _conv_padding(padding: Any, k: tuple, stride: tuple, dilation: tuple, op: str) -> tuple:
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in k)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
            out = []
            for d, kk in zip(dilation, k):
                total = d * (kk - 1)
                out.append((total // 2, total - total // 2))  # the odd extra goes right, as torch
            return tuple(out)
        raise ValueError(f"{op}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    p = _tuple(padding, len(k), "padding", op)
    if any(v < 0 for v in p):
        raise RuntimeError(f"{op}: negative padding is not supported, got {p}")
    return tuple((v, v) for v in p)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,  # noqa: A002
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """Input ``(N, C_in, L)`` (or ``(C_in, L)``), weight ``(C_out, C_in/groups, k)``: ``conv2d`` with H = 1."""
    x, unbatched = _conv_args("conv1d", input, weight, bias, 1)
    if x.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(f"conv1d: expected input with {weight.shape[1] * groups} channels (weight of shape "
                           f"{tuple(weight.shape)}, groups={groups}), got input of shape {tuple(input.shape)}")
    p = padding if isinstance(padding, str) else (0, _tuple(padding, 1, "padding", "conv1d")[0])
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, _tuple(stride, 1, "stride", "conv1d")[0]), p,
                 (1, _tuple(dilation, 1, "dilation", "conv1d")[0]), groups).squeeze(2)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,  # noqa: A002
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """The adjoint of ``conv2d``: input ``(N, C_in, H, W)``, weight ``(C_in, C_out/groups, kH, kW)``;
    output size ``(H - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1``."""
    x, unbatched = _conv_args("conv_transpose2d", input, weight, bias, 2)
    ci, cog, kh, kww = weight.shape
    if x.shape[1] != ci:
        raise RuntimeError(f"conv_transpose2d: expected input with {ci} channels (weight of shape "
                           f"{tuple(weight.shape)}), got input of shape {tuple(input.shape)}")
    if groups < 1 or ci % groups:
        raise RuntimeError(f"conv_transpose2d: groups={groups} must divide in_channels ({ci})")
    stride, dilation = _tuple(stride, 2, "stride", "conv_transpose2d"), _tuple(dilation, 2, "dilation",
                                                                                 "conv_transpose2d")
    pad = _tuple(padding, 2, "padding", "conv_transpose2d")
    opad = _tuple(output_padding, 2, "output_padding", "conv_transpose2d")
    for op_, s, d in zip(opad, stride, dilation):
        if op_ >= max(s, d):
            raise RuntimeError(f"conv_transpose2d: output padding must be smaller than either stride or "
                               f"dilation, got output_padding={opad}, stride={stride}, dilation={dilation}")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + op_ + 1
                   for size, s, p, d, k, op_ in zip(x.shape[2:], stride, pad, dilation, (kh, kww), opad))
    kw = {"stride": stride, "padding": tuple((p, p) for p in pad), "dilation": dilation, "groups": int(groups),
          "in_hw": out_hw}
    out = Tensor._apply(CONV2D_INPUT_GRAD, (x, weight), kw)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,  # noqa: A002
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    x, unbatched = _conv_args("conv_transpose1d", input, weight, bias, 1)
    one = lambda v, name: (0 if name in ("padding", "output_padding") else 1,  # noqa: E731
                           _tuple(v, 1, name, "conv_transpose1d")[0])
    out = conv_transpose2d(x.unsqueeze(2), weight.unsqueeze(2), bias, one(stride, "stride"),
                           one(padding, "padding"), one(output_padding, "output_padding"), groups,
                           one(dilation, "dilation")).squeeze(2)
    return out.squeeze(0) if unbatched else out


# ====================================================================== pooling
def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    num = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        o = -(-num // s) + 1
        if (o - 1) * s >= size + p:  # the last window must start inside the input or left padding
            o -= 1
        return o
    return num // s + 1


@accel.jit
def _maxpool2x2_kernel(x, out, idx):
    """The common pooling, 2x2 windows with stride 2 inside ``x (N, C, H, W)``, in one
    pass: ``out``/``idx (N, C, OH, OW)``, the first maximum winning ties as in
    ``_maxpool2d_f``. Returns whether ``x`` held a NaN (then the caller redoes the
    windows with PyTorch's NaN rule); the window's four compares stay branch-free."""
    n, c = x.shape[0], x.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    nan = False
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    a0 = x[b, ch, 2 * i, 2 * j]
                    a1 = x[b, ch, 2 * i, 2 * j + 1]
                    a2 = x[b, ch, 2 * i + 1, 2 * j]
                    a3 = x[b, ch, 2 * i + 1, 2 * j + 1]
                    nan |= (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3)
                    best = a0
                    arg = 0
                    if a1 > best:
                        best = a1
                        arg = 1
                    if a2 > best:
                        best = a2
                        arg = 2
                    if a3 > best:
                        best = a3
                        arg = 3
                    out[b, ch, i, j] = best
                    idx[b, ch, i, j] = arg
    return nan


@accel.jit
def _maxpool2d_back_kernel(g, idx, gx, kw, sh, sw, ph, pw, dh, dw):
    """``gx (N, C, H, W)`` (zeros) += ``g`` at each window's argmax, window by window
    in row-major order (PyTorch's kernel adds overlapping windows' gradients in
    this order)."""
    n, c, oh, ow = g.shape
    h, w = gx.shape[2], gx.shape[3]
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    k = idx[b, ch, i, j]
                    r = i * sh - ph + (k // kw) * dh
                    q = j * sw - pw + (k % kw) * dw
                    if 0 <= r < h and 0 <= q < w:
                        gx[b, ch, r, q] += g[b, ch, i, j]


def _maxpool2d_f(ins, kw):
    x = ins[0]
    (kh, kww), (sh, sw), (ph, pw), (dh, dw) = kw["kernel"], kw["stride"], kw["padding"], kw["dilation"]
    n, c, h, wd = x.shape
    oh, ow = kw["out_hw"]
    if ((kh, kww, sh, sw, ph, pw, dh, dw) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * oh <= h and 2 * ow <= wd
            and x.size and accel.handles(x)):
        out = np.empty((n, c, oh, ow), x.dtype)
        idx = np.empty((n, c, oh, ow), np.int32)
        if not _maxpool2x2_kernel(x, out, idx):
            kw["idx"] = idx
            return out
    # pad with -inf; extra right/bottom room for ceil_mode windows
    eh = max((oh - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph), 0)
    ew = max((ow - 1) * sw + dw * (kww - 1) + 1 - (wd + 2 * pw), 0)
    xp = _pad_hw(x, ((ph, ph + eh), (pw, pw + ew)), -np.inf)
    views = [xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
             for i in range(kh) for j in range(kww)]
    if not np.isnan(x).any():
        # max by pairwise maxima of the kh*kw strided views (no window copy); the
        # index of the first maximum by writing candidates from the last to the first
        best = views[0]
        for v in views[1:]:
            best = np.maximum(best, v)
        idx = np.empty(best.shape, np.int32)
        idx.fill(len(views) - 1)
        for k in range(len(views) - 2, -1, -1):
            np.copyto(idx, k, where=views[k] == best)
        kw["idx"] = idx
        return np.array(best, copy=True) if best is views[0] else best
    # with NaNs: a running max where, as in torch's kernel, a NaN always takes over
    best = idx = None
    for i in range(kh):
        for j in range(kww):
            v = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            if best is None:
                best = v.copy()
                idx = np.zeros(best.shape, np.int32)
                continue
            upd = v > best
            upd |= np.isnan(v)  # as torch's kernel: a NaN always takes over
            np.copyto(best, v, where=upd)
            np.copyto(idx, i * kww + j, where=upd)
    kw["idx"] = idx
    return best


def _maxpool_flat_index(kw: dict, in_hw: tuple) -> np.ndarray:
    """Window-local argmax -> index into the flattened ``H*W`` plane (``return_indices``)."""
    (kh, kww), (sh, sw), (ph, pw), (dh, dw) = kw["kernel"], kw["stride"], kw["padding"], kw["dilation"]
    idx = kw["idx"]
    oh, ow = idx.shape[-2:]
    i, j = np.divmod(idx, kww)
    rows = np.arange(oh)[:, None] * sh + i * dh - ph
    cols = np.arange(ow)[None, :] * sw + j * dw - pw
    return rows * in_hw[1] + cols


def _maxpool2d_b(g, out, ins, kw, needs):
    return (call(MAXPOOL2D_BACKWARD, (g,), kw | {"in_hw": tuple(ins[0].shape[2:])}),)
MAXPOOL2D = Rule("max_pool2d", _maxpool2d_f, _maxpool2d_b, needs_inputs=False)  # reads only the shape


def _maxpool2d_bf(ins, kw):
    g = ins[0]
    (kh, kww), (sh, sw), (ph, pw), (dh, dw) = kw["kernel"], kw["stride"], kw["padding"], kw["dilation"]
    idx = kw["idx"]
    h, wd = kw["in_hw"]
    n, c, oh, ow = idx.shape
    if g.size and accel.handles(g):
        gx = np.zeros((n, c, h, wd), g.dtype)
        _maxpool2d_back_kernel(g, idx, gx, kww, sh, sw, ph, pw, dh, dw)
        return gx
    H = max((oh - 1) * sh + dh * (kh - 1) + 1, h + 2 * ph)
    W = max((ow - 1) * sw + dw * (kww - 1) + 1, wd + 2 * pw)
    gxp = np.zeros((n, c, H, W), dtype=g.dtype)
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kww - 1) + 1  # each input in one window at most
    for i in range(kh):
        for j in range(kww):
            dst = gxp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            if disjoint:
                np.copyto(dst, g, where=idx == i * kww + j)
            else:
                dst += np.where(idx == i * kww + j, g, 0)
    return gxp[:, :, ph:ph + h, pw:pw + wd]


def _maxpool2d_bb(gg, out, ins, kw, needs):
    n, c, oh, ow = kw["idx"].shape
    flat = _maxpool_flat_index(kw, kw["in_hw"]).reshape(n, c, -1)
    return (np.reshape(np.take_along_axis(np.reshape(gg, (n, c, -1)), flat, axis=2), (n, c, oh, ow)),)
MAXPOOL2D_BACKWARD = Rule("max_pool2d_backward", _maxpool2d_bf, _maxpool2d_bb, needs_inputs=False)


def _pool_args(op: str, input: Tensor, nd: int, kernel_size: Any, stride: Any, padding: Any,  # noqa: A002
               dilation: Any = 1) -> tuple:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: expected {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got input "
                           f"of shape {tuple(input.shape)}")
    k = _tuple(kernel_size, nd, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _tuple(stride, nd, "stride", op)
    p = _tuple(padding, nd, "padding", op)
    d = _tuple(dilation, nd, "dilation", op)
    for kk, pp, dd in zip(k, p, d):
        if pp > (dd * (kk - 1) + 1) // 2 if op.startswith("max") else pp > kk // 2:
            raise RuntimeError(f"{op}: pad should be at most half of effective kernel size, but got "
                               f"pad={pp}, kernel_size={kk} and dilation={dd}")
    return k, s, p, d


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max over ``kernel_size`` windows of ``(N, C, H, W)``; ``return_indices`` gives flat ``H*W`` indices."""
    k, s, p, d = _pool_args("max_pool2d", input, 2, kernel_size, stride, padding, dilation)
    unbatched = input.ndim == 3
    x = _float_input(input.unsqueeze(0) if unbatched else input, "max_pool2d")
    out_hw = tuple(_pool_out(n, kk, ss, pp, dd, ceil_mode) for n, kk, ss, pp, dd in zip(x.shape[2:], k, s, p, d))
    if min(out_hw) <= 0:
        raise RuntimeError(f"max_pool2d: output size {out_hw} is too small for input of shape "
                           f"{tuple(input.shape)} (kernel_size={k}, stride={s}, padding={p}, dilation={d})")
    kw = {"kernel": k, "stride": s, "padding": p, "dilation": d, "out_hw": out_hw}
    out = Tensor._apply(MAXPOOL2D, (x,), kw)
    if unbatched:
        out = out.squeeze(0)
    if not return_indices:
        return out
    idx = _maxpool_flat_index(kw, x.shape[2:]).astype(np.int64)
    return out, Tensor._wrap(idx[0] if unbatched else idx)


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max over windows of ``(N, C, L)`` (``max_pool2d`` with H = 1)."""
    k, s, p, d = _pool_args("max_pool1d", input, 1, kernel_size, stride, padding, dilation)
    res = max_pool2d(input.unsqueeze(-2), (1, k[0]), (1, s[0]), (0, p[0]), (1, d[0]), ceil_mode, return_indices)
    if return_indices:
        return res[0].squeeze(-2), res[1].squeeze(-2)
    return res.squeeze(-2)


def _avg_sum(xp: np.ndarray, k: tuple, s: tuple, out_hw: tuple) -> np.ndarray:
    (kh, kww), (sh, sw), (oh, ow) = k, s, out_hw
    acc = None
    for i in range(kh):
        for j in range(kww):
            sl = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            acc = sl.copy() if acc is None else acc.__iadd__(sl)
    return acc


def _avgpool2d_f(ins, kw):
    x = ins[0]
    (kh, kww), (sh, sw), (ph, pw) = kw["kernel"], kw["stride"], kw["padding"]
    oh, ow = kw["out_hw"]
    h, wd = x.shape[2:]
    eh = max((oh - 1) * sh + kh - (h + 2 * ph), 0)
    ew = max((ow - 1) * sw + kww - (wd + 2 * pw), 0)
    out = _avg_sum(_pad_hw(x, ((ph, ph + eh), (pw, pw + ew))), kw["kernel"], kw["stride"], kw["out_hw"])
    return out / kw["div"].astype(x.dtype)


def _avgpool2d_b(g, out, ins, kw, needs):
    return (call(AVGPOOL2D_BACKWARD, (g,), kw | {"in_hw": tuple(ins[0].shape[2:])}),)
AVGPOOL2D = Rule("avg_pool2d", _avgpool2d_f, _avgpool2d_b, needs_inputs=False)


def _avgpool2d_bf(ins, kw):
    g = ins[0] / kw["div"].astype(ins[0].dtype)
    (kh, kww), (sh, sw), (ph, pw) = kw["kernel"], kw["stride"], kw["padding"]
    n, c, oh, ow = g.shape
    h, wd = kw["in_hw"]
    gxp = np.zeros((n, c, max((oh - 1) * sh + kh, h + 2 * ph), max((ow - 1) * sw + kww, wd + 2 * pw)),
                   dtype=g.dtype)
    for i in range(kh):
        for j in range(kww):
            gxp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += g
    return gxp[:, :, ph:ph + h, pw:pw + wd]


def _avgpool2d_bb(gg, out, ins, kw, needs):
    return (call(AVGPOOL2D, (gg,), kw),)
AVGPOOL2D_BACKWARD = Rule("avg_pool2d_backward", _avgpool2d_bf, _avgpool2d_bb, needs_inputs=False)


def _avg_divisor(size: int, k: int, s: int, p: int, o: int, include_pad: bool) -> np.ndarray:
    start = np.arange(o) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean over ``kernel_size`` windows of ``(N, C, H, W)``; zero padding counts in the divisor when
    ``count_include_pad``; windows of ``ceil_mode`` clipped at the padded edge, as torch."""
    k, s, p, _ = _pool_args("avg_pool2d", input, 2, kernel_size, stride, padding)
    unbatched = input.ndim == 3
    x = _float_input(input.unsqueeze(0) if unbatched else input, "avg_pool2d")
    out_hw = tuple(_pool_out(n, kk, ss, pp, 1, ceil_mode) for n, kk, ss, pp in zip(x.shape[2:], k, s, p))
    if min(out_hw) <= 0:
        raise RuntimeError(f"avg_pool2d: output size {out_hw} is too small for input of shape "
                           f"{tuple(input.shape)} (kernel_size={k}, stride={s}, padding={p})")
    if divisor_override:
        div = np.full(out_hw, float(divisor_override))
    else:
        dh, dw = (_avg_divisor(n, kk, ss, pp, o, count_include_pad)
                  for n, kk, ss, pp, o in zip(x.shape[2:], k, s, p, out_hw))
        div = np.outer(dh, dw)
    out = Tensor._apply(AVGPOOL2D, (x,), {"kernel": k, "stride": s, "padding": p, "out_hw": out_hw, "div": div})
    return out.squeeze(0) if unbatched else out


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    k, s, p, _ = _pool_args("avg_pool1d", input, 1, kernel_size, stride, padding)
    return avg_pool2d(input.unsqueeze(-2), (1, k[0]), (1, s[0]), (0, p[0]), ceil_mode,
                      count_include_pad).squeeze(-2)


def _adaptive_matrix(size: int, out: int, dtype: np.dtype) -> np.ndarray:
    """``(out, size)``: row i averages input [floor(i size/out), ceil((i+1) size/out))."""
    m = np.zeros((out, size), dtype=dtype)
    for i in range(out):
        a, b = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, a:b] = 1.0 / (b - a)
    return m


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average ``(N, C, H, W)`` over torch's adaptive windows to ``output_size`` (``None`` keeps a size):
    two small averaging matrices, ``P_h @ x @ P_w^T``."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"adaptive_avg_pool2d: expected 3-D or 4-D input, got input of shape "
                           f"{tuple(input.shape)}")
    x = _float_input(input, "adaptive_avg_pool2d")
    osz = (output_size, output_size) if isinstance(output_size, (int, np.integer)) or output_size is None \
        else tuple(output_size)
    h, w = x.shape[-2:]
    oh, ow = (h if osz[0] is None else int(osz[0])), (w if osz[1] is None else int(osz[1]))
    ph = Tensor._wrap(_adaptive_matrix(h, oh, x.dtype))
    pw = Tensor._wrap(np.ascontiguousarray(_adaptive_matrix(w, ow, x.dtype).T))
    return ph @ x @ pw


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    if input.ndim not in (2, 3):
        raise RuntimeError(f"adaptive_avg_pool1d: expected 2-D or 3-D input, got input of shape "
                           f"{tuple(input.shape)}")
    x = _float_input(input, "adaptive_avg_pool1d")
    o = output_size if isinstance(output_size, (int, np.integer)) else output_size[0]
    return x @ Tensor._wrap(np.ascontiguousarray(_adaptive_matrix(x.shape[-1], int(o), x.dtype).T))


_INTERP_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_INTERP_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}  # the spatial rank each mode needs
_CUBIC_A = -0.75


def _interp_scale(n_in: int, n_out: int, align_corners: bool, scale: float | None, dt: type) -> Any:
    """torch's ``area_pixel_compute_scale`` in the weights' dtype: source step per output step; with a
    user ``scale_factor`` (not recomputed) it is ``1 / scale_factor``, not ``in / out``."""
    if align_corners:
        return dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0)
    if scale is not None and scale > 0:
        return dt(1.0 / scale)
    return dt(n_in) / dt(n_out)


def _interp_taps(n_in: int, n_out: int, cubic: bool, align_corners: bool, scale: float | None,
                 dt: type) -> tuple[np.ndarray, np.ndarray] | None:
    """One axis of the resampling: ``(index, weight)``, each ``(taps, n_out)``, with out[o] =
    sum_k in[index[k, o]] weight[k, o]; ``None`` for a linear axis that keeps its size (torch copies).
    Follows torch's ``area_pixel_compute_source_index`` / ``guard_index_and_lambda`` in ``dt``."""
    if n_in == n_out and not cubic:
        return None
    s = _interp_scale(n_in, n_out, align_corners, scale, dt)
    o = np.arange(n_out).astype(dt)
    real = s * o if align_corners else s * (o + dt(0.5)) - dt(0.5)
    if not (cubic or align_corners):
        real = np.where(real < 0, dt(0), real)  # torch (after OpenCV): clamp the left border for linear
    i0 = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    t = np.clip(real - i0.astype(dt), dt(0), dt(1))
    if not cubic:
        idx = np.stack([i0, i0 + (i0 < n_in - 1)])
        return idx, np.stack([dt(1) - t, t])
    a = dt(_CUBIC_A)
    conv1 = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731  |x| <= 1
    conv2 = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731  1 < |x| < 2
    t2 = dt(1) - t
    w = np.stack([conv2(t + dt(1)), conv1(t), conv1(t2), conv2(t2 + dt(1))]).astype(dt)
    idx = np.clip(i0[None] + np.arange(-1, 3)[:, None], 0, n_in - 1)  # torch clamps border reads
    return idx, w


def _resample_f(ins, kw):
    x = ins[0]
    for axis, idx, w, _, _ in reversed(kw["plan"]):  # last axis first: torch's nesting, so its rounding
        shape = [1] * x.ndim
        shape[axis] = -1
        acc = None
        for ik, wk in zip(idx, w):
            term = x.take(ik, axis=axis) * wk.astype(x.dtype).reshape(shape)
            acc = term if acc is None else acc.__iadd__(term)
        x = acc
    return x


def _resample_b(g, out, ins, kw, needs):
    return (call(RESAMPLE_BACKWARD, (g,), kw),)
RESAMPLE = Rule("upsample", _resample_f, _resample_b, needs_inputs=False)


def _segments(ik: np.ndarray) -> tuple:
    """For a rising tap index: where each run of equal indices starts (``None`` when every run has
    length 1), and the indices the runs hit, as a slice when evenly spaced (integer up/down factors:
    a slice scatter is much cheaper than a fancy-index one)."""
    st = np.flatnonzero(np.diff(ik, prepend=-1))
    dst = ik[st]
    step = np.diff(dst)
    if len(dst) == 1 or (step == step[0]).all():
        dst = slice(int(dst[0]), int(dst[-1]) + 1, int(step[0]) if len(dst) > 1 else 1)
    return (None if len(st) == len(ik) else st), dst


def _resample_bf(ins, kw):
    """The adjoint: per axis, scatter-add of ``g * weight`` into the tap indices. The indices of
    each tap rise with the output index, so the scatter is a segment sum (``add.reduceat``)."""
    g = ins[0]
    for axis, idx, w, n_in, starts in kw["plan"]:
        shape = [1] * g.ndim
        shape[axis] = -1
        gx = np.zeros(g.shape[:axis] + (n_in,) + g.shape[axis + 1:], dtype=g.dtype)
        lead = (slice(None),) * axis
        for wk, (st, dst) in zip(w, starts):
            c = g * wk.astype(g.dtype).reshape(shape)
            gx[lead + (dst,)] += c if st is None else np.add.reduceat(c, st, axis=axis)
        g = gx
    return g


def _resample_bb(gg, out, ins, kw, needs):
    return (call(RESAMPLE, (gg,), kw),)
RESAMPLE_BACKWARD = Rule("upsample_backward", _resample_bf, _resample_bb, needs_inputs=False)


def _interp_sizes(input: Tensor, nd: int, size: Any, scale_factor: Any,  # noqa: A002
                  recompute_scale_factor: bool | None) -> tuple[tuple, list]:
    """torch's argument handling: ``(output sizes, scale per axis or None)``."""
    in_sz = tuple(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("interpolate: only one of size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size.")
        sizes = list(size) if isinstance(size, (list, tuple)) else [size] * nd
        if len(sizes) != nd:
            raise ValueError(f"interpolate: Input and output must have the same number of spatial dimensions, "
                             f"but got input with spatial dimensions of {list(in_sz)} and output size of {size}. "
                             "Please provide input tensor in (N, C, d1, d2, ...,dK) format and output size in "
                             "(o1, o2, ...,oK) format.")
        if not all(isinstance(v, (int, np.integer)) for v in sizes):
            raise TypeError("interpolate: expected size to be one of int or Tuple[int] or Tuple[int, int] or "
                            f"Tuple[int, int, int], but got size with types {[type(v) for v in sizes]}")
        return tuple(int(v) for v in sizes), [None] * nd
    if scale_factor is None:
        raise ValueError("interpolate: either size or scale_factor should be defined, got neither (only one of "
                         "size or scale_factor should be defined)")
    sf = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nd
    if len(sf) != nd:
        raise ValueError(f"interpolate: Input and scale_factor must have the same number of spatial dimensions, "
                         f"but got input with spatial dimensions of {list(in_sz)} and scale_factor of shape "
                         f"{scale_factor}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                         "scale_factor in (s1, s2, ...,sK) format.")
    sf = [float(v) for v in sf]
    if not all(math.isfinite(v) for v in sf):
        raise RuntimeError(f"interpolate: scale_factor must be finite, got {scale_factor} (the output size "
                           "cannot be converted to int64)")
    out_sz = tuple(int(math.floor(n * f)) for n, f in zip(in_sz, sf))
    return out_sz, ([None] * nd if recompute_scale_factor else sf)


def _check_interp_sizes(in_sz: tuple, out_sz: tuple) -> None:
    if min(in_sz) > 0 and min(out_sz) > 0:
        return
    names = ("D", "H", "W")[3 - len(in_sz):]
    fmt = lambda sz: "(" + ", ".join(f"{a}: {b}" for a, b in zip(names, sz)) + ")"  # noqa: E731
    raise RuntimeError(f"interpolate: Input and output sizes should be greater than 0, but got input "
                       f"{fmt(in_sz)} output {fmt(out_sz)}")


def _area(x: Tensor, out_sz: tuple) -> Tensor:
    """``mode='area'`` is adaptive average pooling to the output size, as in torch."""
    if min(out_sz) < 0:
        raise RuntimeError(f"interpolate: mode 'area' needs non-negative output sizes, got {out_sz}")
    if len(out_sz) == 1:
        return adaptive_avg_pool1d(x, out_sz[0])
    if len(out_sz) == 2:
        return adaptive_avg_pool2d(x, out_sz)
    n, c, d, h, w = x.shape
    pd = Tensor._wrap(_adaptive_matrix(d, out_sz[0], x.dtype))
    y = (pd @ x.reshape(n, c, d, h * w)).reshape(n * c * out_sz[0], 1, h, w)
    return adaptive_avg_pool2d(y, out_sz[1:]).reshape(n, c, *out_sz)


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",  # noqa: A002
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims of ``(N, C, *spatial)`` as ``torch.nn.functional.interpolate``.

    ``'nearest'``/``'nearest-exact'`` (torch's index rule ``floor(dst * in / out)``, in float32);
    ``'linear'`` (3-D), ``'bilinear'``/``'bicubic'`` (4-D, cubic A = -0.75 with clamped border reads),
    ``'trilinear'`` (5-D): separable, one gather + weighted sum per axis with torch's source-index
    formula (``1 / scale_factor`` when a scale is given and not recomputed), weights in the input's
    float dtype; backward is the adjoint (a separate Rule, so twice differentiable). ``'area'`` is
    adaptive average pooling. ``antialias=True`` is not implemented.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate(): argument 'input' must be Tensor, not {type(input).__name__}")
    if mode not in _INTERP_MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not implemented (expected one of nearest | "
                                  "linear | bilinear | bicubic | trilinear | area | nearest-exact)")
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError("interpolate: align_corners option can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    nd = input.ndim - 2
    if not 1 <= nd <= 3:
        raise NotImplementedError(f"interpolate: Input Error: Only 3D, 4D and 5D input Tensors supported (got "
                                  f"{input.ndim}D) for the modes: nearest | linear | bilinear | bicubic | trilinear"
                                  f" | area | nearest-exact (got {mode}); input of shape {tuple(input.shape)}")
    if mode in _INTERP_DIMS and _INTERP_DIMS[mode] != nd:
        need = _INTERP_DIMS[mode] + 2
        raise NotImplementedError(f"interpolate: Got {input.ndim}D input, but {mode} mode needs {need}D input "
                                  f"(input of shape {tuple(input.shape)})")
    in_sz = tuple(input.shape[2:])
    out_sz, scales = _interp_sizes(input, nd, size, scale_factor, recompute_scale_factor)
    if antialias:
        if mode not in ("bilinear", "bicubic"):
            raise ValueError("interpolate: Anti-alias option is restricted to bilinear and bicubic modes and "
                             "requires a 4-D tensor as input")
        raise NotImplementedError(f"interpolate: antialias=True is not implemented (mode {mode!r}); "
                                  "use antialias=False")
    if mode == "area":
        return _area(_float_input(input, "interpolate"), out_sz)
    _check_interp_sizes(in_sz, out_sz)
    if mode in ("nearest", "nearest-exact"):
        x = input
        for d, (n, o, sc) in enumerate(zip(in_sz, out_sz, scales)):
            if n == o:
                continue
            scale = np.float32(1.0 / sc) if sc is not None and sc > 0 else np.float32(n) / np.float32(o)
            dst = np.arange(o, dtype=np.float32)
            src = np.floor((dst + np.float32(0.5)) * scale if mode == "nearest-exact" else dst * scale)
            src = np.minimum(src.astype(np.int64), n - 1)
            x = x.index_select(2 + d, Tensor._wrap(src))
        return x
    x = _float_input(input, "interpolate")
    dt = np.float64 if x.dtype == np.float64 else np.float32  # torch's opmath type
    plan = []
    for d, (n, o, sc) in enumerate(zip(in_sz, out_sz, scales)):
        taps = _interp_taps(n, o, mode == "bicubic", align_corners, sc, dt)
        if taps is not None:
            plan.append((2 + d, taps[0], taps[1], n, tuple(_segments(ik) for ik in taps[0])))
    if not plan:
        return x.clone()
    return Tensor._apply(RESAMPLE, (x,), {"plan": tuple(plan)})


# ====================================================================== attention
def _attn_scores(q, k, kw):
    s = (q @ np.swapaxes(k, -1, -2)) * kw["scale"]
    if kw["mask"] is not None:
        s = s + kw["mask"]
    return s


def _safe_softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last dim whose fully masked (all ``-inf``) rows are zero, as torch's SDPA."""
    m = np.max(s, axis=-1, keepdims=True)
    dead = m == -np.inf
    e = np.exp(s - np.where(dead, 0, m))
    z = np.sum(e, axis=-1, keepdims=True)
    return e / np.where(dead, 1, z)


def _attn_f(ins, kw):
    q, k, v = ins
    s = q @ np.swapaxes(k, -1, -2)
    s *= np.asarray(kw["scale"], dtype=s.dtype)
    if kw["mask"] is not None:
        s += kw["mask"]
    p = _safe_softmax(s) if kw["mask"] is not None else O._softmax_f((s,), {"dim": -1})
    kw["p"] = p
    if kw["drop"] is not None:
        p = p * kw["drop"]
    return p @ v


def _attn_b(g, out, ins, kw, needs):
    """``out = P V``, ``P = softmax(Q K^T scale + mask)``: ``dV = P^T g``, ``dP = g V^T``,
    ``dS = P (dP - rowsum(dP P))``, ``dQ = dS K scale``, ``dK = dS^T Q scale``."""
    q, k, v = ins
    if isinstance(g, np.ndarray) and isinstance(q, np.ndarray) and "p" in kw:
        p = kw["p"]
    else:  # create_graph: rebuild P from recorded ops so the gradient is differentiable
        s = _attn_scores(q, k, kw)
        live = None if kw["mask"] is None else np.isfinite(np.max(kw["mask"], axis=-1, keepdims=True))
        if live is not None and not live.all():
            s = np.where(live, s, 0.0)  # fully masked rows: finite scores here, zeroed below
        p = call(O.SOFTMAX, (s,), {"dim": -1})
        if live is not None and not live.all():
            p = p * live
    drop = kw["drop"]
    pd = p if drop is None else p * drop
    gv = np.swapaxes(pd, -1, -2) @ g if needs[2] else None
    gq = gk = None
    if needs[0] or needs[1]:
        gp = g @ np.swapaxes(v, -1, -2)
        if drop is not None:
            gp = gp * drop
        gs = p * (gp - np.sum(gp * p, axis=-1, keepdims=True))
        gs = gs * kw["scale"]
        gq = gs @ k if needs[0] else None
        gk = np.swapaxes(gs, -1, -2) @ q if needs[1] else None
    return gq, gk, gv
ATTENTION = Rule("scaled_dot_product_attention", _attn_f, _attn_b)


def _float_mask(mask: Any, dtype: np.dtype, masked_is_true: bool, op: str) -> np.ndarray | None:
    """A bool or float mask as an additive float array (``-inf`` where attention is not allowed)."""
    if mask is None:
        return None
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype == np.bool_:
        blocked = m if masked_is_true else ~m
        return np.where(blocked, -np.inf, 0.0).astype(dtype)
    if m.dtype.kind != "f":
        raise TypeError(f"{op}: only bool and floating types of masks are supported, got {B.dtype_name(m.dtype)}")
    return m.astype(dtype, copy=False)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False, *, generator: Generator | None = None) -> Tensor:
    """``softmax(Q K^T scale + mask) V`` in one node: query ``(..., L, E)``, key ``(..., S, E)``, value
    ``(..., S, Ev)``; a bool ``attn_mask`` marks allowed positions with True, a float one is added;
    ``is_causal`` masks the upper triangle; fully masked rows give zeros, as torch."""
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(f"scaled_dot_product_attention: expected query, key and value of at least 2 dims, got "
                           f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: query {tuple(query.shape)}, key {tuple(key.shape)} "
                           f"and value {tuple(value.shape)} do not align (query and key need the same last "
                           f"dim, key and value the same sequence length)")
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True")
    q = _float_input(query, "scaled_dot_product_attention")
    k, v = key.to(q.dtype), value.to(q.dtype)
    if enable_gqa and k.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k = k.unsqueeze(-3).expand(*k.shape[:-2], rep, *k.shape[-2:]).reshape(*q.shape[:-2], *k.shape[-2:])
        v = v.unsqueeze(-3).expand(*v.shape[:-2], rep, *v.shape[-2:]).reshape(*q.shape[:-2], *v.shape[-2:])
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        mask = np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf).astype(q.dtype)
    else:
        mask = _float_mask(attn_mask, q.dtype, False, "scaled_dot_product_attention")
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    drop = None
    if dropout_p > 0.0:
        shape = np.broadcast_shapes(q.shape[:-1], k.shape[:-2] + (1,))[:-1] + (L, S)
        keep = resolve(generator).random(shape) >= dropout_p
        drop = keep.astype(q.dtype) * np.asarray(1.0 / (1.0 - dropout_p), dtype=q.dtype)
    return Tensor._apply(ATTENTION, (q, k, v), {"scale": sc, "mask": mask, "drop": drop})


def multi_head_attention_forward(query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
                                 in_proj_weight: Tensor | None, in_proj_bias: Tensor | None,
                                 bias_k: Tensor | None, bias_v: Tensor | None, add_zero_attn: bool,
                                 dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Tensor | None,
                                 training: bool = True, key_padding_mask: Tensor | None = None,
                                 need_weights: bool = True, attn_mask: Tensor | None = None,
                                 use_separate_proj_weight: bool = False, q_proj_weight: Tensor | None = None,
                                 k_proj_weight: Tensor | None = None, v_proj_weight: Tensor | None = None,
                                 static_k: Tensor | None = None, static_v: Tensor | None = None,
                                 average_attn_weights: bool = True, is_causal: bool = False) -> tuple:
    """torch's ``F.multi_head_attention_forward``: query ``(L, N, E)`` (or ``(L, E)``), key/value
    ``(S, N, E_k/E_v)``; returns ``(output (L, N, E), weights (N, L, S) or (N, H, L, S) or None)``.
    Bool masks mark *blocked* positions with True; float masks are added to the scores."""
    if static_k is not None or static_v is not None:
        raise NotImplementedError("multi_head_attention_forward: static_k/static_v are not supported")
    batched = query.ndim == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.reshape(1, -1) if isinstance(key_padding_mask, Tensor) \
                else np.asarray(key_padding_mask).reshape(1, -1)
    L, N, E = query.shape
    if E != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {E}")
    H = num_heads
    hd = E // H
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    # (L, N, E) -> (N, L, E): heads then come out as (N, H, L, hd) with one permute
    q_in, k_in, v_in = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    if not use_separate_proj_weight:
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:]
        if query is key and key is value:
            qkv = linear(q_in, in_proj_weight, in_proj_bias)
            q, k, v = qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        else:
            q = linear(q_in, in_proj_weight[:E], bq)
            k = linear(k_in, in_proj_weight[E:2 * E], bk)
            v = linear(v_in, in_proj_weight[2 * E:], bv)
    else:
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:]
        q, k, v = linear(q_in, q_proj_weight, bq), linear(k_in, k_proj_weight, bk), linear(v_in, v_proj_weight, bv)
    dt = q.dtype
    am = _float_mask(attn_mask, dt, True, "multi_head_attention_forward")
    kpm = _float_mask(key_padding_mask, dt, True, "multi_head_attention_forward")
    if am is not None:
        if am.ndim == 2:
            if am.shape != (L, k.shape[1]):
                raise RuntimeError(f"The shape of the 2D attn_mask is {am.shape}, but should be {(L, k.shape[1])}.")
        elif am.ndim == 3:
            if am.shape != (N * H, L, k.shape[1]):
                raise RuntimeError(f"The shape of the 3D attn_mask is {am.shape}, but should be "
                                   f"{(N * H, L, k.shape[1])}.")
            am = am.reshape(N, H, L, k.shape[1])
        else:
            raise RuntimeError(f"attn_mask's dimension {am.ndim} is not supported")
    if bias_k is not None and bias_v is not None:
        k = _cat_along(k, bias_k.reshape(1, 1, -1).expand(N, 1, bias_k.shape[-1]))
        v = _cat_along(v, bias_v.reshape(1, 1, -1).expand(N, 1, bias_v.shape[-1]))
        am = None if am is None else np.concatenate([am, np.zeros(am.shape[:-1] + (1,), dt)], axis=-1)
        kpm = None if kpm is None else np.concatenate([kpm, np.zeros((N, 1), dt)], axis=-1)
    S0 = k.shape[1]
    q = q.reshape(N, L, H, hd).permute(0, 2, 1, 3)
    k = k.reshape(N, S0, H, hd).permute(0, 2, 1, 3)
    v = v.reshape(N, S0, H, hd).permute(0, 2, 1, 3)
    if add_zero_attn:
        k = _cat_along(k, Tensor._wrap(np.zeros((N, H, 1, hd), dt)), 2)
        v = _cat_along(v, Tensor._wrap(np.zeros((N, H, 1, hd), dt)), 2)
        am = None if am is None else np.concatenate([am, np.zeros(am.shape[:-1] + (1,), dt)], axis=-1)
        kpm = None if kpm is None else np.concatenate([kpm, np.zeros((N, 1), dt)], axis=-1)
    S = k.shape[2]
    if kpm is not None:
        if kpm.shape != (N, S):
            raise RuntimeError(f"expected key_padding_mask of shape {(N, S)}, got {kpm.shape}")
        kpm = kpm.reshape(N, 1, 1, S)
        am = kpm if am is None else am + kpm
    p = dropout_p if training else 0.0
    if need_weights:
        # torch's math path: weights are returned (after dropout), so build them from recorded ops
        scores = (q * math.sqrt(1.0 / hd)) @ k.transpose(-2, -1)
        if am is not None:
            scores = scores + Tensor._wrap(am)
        w = scores.softmax(-1)
        if p > 0.0:
            w = dropout(w, p)
        o = w @ v
    else:
        w = None
        o = scaled_dot_product_attention(q, k, v, None if am is None else Tensor._wrap(am), p)
    o = o.permute(0, 2, 1, 3).reshape(N, L, E)
    o = linear(o, out_proj_weight, out_proj_bias).transpose(0, 1)
    if w is not None and average_attn_weights:
        w = w.mean(1)
    if not batched:
        o = o.squeeze(1)
        w = None if w is None else w.squeeze(0)
    return o, w


def _cat_along(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    from .tensor_functions import cat
    return cat([a, b], dim)


# ====================================================================== module machinery
def _hook_identity_b(g, out, ins, kw, needs):
    return (g,)


# an identity op whose node carries a module's full backward hook (grad_input / grad_output)
BACKWARD_HOOK = Rule("backward_hook_function", lambda ins, kw: ins[0].view(), _hook_identity_b,
                     needs_inputs=False)
