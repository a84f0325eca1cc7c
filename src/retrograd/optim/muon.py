"""Muon: momentum orthogonalised by a Newton–Schulz iteration, for 2-D parameters."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import accel
from ..backend import round_bfloat16  # noqa: F401  (also imported from here by tests)
from .optimizer import Optimizer, StepArrays, _check, _finite_nonneg, weight_decay

__all__ = ["Muon"]

EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5


def zeropower_via_newtonschulz(grad: np.ndarray, ns_coefficients: tuple = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                               ns_steps: int = DEFAULT_NS_STEPS, eps: float = EPS) -> np.ndarray:
    """Approximately orthogonalise the matrix ``grad`` (``U S V^T -> U S' V^T``, S' ~ 1)
    with ``ns_steps`` quintic Newton–Schulz iterations ``X <- a X + (b A + c A^2) X``,
    ``A = X X^T``, in emulated bfloat16 as PyTorch. Returns float32 holding bfloat16 values.

    Bit for bit PyTorch's CPU result where PyTorch runs its AVX2 kernels (see
    ``_np_sum_avx2``); elsewhere within a bfloat16 rounding or two of it."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = (float(v) for v in ns_coefficients)
    x = round_bfloat16(grad)
    # PyTorch's norm sums in memory order, which the transpose below does not change
    norm = np.maximum(_norm_bfloat16(x.ravel()), round_bfloat16(np.array(eps, np.float32)))
    tall = grad.shape[0] > grad.shape[1]
    if tall:
        x = np.ascontiguousarray(x.T)
    x = round_bfloat16(x / norm)
    for step in range(ns_steps):
        # PyTorch's X is a transposed view of the cast gradient until the first
        # addmm writes a fresh one; the layout picks the kernel, hence the order
        view = tall and step == 0
        gram = round_bfloat16(_sum_products(x, x.T, _SEQUENTIAL if view else _AVX2))
        gram_update = _addmm(gram, _sum_products(gram, gram, _INTERLEAVED), b, c)
        x = _addmm(x, _sum_products(gram_update, x, _AVX2 if view else _INTERLEAVED),
                   a, 1.0)
    return x.T if tall else x


# Where PyTorch's bfloat16 matmuls run (x86-64, AVX2 kernels, no AVX512-BF16/AMX, so
# oneDNN declines bfloat16 and MKL has no bfloat16 gemm), mm/addmm fall to ATen's own CPU
# BLAS (native/cpu/BlasKernel.cpp), compiled for AVX2 with FMA: each output is one float32
# dot product, then ``beta * C + alpha * dot``, rounded once to bfloat16. A product of two
# bfloat16 values is exact in float32, so a float32 ``acc + a * b`` here rounds like the
# kernel's fused multiply-add; what matters is the order of the additions, which depends on
# the kernel that the operands' layout selects. Measured against PyTorch 2.13 (orders told
# apart on inputs with cancelling large terms), the three that Muon meets are:
#   X @ X.T, X contiguous; A @ X, X a transposed view (gemm_transa_): the vectorised
#       bf16_dot_with_fp32_arith (ReducedPrecisionFloatGemvFastPathKernel.cpp), see
#       ``_np_sum_avx2``;
#   A @ B, both contiguous (gemm_notrans_): BlasKernel.cpp's ``sum``, 4 interleaved
#       partial sums, see ``_np_sum_interleaved``;
#   X @ X.T, X a transposed view (gemm_transb_): one sequential sum.


