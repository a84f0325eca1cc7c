"""LAMB: Adam steps rescaled per parameter by a layer-wise trust ratio."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _check_betas, _finite_nonneg, weight_decay

__all__ = ["LAMB"]


def _trust_ratio(u: StepArrays, param: np.ndarray, update: np.ndarray) -> np.ndarray:
    """Per-parameter ``||param|| / ||update||`` (1 where either norm is 0), shape ``(n_params,)``."""
    w_norm = np.sqrt(u.segment_sum(param * param))
    r_norm = np.sqrt(u.segment_sum(update * update))
    ok = (w_norm > 0) & (r_norm > 0)
    return np.where(ok, w_norm / np.where(ok, r_norm, 1), 1.0)


class LAMB(Optimizer):
    r"""LAMB (Layer-wise Adaptive Moments for Batch training).

    With gradient :math:`g_t` (negated when ``maximize``), learning rate
    :math:`\gamma`, weight decay :math:`\lambda`, per parameter tensor::

        m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   <- beta2 * v_{t-1} + (1 - beta2) * g_t^2
        m^_t  <- m_t / (1 - beta1^t),  v^_t <- v_t / (1 - beta2^t)      (if bias_correction)
        r_t   <- m^_t / (sqrt(v^_t) + eps) + lambda * theta_{t-1}
        q_t   <- ||theta_{t-1}|| / ||r_t||      (1 when either norm is 0; min(q_t, trust_clip) if given)
        theta_t <- theta_{t-1} - gamma * q_t * r_t

    You et al., "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes" (ICLR 2020), Algorithm 2, with the identity scaling function
    (``trust_clip`` bounds the ratio from above). The norms are per parameter,
    computed on the flat buffers with ``segment_sum``.
    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, *, bias_correction: bool = True, trust_clip: float | None = None,
                 maximize: bool = False) -> None:
        _check(_finite_nonneg(lr), f"LAMB: invalid learning rate {lr!r}: expected a number >= 0")
        _check(_finite_nonneg(eps), f"LAMB: invalid epsilon {eps!r}: expected >= 0")
        betas = _check_betas("LAMB", betas)
        _check(_finite_nonneg(weight_decay), f"LAMB: invalid weight_decay {weight_decay!r}: expected >= 0")
        _check(trust_clip is None or (_finite_nonneg(trust_clip) and float(trust_clip) > 0),
               f"LAMB: invalid trust_clip {trust_clip!r}: expected None or a number > 0")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction,
                        trust_clip=trust_clip, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        u.scalars["step"] += 1
        step = u.scalar("step")
        g = -u.grad if group["maximize"] else u.grad
        m, v = u.state["exp_avg"], u.state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        if group["bias_correction"]:
            bc1 = u.expand(1 - beta1 ** step)
            bc2 = u.expand(1 - beta2 ** step)
            r = (m / bc1) / (np.sqrt(v / bc2) + eps)
        else:
            r = m / (np.sqrt(v) + eps)
        r = weight_decay(u.param, r, wd, inplace=True)
        ratio = _trust_ratio(u, u.param, r)
        if group["trust_clip"] is not None:
            ratio = np.minimum(ratio, float(group["trust_clip"]))
        u.param -= np.repeat((lr * ratio).astype(u.dtype), u.sizes) * r
