"""Normalisation: layer norm (a fused ``Rule``; its passes in ``retrograd.kernels``), RMS norm, group norm and
batch norm."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ... import kernels
from ...ops import Rule
from ...tensor import Tensor
from ._args import _float_input
from ...versions import bump


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
    has_w, has_b = kw["affine"]
    w = ins[1] if has_w else None
    b = ins[1 + has_w] if has_b else None
    y, kw["mu"], kw["rstd"] = kernels.layer_norm(x.reshape(-1, kw["d"]), w, b, kw["eps"])
    return y.reshape(x.shape)


def _layer_norm_b(g, out, ins, kw, needs):
    # one node for the whole normalisation: dx = rstd * (gxh - mean(gxh) - xhat * mean(gxh * xhat))
    x = ins[0]
    d = kw["d"]
    has_w, has_b = kw["affine"]
    if isinstance(x, np.ndarray) and isinstance(g, np.ndarray) and "mu" in kw:
        w = ins[1] if has_w else None
        want = (needs[0], has_w and needs[1], has_b and needs[-1])
        dx, dw, db = kernels.layer_norm_backward(x.reshape(-1, d), np.broadcast_to(g, x.shape).reshape(-1, d), w,
                                                 kw["mu"], kw["rstd"], want)
        grads = [None if dx is None else dx.reshape(x.shape)]
        if has_w:
            grads.append(None if dw is None else dw.reshape(ins[1].shape))
        if has_b:
            grads.append(None if db is None else db.reshape(ins[-1].shape))
        return tuple(grads)
    # create_graph: recompute the statistics differentiably
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
            rm = running_mean._array
            rm *= (1 - m)
            rm += m * mu._array.reshape(c).astype(rm.dtype)
            bump(running_mean)
        if running_var is not None:
            m = momentum
            rv = running_var._array
            rv *= (1 - m)
            rv += m * (var._array.reshape(c) * (count / (count - 1))).astype(rv.dtype)
            bump(running_var)
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


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,  # noqa: A002
              out: Any = None) -> Tensor:
    """``input / max(||input||_p, eps)`` along ``dim`` (unit vectors), as ``torch.nn.functional.normalize``."""
    if out is not None:
        raise TypeError("normalize: out= is not supported; use the returned tensor")
    x = _float_input(input, "normalize")
    return x / x.norm(p, dim, keepdim=True).clamp(min=eps)
