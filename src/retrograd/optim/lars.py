"""LARS: SGD with momentum and a layer-wise local learning rate."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _finite_nonneg, required, weight_decay

__all__ = ["LARS"]


class LARS(Optimizer):
    r"""LARS (Layer-wise Adaptive Rate Scaling).

    With gradient :math:`g_t` (negated when ``maximize``), learning rate
    :math:`\gamma`, trust coefficient :math:`\eta`, weight decay :math:`\lambda`,
    momentum :math:`\mu`, per parameter tensor::

        q_t   <- eta * ||theta|| / (||g_t|| + lambda * ||theta|| + eps)   (1 when ||theta|| or ||g_t|| is 0)
        d_t   <- q_t * (g_t + lambda * theta_{t-1})
        b_t   <- d_t (first step),   b_t <- mu * b_{t-1} + d_t (later)    (if mu != 0)
        d_t   <- d_t + mu * b_t (nesterov)   or   d_t <- b_t
        theta_t <- theta_{t-1} - gamma * d_t

    With ``exclude_1d`` (default), parameters of at most one dimension
    (biases, normalisation scales) skip both the adaptation and the weight
    decay: ``d_t = g_t``, as in the large-batch ResNet recipes. You, Gitman &
    Ginsburg, "Large Batch Training of Convolutional Networks" (2017), in the
    formulation of timm's ``Lars`` (momentum on the scaled gradient, SGD's
    momentum convention). Norms are per parameter, via ``segment_sum`` on the
    flat buffers. State per parameter: ``momentum_buffer`` (when ``momentum != 0``).
    """

    _state_keys = ("momentum_buffer",)

    def __init__(self, params: Any, lr: float = required, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, nesterov: bool = False, *,
                 exclude_1d: bool = True, maximize: bool = False) -> None:
        _check(lr is required or _finite_nonneg(lr), f"LARS: invalid learning rate {lr!r}: expected a number >= 0")
        _check(_finite_nonneg(momentum), f"LARS: invalid momentum {momentum!r}: expected >= 0")
        _check(_finite_nonneg(weight_decay), f"LARS: invalid weight_decay {weight_decay!r}: expected >= 0")
        _check(_finite_nonneg(trust_coefficient) and float(trust_coefficient) > 0,
               f"LARS: invalid trust_coefficient {trust_coefficient!r}: expected a number > 0")
        _check(_finite_nonneg(eps), f"LARS: invalid eps {eps!r}: expected >= 0")
        if nesterov and momentum <= 0:
            raise ValueError("LARS: Nesterov momentum requires a momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        eps=eps, nesterov=nesterov, exclude_1d=exclude_1d, maximize=maximize)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("momentum_buffer", "buffer", 0.0)] if group["momentum"] != 0 else []

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, momentum, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        eta, eps = float(group["trust_coefficient"]), float(group["eps"])
        p = u.param
        g = -u.grad if group["maximize"] else u.grad
        adapt = np.array([len(s) > 1 or not group["exclude_1d"] for s in u.shapes], dtype=bool)
        if adapt.any():
            w_norm = np.sqrt(u.segment_sum(p * p))
            g_norm = np.sqrt(u.segment_sum(g * g))
            ok = adapt & (w_norm > 0) & (g_norm > 0)
            q = np.where(ok, eta * w_norm / np.where(ok, g_norm + wd * w_norm + eps, 1), 1.0)
            decay = np.where(adapt, wd, 0.0)
            d = np.repeat(q.astype(u.dtype), u.sizes) * weight_decay(p, g, np.repeat(decay.astype(u.dtype), u.sizes))
        else:
            d = g
        if momentum != 0:
            buf = u.state["momentum_buffer"]
            if u.fresh is True:
                np.copyto(buf, d)
            else:
                later = buf * momentum
                later += d
                np.copyto(buf, later if u.fresh is None else np.where(u.fresh, d, later))
            d = d + momentum * buf if group["nesterov"] else buf
        p -= lr * d
