"""Fused forms of a transformer step's elementwise and row ops, each a NumPy twin and a compiled kernel.

GELU with ``approximate="tanh"``, layer norm, and softmax / log-softmax over the last axis (plain,
and attention's scale + mask + softmax) each have one function here that the op's rule calls on
arrays. It runs the compiled loops of ``retrograd.kernels.jit`` when ``accel.handles`` the arrays
(Numba installed, ``RETROGRAD_NO_JIT`` unset, float32 or float64) and otherwise its NumPy twin,
written out below as the reference. The kernels perform the twin's float operations in the twin's
order, so both give the same bits (tests/test_kernels.py checks it):

- sums over the last axis: the twin calls ``np.sum(a, axis=-1)`` on a C-contiguous array, which
  NumPy adds in its pairwise order; the kernel reproduces that order (``jit._pairwise``) instead of
  the twin spelling out an order of its own, so that the twin stays one fast NumPy call per sum;
- sums over rows (layer norm's weight and bias gradients): in blocks of ``BLOCK_ROWS`` rows, each
  block's rows added one after another (``np.sum`` over a middle or leading axis), then the blocks'
  sums one after another; the blocks let threads work on separate rows with the same result;
- ``tanh``, ``exp`` and ``log`` are NumPy's in both paths (its SIMD loops differ from libm in the
  last bit): the kernel path calls them between two compiled loops, on pieces of at most
  ``_CHUNK`` elements (smaller pieces, to stay in L2, measured slower: more calls, and L3 holds these).

Large arrays are cut into pieces (elements, or whole rows) that run side by side on
``accel.get_num_threads()`` threads. The results do not depend on the number of threads.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import accel

__all__ = ["gelu_tanh", "gelu_tanh_backward", "layer_norm", "layer_norm_backward", "softmax",
           "softmax_backward", "log_softmax", "log_softmax_backward", "exp_rows", "cross_entropy_grad", "sum_rows", "matmul",
           "matmul_pair", "bmm",
           "BLOCK_ROWS", "MIN_PER_THREAD", "MIN_GEMM_PER_THREAD", "BLAS_THREADED"]

BLOCK_ROWS = 128  # rows per partial sum of layer norm's weight / bias gradients
_CHUNK = 1 << 20  # elements per piece of a kernel -> NumPy ufunc -> kernel chain (a few MB: stays in L3)
MIN_PER_THREAD = _MIN_ELEMENTS = 1 << 18  # elements per thread below which one thread does it all (bench/kernels.py)
MIN_GEMM_PER_THREAD = 1 << 22  # multiply-adds per thread below which a GEMM stays one BLAS call
# multiply-adds above which OpenBLAS runs a GEMM on several of its threads (its GEMM_MULTITHREAD_THRESHOLD
# 4 x 65536 per thread; measured on NumPy's OpenBLAS 0.3.31: 524,288 runs on one, 1,048,576 on two)
BLAS_THREADED = 1 << 19
_SPLIT_GEMMS = os.environ.get("RETROGRAD_BLAS_SPLIT", "") != "0"  # 0: GEMMs on OpenBLAS's own threads
_GELU_K = 0.044715
_GELU_C = float(np.sqrt(2.0 / np.pi))


def _jit() -> Any:
    from . import jit
    return jit


def _fast(*arrays: np.ndarray) -> bool:
    return accel.handles(*arrays)


def _rows_per_thread(d: int) -> int:
    return max(1, _MIN_ELEMENTS // max(d, 1))


def _consts(dt: np.dtype, *values: float) -> list:
    return [dt.type(v) for v in values]


# ====================================================================== GELU, tanh form
def gelu_tanh(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, t)``: ``y = 0.5 x (1 + t)``, ``t = tanh(sqrt(2/pi) (x + 0.044715 x^3))`` (kept for the
    backward), both of ``x``'s shape."""
    if x.size and _fast(x):
        xf = np.ascontiguousarray(x).reshape(-1)
        t, y = np.empty_like(xf), np.empty_like(xf)
        k, c, half, one = _consts(x.dtype, _GELU_K, _GELU_C, 0.5, 1.0)
        J = _jit()

        def piece(lo: int, hi: int) -> None:
            for a in range(lo, hi, _CHUNK):
                b = min(a + _CHUNK, hi)
                J.gelu_tanh_inner(xf, t, k, c, a, b)
                np.tanh(t[a:b], out=t[a:b])
                J.gelu_tanh_out(xf, t, y, half, one, a, b)

        accel.run_ranges(piece, (), xf.shape[0], _MIN_ELEMENTS)
        return y.reshape(x.shape), t.reshape(x.shape)
    k, c, half, one = _consts(x.dtype, _GELU_K, _GELU_C, 0.5, 1.0)
    t = x * k
    t *= x
    t *= x
    t += x
    t *= c
    np.tanh(t, out=t)
    y = x * half
    y *= t + one
    return y, t


