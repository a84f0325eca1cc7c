"""Lion: the sign of an interpolated momentum, found by program search."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _check_betas, _finite_nonneg

__all__ = ["Lion"]


class Lion(Optimizer):
    r"""Lion (EvoLved Sign Momentum).

    With gradient :math:`g_t` (negated when ``maximize``), learning rate
    :math:`\gamma`, decoupled weight decay :math:`\lambda`, ``betas = (beta1, beta2)``::

        c_t     <- beta1 * m_{t-1} + (1 - beta1) * g_t
        theta   <- theta_{t-1} * (1 - gamma * lambda)
        theta_t <- theta - gamma * sign(c_t)
        m_t     <- beta2 * m_{t-1} + (1 - beta2) * g_t

    Chen et al., "Symbolic Discovery of Optimization Algorithms" (NeurIPS 2023).
    Every coordinate moves by exactly ``lr`` (``sign(0) = 0``), so ``lr`` is
    usually 3-10x smaller than AdamW's and ``weight_decay`` 3-10x larger.
    State per parameter: ``exp_avg`` (:math:`m`, starting at zero).
    """

    _state_keys = ("exp_avg",)

    def __init__(self, params: Any, lr: float = 1e-4, betas: tuple = (0.9, 0.99), weight_decay: float = 0.0,
                 *, maximize: bool = False) -> None:
        _check(_finite_nonneg(lr), f"Lion: invalid learning rate {lr!r}: expected a number >= 0")
        betas = _check_betas("Lion", betas, closed=True)
        _check(_finite_nonneg(weight_decay), f"Lion: invalid weight_decay {weight_decay!r}: expected >= 0")
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, group: dict, u: StepArrays) -> None:
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        g = u.grad_with_decay(group, lr, decoupled=True)  # c does not read the parameter
        m = u.state["exp_avg"]
        c = m * beta1
        c += (1 - beta1) * g
        u.param -= lr * np.sign(c)
        m *= beta2
        m += (1 - beta2) * g
