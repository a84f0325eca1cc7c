"""Stochastic gradient descent, with momentum and Nesterov momentum."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _finite_nonneg, _no_differentiable, bf16, bf16_alpha

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    With gradient :math:`g_t` (negated when ``maximize``), learning rate
    :math:`\gamma`, weight decay :math:`\lambda`, momentum :math:`\mu`,
    dampening :math:`\tau`::

        g_t  <- g_t + lambda * theta_{t-1}                  (if lambda != 0)
        b_t  <- g_t                                        (first step)
        b_t  <- mu * b_{t-1} + (1 - tau) * g_t             (later steps, if mu != 0)
        g_t  <- g_t + mu * b_t   (nesterov)   or   g_t <- b_t
        theta_t <- theta_{t-1} - gamma * g_t

    Nesterov momentum follows Sutskever et al., "On the importance of
    initialization and momentum in deep learning" (ICML 2013), in PyTorch's
    formulation. State per parameter: ``momentum_buffer`` (when ``momentum != 0``).
    """

    _state_keys = ("momentum_buffer",)

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        _check(_finite_nonneg(momentum), f"Invalid momentum value: {momentum}")
        _check(_finite_nonneg(weight_decay), f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        _no_differentiable("SGD", differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("momentum_buffer", "buffer", 0.0)] if group["momentum"] != 0 else []

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, momentum = float(group["lr"]), float(group["momentum"])
        dampening = float(group["dampening"])
        p = u.param
        g = u.grad_with_decay(group)
        if momentum != 0:
            buf = u.state["momentum_buffer"]
            if u.fresh is True:
                np.copyto(buf, g)  # first step: the buffer starts at the gradient
            else:
                later = buf * momentum
                later += (1 - dampening) * g
                np.copyto(buf, later if u.fresh is None else np.where(u.fresh, g, later))
            g = g + momentum * buf if group["nesterov"] else buf
        p += -lr * g

    def _update_bfloat16(self, group: dict, u: StepArrays) -> bool:
        """PyTorch's single-tensor SGD on bfloat16 parameters, op by op (float32 arrays, each op rounded)."""
        lr, momentum = float(group["lr"]), float(group["momentum"])
        wd, p = float(group["weight_decay"]), u.param
        g = -u.grad if group["maximize"] else u.grad
        if wd != 0:
            g = bf16(g + bf16_alpha(wd) * p)  # grad.add(param, alpha=wd)
        if momentum != 0:
            buf = u.state["momentum_buffer"]
            later = bf16(bf16(buf * np.float32(momentum)) + bf16_alpha(1 - float(group["dampening"])) * g)
            np.copyto(buf, g if u.fresh is True else later if u.fresh is None else np.where(u.fresh, g, later))
            g = bf16(g + bf16_alpha(momentum) * buf) if group["nesterov"] else buf
        np.copyto(p, bf16(p + bf16_alpha(-lr) * g))  # param.add_(grad, alpha=-lr)
        return True
