"""The data movement around a convolution's GEMMs, and max-pooling: each a NumPy twin and a compiled kernel.

A 2-D convolution (``nn/functional/conv.py``) is one GEMM over im2col columns ``cols (N*OH*OW,
kh*kw*C)``: row ``(n, a, b)`` holds the window of output position ``(a, b)`` of image ``n``, its
values ordered ``(i, j, c)`` (channels last: building a row copies runs of ``kw*C`` values of a
channels-last image instead of gathering single elements). Around the GEMMs:

- ``im2col``: the columns (zeros where a window reaches into the padding);
- ``rows_to_nchw`` / ``channels_to_nchw``: the forward GEMM's ``(N*OH*OW, O)`` (or ``(O, N*OH*OW)``)
  result as ``(N, O, OH, OW)``, plus the bias;
- ``nchw_to_channels``: the output gradient ``(N, O, OH, OW)`` as ``(O, N*OH*OW)`` for the backward GEMMs;
- ``col2im``: the column gradient back onto the input (the input gradient): every input element
  gets the sum of the entries read from it, added window offset ``(i, j)`` by offset in row-major
  order (the twin's strided adds), starting from 0;
- ``input_weight_grads``: a one-group float32 convolution's input, weight and bias gradients in one
  threaded run (the weight gradient's GEMM whole beside the input gradient's blocks of images, each
  block's GEMM rows then its ``col2im``), the bits of single-threaded OpenBLAS calls; ``channel_sums``
  (the bias gradient alone) and ``long_matmul`` (a weight gradient with a long reduction);
- ``max_pool2d`` (with the window-local index of each maximum) and ``max_pool2d_backward``, also
  of a ReLU's output without writing it (``relu``: each window's maximum rectified; ``relu_out``:
  the gradient gated where the scatter writes it);
- ``relu`` and ``relu_backward`` (the rule of ``ops.RELU``): one pass each instead of NumPy's two.

Each runs the loops of ``retrograd.kernels.jit_conv`` when ``accel.handles`` the arrays (Numba
installed, ``RETROGRAD_NO_JIT`` unset, float32 or float64), on ``accel.get_num_threads()`` threads
with whole images (or ``(n, c)`` planes) per thread, and its NumPy twin otherwise. The kernels give
the twins' bits (tests/test_kernels_conv.py), whatever the number of threads. Two exceptions, both in
the max-pool, where the kernels follow PyTorch and the twins may not: the backward adds the
gradients of overlapping windows window by window (the twin offset by offset), and a window whose
every input is ``-inf`` points at its first input (the twin: at its first position, which may be
padding).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import accel

__all__ = ["im2col", "col2im", "rows_to_nchw", "channels_to_nchw", "nchw_to_channels", "max_pool2d",
           "max_pool2d_backward", "relu", "relu_backward", "long_matmul", "input_weight_grads", "channel_sums",
           "MIN_PER_THREAD", "LONG_BLOCK_MACS", "DX_BLOCK_MACS"]

MIN_PER_THREAD = 1 << 16  # elements written per thread below which one thread does it all (bench/conv_parts.py)
MIN_KERNEL = 1 << 14  # ReLU: below this many elements NumPy's own loop is faster than a compiled call (2K: 1.5 vs 3.3 us)
LONG_BLOCK_MACS = 1 << 20  # multiply-adds of one block's product in long_matmul
DX_BLOCK_MACS = 1 << 23  # multiply-adds of one block of images' column-gradient GEMM in input_weight_grads


def _jit() -> Any:
    from . import jit_conv
    return jit_conv


def _per_thread(items_each: int) -> int:
    """Images (or planes) per thread for pieces of at least ``MIN_PER_THREAD`` elements."""
    return max(1, -(-MIN_PER_THREAD // max(items_each, 1)))


# ====================================================================== im2col / col2im
def _padded_nhwc(x: np.ndarray, pad: tuple) -> np.ndarray:
    """``(N, C, H, W)`` -> zero-padded channels-last ``(N, Hp, Wp, C)``."""
    (pt, pb), (pl, pr) = pad
    n, c, h, w = x.shape
    xh = np.zeros((n, h + pt + pb, w + pl + pr, c), x.dtype)
    xh[:, pt:pt + h, pl:pl + w, :] = x.transpose(0, 2, 3, 1)
    return xh


def im2col(x: np.ndarray, k_hw: tuple, stride: tuple, padding: tuple, dilation: tuple,
           out_hw: tuple) -> np.ndarray:
    """Columns ``(N*OH*OW, kh*kw*C)`` of ``x (N, C, H, W)``; ``padding`` is ``((top, bottom),
    (left, right))``."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw), (oh, ow) = k_hw, stride, padding, dilation, out_hw
    n, c, h, w = x.shape
    if x.size and accel.handles(x):
        cols = np.empty((n * oh * ow, kh * kw * c), x.dtype)
        accel.run_ranges(_jit().im2col, (np.ascontiguousarray(x), cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow,
                                         h + pt + pb, w + pl + pr), n, _per_thread(oh * ow * c * kh * kw))
        return cols
    xh = _padded_nhwc(x, padding)
    s = xh.strides
    win = as_strided(xh, (n, oh, ow, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]),
                     writeable=False)
    return win.reshape(n * oh * ow, kh * kw * c)


