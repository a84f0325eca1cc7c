"""Convolution: ``conv1d``, ``conv2d`` and their transposes."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ... import accel, kernels as KS
from ...kernels import conv as KC
from ...ops import Rule, call
from ...tensor import Tensor
from ._args import _tuple


# A convolution is one fused node: im2col columns ``(N*OH*OW, kh*kw*C)`` (``retrograd.kernels.conv``),
# one GEMM per group. Its two adjoints (the input gradient, which is also conv_transpose's forward,
# and the weight gradient) are Rules too, each with a backward written with the other two, so
# gradients of any order are themselves convolutions.

KEEP_COLS_BYTES = 64 << 20  # the forward's im2col columns up to this size stay for the weight gradient
# The GEMMs below run as row/column blocks on retrograd's threads with OpenBLAS on one thread
# (``kernels.matmul``: the bits of one single-threaded call), not on OpenBLAS's own threads, whose
# worker busy-waits after each GEMM on the core the split im2col/ReLU/pool kernels need next
# (bench/RESULTS.md, "The CNN step", sessions 8-9). RETROGRAD_CONV_SPLIT=0: OpenBLAS's threads.
# The input gradient of a one-group float32 convolution goes by blocks of images instead, beside the
# weight gradient's GEMM whole on one thread (``_side_by_side``, ``kernels.conv.input_weight_grads``;
# the same bits; bench/RESULTS.md, "Conv backward, session 11").
_mm = np.matmul if os.environ.get("RETROGRAD_CONV_SPLIT", "") == "0" else KS.matmul


def _conv_out(size: int, k: int, s: int, pad: tuple, d: int) -> int:
    return (size + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def _cols(x: np.ndarray, k_hw: tuple, kw: dict, oh: int, ow: int) -> np.ndarray:
    return KC.im2col(x, k_hw, kw["stride"], kw["padding"], kw["dilation"], (oh, ow))


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
    cols = _cols(x, (kh, kww), kw, oh, ow)
    bias = ins[2] if len(ins) == 3 else None
    if cols.nbytes <= KEEP_COLS_BYTES:
        kw["cols"] = cols  # for the weight gradient (read-only; a graph run twice reads it twice)
    if groups == 1 and cols.shape[1] < o:
        # few columns (a first layer): the GEMM mostly writes its result, so write it channel-major,
        # which reaches NCHW by copying runs of OH*OW (bench/conv_parts.py: 3x less than a transpose)
        return KC.channels_to_nchw(_mm(_wmat(w), cols.T), n, (oh, ow), bias)
    # (N*OH*OW, K) @ (K, O): measured faster than (O, K) @ (K, N*OH*OW) on OpenBLAS, 1 and 2 threads
    if groups == 1:
        y = _mm(cols, _wmat(w).T)
    else:
        y = np.concatenate([_group_cols(cols, (kh, kww), groups, gi, cg) @ _wmat(w[gi * og:(gi + 1) * og]).T
                            for gi in range(groups)], axis=1)
    return KC.rows_to_nchw(y, n, (oh, ow), bias)


def _conv_dx(g2: np.ndarray, w: np.ndarray, n: int, oh: int, ow: int, in_hw: tuple, kw: dict) -> np.ndarray:
    """Input gradient from ``g2`` ``(O, N*OH*OW)``: one GEMM per group to column gradients, then col2im."""
    groups = kw["groups"]
    o, cg, kh, kww = w.shape
    og = o // groups
    if _side_by_side(g2, w, kw):  # blocks of images, each block's GEMM rows then its col2im (the same bits)
        return KC.input_weight_grads(g2, _wmat(w), None, False, (n, cg, *in_hw), (kh, kww), kw["stride"],
                                     kw["padding"], kw["dilation"], (oh, ow))[0]
    if groups == 1:
        gcols = _mm(g2.T, _wmat(w))
    else:  # columns back in (kh, kw, C) order across the groups
        gcols = np.concatenate([(g2[gi * og:(gi + 1) * og].T @ _wmat(w[gi * og:(gi + 1) * og]))
                                .reshape(-1, kh * kww, cg) for gi in range(groups)], axis=2).reshape(g2.shape[1], -1)
    return KC.col2im(gcols, (n, cg * groups, *in_hw), (kh, kww), kw["stride"], kw["padding"], kw["dilation"],
                     (oh, ow))


def _long_block(m: int, n: int, k: int, per_image: int, same_dtype: bool) -> int:
    """``long_matmul``'s block for a weight gradient's product ``(m, k) @ (k, n)`` with fewer than 16 rows
    or columns (no row or column blocks for the threads) and a long reduction; 0 where one product."""
    block = max(1, KC.LONG_BLOCK_MACS // max(m * n * per_image, 1)) * per_image
    return block if min(m, n) < 16 and k >= 2 * block and same_dtype else 0


def _dw_mm(a: np.ndarray, b: np.ndarray, per_image: int) -> np.ndarray:
    """A weight gradient's product ``g2 (O, N*OH*OW) @ cols (N*OH*OW, K)``: the sum of the products over
    blocks of whole images where ``_long_block`` says so (``kernels.conv.long_matmul``: the same bits on
    any number of threads); else one product (``_mm``)."""
    block = _long_block(a.shape[0], b.shape[1], a.shape[1], per_image, a.dtype == b.dtype)
    return KC.long_matmul(a, b, block) if block else _mm(a, b)


def _dw_layout(m: np.ndarray, k_hw: tuple, cg: int) -> np.ndarray:
    """A weight gradient's product ``(O, kh*kw*C)`` as ``(O, C, kh, kw)`` (a view)."""
    return m.reshape(m.shape[0], k_hw[0], k_hw[1], cg).transpose(0, 3, 1, 2)


