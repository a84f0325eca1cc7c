"""Fused optimizer updates: a whole step in one compiled pass over the flat buffers.

The NumPy form of Adam's update is about ten whole-array passes, so a large step
is bound by memory traffic and runs on one core. With Numba installed
(``pip install 'retrograd[fast]'``, see ``retrograd.accel``) the update is one
loop that reads every element of ``param``, ``grad`` and the state once and
writes them once, split over threads: what ``torch.optim.Adam(fused=True)``
does. It rounds exactly as the NumPy update (``Adam._math``), so both give
bitwise identical results; ``fused=False`` on an optimizer selects the NumPy one.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import accel

__all__ = ["adam_", "usable"]


@accel.jit
def _adam_kernel(p, g, m, v, vmax, l2, amsgrad, sign, pscale, wd, omb1, beta2, omb2, step_size, bc2_sqrt, eps):
    # the loop-invariant branches are hoisted out by LLVM, which then vectorises each variant
    for i in range(p.shape[0]):
        gi = g[i] * sign
        pi = p[i] * pscale
        if l2:
            gi = gi + wd * pi
        mi = m[i]
        mi = mi + omb1 * (gi - mi)
        m[i] = mi
        vi = v[i] * beta2 + omb2 * gi * gi
        v[i] = vi
        if amsgrad:
            vm = vmax[i]
            if vi > vm or vi != vi:  # np.maximum: NaN wins
                vm = vi
            vmax[i] = vm
            vi = vm
        p[i] = pi + step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)


def adam_(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
          max_exp_avg_sq: np.ndarray | None, *, beta1: float, beta2: float, step_size: float,
          bias_correction2_sqrt: float, eps: float, weight_decay: float, decoupled_scale: float,
          maximize: bool) -> None:
    """Adam's update in place on flat contiguous arrays of one float dtype, rounded
    exactly as ``Adam._math``: ``weight_decay`` is the L2 coefficient (0: none),
    ``decoupled_scale`` the factor ``1 - lr * lambda`` of decoupled decay (1: none),
    ``step_size`` is ``-lr / (1 - beta1^t)``. Needs ``1 - beta1 < 0.5`` (PyTorch's
    lerp switches formula at 0.5; the caller keeps the NumPy path otherwise)."""
    t = param.dtype.type
    amsgrad = max_exp_avg_sq is not None
    vmax = max_exp_avg_sq if amsgrad else param[:0]
    # the scalars that stay from step to step, made once (a NumPy scalar costs more than the dict lookup)
    key = (t, weight_decay, amsgrad, maximize, decoupled_scale, beta1, beta2, eps)
    fixed = _FIXED.get(key)
    if fixed is None:
        if len(_FIXED) >= 64:
            _FIXED.clear()
        fixed = _FIXED[key] = ((weight_decay != 0, amsgrad, t(-1.0 if maximize else 1.0), t(decoupled_scale),
                                t(weight_decay), t(1 - beta1), t(beta2), t(1 - beta2)), t(eps))
    kernel = _adam_kernel.compiled  # the compiled dispatcher once there is one: no _Lazy frame in between
    accel.run_split(_adam_kernel if kernel is None else kernel, [param, grad, exp_avg, exp_avg_sq, vmax],
                    fixed[0] + (t(step_size), t(bias_correction2_sqrt), fixed[1]))


# adam_'s fixed scalars by (dtype, weight_decay, amsgrad, maximize, decoupled_scale, beta1, beta2, eps)
_FIXED: dict = {}


def usable(fused: Any, *arrays: np.ndarray) -> bool:
    """Whether an optimizer group with ``fused`` (None: when possible, False: never)
    runs a fused kernel on these buffers."""
    return fused is not False and accel.handles(*arrays)
