"""ASGD: averaged stochastic gradient descent."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _finite_nonneg, _no_differentiable

__all__ = ["ASGD"]


class ASGD(Optimizer):
    r"""Averaged SGD, as ``torch.optim.ASGD``.

    With gradient :math:`g_t` (negated when ``maximize``), step size
    :math:`\eta_t` (state ``eta``, initially ``lr``), averaging weight
    :math:`\mu_t` (state ``mu``, initially 1) and average :math:`a_t` (state ``ax``)::

        g_t     <- g_t + lambda_wd * theta_{t-1}              (if weight_decay != 0)
        theta_t <- theta_{t-1} * (1 - lambd * eta_t) - eta_t * g_t
        a_t     <- theta_t                      if mu_t == 1
                   a_{t-1} + mu_t (theta_t - a_{t-1})  otherwise
        eta_{t+1} <- lr / (1 + lambd * lr * t)^alpha
        mu_{t+1}  <- 1 / max(1, t - t0)

    Polyak & Juditsky, "Acceleration of stochastic approximation by averaging"
    (SIAM J. Control Optim. 1992). The averaged parameters are ``state[p]["ax"]``.
    State per parameter: ``step``, ``eta``, ``mu``, ``ax``.
    """

    _state_keys = ("step", "eta", "mu", "ax")
    _scalar_keys = ("step", "eta", "mu")

    def __init__(self, params: Any, lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
                 weight_decay: float = 0, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        _check(_finite_nonneg(weight_decay), f"Invalid weight_decay value: {weight_decay}")
        _no_differentiable("ASGD", differentiable)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("step", "scalar", 0.0), ("eta", "scalar", float(group["lr"])), ("mu", "scalar", 1.0),
                ("ax", "buffer", 0.0)]

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, lambd, alpha = float(group["lr"]), float(group["lambd"]), float(group["alpha"])
        t0 = float(group["t0"])
        p, ax = u.param, u.state["ax"]
        steps = u.scalars["step"]
        fresh = steps == 0  # state created now: eta starts at the current lr, mu at 1
        if fresh.any():
            u.scalars["eta"][fresh] = lr
            u.scalars["mu"][fresh] = 1.0
        steps += 1
        g = u.grad_with_decay(group)
        eta = u.scalar("eta")
        p *= u.expand(1 - lambd * eta)
        p += u.expand(-eta) * g
        mu = u.scalar("mu")
        if isinstance(mu, float):
            if mu != 1:
                ax += (p - ax) * u.dtype.type(mu)
            else:
                np.copyto(ax, p)
        else:
            copy = np.repeat(mu == 1, u.sizes)
            np.copyto(ax, np.where(copy, p, ax + (p - ax) * u.expand(mu)))
        step = u.scalar("step")
        if isinstance(step, float):
            u.scalars["eta"][...] = lr / ((1 + lambd * lr * step) ** alpha)
            u.scalars["mu"][...] = 1 / max(1, step - t0)
        else:
            u.scalars["eta"][...] = lr / ((1 + lambd * lr * step) ** alpha)
            u.scalars["mu"][...] = 1 / np.maximum(1, step - t0)