def _outer(a: np.ndarray, b: np.ndarray, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
    """Products ``a[:, l] * b[l, :]`` for ``lo <= l < hi``: shape ``(hi - lo, m, n)``, float32."""
    return np.multiply(a[:, lo:hi].T[:, :, None], b[lo:hi, None, :], out=out)


def _np_sum_sequential(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (bfloat16 values) summed in float32 in order ``l = 0, 1, ...``."""
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for l in range(a.shape[1]):
        acc += _outer(a, b, l, l + 1)[0]
    return acc


def _np_sum_interleaved(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 as BlasKernel.cpp's ``sum``: products ``l`` go to partial sum ``l % 4`` (a last
    incomplete group to partial 0), then ``((p0 + p1) + p2) + p3``."""
    k = a.shape[1]
    full = k - k % 4
    p = np.zeros((4, a.shape[0], b.shape[1]), np.float32)
    buf = np.empty_like(p)
    for l in range(0, full, 4):
        p += _outer(a, b, l, l + 4, buf)
    for l in range(full, k):
        p[0] += _outer(a, b, l, l + 1)[0]
    return ((p[0] + p[1]) + p[2]) + p[3]


def _lanes_sum_avx2(v: np.ndarray) -> np.ndarray:
    """``vec_reduce_all`` of an 8-lane float32 register ``v`` (axis 0), AVX2 shuffle order."""
    s = v[:4] + v[4:]
    return (s[0] + s[2]) + (s[1] + s[3])


def _np_sum_avx2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 as bf16_dot_with_fp32_arith with AVX2 registers (8 float32 lanes, 16 bfloat16):
    a main loop over blocks of 64 into 8 registers (element ``e`` of a block into
    register ``e // 8``, lane ``e % 8``), the registers folded pairwise (4, 2, 1) and
    their lanes summed; then blocks of 16 into one register (elements ``l`` and ``l + 8``
    into lane ``l``), its lanes summed and added; then the rest one by one."""
    m, k = a.shape
    n = b.shape[1]
    main, vec_end = k - k % 64, k - k % 16
    regs = np.zeros((64, m, n), np.float32) if main else None
    buf = np.empty_like(regs) if main else None
    for l in range(0, main, 64):
        regs += _outer(a, b, l, l + 64, buf)
    if main:
        regs = regs.reshape(8, 8, m, n)
        regs[:4] += regs[4:]
        regs[:2] += regs[2:4]
        regs[0] += regs[1]
        total = _lanes_sum_avx2(regs[0])
    else:
        total = np.zeros((m, n), np.float32)
    tail = np.zeros((8, m, n), np.float32)
    for l in range(main, vec_end, 16):
        tail += _outer(a, b, l, l + 8)
        tail += _outer(a, b, l + 8, l + 16)
    total = total + _lanes_sum_avx2(tail)
    for l in range(vec_end, k):
        total = total + _outer(a, b, l, l + 1)[0]
    return total


@accel.jit
def _sum_products_kernel(a, b, out, order):
    """``out = a @ b`` in float32 with the summation ``order`` of the NumPy twins below (0:
    ``_np_sum_sequential``, 1: ``_np_sum_interleaved``, 2: ``_np_sum_avx2``), one row of
    ``a`` at a time with per-row accumulators over the columns of C-contiguous ``b`` (each
    output's additions happen in the same order, so the results are the same bits)."""
    m, k = a.shape
    n = b.shape[1]
    acc = np.zeros((64, n), np.float32)
    tail = np.zeros((8, n), np.float32)
    lane = np.zeros(8, np.float32)
    main, vec_end, full = k - k % 64, k - k % 16, k - k % 4
    for i in range(m):
        acc[:, :] = 0
        if order == 0:
            for l in range(k):
                s = a[i, l]
                for j in range(n):
                    acc[0, j] += s * b[l, j]
            for j in range(n):
                out[i, j] = acc[0, j]
        elif order == 1:
            for l in range(full):
                s = a[i, l]
                q = l % 4
                for j in range(n):
                    acc[q, j] += s * b[l, j]
            for l in range(full, k):
                s = a[i, l]
                for j in range(n):
                    acc[0, j] += s * b[l, j]
            for j in range(n):
                out[i, j] = ((acc[0, j] + acc[1, j]) + acc[2, j]) + acc[3, j]
        else:
            for l in range(main):
                s = a[i, l]
                e = l % 64
                for j in range(n):
                    acc[e, j] += s * b[l, j]
            tail[:, :] = 0
            for l in range(main, vec_end):
                s = a[i, l]
                q = (l - main) % 8
                for j in range(n):
                    tail[q, j] += s * b[l, j]
            for j in range(n):
                total = np.float32(0)
                if main:
                    for q in range(8):  # the 8 registers folded pairwise: (r, r + 4), (r, r + 2), (0, 1)
                        r0 = acc[q, j] + acc[32 + q, j]
                        r1 = acc[8 + q, j] + acc[40 + q, j]
                        r2 = acc[16 + q, j] + acc[48 + q, j]
                        r3 = acc[24 + q, j] + acc[56 + q, j]
                        lane[q] = (r0 + r2) + (r1 + r3)
                    total = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]))
                total = total + (((tail[0, j] + tail[4, j]) + (tail[2, j] + tail[6, j]))
                                 + ((tail[1, j] + tail[5, j]) + (tail[3, j] + tail[7, j])))
                for l in range(vec_end, k):
                    total = total + a[i, l] * b[l, j]
                out[i, j] = total


_SEQUENTIAL, _INTERLEAVED, _AVX2 = 0, 1, 2  # the summation orders (``order`` of the kernel)
_NP_SUMS = {_SEQUENTIAL: _np_sum_sequential, _INTERLEAVED: _np_sum_interleaved, _AVX2: _np_sum_avx2}
_NP_ROWS_BUDGET = 1 << 22  # float32 elements of the NumPy twins' (64, rows, n) accumulators: 16 MiB


def _sum_products(a: np.ndarray, b: np.ndarray, order: int) -> np.ndarray:
    """``a @ b`` of float32 matrices holding bfloat16 values, summed in float32 in PyTorch's
    ``order`` (see the comment above): compiled when Numba is there, else the NumPy twin a
    block of rows at a time (its accumulators hold 64 partial products per output)."""
    if accel.available():
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        _sum_products_kernel(a, np.ascontiguousarray(b), out, order)
        return out
    rows = max(1, _NP_ROWS_BUDGET // (64 * max(b.shape[1], 1)))
    fn = _NP_SUMS[order]
    if a.shape[0] <= rows:
        return fn(a, b)
    return np.concatenate([fn(a[r:r + rows], b) for r in range(0, a.shape[0], rows)], axis=0)


def _addmm(c_: np.ndarray, dot: np.ndarray, beta: float, alpha: float) -> np.ndarray:
    """bfloat16 ``torch.addmm(c_, ., ., beta=beta, alpha=alpha)`` from the float32 ``dot``:
    ``beta * c_ + alpha * dot`` compiled (GCC, -mfma) to ``fma(beta, c_, alpha * dot)``
    in float32, rounded once to bfloat16."""
    scaled = np.float32(alpha) * dot
    if beta == 0.0:
        return round_bfloat16(scaled)
    return round_bfloat16(_fma_float32(np.float32(beta), c_, scaled))


def _fma_float32(x: np.float32, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """float32 ``fma(x, y, z)``, one rounding: ``x * y`` is exact in float64 (``y`` is
    bfloat16), the sum is rounded to odd in float64 (TwoSum error), then to float32."""
    p = np.float64(x) * y.astype(np.float64)
    z = z.astype(np.float64)
    s = p + z
    bb = s - p
    err = (p - (s - bb)) + (z - bb)
    even = (s.view(np.uint64) & np.uint64(1)) == 0
    fix = (err != 0) & even & np.isfinite(s)
    if fix.any():
        s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def _norm_bfloat16(v: np.ndarray) -> np.ndarray:
    """``torch.linalg.vector_norm`` of bfloat16 values ``v`` (memory order), as ATen's
    vectorised last-dimension kernel: blocks of 16 squares into 8 float32 lanes
    (elements ``l`` then ``l + 8`` into lane ``l``), the lanes summed in order, the
    rest added one by one; the float32 square root rounded to bfloat16."""
    sq = v.astype(np.float32) ** 2
    full = sq.size - sq.size % 16
    lanes = np.add.accumulate(sq[:full].reshape(-1, 8), axis=0)[-1] if full else np.zeros(8, np.float32)
    total = lanes[0]
    for t in list(lanes[1:]) + list(sq[full:]):
        total = np.float32(total + t)
    return round_bfloat16(np.sqrt(np.float32(total)))


def _adjust_lr(lr: float, adjust_lr_fn: str | None, shape: tuple) -> float:
    A, B = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, A / B))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(A, B))
    else:
        ratio = 1.0
    return lr * ratio