def gelu_tanh_backward(x: np.ndarray, t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``g * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))`` with ``t`` from
    ``gelu_tanh``; ``g`` broadcasts to ``x``'s shape."""
    k3, c, half, one = _consts(x.dtype, 3 * _GELU_K, _GELU_C, 0.5, 1.0)
    if x.size and g.dtype == x.dtype and _fast(x, t, g):
        xf, tf = np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(t).reshape(-1)
        gf = np.ascontiguousarray(np.broadcast_to(g, x.shape)).reshape(-1)
        out = np.empty_like(xf)
        accel.run_ranges(_jit().gelu_tanh_back, (xf, tf, gf, out, k3, c, half, one), xf.shape[0], _MIN_ELEMENTS)
        return out.reshape(x.shape)
    d = x * x
    d *= k3
    d += one
    d *= c
    s = t * t
    np.subtract(one, s, out=s)
    a = x * half
    a *= s
    a *= d
    s = t + one
    s *= half
    a += s
    return (a * g).astype(x.dtype, copy=False)


# ====================================================================== layer norm
def layer_norm(x2: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, eps: float) -> tuple:
    """``(y, mu, rstd)`` over the rows of ``x2 (rows, D)``: ``mu = sum(x) / D``, ``rstd = 1 /
    sqrt(sum((x - mu)^2) / D + eps)``, ``y = (x - mu) * rstd [* w] [+ b]``; ``mu`` and ``rstd`` of
    shape ``(rows, 1)``."""
    rows, d = x2.shape
    dt = x2.dtype
    ops = [a for a in (w, b) if a is not None]
    if x2.size and d > 1 and _fast(x2, *ops) and all(a.dtype == dt for a in ops):
        x2 = np.ascontiguousarray(x2)
        y = np.empty_like(x2)
        mu, rstd = np.empty((rows, 1), dt), np.empty((rows, 1), dt)
        empty = np.empty(0, dt)
        wf = empty if w is None else np.ascontiguousarray(w).reshape(-1)
        bf = empty if b is None else np.ascontiguousarray(b).reshape(-1)
        dd, e, zero, one = _consts(dt, d, eps, 0.0, 1.0)
        accel.run_ranges(_jit().layer_norm_fwd, (x2, wf, bf, y, mu.reshape(-1), rstd.reshape(-1), dd, e, zero, one),
                         rows, _rows_per_thread(d))
        return y, mu, rstd
    # np.mean of a C-contiguous row: np.sum's pairwise order, then / D (in float32 and float64
    # exactly the kernel's sum / D; float16 sums in float32, as np.mean does)
    x2 = np.ascontiguousarray(x2)
    mu = np.mean(x2, axis=1, keepdims=True)
    xc = x2 - mu
    rstd = np.mean(xc * xc, axis=1, keepdims=True)
    rstd += dt.type(eps)
    np.sqrt(rstd, out=rstd)
    np.divide(dt.type(1.0), rstd, out=rstd)
    y = xc
    y *= rstd
    if w is not None:
        y *= w.reshape(-1)
    if b is not None:
        y += b.reshape(-1)
    return y, mu, rstd


def _column_sums(a: np.ndarray) -> np.ndarray:
    """Sums over the rows of ``a (rows, D)``, ``D >= 2``, by blocks of ``BLOCK_ROWS`` rows (rows
    added one after another within a block, then the blocks' sums one after another)."""
    rows, d = a.shape
    full = rows // BLOCK_ROWS
    parts = []
    if full:
        parts.append(np.sum(a[:full * BLOCK_ROWS].reshape(full, BLOCK_ROWS, d), axis=1))
    if rows % BLOCK_ROWS or not rows:
        parts.append(np.sum(a[full * BLOCK_ROWS:], axis=0, keepdims=True))
    return np.sum(parts[0] if len(parts) == 1 else np.concatenate(parts), axis=0)


