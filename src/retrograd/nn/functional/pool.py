"""Pooling: max pooling (its loops in ``retrograd.kernels.conv``: compiled kernels where Numba is
available), the max pooling of a ReLU as one node (``relu_max_pool2d``), average pooling and adaptive
average pooling, in 1-D and 2-D. Each pooling ``Rule``'s backward is a ``Rule`` too."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...amp.autocast_mode import outside_autocast, state as _autocast
from ...kernels import conv as KC
from ...ops import Rule, call
from ...tensor import Tensor, wrap_array
from ._args import _float_input, _tuple


def _pad_hw(x: np.ndarray, pad: tuple, value: float = 0.0) -> np.ndarray:
    (pt, pb), (pl, pr) = pad
    if pt or pb or pl or pr:
        return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)
    return x


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    num = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        o = -(-num // s) + 1
        if (o - 1) * s >= size + p:  # the last window must start inside the input or left padding
            o -= 1
        return o
    return num // s + 1


def _maxpool2d_f(ins, kw):
    out, kw["idx"] = KC.max_pool2d(ins[0], kw["kernel"], kw["stride"], kw["padding"], kw["dilation"], kw["out_hw"])
    return out


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
    return KC.max_pool2d_backward(ins[0], kw["idx"], kw["in_hw"], kw["kernel"], kw["stride"], kw["padding"],
                                  kw["dilation"])


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


def _max_pool2d_args(input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,  # noqa: A002
                     ceil_mode: bool) -> tuple[Tensor, dict]:
    """``max_pool2d``'s checks: the batched input and the pooling rules' ``kw``."""
    k, s, p, d = _pool_args("max_pool2d", input, 2, kernel_size, stride, padding, dilation)
    x = _float_input(input.unsqueeze(0) if input.ndim == 3 else input, "max_pool2d")
    out_hw = tuple(_pool_out(n, kk, ss, pp, dd, ceil_mode) for n, kk, ss, pp, dd in zip(x.shape[2:], k, s, p, d))
    if min(out_hw) <= 0:
        raise RuntimeError(f"max_pool2d: output size {out_hw} is too small for input of shape "
                           f"{tuple(input.shape)} (kernel_size={k}, stride={s}, padding={p}, dilation={d})")
    return x, {"kernel": k, "stride": s, "padding": p, "dilation": d, "out_hw": out_hw}


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max over ``kernel_size`` windows of ``(N, C, H, W)``; ``return_indices`` gives flat ``H*W`` indices."""
    x, kw = _max_pool2d_args(input, kernel_size, stride, padding, dilation, ceil_mode)
    unbatched = input.ndim == 3
    out = Tensor._apply(MAXPOOL2D, (x,), kw)
    if unbatched:
        out = out.squeeze(0)
    if not return_indices:
        return out
    idx = _maxpool_flat_index(kw, x.shape[2:]).astype(np.int64)
    return out, wrap_array(idx[0] if unbatched else idx)


def _relu_maxpool2d_f(ins, kw):
    out, kw["idx"] = KC.max_pool2d(ins[0], kw["kernel"], kw["stride"], kw["padding"], kw["dilation"], kw["out_hw"],
                                   relu=True)
    return out


def _relu_maxpool2d_b(g, out, ins, kw, needs):
    in_hw = tuple(ins[0].shape[2:])
    args = (kw["idx"], in_hw, kw["kernel"], kw["stride"], kw["padding"], kw["dilation"])
    if type(g) is np.ndarray and type(out) is np.ndarray:
        return (KC.max_pool2d_backward(g, *args, relu_out=out),)
    # create_graph: the two nodes' rules on Tensors, the pool's backward then ReLU's (times ``relu(x) > 0``,
    # here the windows' ``out > 0`` at their maxima, False elsewhere: where the pool's gradient is +0
    # and ReLU's rule gives +0 either way)
    o = out._array if isinstance(out, Tensor) else np.asarray(out)
    positive = KC.max_pool2d_backward(np.ones_like(o), *args, relu_out=o) > 0
    return (call(MAXPOOL2D_BACKWARD, (g,), kw | {"in_hw": in_hw}) * wrap_array(positive),)
RELU_MAXPOOL2D = Rule("relu_max_pool2d", _relu_maxpool2d_f, _relu_maxpool2d_b, save_out=True, needs_inputs=False)

_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def relu_max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
                    dilation: Any = 1, ceil_mode: bool = False) -> Tensor:
    """``max_pool2d(relu(input), ...)`` as one node (what ``Sequential`` runs for a ``ReLU`` followed by
    a ``MaxPool2d``): the pool of the input, each window's maximum rectified (``relu(max(x)) ==
    max(relu(x))``; a window with no positive input gives +0 at its first input, as the pool of the
    ReLU does); backward, the gradient at the maxima gated by ``out > 0`` in the pool's one pass. No
    full-size ReLU output is written or kept; the same bits as the two ops, forward and backward.
    Inputs the node does not take (autocast, dtypes other than float32 and float64) run the two ops."""
    if (_autocast.cpu_enabled or not isinstance(input, Tensor) or input.dtype not in _FUSED_DTYPES
            or input.ndim not in (3, 4)):
        return max_pool2d(input.relu() if isinstance(input, Tensor) else input, kernel_size, stride, padding,
                          dilation, ceil_mode)
    x, kw = _max_pool2d_args(input, kernel_size, stride, padding, dilation, ceil_mode)
    out = Tensor._apply(RELU_MAXPOOL2D, (x,), kw)
    return out.squeeze(0) if input.ndim == 3 else out


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


@outside_autocast  # one kernel in PyTorch, on no autocast list
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
    ph = wrap_array(_adaptive_matrix(h, oh, x.dtype))
    pw = wrap_array(np.ascontiguousarray(_adaptive_matrix(w, ow, x.dtype).T))
    return ph @ x @ pw


@outside_autocast  # one kernel in PyTorch, on no autocast list
def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    if input.ndim not in (2, 3):
        raise RuntimeError(f"adaptive_avg_pool1d: expected 2-D or 3-D input, got input of shape "
                           f"{tuple(input.shape)}")
    x = _float_input(input, "adaptive_avg_pool1d")
    o = output_size if isinstance(output_size, (int, np.integer)) else output_size[0]
    return x @ wrap_array(np.ascontiguousarray(_adaptive_matrix(x.shape[-1], int(o), x.dtype).T))