class Muon(Optimizer):
    r"""Muon, as ``torch.optim.Muon`` (PyTorch 2.9+): only 2-D parameters.

    With gradient :math:`G_t`, momentum :math:`\mu`, Newton–Schulz coefficients
    ``(a, b, c)`` and ``ns_steps`` :math:`k`::

        B_t     <- mu B_{t-1} + (1 - mu) G_t                 (lerp; state ``momentum_buffer``)
        B~_t    <- G_t + mu (B_t - G_t)  (nesterov)   or   B_t
        O_t     <- NS_k(B~_t / max(||B~_t||_F, eps))       X <- a X + (b A + c A^2) X,  A = X X^T
        theta   <- theta (1 - lr * lambda)                   (decoupled weight decay)
        theta_t <- theta - lr' O_t,   lr' = lr sqrt(max(1, A/B))          ("original", default)
                                      lr' = 0.2 lr sqrt(max(A, B))        ("match_rms_adamw")

    for a parameter of shape ``(A, B)``. The iteration runs in bfloat16 like
    PyTorch's (emulated, see ``round_bfloat16``). Keller Jordan, "Muon: An
    optimizer for hidden layers in neural networks" (2024); Liu et al., "Muon
    is Scalable for LLM Training" (2025). Use another optimizer (AdamW) for
    biases, norms and embeddings. State per parameter: ``momentum_buffer``.
    """

    _state_keys = ("momentum_buffer",)

    def __init__(self, params: Any, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple = (DEFAULT_A, DEFAULT_B, DEFAULT_C), eps: float = EPS,
                 ns_steps: int = DEFAULT_NS_STEPS, adjust_lr_fn: str | None = None) -> None:
        _check(_finite_nonneg(lr), f"Learning rate should be >= 0 but is: {lr}")  # lr may be a schedule
        _check(0.0 <= momentum, f"momentum should be >= 0 but is: {momentum}")
        _check(0.0 <= weight_decay, f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=tuple(ns_coefficients), eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only supports 2D parameters whereas we found a parameter with size: "
                                     f"{tuple(p.shape)}")

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, wd, momentum = float(group["lr"]), float(group["weight_decay"]), float(group["momentum"])
        buf = u.state["momentum_buffer"]
        _fused_lerp(buf, u.grad, 1 - momentum)
        if group["nesterov"]:
            upd = u.grad.copy()
            _fused_lerp(upd, buf, momentum)
        else:
            upd = buf
        for theta, m in zip(u.split(u.param), u.split(upd)):
            o = zeropower_via_newtonschulz(m, group["ns_coefficients"], group["ns_steps"], group["eps"])
            adjusted_lr = _adjust_lr(lr, group["adjust_lr_fn"], theta.shape)
            weight_decay(theta, None, wd, lr=lr, decoupled=True)
            _fused_add(theta, -adjusted_lr, o)


