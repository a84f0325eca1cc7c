"""The Adagrad family (per-coordinate step sizes from squared gradients):
Adagrad, Adadelta, RMSprop."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, StepArrays, _check, _finite_nonneg, _no_differentiable, lerp_

__all__ = ["Adagrad", "Adadelta", "RMSprop"]


class Adagrad(Optimizer):
    r"""Adagrad, as ``torch.optim.Adagrad``.

    With ``state_sum`` starting at ``initial_accumulator_value``::

        g_t   <- g_t + lambda * theta_{t-1}                    (if lambda != 0)
        gamma_t <- gamma / (1 + (t - 1) * eta)                 (eta = lr_decay)
        s_t   <- s_{t-1} + g_t^2
        theta_t <- theta_{t-1} - gamma_t * g_t / (sqrt(s_t) + eps)

    Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization" (JMLR 2011). State per parameter (created at
    construction, as PyTorch): ``step``, ``sum``.
    """

    _state_keys = ("step", "sum")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        _check(_finite_nonneg(lr_decay), f"Invalid lr_decay value: {lr_decay}")
        _check(_finite_nonneg(weight_decay), f"Invalid weight_decay value: {weight_decay}")
        _check(_finite_nonneg(initial_accumulator_value),
               f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        _check(_finite_nonneg(eps), f"Invalid epsilon value: {eps}")
        _no_differentiable("Adagrad", differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        self._initialize_all()

    def _state_spec(self, group: dict) -> list:
        return [("step", "scalar", 0.0), ("sum", "buffer", float(group["initial_accumulator_value"]))]

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, lr_decay, eps = float(group["lr"]), float(group["lr_decay"]), float(group["eps"])
        p, state_sum = u.param, u.state["sum"]
        u.scalars["step"] += 1
        step = u.scalar("step")
        g = u.grad_with_decay(group)
        clr = lr / (1 + (step - 1) * lr_decay)
        state_sum += g * g
        std = np.sqrt(state_sum)
        std += eps
        p += u.expand(-clr) * g / std


class Adadelta(Optimizer):
    r"""Adadelta, as ``torch.optim.Adadelta``.

    ::

        g_t   <- g_t + lambda * theta_{t-1}                    (if lambda != 0)
        v_t   <- rho * v_{t-1} + (1 - rho) * g_t^2
        dx_t  <- sqrt(u_{t-1} + eps) / sqrt(v_t + eps) * g_t
        u_t   <- rho * u_{t-1} + (1 - rho) * dx_t^2
        theta_t <- theta_{t-1} - gamma * dx_t

    Zeiler, "ADADELTA: An Adaptive Learning Rate Method" (arXiv:1212.5701, 2012).
    State per parameter: ``step``, ``square_avg`` (v), ``acc_delta`` (u).
    """

    _state_keys = ("step", "square_avg", "acc_delta")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        _check(_finite_nonneg(rho) and rho <= 1.0, f"Invalid rho value: {rho}")
        _check(_finite_nonneg(eps), f"Invalid epsilon value: {eps}")
        _check(_finite_nonneg(weight_decay), f"Invalid weight_decay value: {weight_decay}")
        _no_differentiable("Adadelta", differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, rho, eps = float(group["lr"]), float(group["rho"]), float(group["eps"])
        p, square_avg, acc_delta = u.param, u.state["square_avg"], u.state["acc_delta"]
        u.scalars["step"] += 1
        g = u.grad_with_decay(group)
        square_avg *= rho
        square_avg += (1 - rho) * g * g
        std = square_avg + eps
        np.sqrt(std, out=std)
        delta = acc_delta + eps
        np.sqrt(delta, out=delta)
        delta /= std
        delta *= g
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        p += -lr * delta


class RMSprop(Optimizer):
    r"""RMSprop, as ``torch.optim.RMSprop``.

    ::

        g_t   <- g_t + lambda * theta_{t-1}                    (if lambda != 0)
        v_t   <- alpha * v_{t-1} + (1 - alpha) * g_t^2
        a_t   <- alpha * a_{t-1} + (1 - alpha) * g_t           (centered)
        d_t   <- sqrt(v_t - a_t^2) + eps   (centered)   or   sqrt(v_t) + eps
        b_t   <- mu * b_{t-1} + g_t / d_t,   theta_t <- theta_{t-1} - gamma * b_t   (momentum mu > 0)
        theta_t <- theta_{t-1} - gamma * g_t / d_t                                  (otherwise)

    Hinton, "Neural Networks for Machine Learning", lecture 6e (2012); centered
    version: Graves, "Generating Sequences With Recurrent Neural Networks"
    (arXiv:1308.0850, 2013). State per parameter: ``step``, ``square_avg``
    (+ ``momentum_buffer``, ``grad_avg``).
    """

    _state_keys = ("step", "square_avg", "momentum_buffer", "grad_avg")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        _check(_finite_nonneg(eps), f"Invalid epsilon value: {eps}")
        _check(_finite_nonneg(momentum), f"Invalid momentum value: {momentum}")
        _check(_finite_nonneg(weight_decay), f"Invalid weight_decay value: {weight_decay}")
        _check(_finite_nonneg(alpha), f"Invalid alpha value: {alpha}")
        _no_differentiable("RMSprop", differentiable)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        spec = [("step", "scalar", 0.0), ("square_avg", "buffer", 0.0)]
        if group["momentum"] > 0:
            spec.append(("momentum_buffer", "buffer", 0.0))
        if group["centered"]:
            spec.append(("grad_avg", "buffer", 0.0))
        return spec

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
        momentum = float(group["momentum"])
        p, square_avg = u.param, u.state["square_avg"]
        u.scalars["step"] += 1
        g = u.grad_with_decay(group)
        square_avg *= alpha
        square_avg += (1 - alpha) * g * g
        if group["centered"]:
            grad_avg = u.state["grad_avg"]
            lerp_(grad_avg, g, 1 - alpha)
            avg = square_avg + -1 * grad_avg * grad_avg
            np.sqrt(avg, out=avg)
        else:
            avg = np.sqrt(square_avg)
        avg += eps
        if momentum > 0:
            buf = u.state["momentum_buffer"]
            buf *= momentum
            buf += g / avg
            p += -lr * buf
        else:
            p += -lr * g / avg