def col2im(cols: np.ndarray, x_shape: tuple, k_hw: tuple, stride: tuple, padding: tuple, dilation: tuple,
           out_hw: tuple) -> np.ndarray:
    """The adjoint of ``im2col``: ``(N, C, H, W)`` of ``x_shape`` from column gradients ``cols
    (N*OH*OW, kh*kw*C)``."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw), (oh, ow) = k_hw, stride, padding, dilation, out_hw
    n, c, h, w = x_shape
    if cols.size and accel.handles(cols):
        gx = np.empty((n, c, h, w), cols.dtype)
        accel.run_ranges(_jit().col2im, (np.ascontiguousarray(cols), gx, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow,
                                         h + pt + pb, w + pl + pr), n, _per_thread(oh * ow * c * kh * kw))
        return gx
    gxh = np.zeros((n, h + pt + pb, w + pl + pr, c), cols.dtype)
    g6 = cols.reshape(n, oh, ow, kh, kw, c)
    for i in range(kh):
        for j in range(kw):
            gxh[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += g6[:, :, :, i, j]
    return np.ascontiguousarray(gxh[:, pt:pt + h, pl:pl + w].transpose(0, 3, 1, 2))


# ====================================================================== layouts around the GEMMs
def rows_to_nchw(y: np.ndarray, n: int, out_hw: tuple, bias: np.ndarray | None) -> np.ndarray:
    """``y (N*OH*OW, O)`` as ``(N, O, OH, OW)``, plus ``bias (O,)`` on every channel when given."""
    return _to_nchw("rows_to_nchw", y, y.shape[1], n, out_hw, bias)


def channels_to_nchw(y: np.ndarray, n: int, out_hw: tuple, bias: np.ndarray | None) -> np.ndarray:
    """``y (O, N*OH*OW)`` as ``(N, O, OH, OW)``, plus ``bias (O,)`` on every channel when given."""
    return _to_nchw("channels_to_nchw", y, y.shape[0], n, out_hw, bias)


def _to_nchw(kernel: str, y: np.ndarray, o: int, n: int, out_hw: tuple, bias: np.ndarray | None) -> np.ndarray:
    p = out_hw[0] * out_hw[1]
    if y.size and accel.handles(y) and (bias is None or (isinstance(bias, np.ndarray) and bias.dtype == y.dtype)):
        out = np.empty((n, o, p), y.dtype)
        b = np.ascontiguousarray(bias) if bias is not None else np.empty(1, y.dtype)
        accel.run_ranges(getattr(_jit(), kernel), (np.ascontiguousarray(y), out, b, bias is not None), n,
                         _per_thread(o * p))
        return out.reshape(n, o, *out_hw)
    view = y.reshape(n, p, o).transpose(0, 2, 1) if kernel == "rows_to_nchw" else y.reshape(o, n, p).transpose(1, 0, 2)
    out = np.array(view, order="C")  # a copy: the bias is added in place
    if bias is not None:
        out += bias.reshape(1, o, 1)
    return out.reshape(n, o, *out_hw)


def nchw_to_channels(g: np.ndarray) -> np.ndarray:
    """``g (N, O, OH, OW)`` as ``(O, N*OH*OW)`` (a copy)."""
    n, o = g.shape[:2]
    p = g.shape[2] * g.shape[3]
    if g.size and accel.handles(g):
        g2 = np.empty((o, n * p), g.dtype)
        accel.run_ranges(_jit().nchw_to_channels, (np.ascontiguousarray(g).reshape(n, o, p), g2), n,
                         _per_thread(o * p))
        return g2
    return g.transpose(1, 0, 2, 3).reshape(o, n * p)


# ====================================================================== weight gradients with a long k
def long_matmul(a: np.ndarray, b: np.ndarray, block: int) -> np.ndarray:
    """``a (m, k) @ b (k, n)`` as the sum of the products over consecutive blocks of ``block`` along
    ``k`` (the last block shorter), added in block order: for a convolution's weight gradient with few
    outputs and a long ``k`` (a first layer: ``(O, N*OH*OW) @ (N*OH*OW, kh*kw*C)`` with ``kh*kw*C`` = 9),
    which one OpenBLAS call packs whole (1.6 ms for 32 x 43,264 x 9 against 0.8 for the blocks) and
    which cannot be cut into row or column blocks with the same bits. The blocks' products run side by
    side when ``accel.handles`` the arrays, one after another otherwise (the twin), each one
    single-threaded OpenBLAS call; the block size, and so the result, depends on the shapes only."""
    m, k = a.shape
    n = b.shape[1]
    nb = -(-k // block)
    parts = np.empty((nb, m, n), np.result_type(a, b))

    def piece(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            np.matmul(a[:, i * block:(i + 1) * block], b[i * block:(i + 1) * block], out=parts[i])

    with accel.single_threaded_blas():
        if accel.handles(a, b):
            accel.run_ranges(piece, (), nb, 2)
        else:
            piece(0, nb)
    out = parts[0]
    for i in range(1, nb):
        out += parts[i]
    return out


# ====================================================================== both gradients side by side
def input_weight_grads(g2: np.ndarray, wmat: np.ndarray, cols: np.ndarray | None, bias: bool, x_shape: tuple,
                       k_hw: tuple, stride: tuple, padding: tuple, dilation: tuple, out_hw: tuple) -> tuple:
    """``(gx, gw, gb)`` of a one-group convolution from its output gradient ``g2 (O, N*OH*OW)``: the
    input gradient ``col2im(g2.T @ wmat)`` (``wmat (O, kh*kw*C)``, ``gx`` of ``x_shape``), when ``cols``
    is given the weight gradient ``g2 @ cols`` (``(O, kh*kw*C)``), with ``bias`` the bias gradient
    ``np.sum(g2, axis=1)`` (each ``None`` when not asked for); the twin: those two single-threaded
    OpenBLAS calls, ``col2im`` and the sum.

    The kernel path runs the weight gradient whole, one single-threaded call (cut into blocks of rows
    or columns, its ``(O, N*OH*OW)`` or ``(N*OH*OW, K)`` operand is packed again for every block: on 2
    threads it ran 1.4x faster, not 2x), on one thread while the others take the input gradient in
    blocks of whole images: each block's rows of ``g2.T @ wmat`` (a block of rows of one call gives
    that call's bits) and at once its ``col2im``, while the block's column gradients are still in
    cache. Every thread takes the next task not yet taken, the bias and weight gradients first; the
    tasks, and so the bits, are the same on any number of threads."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw), (oh, ow) = k_hw, stride, padding, dilation, out_hw
    n, c, h, w = x_shape
    p, o, k = oh * ow, wmat.shape[0], wmat.shape[1]
    ops = [g2, wmat] + ([] if cols is None else [cols])
    # float32 only: OpenBLAS's float64 blocks of rows do not always give the one call's bits
    if not (g2.size and wmat.size and all(a.dtype == np.float32 for a in ops) and accel.handles(*ops)):
        with accel.single_threaded_blas():
            gw = None if cols is None else g2 @ cols
            gcols = g2.T @ wmat
        return (col2im(gcols, x_shape, k_hw, stride, padding, dilation, out_hw), gw,
                np.sum(g2, axis=1) if bias else None)
    gx = np.empty((n, c, h, w), g2.dtype)
    gw = None if cols is None else np.empty((o, cols.shape[1]), g2.dtype)
    gb = np.empty(o, g2.dtype) if bias else None
    per = max(1, -(-DX_BLOCK_MACS // max(p * o * k, 1)))  # images per block
    nb = -(-n // per)
    gt, J = g2.T, _jit()
    first = int(gw is not None or bias)  # task 0: the bias and weight gradients
    # one range of run_ranges per task (it cuts SHARES ranges a thread): the blocks in as many groups
    groups = max(1, min(accel.SHARES * accel.get_num_threads() - first, nb))

    def task(lo: int, hi: int) -> None:
        for t in range(lo, hi):
            if t < first:
                if bias:
                    np.sum(g2, axis=1, out=gb)
                if gw is not None:
                    np.matmul(g2, cols, out=gw)
                continue
            gcols = np.empty((per * p, k), g2.dtype)  # one block's column gradients, reused: stays in cache
            for i in range(nb * (t - first) // groups, nb * (t - first + 1) // groups):
                a, b = i * per, min(i * per + per, n)
                np.matmul(gt[a * p:b * p], wmat, out=gcols[:(b - a) * p])
                J.col2im(gcols, gx[a:b], kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, h + pt + pb, w + pl + pr, 0, b - a)

    macs = p * n * o * (k + (0 if cols is None else cols.shape[1]))
    with accel.single_threaded_blas():  # small: all on this thread
        accel.run_ranges(task, (), first + groups, 1 if macs >= 2 * DX_BLOCK_MACS else first + groups)
    return gx, gw, gb


def channel_sums(g2: np.ndarray) -> np.ndarray:
    """``np.sum(g2, axis=1)`` of a C-contiguous ``g2 (O, N*OH*OW)`` (a convolution's bias gradient), in
    blocks of rows on ``accel.get_num_threads()`` threads when large: each row is summed whole, in
    NumPy's pairwise order, whichever block it is in, so the bits are one call's."""
    o, m = g2.shape
    if g2.size < 2 * MIN_PER_THREAD or not g2.flags.c_contiguous or not accel.handles(g2):
        return np.sum(g2, axis=1)
    out = np.empty(o, g2.dtype)
    accel.run_ranges(lambda lo, hi: np.sum(g2[lo:hi], axis=1, out=out[lo:hi]), (), o, _per_thread(m))
    return out


# ====================================================================== max pooling
def _pad_hw(x: np.ndarray, pad: tuple, value: float) -> np.ndarray:
    (pt, pb), (pl, pr) = pad
    if pt or pb or pl or pr:
        return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)
    return x


def max_pool2d(x: np.ndarray, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple,
               out_hw: tuple, relu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(out, idx)`` over the windows of ``x (N, C, H, W)`` (``padding`` one int per side pair, as
    pooling's): the maximum (a NaN wins, as in PyTorch; else the first maximum) and its window-local
    index ``i*kw + j`` (int32). Windows that ``ceil_mode`` lets run past the input are cut there.
    With ``relu``, those of ``np.maximum(x, 0)``, which the kernels never write out (they rectify
    each window's maximum)."""
    (kh, kww), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_hw
    n, c, h, wd = x.shape
    if x.size and accel.handles(x):
        xp = np.ascontiguousarray(x).reshape(n * c, h, wd)
        out = np.empty((n * c, oh, ow), x.dtype)
        idx = np.empty((n * c, oh, ow), np.int32)
        J = _jit()
        per = _per_thread(h * wd)
        if _two_by_two(kernel, stride, padding, dilation, out_hw, (h, wd)):
            accel.run_ranges(J.max_pool_2x2, (xp, out, idx, relu), n * c, per)
        else:
            accel.run_ranges(J.max_pool, (xp, out, idx, kh, kww, sh, sw, ph, pw, dh, dw, relu), n * c, per)
        return out.reshape(n, c, oh, ow), idx.reshape(n, c, oh, ow)
    if relu:
        x = np.maximum(x, 0)
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
        return (np.array(best, copy=True) if best is views[0] else best), idx
    # with NaNs: a running max where, as in torch's kernel, a NaN always takes over
    best = views[0].copy()
    idx = np.zeros(best.shape, np.int32)
    for k, v in enumerate(views[1:], 1):
        upd = v > best
        upd |= np.isnan(v)
        np.copyto(best, v, where=upd)
        np.copyto(idx, k, where=upd)
    return best, idx


def _two_by_two(kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, out_hw: tuple, in_hw: tuple) -> bool:
    """Whether the windows are 2x2 with stride 2 inside the input (``max_pool_2x2``'s)."""
    return ((*kernel, *stride, *padding, *dilation) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * out_hw[0] <= in_hw[0]
            and 2 * out_hw[1] <= in_hw[1])


def max_pool2d_backward(g: np.ndarray, idx: np.ndarray, in_hw: tuple, kernel: tuple, stride: tuple,
                        padding: tuple, dilation: tuple, relu_out: np.ndarray | None = None) -> np.ndarray:
    """``(N, C, H, W)`` zeros plus ``g`` at each window's maximum (``idx`` from ``max_pool2d``). With
    ``relu_out``, the ``out`` of ``max_pool2d(..., relu=True)``: the input gradient of the pool of a
    ReLU, that sum times ``relu(x) > 0`` as ``relu_backward`` multiplies, in the same pass (the
    maximum's rectified value is its window's ``relu_out``)."""
    (kh, kww), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    h, wd = in_hw
    n, c, oh, ow = idx.shape
    relu = relu_out is not None
    if g.size and accel.handles(g) and (not relu or relu_out.dtype == g.dtype):
        gx = np.empty((n * c, h, wd), g.dtype)
        g3, i3 = np.ascontiguousarray(g).reshape(n * c, oh, ow), idx.reshape(n * c, oh, ow)
        o3 = np.ascontiguousarray(relu_out).reshape(n * c, oh, ow) if relu else g3  # (not read without relu)
        J = _jit()
        if _two_by_two(kernel, stride, padding, dilation, (oh, ow), in_hw):
            accel.run_ranges(J.max_pool_2x2_backward, (g3, i3, o3, gx, relu), n * c, _per_thread(h * wd))
        else:
            accel.run_ranges(J.max_pool_backward, (g3, i3, o3, gx, kh, kww, sh, sw, ph, pw, dh, dw, relu), n * c,
                             _per_thread(h * wd))
        return gx.reshape(n, c, h, wd)
    H = max((oh - 1) * sh + dh * (kh - 1) + 1, h + 2 * ph)
    W = max((ow - 1) * sw + dw * (kww - 1) + 1, wd + 2 * pw)
    gxp = np.zeros((n, c, H, W), dtype=g.dtype)
    gate = np.zeros((n, c, H, W), dtype=bool) if relu else None  # relu(x) > 0 at the windows' maxima
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kww - 1) + 1  # each input in one window at most
    g0 = g + np.zeros((), g.dtype) if disjoint else g  # 0 + g: the kernels and PyTorch add g to zeros (-0.0 -> +0)
    for i in range(kh):
        for j in range(kww):
            at = (slice(None), slice(None), slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                  slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
            hit = idx == i * kww + j
            if disjoint:
                np.copyto(gxp[at], g0, where=hit)
            else:
                gxp[at] += np.where(hit, g, 0)
            if relu:
                gate[at] |= hit & (relu_out > 0)
    if relu:
        return gxp[:, :, ph:ph + h, pw:pw + wd] * gate[:, :, ph:ph + h, pw:pw + wd]
    return gxp[:, :, ph:ph + h, pw:pw + wd]


# ====================================================================== ReLU
def relu(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """``np.maximum(x, 0)``; with ``inplace`` written into ``x`` (``np.maximum(x, 0, out=x)``) and returned."""
    if x.size >= MIN_KERNEL and accel.handles(x) and (not inplace or x.flags.c_contiguous):
        xf = np.ascontiguousarray(x).reshape(-1)
        out = xf if inplace else np.empty_like(xf)  # the kernel reads each element before writing it
        accel.run_ranges(_jit().relu, (xf, out), xf.shape[0], MIN_PER_THREAD)
        return x if inplace else out.reshape(x.shape)
    return np.maximum(x, 0, out=x) if inplace else np.maximum(x, 0)


def relu_backward(g: Any, out: np.ndarray) -> Any:
    """``g * (out > 0)``; ``g`` an array of ``out``'s shape and dtype takes the kernel."""
    if (isinstance(g, np.ndarray) and g.shape == out.shape and g.dtype == out.dtype and g.size >= MIN_KERNEL
            and accel.handles(g, out)):
        gf, of = np.ascontiguousarray(g).reshape(-1), np.ascontiguousarray(out).reshape(-1)
        gx = np.empty_like(gf)
        accel.run_ranges(_jit().relu_backward, (gf, of, gx), gf.shape[0], MIN_PER_THREAD)
        return gx.reshape(out.shape)
    return g * (out > 0)