def layer_norm_backward(x2: np.ndarray, g2: np.ndarray, w: np.ndarray | None, mu: np.ndarray, rstd: np.ndarray,
                        needs: tuple[bool, bool, bool]) -> tuple:
    """``(dx, dw, db)`` (``None`` where ``needs`` says not wanted) for ``layer_norm``'s ``y`` given its
    gradient ``g2 (rows, D)``: ``dx = ((gxh - sum(gxh) / D) - xhat * (sum(gxh * xhat) / D)) * rstd``
    with ``xhat = (x - mu) * rstd``, ``gxh = g * w``; ``dw = sum over rows of g * xhat``, ``db = sum of g``."""
    rows, d = x2.shape
    dt = x2.dtype
    need_x, need_w, need_b = needs
    ops = [] if w is None else [w]
    if x2.size and d > 1 and _fast(x2, g2, mu, rstd, *ops) and all(a.dtype == dt for a in [g2, mu, rstd, *ops]):
        x2, g2 = np.ascontiguousarray(x2), np.ascontiguousarray(g2)
        nblk = -(-rows // BLOCK_ROWS)
        empty2 = np.empty((0, d), dt)
        dx = np.empty_like(x2) if need_x else empty2
        dwp = np.zeros((nblk, d), dt) if need_w else empty2
        dbp = np.zeros((nblk, d), dt) if need_b else empty2
        wf = np.empty(0, dt) if w is None else np.ascontiguousarray(w).reshape(-1)
        dd, zero = _consts(dt, d, 0.0)
        accel.run_ranges(_jit().layer_norm_bwd, (x2, g2, wf, np.ascontiguousarray(mu).reshape(-1),
                                                 np.ascontiguousarray(rstd).reshape(-1), dx, dwp, dbp,
                                                 BLOCK_ROWS, dd, zero),
                         rows, max(BLOCK_ROWS, _rows_per_thread(d)), BLOCK_ROWS)
        return (dx if need_x else None, np.sum(dwp, axis=0) if need_w else None,
                np.sum(dbp, axis=0) if need_b else None)
    x2, g2 = np.ascontiguousarray(x2), np.ascontiguousarray(g2)
    xhat = x2 - mu
    xhat *= rstd
    dx = dw = db = None
    if need_x:
        gxh = g2 * w.reshape(-1) if w is not None else g2
        s1 = np.mean(gxh, axis=1, keepdims=True)
        s2 = np.mean(gxh * xhat, axis=1, keepdims=True)
        dx = gxh - s1
        dx -= xhat * s2
        dx *= rstd
    if need_w:
        dw = _column_sums(g2 * xhat) if d > 1 else np.sum(g2 * xhat, axis=0)
    if need_b:
        db = _column_sums(g2) if d > 1 else np.sum(g2, axis=0)
    return dx, dw, db


# ====================================================================== softmax over the last axis
def _rows_view(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


def softmax(x: np.ndarray, scale: float | None = None, mask: np.ndarray | None = None,
            safe: bool = False) -> np.ndarray:
    """Softmax over the last axis of ``x [* scale] [+ mask]`` (``mask`` broadcasts against ``x``);
    ``safe``: rows that are all ``-inf`` (fully masked) give zeros rather than NaN (as torch's SDPA).
    The kernel takes a mask of the last two dims' shape (a causal mask); others run the twin."""
    dt = x.dtype
    d = x.shape[-1] if x.ndim else 1
    m2 = None
    if mask is not None and mask.ndim >= 2 and mask.shape[-1] == d and mask.dtype == dt and x.ndim >= 2 \
            and mask.shape[:-2] == (1,) * (mask.ndim - 2) and mask.shape[-2] == x.shape[-2]:
        m2 = np.ascontiguousarray(mask.reshape(mask.shape[-2:]))
    if x.size and x.ndim and (mask is None or m2 is not None) and _fast(x):
        s2 = _rows_view(x)
        out = np.empty_like(s2)
        rows = s2.shape[0]
        sc, zero, one = _consts(dt, 1.0 if scale is None else scale, 0.0, 1.0)
        mk = np.empty((0, d), dt) if m2 is None else m2
        J = _jit()
        step = max(1, _CHUNK // d)

        def piece(lo: int, hi: int) -> None:
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                J.row_shift(s2, out, scale is not None, sc, mk, safe, zero, a, b)
                np.exp(out[a:b], out=out[a:b])
                J.row_normalize(out, safe, zero, one, a, b)

        accel.run_ranges(piece, (), rows, _rows_per_thread(d))
        return out.reshape(x.shape)
    s = x if scale is None else x * dt.type(scale)
    if mask is not None:
        s = s + mask
    m = np.max(s, axis=-1, keepdims=True)
    if safe:
        dead = m == -np.inf
        m[dead] = 0
    e = _rows_view(s - m)  # a fresh C-contiguous array: np.sum below adds each row pairwise
    np.exp(e, out=e)
    z = np.sum(e, axis=1, keepdims=True)
    if safe:
        z[z == 0] = 1
    e /= z
    return e.reshape(s.shape)


def softmax_backward(y: np.ndarray, g: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Softmax's input gradient over the last axis, ``g * y - y * sum(g * y)``; with ``scale``
    (attention, whose scores were scaled): ``(y * (g - sum(g * y))) * scale``."""
    dt = y.dtype
    if y.size and y.ndim and g.shape == y.shape and g.dtype == dt and _fast(y, g):
        y2, g2 = _rows_view(y), _rows_view(g)
        out = np.empty_like(y2)
        d = y2.shape[1]
        sc, zero = _consts(dt, 0.0 if scale is None else scale, 0.0)
        accel.run_ranges(_jit().softmax_bwd, (y2, g2, out, scale is not None, sc, zero), y2.shape[0],
                         _rows_per_thread(d))
        return out.reshape(y.shape)
    gy = _rows_view(g * y)
    s = np.sum(gy, axis=1, keepdims=True).reshape(y.shape[:-1] + (1,))
    gy = gy.reshape(np.broadcast_shapes(g.shape, y.shape))
    if scale is None:
        gy -= y * s
        return gy
    out = g - s
    out *= y
    out *= dt.type(scale)
    return out


_MIN_LOG_SOFTMAX = 1 << 12  # elements below which NumPy's passes beat the kernel's calls (32x2: 6 vs 10 us)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``s - log(sum(exp(s)))``, ``s = x - max(x)``, over the last axis."""
    dt = x.dtype
    if x.size >= _MIN_LOG_SOFTMAX and x.ndim and _fast(x):
        s2 = _rows_view(x)
        rows, d = s2.shape
        out = np.empty_like(s2)
        z = np.empty(rows, dt)
        mk = np.empty((0, d), dt)
        zero = dt.type(0.0)
        J = _jit()
        step = max(1, _CHUNK // d)

        def piece(lo: int, hi: int) -> None:
            e = np.empty((min(step, hi - lo), d), dt)
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                J.row_shift(s2, out, False, zero, mk, False, zero, a, b)
                ea = e[:b - a]
                np.exp(out[a:b], out=ea)
                J.row_sums(ea, z[a:b], zero, 0, b - a)
                np.log(z[a:b], out=z[a:b])
                J.row_sub(out, z, a, b)

        accel.run_ranges(piece, (), rows, _rows_per_thread(d))
        return out.reshape(x.shape)
    # np.max / np.sum as their ufuncs' reduce (the same loops, without the wrappers' cost)
    s = x - np.maximum.reduce(x, axis=-1, keepdims=True)
    s -= np.log(np.add.reduce(np.exp(s), axis=-1, keepdims=True))
    return s


def log_softmax_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Log-softmax's input gradient over the last axis, ``g - exp(y) * sum(g)``."""
    dt = y.dtype
    if y.size and y.ndim and g.shape == y.shape and g.dtype == dt and _fast(y, g):
        y2, g2 = _rows_view(y), _rows_view(g)
        e = np.empty_like(y2)
        zero = dt.type(0.0)
        J = _jit()

        step = max(1, _CHUNK // y2.shape[1])

        def piece(lo: int, hi: int) -> None:  # NumPy's exp of a few MB of rows, then the kernel on them
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                np.exp(y2[a:b], out=e[a:b])
                J.log_softmax_bwd(e, g2, e, zero, a, b)

        accel.run_ranges(piece, (), y2.shape[0], _rows_per_thread(y2.shape[1]))
        return e.reshape(y.shape)
    g2 = _rows_view(g)
    s = np.sum(g2, axis=1, keepdims=True).reshape(g.shape[:-1] + (1,))
    return g - np.exp(y) * s


def exp_rows(x: np.ndarray) -> np.ndarray:
    """``np.exp(x)`` of a 2-D ``x``, in blocks of rows on ``accel.get_num_threads()`` threads when
    large (NumPy's exp on each block: the same bits)."""
    if x.ndim != 2 or x.size < 2 * _MIN_ELEMENTS or not _fast(x):
        return np.exp(x)
    out = np.empty(x.shape, x.dtype)
    accel.run_ranges(lambda lo, hi: np.exp(x[lo:hi], out=out[lo:hi]), (), x.shape[0], _rows_per_thread(x.shape[1]))
    return out


def cross_entropy_grad(p: np.ndarray, target: np.ndarray, gi: np.ndarray) -> np.ndarray:
    """Cross-entropy's logit gradient ``gi * (p - onehot(target))`` for probabilities ``p (M, C)``,
    ``gi`` a scalar or ``(M, 1)``: ``p * gi`` (in blocks of rows on threads when large), then the
    target entries recomputed as ``(p - 1) * gi`` (the twin: ``d = p.copy(); d[i, t_i] -= 1; gi * d``)."""
    rows = np.arange(len(target))
    if p.ndim != 2 or p.size < 2 * _MIN_ELEMENTS or not _fast(p):
        d = p.copy()
        d[rows, target] -= 1
        return gi * d
    out = np.empty(p.shape, np.result_type(p, gi))
    col = np.ndim(gi) == 2

    def piece(lo: int, hi: int) -> None:
        np.multiply(p[lo:hi], gi[lo:hi] if col else gi, out=out[lo:hi])

    accel.run_ranges(piece, (), p.shape[0], _rows_per_thread(p.shape[1]))
    pt = p[rows, target]
    pt -= 1
    out[rows, target] = pt * (gi[:, 0] if col else gi)
    return out


def sum_rows(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=0)`` of a 2-D ``a`` (a linear layer's bias gradient), in blocks of columns on
    ``accel.get_num_threads()`` threads when large. NumPy adds each column's rows one after another
    in the whole array and in a block of columns alike (a block of one column would be summed in
    pairwise order instead: every block here is at least 17 columns wide), so the bits are one call's."""
    m, n = a.shape
    if a.size < 2 * _MIN_ELEMENTS or n < 64 or not a.flags.c_contiguous or not _fast(a):
        return np.add.reduce(a, axis=0)  # a.sum(axis=0)'s loop, without its Python wrapper
    out = np.empty(n, a.dtype)
    # bounds are multiples of 16 at least 32 columns apart: each block is at least 17 wide
    accel.run_ranges(lambda lo, hi: np.sum(a[:, lo:hi], axis=0, out=out[lo:hi]), (), n,
                     max(32, _MIN_ELEMENTS // max(m, 1)), 16)
    return out


# ====================================================================== GEMMs on retrograd's threads
# float32 GEMMs run as row (or column) blocks, one single-threaded OpenBLAS call per block, on
# retrograd's threads, with OpenBLAS held to one thread meanwhile: one pool of workers on the
# cores (OpenBLAS's own workers spin for a while after each GEMM and take the second core from the
# kernels that follow and, on a busy machine, from everything). The blocks give the bits of one
# single-threaded call (tests/test_kernels_gemm.py: hundreds of shapes, any number of blocks), so a
# float32 product no longer depends on the number of threads; OpenBLAS's own threading does not
# promise that (its 2-thread result differs in the last bits from its 1-thread one for ~40% of
# random shapes here). float64 keeps one call: there OpenBLAS's blocks of rows do not always give
# the single call's bits. RETROGRAD_BLAS_SPLIT=0 leaves every GEMM to OpenBLAS's own threads (the
# previous behaviour; for comparisons on a quiet machine, where the two differ by less than this
# busy VM's noise).
def _gemm_parts(m: int, n: int, k: int) -> int:
    threads = accel.get_num_threads()
    if threads <= 1 or min(m, n) < 16 or not _SPLIT_GEMMS:
        return 1
    return min(threads, m * n * k // MIN_GEMM_PER_THREAD, max(m, n) // 16)


def _one_call(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None) -> np.ndarray:
    """``matmul``'s twin: one ``np.matmul`` (into ``out`` when given), then ``bias`` added in place."""
    if out is None:
        out = a @ b
    else:
        np.matmul(a, b, out=out)
    if bias is not None:
        out += bias
    return out


def matmul(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D ``a (m, k)`` and ``b (k, n)`` (any strides), plus ``bias (n,)`` added in
    place when given (the twin: ``out = a @ b; out += bias``); float32 split into row blocks (or
    column blocks where ``n > m``) on ``accel.get_num_threads()`` threads when large enough, and one
    call with OpenBLAS on one thread when smaller but large enough for OpenBLAS to use its own
    threads (``BLAS_THREADED``): so no float32 product wakes OpenBLAS's workers, which would then
    spin for a while on the cores the split kernels that follow need. ``out``: an ``(m, n)`` array of
    the product's dtype to write into (``np.matmul``'s ``out``), returned."""
    m, k = a.shape
    n = b.shape[1]
    mnk = m * n * k
    split = mnk >= 2 * MIN_GEMM_PER_THREAD
    if not (split or mnk > BLAS_THREADED) or not (a.dtype == b.dtype == np.float32 and _SPLIT_GEMMS and _fast(a, b)):
        return _one_call(a, b, bias, out)
    parts = _gemm_parts(m, n, k) if split else 1
    if parts <= 1:
        with accel.single_threaded_blas():
            return _one_call(a, b, bias, out)
    if out is None:
        out = np.empty((m, n), a.dtype)
    if n > m:
        def piece(lo: int, hi: int) -> None:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
            if bias is not None:
                out[:, lo:hi] += bias[lo:hi]
        size = n
    else:
        def piece(lo: int, hi: int) -> None:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
            if bias is not None:
                out[lo:hi] += bias
        size = m
    with accel.single_threaded_blas():
        accel.run_ranges(piece, (), size, -(-size // parts), 16)
    return out


def matmul_pair(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> tuple:
    """``(matmul(a1, b1), matmul(a2, b2))`` for 2-D operands (a linear layer's input and weight
    gradients): when both products are float32 and large enough to split, each runs whole, as one
    single-threaded OpenBLAS call, the two side by side on two threads (one piece each instead of each
    product cut into row or column blocks: no blocks' extra packing, one wait instead of two); the
    same bits as ``matmul`` (a single-threaded call's), whatever the number of threads."""
    m1, n1, m2, n2 = a1.shape[0], b1.shape[1], a2.shape[0], b2.shape[1]
    w1, w2 = m1 * n1 * a1.shape[1], m2 * n2 * a2.shape[1]
    if not (accel.get_num_threads() >= 2 and _SPLIT_GEMMS and min(w1, w2) >= 2 * MIN_GEMM_PER_THREAD
            and max(w1, w2) <= 2 * min(w1, w2) and a1.dtype == b1.dtype == a2.dtype == b2.dtype == np.float32
            and _fast(a1, b1, a2, b2)):
        return matmul(a1, b1), matmul(a2, b2)
    out = (np.empty((m1, n1), np.float32), np.empty((m2, n2), np.float32))
    args = ((a1, b1), (a2, b2))

    def piece(lo: int, hi: int) -> None:
        for k in range(lo, hi):
            np.matmul(*args[k], out=out[k])

    with accel.single_threaded_blas():
        accel.run_ranges(piece, (), 2, 1)
    return out


def bmm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for float32 stacks of matrices with the same leading dims (``(..., m, k) @ (..., k,
    n)``, any strides): the stack split into blocks of whole matrices on ``accel.get_num_threads()``
    threads, OpenBLAS on one thread (one call per matrix either way); other inputs go to ``@``."""
    lead = a.shape[:-2]
    if a.ndim < 3 or b.shape[:-2] != lead or not a.dtype == b.dtype == np.float32 or not _fast(a, b):
        return a @ b
    m, k = a.shape[-2:]
    n = b.shape[-1]
    count = a.size // max(m * k, 1)
    if a.shape[0] < 2 or accel.get_num_threads() <= 1 or count * m * n * k < MIN_GEMM_PER_THREAD // 2 \
            or not _SPLIT_GEMMS:
        return a @ b
    out = np.empty(lead + (m, n), a.dtype)

    def piece(lo: int, hi: int) -> None:  # blocks along the first axis: views, whatever the strides
        np.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi])

    with accel.single_threaded_blas():
        accel.run_ranges(piece, (), a.shape[0], 1)
    return out
