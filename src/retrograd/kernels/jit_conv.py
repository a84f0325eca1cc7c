"""The Numba loops behind ``retrograd.kernels.conv`` (imported only when ``accel.available()``).

Each loop does what its NumPy twin in ``kernels/conv.py`` does, in the twin's order where the order
changes bits: im2col and the layout copies move values (plus one bias add per element), col2im adds an
input element's contributions window offset by window offset (``(i, j)`` in row-major order, as the
twin's strided adds), the max-pool forward compares as PyTorch's kernel (a larger value or a NaN takes
over; the first maximum wins ties). The loops take ``lo, hi``, a range of images (or of ``N*C``
planes for pooling), so that ``accel.run_ranges`` runs pieces side by side; each piece writes only
its own images, so the results do not depend on the number of threads.

Inner loops run over 1-D views with indices counted from 0: an index that Numba cannot prove
non-negative (one computed from ``lo``) gets a wraparound branch that keeps LLVM from vectorizing.
"""
from __future__ import annotations

import numpy as np

from ..accel import njit


@njit
def _u(i):
    """An index Numba need not wrap (it is known to be >= 0): a signed index computed from a
    loop's ``lo`` gets a negative-index branch in the innermost loop, which costs 3-4x there."""
    return np.uint64(i)


@njit
def _image_hwc(x, n, xh, ph, pw):
    """``xh (Hp, Wp, C)`` interior ``[ph:ph+H, pw:pw+W]`` = image ``n`` of ``x (N, C, H, W)``,
    channels last (the border, zeroed by the caller, stays)."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    wp = xh.shape[1]
    xf = x.reshape(-1)
    hf = xh.reshape(-1)
    for ch in range(c):
        src = (n * c + ch) * h * w
        for r in range(h):
            dst = ((r + ph) * wp + pw) * c + ch
            s0 = src + r * w
            for q in range(w):
                hf[_u(dst + q * c)] = xf[_u(s0 + q)]


@njit
def im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, hp, wp, lo, hi):
    """``cols[(n*oh + a)*ow + b, (i*kw + j)*C + c] = x[n, c, a*sh - ph + i*dh, b*sw - pw + j*dw]``
    (0 outside ``x``) for images ``n`` in ``[lo, hi)``, through one channels-last padded image
    ``(hp, wp, C)``: runs of ``kw*C`` values (``C`` with dilation) copied."""
    c = x.shape[1]
    k = cols.shape[1]
    xh = np.zeros((hp, wp, c), x.dtype)
    hf = xh.reshape(-1)
    cf = cols.reshape(-1)
    run = kw * c
    for n in range(lo, hi):
        _image_hwc(x, n, xh, ph, pw)
        for a in range(oh):
            for b in range(ow):
                d0 = ((n * oh + a) * ow + b) * k
                for i in range(kh):
                    s0 = ((a * sh + i * dh) * wp + b * sw) * c
                    if dw == 1:
                        d = d0 + i * run
                        for t in range(run):
                            cf[_u(d + t)] = hf[_u(s0 + t)]
                    else:
                        for j in range(kw):
                            d = d0 + (i * kw + j) * c
                            s = s0 + j * dw * c
                            for t in range(c):
                                cf[_u(d + t)] = hf[_u(s + t)]


@njit
def col2im(cols, gx, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, hp, wp, lo, hi):
    """``gx[n]`` (for ``n`` in ``[lo, hi)``) = the sum of the ``cols`` entries that ``im2col`` read
    from each element, added offset ``(i, j)`` by offset in row-major order into a zeroed
    channels-last padded image, then copied out without the padding."""
    c, h, w = gx.shape[1], gx.shape[2], gx.shape[3]
    k = cols.shape[1]
    gh = np.empty((hp, wp, c), gx.dtype)
    hf = gh.reshape(-1)
    cf = cols.reshape(-1)
    gf = gx.reshape(-1)
    for n in range(lo, hi):
        hf[:] = 0
        for i in range(kh):
            for j in range(kw):
                for a in range(oh):
                    for b in range(ow):
                        s = ((n * oh + a) * ow + b) * k + (i * kw + j) * c
                        d = ((a * sh + i * dh) * wp + b * sw + j * dw) * c
                        for t in range(c):
                            hf[_u(d + t)] += cf[_u(s + t)]
        for ch in range(c):
            dst = (n * c + ch) * h * w
            for r in range(h):
                s0 = ((r + ph) * wp + pw) * c + ch
                d0 = dst + r * w
                for q in range(w):
                    gf[_u(d0 + q)] = hf[_u(s0 + q * c)]


@njit
def rows_to_nchw(y, out, bias, has_bias, lo, hi):
    """``out[n, o, p] = y[n*P + p, o]`` (``+ bias[o]``) for images ``n`` in ``[lo, hi)``; ``out``
    is ``(N, O, P)``; in tiles of 16 positions (a tile's rows of ``y`` stay in L1)."""
    o_n, p_n = out.shape[1], out.shape[2]
    yf = y.reshape(-1)
    of = out.reshape(-1)
    for n in range(lo, hi):
        for p0 in range(0, p_n, 16):
            p1 = min(p0 + 16, p_n)
            for o in range(o_n):
                d = (n * o_n + o) * p_n
                s = n * p_n * o_n + o
                if has_bias:
                    bo = bias[o]
                    for p in range(p0, p1):
                        of[_u(d + p)] = yf[_u(s + p * o_n)] + bo
                else:
                    for p in range(p0, p1):
                        of[_u(d + p)] = yf[_u(s + p * o_n)]


@njit
def channels_to_nchw(y, out, bias, has_bias, lo, hi):
    """``out[n, o, p] = y[o, n*P + p]`` (``+ bias[o]``) for images ``n`` in ``[lo, hi)``; ``out``
    is ``(N, O, P)``: runs of ``P`` values."""
    o_n, p_n = out.shape[1], out.shape[2]
    for n in range(lo, hi):
        for o in range(o_n):
            dst = out[n, o]
            src = y[o, n * p_n:(n + 1) * p_n]
            if has_bias:
                bo = bias[o]
                for p in range(p_n):
                    dst[p] = src[p] + bo
            else:
                for p in range(p_n):
                    dst[p] = src[p]


@njit
def nchw_to_channels(g, g2, lo, hi):
    """``g2[o, n*P + p] = g[n, o, p]`` for images ``n`` in ``[lo, hi)``; ``g`` is ``(N, O, P)``."""
    o_n, p_n = g.shape[1], g.shape[2]
    for n in range(lo, hi):
        for o in range(o_n):
            dst = g2[o, n * p_n:(n + 1) * p_n]
            src = g[n, o]
            for p in range(p_n):
                dst[p] = src[p]


@njit
def max_pool_2x2(x, out, idx, relu, lo, hi):
    """2x2 windows with stride 2 of planes ``x (P, H, W)`` ``[lo, hi)``: the maximum and its index
    in the window (0..3), a larger value or a NaN taking over (PyTorch's rule). With ``relu``, those
    of ``np.maximum(x, 0)``: as ``max_pool``'s (a window with no positive input: +0 at index 0)."""
    oh, ow = out.shape[1], out.shape[2]
    for p in range(lo, hi):
        xp, op, ip = x[p], out[p], idx[p]
        for i in range(oh):
            r0, r1, orow, irow = xp[2 * i], xp[2 * i + 1], op[i], ip[i]
            for j in range(ow):
                best = r0[2 * j]
                arg = 0
                v = r0[2 * j + 1]
                if v > best or v != v:
                    best = v
                    arg = 1
                v = r1[2 * j]
                if v > best or v != v:
                    best = v
                    arg = 2
                v = r1[2 * j + 1]
                if v > best or v != v:
                    best = v
                    arg = 3
                if relu and not (best > 0 or best != best):
                    orow[j] = 0
                    irow[j] = 0
                else:
                    orow[j] = best
                    irow[j] = arg


@njit
def max_pool(x, out, idx, kh, kw, sh, sw, ph, pw, dh, dw, relu, lo, hi):
    """Any windows of planes ``x (P, H, W)`` ``[lo, hi)``; padding and the windows of ``ceil_mode``
    are skipped; the index is the window-local ``i*kw + j``. A window whose inputs are all ``-inf``
    gets its first input's index (PyTorch's). With ``relu``, the maximum and index of the window of
    ``np.maximum(x, 0)``: the ReLU of the maximum and its index where that is positive or NaN (a
    larger value or a NaN takes over in both), else ``+0`` at the window's first input (all its
    inputs rectified to ``+0``, the first of equals wins)."""
    h, w = x.shape[1], x.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    for p in range(lo, hi):
        xp, op, ip = x[p], out[p], idx[p]
        for a in range(oh):
            for b in range(ow):
                best = xp[0, 0]  # replaced by the window's first input
                arg = -1
                first = -1
                for i in range(kh):
                    r = a * sh - ph + i * dh
                    if r < 0 or r >= h:
                        continue
                    for j in range(kw):
                        q = b * sw - pw + j * dw
                        if q < 0 or q >= w:
                            continue
                        v = xp[r, q]
                        if arg < 0 or v > best or v != v:
                            best = v
                            arg = i * kw + j
                        if first < 0:
                            first = i * kw + j
                if relu and not (best > 0 or best != best):
                    op[a, b] = 0
                    ip[a, b] = first
                else:
                    op[a, b] = best
                    ip[a, b] = arg


@njit
def _zeros(xf, start, n):
    """``xf[start:start + n] = 0`` (+0.0) in a flat array."""
    for t in range(n):
        xf[_u(start + t)] = 0


@njit
def max_pool_2x2_backward(g, idx, out, gx, relu, lo, hi):
    """Planes ``gx (P, H, W)`` ``[lo, hi)`` of 2x2 windows with stride 2: zeros, then ``0 + g`` stored
    at each window's maximum (``idx``; windows are disjoint, so no add): the bits of
    ``max_pool_backward``'s zeros and adds. With ``relu``, the input gradient of
    ``max_pool2d(relu(x))``: ``(0 + g) * (out > 0)`` as ``relu_backward`` multiplies (``out`` is the
    pooled ReLU output: the maximum's own rectified value). Flat indices: 2-D row views cost 2-4x."""
    h, w = gx.shape[1], gx.shape[2]
    oh, ow = g.shape[1], g.shape[2]
    zero = np.zeros(1, gx.dtype)[0]  # (a literal 0 would make the arithmetic float64)
    gf, kf, of, xf = g.reshape(-1), idx.reshape(-1), out.reshape(-1), gx.reshape(-1)
    for p in range(lo, hi):
        base = p * h * w
        _zeros(xf, base, h * w)
        for i in range(oh):
            src = (p * oh + i) * ow
            row = base + 2 * i * w
            for j in range(ow):
                k = kf[_u(src + j)]
                v = zero + gf[_u(src + j)]
                if relu and not of[_u(src + j)] > 0:
                    v = v * zero
                xf[_u(row + (k >> 1) * w + 2 * j + (k & 1))] = v


@njit
def _window_max_at(k, i, j, rows, cols, sh, sw, ph, pw, h, w):
    """The offset in its ``(H, W)`` plane of window ``(i, j)``'s maximum (window-local index ``k``), or -1
    where it lies in the padding."""
    r = i * sh - ph + rows[k]
    q = j * sw - pw + cols[k]
    return r * w + q if 0 <= r < h and 0 <= q < w else -1


@njit
def max_pool_backward(g, idx, out, gx, kh, kw, sh, sw, ph, pw, dh, dw, relu, lo, hi):
    """Planes ``gx (P, H, W)`` ``[lo, hi)`` = 0, then ``+= g`` at each window's maximum, window by
    window in row-major order (PyTorch adds overlapping windows' gradients in this order). With
    ``relu``, then ``*= 0`` at the maximum of each window whose ``out`` is not positive: the sum times
    the input's ``relu(x) > 0`` as ``relu_backward`` multiplies (every window whose maximum is that
    input has its rectified value as ``out``; a second ``* 0`` changes nothing)."""
    h, w = gx.shape[1], gx.shape[2]
    oh, ow = g.shape[1], g.shape[2]
    rows = np.empty(kh * kw, np.int64)  # window-local index -> offset from the window's corner
    cols = np.empty(kh * kw, np.int64)
    for i in range(kh):
        for j in range(kw):
            rows[i * kw + j] = i * dh
            cols[i * kw + j] = j * dw
    gf, kf, of, xf = g.reshape(-1), idx.reshape(-1), out.reshape(-1), gx.reshape(-1)
    for p in range(lo, hi):
        base = p * h * w
        _zeros(xf, base, h * w)
        for i in range(oh):
            src = (p * oh + i) * ow
            for j in range(ow):
                t = _window_max_at(kf[_u(src + j)], i, j, rows, cols, sh, sw, ph, pw, h, w)
                if t >= 0:
                    xf[_u(base + t)] += gf[_u(src + j)]
        if relu:
            for i in range(oh):
                src = (p * oh + i) * ow
                for j in range(ow):
                    if not of[_u(src + j)] > 0:
                        t = _window_max_at(kf[_u(src + j)], i, j, rows, cols, sh, sw, ph, pw, h, w)
                        if t >= 0:
                            xf[_u(base + t)] *= 0


@njit
def relu(x, out, lo, hi):
    """``out = np.maximum(x, 0)`` over ``[lo, hi)`` of flat arrays: ``x`` where ``x > 0`` or NaN,
    else ``+0`` (as NumPy's maximum: ``-0.0`` gives ``+0.0``)."""
    xs, os = x[lo:hi], out[lo:hi]
    for t in range(hi - lo):
        v = xs[t]
        os[t] = v if (v > 0 or v != v) else 0


@njit
def relu_backward(g, out, gx, lo, hi):
    """``gx = g * (out > 0)`` over ``[lo, hi)`` of flat arrays (a multiply by 1 or 0, as the twin:
    ``-g * 0`` is ``-0.0``, ``inf * 0`` NaN)."""
    gs, os, xs = g[lo:hi], out[lo:hi], gx[lo:hi]
    for t in range(hi - lo):
        v = gs[t]
        xs[t] = v if os[t] > 0 else v * 0
