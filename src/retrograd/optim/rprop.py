"""Rprop: resilient backpropagation (sign-based, per-element adaptive step sizes)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _finite_nonneg, _no_differentiable

__all__ = ["Rprop"]


class Rprop(Optimizer):
    r"""Rprop, as ``torch.optim.Rprop``.

    With gradient :math:`g_t` (negated when ``maximize``), per-element step sizes
    :math:`\eta_t` (initially ``lr``), ``etas = (eta-, eta+)`` and
    ``step_sizes = (Gamma_min, Gamma_max)``::

        s       <- sign(g_t * g_{t-1})
        eta_t   <- clip(eta_{t-1} * (eta+ if s > 0, eta- if s < 0, 1 if s == 0), Gamma_min, Gamma_max)
        g_t     <- 0 where s < 0                       (the sign flipped: skip this element once)
        theta_t <- theta_{t-1} - eta_t * sign(g_t)
        g_{t-1} <- g_t                                 (state ``prev``)

    Riedmiller & Braun, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm" (ICNN 1993).
    State per parameter: ``step``, ``prev``, ``step_size``.
    """

    _state_keys = ("step", "prev", "step_size")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-2, etas: tuple = (0.5, 1.2), step_sizes: tuple = (1e-6, 50),
                 *, capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        etas, step_sizes = tuple(etas), tuple(step_sizes)
        _check(0.0 < etas[0] < 1.0 < etas[1], f"Invalid eta values: {etas[0]}, {etas[1]}")
        _no_differentiable("Rprop", differentiable)
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("step", "scalar", 0.0), ("prev", "buffer", 0.0), ("step_size", "buffer", float(group["lr"]))]

    def _update(self, group: dict, u: StepArrays) -> None:
        etaminus, etaplus = (float(e) for e in group["etas"])
        smin, smax = (float(s) for s in group["step_sizes"])
        p, prev, step_size = u.param, u.state["prev"], u.state["step_size"]
        u.scalars["step"] += 1
        fresh = u.scalars["step"] == 1  # state created now: step sizes start at the current lr
        if fresh.any():
            step_size[np.repeat(fresh, u.sizes)] = float(group["lr"])
        g = -u.grad if group["maximize"] else u.grad
        s = np.sign(g * prev)
        t = u.dtype.type
        factor = np.where(s > 0, t(etaplus), np.where(s < 0, t(etaminus), t(1)))
        step_size *= factor
        np.clip(step_size, smin, smax, out=step_size)
        g = np.where(s < 0, t(0), g)
        p -= np.sign(g) * step_size
        np.copyto(prev, g)