def _fused_lerp(a: np.ndarray, b: np.ndarray, w: float) -> None:
    """``a.lerp_(b, w)`` rounded as PyTorch's CPU kernel (fused multiply-adds): Muon's
    bfloat16 rounding turns 1-ulp differences in its input into 2^-8 ones."""
    wide = np.float64 if a.dtype == np.float32 else np.longdouble
    t = a.dtype.type
    diff = (b - a).astype(wide)
    if abs(w) < 0.5:
        np.copyto(a, (a.astype(wide) + wide(t(w)) * diff).astype(a.dtype))
    else:
        np.copyto(a, (b.astype(wide) - diff * wide(t(1) - t(w))).astype(a.dtype))


def _fused_add(theta: np.ndarray, alpha: float, o: np.ndarray) -> None:
    """``theta += alpha * o`` rounded once, as PyTorch's ``add_(o, alpha=...)`` (a fused
    multiply-add on CPU). A bfloat16 ``o`` times a ``theta``-dtype ``alpha`` is exact
    in the next wider type, so the sum there rounds like the FMA (bar double rounding)."""
    wide = np.float64 if theta.dtype == np.float32 else np.longdouble
    a = wide(theta.dtype.type(alpha))
    np.copyto(theta, (theta.astype(wide) + a * o.astype(wide)).astype(theta.dtype))
