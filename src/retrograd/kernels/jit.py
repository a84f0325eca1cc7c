"""The Numba loops behind ``retrograd.kernels`` (imported only when ``accel.available()``).

Every loop performs its NumPy twin's float operations in the twin's order (no fast-math, no fused
multiply-adds), so the results are the twin's bits. Row sums use NumPy's pairwise summation
(``_pairwise``), the order ``np.sum`` over the last axis of a C-contiguous array follows.
Transcendental functions (``tanh``, ``exp``, ``log``) are not here: the callers run NumPy's
between two loops, so their bits are NumPy's. The loops take ``lo, hi`` (a range of elements or
rows) so that ``accel.run_ranges`` can run pieces of one array side by side.
"""
from __future__ import annotations

import numpy as np

from ..accel import njit


@njit
def _leaf(a, lo, n):
    """``a[lo:lo + n].sum()`` for ``1 <= n <= 128`` in NumPy's order: below 8 items one after
    another, else eight interleaved partial sums joined as a tree, then the rest one by one."""
    b = a[lo:lo + n]  # indices from 0 (see the note above gelu_tanh_inner)
    if n < 8:
        r = b[0]
        for i in range(1, n):
            r += b[i]
        return r
    r0, r1, r2, r3, r4, r5, r6, r7 = b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    for k in range(1, n // 8):
        i = 8 * k
        r0 += b[i]
        r1 += b[i + 1]
        r2 += b[i + 2]
        r3 += b[i + 3]
        r4 += b[i + 4]
        r5 += b[i + 5]
        r6 += b[i + 6]
        r7 += b[i + 7]
    r = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(n - n % 8, n):
        r += b[j]
    return r


@njit
def _pairwise(a, lo, n, stack, vals):
    """``a[lo:lo + n].sum()`` (``n >= 1``) added in NumPy's pairwise order
    (numpy/_core/src/umath/loops_utils.h.src, ``pairwise_sum``, PW_BLOCKSIZE 128): up to 128 items
    as ``_leaf``; above, the first ``n2`` (half of ``n`` rounded down to a multiple of 8) and the
    rest summed separately, then added. The recursion is unrolled onto ``stack`` (int64, 2 x 128;
    a column ``(lo, n)`` to sum, ``n = -1`` to add the last two sums) and ``vals`` (64 partial
    sums): Numba's on-disk cache cannot hold recursive functions."""
    if n <= 128:
        return _leaf(a, lo, n)
    top = 0
    stack[0, 0] = lo
    stack[1, 0] = n
    nv = 0
    while top >= 0:
        l0 = stack[0, top]
        m = stack[1, top]
        top -= 1
        if m < 0:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        elif m <= 128:
            vals[nv] = _leaf(a, l0, m)
            nv += 1
        else:
            n2 = m // 2
            n2 -= n2 % 8
            stack[1, top + 1] = -1
            stack[0, top + 2] = l0 + n2
            stack[1, top + 2] = m - n2
            stack[0, top + 3] = l0
            stack[1, top + 3] = n2
            top += 3
    return vals[0]


# ------------------------------------------------------------------ GELU, tanh form
# (the elementwise loops index slices from 0: an index that might be negative, as ``range(lo, hi)``
# gives, makes Numba wrap it around on every access, and the loop no longer vectorises)
@njit
def gelu_tanh_inner(x, t, k, c, lo, hi):
    """``t = c * (x + ((k * x) * x) * x)``: tanh's argument (NumPy's tanh follows in place)."""
    xs, ts = x[lo:hi], t[lo:hi]
    for i in range(xs.shape[0]):
        xi = xs[i]
        ts[i] = c * (xi + ((k * xi) * xi) * xi)


@njit
def gelu_tanh_out(x, t, y, half, one, lo, hi):
    """``y = (half * x) * (one + t)`` from ``t = tanh(...)``."""
    xs, ts, ys = x[lo:hi], t[lo:hi], y[lo:hi]
    for i in range(xs.shape[0]):
        ys[i] = (half * xs[i]) * (one + ts[i])


@njit
def gelu_tanh_back(x, t, g, out, k3, c, half, one, lo, hi):
    """``out = g * (half * (one + t) + ((half * x) * (one - t * t)) * (c * (one + k3 * x * x)))``."""
    xs, ts, gs, os = x[lo:hi], t[lo:hi], g[lo:hi], out[lo:hi]
    for i in range(xs.shape[0]):
        xi = xs[i]
        ti = ts[i]
        d = ((xi * xi) * k3 + one) * c
        a = ((xi * half) * (one - ti * ti)) * d
        os[i] = (a + (ti + one) * half) * gs[i]


# ------------------------------------------------------------------ layer norm
@njit
def layer_norm_fwd(x, w, b, y, mu, rstd, d, eps, zero, one, lo, hi):
    """Rows ``lo:hi`` of ``x (rows, D)``: ``mu = sum(x) / d``, ``rstd = one / sqrt(sum((x - mu)^2) / d
    + eps)``, ``y = (x - mu) * rstd [* w] [+ b]`` (``w``/``b`` of length 0 when absent)."""
    D = x.shape[1]
    stk, vals = np.empty((2, 128), np.int64), np.empty(64, x.dtype)  # _pairwise's scratch
    tmp = np.empty(D, x.dtype)
    has_w = w.shape[0] > 0
    has_b = b.shape[0] > 0
    for r in range(lo, hi):
        xr = x[r]
        m = (zero + _pairwise(xr, 0, D, stk, vals)) / d
        for j in range(D):
            c = xr[j] - m
            tmp[j] = c * c
        q = one / np.sqrt((zero + _pairwise(tmp, 0, D, stk, vals)) / d + eps)
        yr = y[r]
        if has_w and has_b:
            for j in range(D):
                yr[j] = ((xr[j] - m) * q) * w[j] + b[j]
        elif has_w:
            for j in range(D):
                yr[j] = ((xr[j] - m) * q) * w[j]
        elif has_b:
            for j in range(D):
                yr[j] = ((xr[j] - m) * q) + b[j]
        else:
            for j in range(D):
                yr[j] = (xr[j] - m) * q
        mu[r] = m
        rstd[r] = q


@njit
def layer_norm_bwd(x, g, w, mu, rstd, dx, dwp, dbp, block, d, zero, lo, hi):
    """Rows ``lo:hi``: ``xhat = (x - mu) * rstd``, ``gxh = g [* w]``, ``dx = ((gxh - sum(gxh) / d) -
    xhat * (sum(gxh * xhat) / d)) * rstd`` (``dx`` of length 0: not wanted), and into row ``r //
    block`` of ``dwp`` / ``dbp`` (zeros on entry; length 0: not wanted) ``g * xhat`` / ``g`` added
    row after row."""
    D = x.shape[1]
    stk, vals = np.empty((2, 128), np.int64), np.empty(64, x.dtype)  # _pairwise's scratch
    t1 = np.empty(D, x.dtype)
    t2 = np.empty(D, x.dtype)
    has_w = w.shape[0] > 0
    want_dx = dx.shape[0] > 0
    want_w = dwp.shape[0] > 0
    want_b = dbp.shape[0] > 0
    for r in range(lo, hi):
        xr = x[r]
        gr = g[r]
        m = mu[r]
        q = rstd[r]
        k = r // block
        if want_w:
            pw = dwp[k]
            for j in range(D):
                pw[j] += gr[j] * ((xr[j] - m) * q)
        if want_b:
            pb = dbp[k]
            for j in range(D):
                pb[j] += gr[j]
        if want_dx:
            for j in range(D):
                gx = gr[j] * w[j] if has_w else gr[j]
                t1[j] = gx
                t2[j] = gx * ((xr[j] - m) * q)
            s1 = (zero + _pairwise(t1, 0, D, stk, vals)) / d
            s2 = (zero + _pairwise(t2, 0, D, stk, vals)) / d
            dr = dx[r]
            for j in range(D):
                dr[j] = ((t1[j] - s1) - ((xr[j] - m) * q) * s2) * q


# ------------------------------------------------------------------ softmax over the last axis
@njit
def _row_max(b):
    """``np.max(b)`` of a 1-D row: NaN if any item is NaN. (Where the largest value is a zero of
    both signs, either may come back, as from NumPy; ``v - max`` differs only in the sign of a zero.)
    Eight interleaved running maxima, so that the loop vectorises."""
    n = b.shape[0]
    nan = False
    for j in range(n):
        nan |= b[j] != b[j]
    if nan:
        return b[0] * np.nan
    if n < 8:
        m = b[0]
        for j in range(1, n):
            m = max(m, b[j])
        return m
    a0, a1, a2, a3, a4, a5, a6, a7 = b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    for k in range(1, n // 8):
        i = 8 * k
        a0 = max(a0, b[i])
        a1 = max(a1, b[i + 1])
        a2 = max(a2, b[i + 2])
        a3 = max(a3, b[i + 3])
        a4 = max(a4, b[i + 4])
        a5 = max(a5, b[i + 5])
        a6 = max(a6, b[i + 6])
        a7 = max(a7, b[i + 7])
    m = max(max(max(a0, a1), max(a2, a3)), max(max(a4, a5), max(a6, a7)))
    for j in range(n - n % 8, n):
        m = max(m, b[j])
    return m


@njit
def row_shift(s, out, scaled, scale, mask, safe, zero, lo, hi):
    """Rows ``lo:hi`` of ``s (rows, D)``: ``v = s [* scale] [+ mask[r % len(mask)]]`` (``mask`` of
    length 0: none), ``out = v - max(v)`` (a NaN in the row makes the max NaN, as ``np.max``).
    ``safe``: a row whose max is ``-inf`` (fully masked) is shifted by 0, so its exponentials are 0."""
    D = s.shape[1]
    nm = mask.shape[0]
    for r in range(lo, hi):
        sr = s[r]
        orow = out[r]
        if nm > 0:
            mr = mask[r % nm]
            if scaled:
                for j in range(D):
                    orow[j] = sr[j] * scale + mr[j]
            else:
                for j in range(D):
                    orow[j] = sr[j] + mr[j]
        elif scaled:
            for j in range(D):
                orow[j] = sr[j] * scale
        else:
            for j in range(D):
                orow[j] = sr[j]
        m = _row_max(orow)
        if safe and m == -np.inf:
            m = zero
        for j in range(D):
            orow[j] = orow[j] - m


@njit
def row_normalize(e, safe, zero, one, lo, hi):
    """Rows ``lo:hi`` of ``e`` divided by their sums (``safe``: a sum of 0, a fully masked row, divides by 1)."""
    D = e.shape[1]
    stk, vals = np.empty((2, 128), np.int64), np.empty(64, e.dtype)  # _pairwise's scratch
    for r in range(lo, hi):
        er = e[r]
        z = zero + _pairwise(er, 0, D, stk, vals)
        if safe and z == 0:
            z = one
        for j in range(D):
            er[j] = er[j] / z


@njit
def row_sums(e, out, zero, lo, hi):
    """``out[r] = zero + sum(e[r])`` in NumPy's order, rows ``lo:hi``."""
    D = e.shape[1]
    stk, vals = np.empty((2, 128), np.int64), np.empty(64, e.dtype)  # _pairwise's scratch
    for r in range(lo, hi):
        out[r] = zero + _pairwise(e[r], 0, D, stk, vals)


@njit
def row_sub(s, z, lo, hi):
    """``s[r] -= z[r]``, rows ``lo:hi``."""
    D = s.shape[1]
    for r in range(lo, hi):
        sr = s[r]
        v = z[r]
        for j in range(D):
            sr[j] = sr[j] - v


@njit
def softmax_bwd(y, g, out, attn, scale, zero, lo, hi):
    """Rows ``lo:hi``: ``gy = g * y``, ``out = gy - y * sum(gy)``; ``attn`` (attention's form):
    ``out = (y * (g - sum(g * y))) * scale``. ``out`` may be ``g``."""
    D = y.shape[1]
    stk, vals = np.empty((2, 128), np.int64), np.empty(64, y.dtype)  # _pairwise's scratch
    t = np.empty(D, y.dtype)
    for r in range(lo, hi):
        yr = y[r]
        gr = g[r]
        orow = out[r]
        for j in range(D):
            t[j] = gr[j] * yr[j]
        s = zero + _pairwise(t, 0, D, stk, vals)
        if attn:
            for j in range(D):
                orow[j] = (yr[j] * (gr[j] - s)) * scale
        else:
            for j in range(D):
                orow[j] = t[j] - yr[j] * s


@njit
def log_softmax_bwd(e, g, out, zero, lo, hi):
    """Rows ``lo:hi``: ``out = g - e * sum(g)`` (``e = exp(y)``, computed by NumPy). ``out`` may be ``e``."""
    D = e.shape[1]
    stk, vals = np.empty((2, 128), np.int64), np.empty(64, e.dtype)  # _pairwise's scratch
    for r in range(lo, hi):
        gr = g[r]
        er = e[r]
        orow = out[r]
        s = zero + _pairwise(gr, 0, D, stk, vals)
        for j in range(D):
            orow[j] = gr[j] - er[j] * s
