"""Muon: momentum orthogonalised by a Newton–Schulz iteration, for 2-D parameters."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check

__all__ = ["Muon"]

EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5


def round_bfloat16(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to bfloat16 (round to nearest even), returned as float32.
    PyTorch runs Muon's Newton–Schulz iteration in bfloat16; NumPy has no
    bfloat16, so each bfloat16 result is emulated as float32 arithmetic rounded here."""
    if x.dtype == np.float64:  # one rounding straight from float64, as a float64 -> bfloat16 cast
        bits = np.ascontiguousarray(x).view(np.uint64)
        bits = (bits + (((bits >> np.uint64(45)) & np.uint64(1)) + np.uint64((1 << 44) - 1))) \
            & np.uint64(~((1 << 45) - 1) & 0xFFFFFFFFFFFFFFFF)
        return bits.view(np.float64).astype(np.float32)
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = np.isnan(x)
    bits = (bits + (((bits >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF))) & np.uint32(0xFFFF0000)
    out = bits.view(np.float32)
    if nan.any():
        out = np.where(nan, np.float32(np.nan), out)
    return out


def zeropower_via_newtonschulz(grad: np.ndarray, ns_coefficients: tuple = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                               ns_steps: int = DEFAULT_NS_STEPS, eps: float = EPS) -> np.ndarray:
    """Approximately orthogonalise the matrix ``grad`` (``U S V^T -> U S' V^T``, S' ~ 1)
    with ``ns_steps`` quintic Newton–Schulz iterations ``X <- a X + (b A + c A^2) X``,
    ``A = X X^T``, in emulated bfloat16 as PyTorch. Returns float32 holding bfloat16 values."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = (float(v) for v in ns_coefficients)
    x = round_bfloat16(grad)
    tall = grad.shape[0] > grad.shape[1]
    if tall:
        x = np.ascontiguousarray(x.T)
    norm = round_bfloat16(np.sqrt(np.sum(x * x, dtype=np.float32)))
    norm = np.maximum(norm, round_bfloat16(np.array(eps, np.float32)))
    x = round_bfloat16(x / norm)
    for _ in range(ns_steps):
        gram = round_bfloat16(_mm(x, x.T))
        gram_update = _addmm(gram, gram, gram, b, c)
        x = _addmm(x, gram_update, x, a, 1.0)
    return x.T if tall else x


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # products of bfloat16 values are exact in float64: the float64 sum is (nearly)
    # the exact one, which PyTorch's float32 accumulation also gives for small matrices
    return a.astype(np.float64) @ b.astype(np.float64)


def _addmm(c_: np.ndarray, a: np.ndarray, b: np.ndarray, beta: float, alpha: float) -> np.ndarray:
    """bfloat16 ``torch.addmm(c_, a, b, beta=beta, alpha=alpha)``: ``beta * c_`` in float32,
    plus ``alpha * (a @ b)``, rounded once to bfloat16."""
    bc = (np.float32(beta) * c_.astype(np.float32)).astype(np.float64)
    return round_bfloat16(bc + alpha * _mm(a, b))


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
        _check(0.0 <= lr, f"Learning rate should be >= 0 but is: {lr}")
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

    def _state_spec(self, group: dict) -> list:
        return [("momentum_buffer", "buffer", 0.0)]

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
            theta *= 1 - lr * wd
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