def _conv_dw(x: np.ndarray, g2: np.ndarray, oh: int, ow: int, k_hw: tuple, kw: dict,
             cols: np.ndarray | None = None) -> np.ndarray:
    groups = kw["groups"]
    o = g2.shape[0]
    og, cg = o // groups, x.shape[1] // groups
    if cols is None:
        cols = _cols(x, k_hw, kw, oh, ow)
    parts = [_dw_layout(_dw_mm(g2[gi * og:(gi + 1) * og], _group_cols(cols, k_hw, groups, gi, cg), oh * ow), k_hw, cg)
             for gi in range(groups)]
    return np.ascontiguousarray(parts[0] if groups == 1 else np.concatenate(parts, axis=0))


def _side_by_side(g2: np.ndarray, w: np.ndarray, kw: dict) -> bool:
    """Whether both gradients of a one-group float32 convolution take ``kernels.conv.input_weight_grads``
    (its GEMMs single-threaded OpenBLAS calls side by side on retrograd's threads): where ``_mm`` would
    split them (the bits of one single-threaded call either way)."""
    return (kw["groups"] == 1 and _mm is KS.matmul and KS._SPLIT_GEMMS and g2.dtype == w.dtype == np.float32
            and accel.handles(g2, w))


def _conv_grads(x: np.ndarray, g2: np.ndarray, w: np.ndarray, out_hw: tuple, kw: dict, cols: np.ndarray | None,
                need_w: bool, bias: bool) -> tuple:
    """``(gx, gw, gb)`` (``gw`` ``None`` unless ``need_w``, ``gb`` unless ``bias``) by
    ``kernels.conv.input_weight_grads``; a weight gradient that ``_long_block`` sends to ``long_matmul``
    is computed apart."""
    k_hw, c = tuple(w.shape[2:]), x.shape[1]
    p = out_hw[0] * out_hw[1]
    long = need_w and _long_block(w.shape[0], k_hw[0] * k_hw[1] * c, g2.shape[1], p, True)
    if need_w and cols is None:
        cols = _cols(x, k_hw, kw, *out_hw)
    gx, gwm, gb = KC.input_weight_grads(g2, _wmat(w), cols if need_w and not long else None, bias, x.shape, k_hw,
                                        kw["stride"], kw["padding"], kw["dilation"], tuple(out_hw))
    if long:
        gwm = _dw_mm(g2, cols, p)
    return gx, None if gwm is None else np.ascontiguousarray(_dw_layout(gwm, k_hw, c)), gb


def _conv2d_b(g, out, ins, kw, needs):
    x, w = ins[0], ins[1]
    cols = kw.get("cols")  # the engine drops kw after the backward (unless retain_graph)
    if isinstance(g, np.ndarray) and isinstance(x, np.ndarray) and isinstance(w, np.ndarray):
        g2 = KC.nchw_to_channels(g)  # (O, N*OH*OW), shared by both products and the bias gradient
        bias = len(ins) == 3 and needs[2]
        if needs[0] and _side_by_side(g2, w, kw):
            gx, gw, gb = _conv_grads(x, g2, w, g.shape[2:], kw, cols, needs[1], bias)
        else:
            gb = KC.channel_sums(g2) if bias else None
            gx = _conv_dx(g2, w, x.shape[0], g.shape[2], g.shape[3], x.shape[2:], kw) if needs[0] else None
            gw = _conv_dw(x, g2, g.shape[2], g.shape[3], w.shape[2:], kw, cols) if needs[1] else None
    else:  # create_graph: record the adjoints
        gb = np.sum(g, axis=(0, 2, 3)) if len(ins) == 3 and needs[2] else None
        base = {k: kw[k] for k in ("stride", "padding", "dilation", "groups")}
        gx = call(CONV2D_INPUT_GRAD, (g, w), base | {"in_hw": tuple(x.shape[2:])}) if needs[0] else None
        gw = call(CONV2D_WEIGHT_GRAD, (x, g), base | {"k_hw": tuple(w.shape[2:])}) if needs[1] else None
    return (gx, gw, gb) if len(ins) == 3 else (gx, gw)
CONV2D = Rule("conv2d", _conv2d_f, _conv2d_b)


def _conv_dx_f(ins, kw):
    g, w = ins
    return _conv_dx(KC.nchw_to_channels(g), w, g.shape[0], g.shape[2], g.shape[3], kw["in_hw"], kw)


def _conv_dx_b(gg, out, ins, kw, needs):
    g, w = ins
    base = {k: kw[k] for k in ("stride", "padding", "dilation", "groups")}
    ggo = call(CONV2D, (gg, w), base) if needs[0] else None
    gw = call(CONV2D_WEIGHT_GRAD, (gg, g), base | {"k_hw": tuple(w.shape[2:])}) if needs[1] else None
    return ggo, gw
CONV2D_INPUT_GRAD = Rule("conv_transpose2d", _conv_dx_f, _conv_dx_b)


def _conv_dw_f(ins, kw):
    x, g = ins
    return _conv_dw(x, KC.nchw_to_channels(g), g.shape[2], g.shape[3], kw["k_hw"], kw)


def _conv_dw_b(ggw, out, ins, kw, needs):
    x, g = ins
    base = {k: kw[k] for k in ("stride", "padding", "dilation", "groups")}
    gx = call(CONV2D_INPUT_GRAD, (g, ggw), base | {"in_hw": tuple(x.shape[2:])}) if needs[0] else None
    ggo = call(CONV2D, (x, ggw), base) if needs[1] else None
    return gx, ggo
CONV2D_WEIGHT_GRAD = Rule("conv2d_weight_backward", _conv_dw_f, _conv_dw_b)


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
