"""The Adam family: Adam, AdamW, Adamax, NAdam, RAdam."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import accel
from . import fused as _fused
from .optimizer import (Optimizer, StepArrays, _check, _finite_nonneg, _no_differentiable, bf16, bf16_alpha, lerp_,
                        weight_decay)

__all__ = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]


def _check_adam_args(lr: Any, betas: Any, eps: Any, weight_decay: Any) -> tuple:
    _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
    _check(_finite_nonneg(eps), f"Invalid epsilon value: {eps}")
    betas = tuple(betas)
    _check(len(betas) == 2, f"betas must be a pair (beta1, beta2), got {betas}")
    _check(_finite_nonneg(betas[0]) and betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
    _check(_finite_nonneg(betas[1]) and betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")
    _check(_finite_nonneg(weight_decay), f"Invalid weight_decay value: {weight_decay}")
    return betas


_CHUNK = 1 << 16  # elements per pass: 256 KiB of float32 per array, so the temporaries stay in cache


def _chunks(n: int):
    """Slices covering ``range(n)`` in cache-sized pieces."""
    for start in range(0, n, _CHUNK):
        yield slice(start, min(start + _CHUNK, n))


def _begin_step(group: dict, u: StepArrays) -> tuple:
    """``lr, eps, beta1, beta2`` of the group and the step count, incremented
    first (as PyTorch): what every update of this family starts with."""
    beta1, beta2 = group["betas"]
    beta1, beta2 = float(beta1), float(beta2)
    u.scalars["step"] += 1
    return float(group["lr"]), float(group["eps"]), beta1, beta2, u.scalar("step")


def _check_fused(name: str, fused: bool | None, foreach: bool | None) -> None:
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and not accel.available():
        raise RuntimeError(f"{name}: fused=True needs Numba, which is not installed (or RETROGRAD_NO_JIT is "
                           f"set); install it with python3 -m pip install 'retrograd[fast]', or leave "
                           f"fused=None: the NumPy update gives the same numbers")


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam`` (L2 ``weight_decay`` added to the gradient,
    or decoupled as AdamW with ``decoupled_weight_decay=True``).

    With gradient :math:`g_t` (negated when ``maximize``)::

        g_t   <- g_t + lambda * theta_{t-1}                    (if lambda != 0, L2)
        theta <- theta * (1 - gamma * lambda)                  (instead, if decoupled)
        m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   <- beta2 * v_{t-1} + (1 - beta2) * g_t^2
        v_t^max <- max(v_{t-1}^max, v_t)                       (amsgrad; used below instead of v_t)
        theta_t <- theta_{t-1} - gamma / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015);
    AMSGrad: Reddi et al., "On the Convergence of Adam and Beyond" (ICLR 2018).
    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq`` (+ ``max_exp_avg_sq``).

    ``fused``: None (default) runs the update as one compiled pass over the flat
    buffers when Numba is installed (``rg.optim.fused``; bitwise the NumPy update),
    False always uses the NumPy update, True requires Numba. ``foreach`` is accepted
    for PyTorch compatibility and has no effect.
    """

    _state_keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        betas = _check_adam_args(lr, betas, eps, weight_decay)
        _no_differentiable(type(self).__name__, differentiable)
        _check_fused(type(self).__name__, fused, foreach)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        spec = [("step", "scalar", 0.0), ("exp_avg", "buffer", 0.0), ("exp_avg_sq", "buffer", 0.0)]
        if group["amsgrad"]:
            spec.append(("max_exp_avg_sq", "buffer", 0.0))
        return spec

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, eps, beta1, beta2, step = _begin_step(group, u)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        vmax = u.state["max_exp_avg_sq"] if group["amsgrad"] else None
        if isinstance(step, float) and beta1 > 0.5 and _fused.usable(group["fused"], u.param):
            wd, decoupled = float(group["weight_decay"]), group["decoupled_weight_decay"]
            _fused.adam_(u.param, u.grad, u.state["exp_avg"], u.state["exp_avg_sq"], vmax, beta1=beta1,
                         beta2=beta2, step_size=-(lr / bias_correction1),
                         bias_correction2_sqrt=bias_correction2 ** 0.5, eps=eps,
                         weight_decay=0.0 if decoupled else wd,
                         decoupled_scale=1 - lr * wd if decoupled and wd != 0 else 1.0,
                         maximize=group["maximize"])
            return
        step_size = u.expand(-(lr / bias_correction1))
        bc2_sqrt = u.expand(bias_correction2 ** 0.5)
        # the same elementwise math over cache-sized chunks: ~10 passes each stay in cache
        for sl in _chunks(u.param.size):
            ss = step_size[sl] if isinstance(step_size, np.ndarray) else step_size
            bc = bc2_sqrt[sl] if isinstance(bc2_sqrt, np.ndarray) else bc2_sqrt
            self._math(group, lr, eps, beta1, beta2, ss, bc, u.param[sl], u.grad[sl], u.state["exp_avg"][sl],
                       u.state["exp_avg_sq"][sl], None if vmax is None else vmax[sl])

    def _update_bfloat16(self, group: dict, u: StepArrays) -> bool:
        """PyTorch's single-tensor Adam/AdamW on bfloat16 parameters, op by op (float32 arrays, each op
        rounded as PyTorch's bfloat16 kernel); parameters at different steps take the general path."""
        steps = u.scalars["step"]
        if not (steps == steps[0]).all():
            return False
        lr, eps, beta1, beta2, step = _begin_step(group, u)
        p, m, v = u.param, u.state["exp_avg"], u.state["exp_avg_sq"]
        g = -u.grad if group["maximize"] else u.grad
        wd = float(group["weight_decay"])
        if wd != 0:
            if group["decoupled_weight_decay"]:
                np.copyto(p, bf16(p * np.float32(1 - lr * wd)))  # param.mul_(1 - lr * wd)
            else:
                g = bf16(g + bf16_alpha(wd) * p)  # grad.add(param, alpha=wd)
        lerp_(m, g, 1 - beta1)
        np.copyto(m, bf16(m))
        # v.mul_(beta2).addcmul_(g, g, value=1 - beta2); addcmul's kernel is fma(value * g, g, v) (exact in float64)
        vg = (np.float32(1 - beta2) * g).astype(np.float64)
        np.copyto(v, bf16((bf16(v * np.float32(beta2)).astype(np.float64) + vg * g).astype(np.float32)))
        if group["amsgrad"]:
            vmax = u.state["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = lr / (1 - beta1 ** step)
        bc2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = bf16(bf16(bf16(np.sqrt(v)) / np.float32(bc2_sqrt)) + bf16_alpha(eps))  # (v.sqrt() / bc2).add_(eps)
        np.copyto(p, bf16(p + np.float32(-step_size) * m / denom))  # param.addcdiv_(m, denom, value=-step_size)
        return True

    @staticmethod
    def _math(group: dict, lr: float, eps: float, beta1: float, beta2: float, step_size: Any, bc2_sqrt: Any,
              p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, vmax: np.ndarray | None) -> None:
        g = weight_decay(p, -g if group["maximize"] else g, float(group["weight_decay"]), lr=lr,
                         decoupled=group["decoupled_weight_decay"])
        lerp_(m, g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        if vmax is not None:
            np.maximum(vmax, v, out=vmax)
            v = vmax
        denom = np.sqrt(v)
        denom /= bc2_sqrt
        denom += eps
        p += step_size * m / denom


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2).

    ::

        theta <- theta * (1 - gamma * lambda)
        m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   <- beta2 * v_{t-1} + (1 - beta2) * g_t^2           (v_t^max with amsgrad)
        theta_t <- theta - gamma / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _fix_group(self, group: dict) -> None:
        group["decoupled_weight_decay"] = True


class Adamax(Optimizer):
    r"""Adamax (Adam with the infinity norm), as ``torch.optim.Adamax``.

    ::

        g_t   <- g_t + lambda * theta_{t-1}                    (if lambda != 0)
        m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t
        u_t   <- max(beta2 * u_{t-1}, |g_t| + eps)
        theta_t <- theta_{t-1} - gamma / (1 - beta1^t) * m_t / u_t

    Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015), section 7.
    State per parameter: ``step``, ``exp_avg``, ``exp_inf``.
    """

    _state_keys = ("step", "exp_avg", "exp_inf")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        betas = _check_adam_args(lr, betas, eps, weight_decay)
        _no_differentiable("Adamax", differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, eps, beta1, beta2, step = _begin_step(group, u)
        p, m, exp_inf = u.param, u.state["exp_avg"], u.state["exp_inf"]
        g = u.grad_with_decay(group)
        lerp_(m, g, 1 - beta1)
        exp_inf *= beta2
        norm = np.abs(g)
        norm += eps
        np.maximum(exp_inf, norm, out=exp_inf)
        clr = lr / (1 - beta1 ** step)
        p += u.expand(-clr) * m / exp_inf


class NAdam(Optimizer):
    r"""NAdam (Adam with Nesterov momentum), as ``torch.optim.NAdam``.

    With the momentum schedule ``mu_t = beta1 * (1 - 0.5 * 0.96^(t * psi))``
    (``psi`` = ``momentum_decay``) and ``prod_t = mu_1 ... mu_t``::

        g_t   <- g_t + lambda * theta_{t-1}                    (L2, or decoupled:
        theta <- theta * (1 - gamma * lambda)                   with decoupled_weight_decay)
        m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   <- beta2 * v_{t-1} + (1 - beta2) * g_t^2
        d_t   <- sqrt(v_t / (1 - beta2^t)) + eps
        theta_t <- theta_{t-1} - gamma (1 - mu_t) / (1 - prod_t) * g_t / d_t
                               - gamma mu_{t+1} / (1 - prod_t mu_{t+1}) * m_t / d_t

    Dozat, "Incorporating Nesterov Momentum into Adam" (ICLR 2016 workshop).
    State per parameter: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    """

    _state_keys = ("step", "mu_product", "exp_avg", "exp_avg_sq")
    _scalar_keys = ("step", "mu_product")

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 *, foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        betas = _check_adam_args(lr, betas, eps, weight_decay)
        _check(_finite_nonneg(momentum_decay), f"Invalid momentum_decay value: {momentum_decay}")
        _no_differentiable("NAdam", differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("step", "scalar", 0.0), ("mu_product", "scalar", 1.0), ("exp_avg", "buffer", 0.0),
                ("exp_avg_sq", "buffer", 0.0)]

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, eps, beta1, beta2, step = _begin_step(group, u)
        momentum_decay = float(group["momentum_decay"])
        p, m, v = u.param, u.state["exp_avg"], u.state["exp_avg_sq"]
        bias_correction2 = 1 - beta2 ** step
        g = u.grad_with_decay(group, lr, group["decoupled_weight_decay"])
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        mu_prod = u.scalars["mu_product"]
        mu_prod *= np.asarray(mu, dtype=mu_prod.dtype)  # in the scalar dtype, as PyTorch's state tensor
        mu_product = u.scalar("mu_product")
        lerp_(m, g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        denom = np.sqrt(v / u.expand(bias_correction2))
        denom += eps
        mu_product_next = mu_product * mu_next
        p += u.expand(-lr * (1.0 - mu) / (1.0 - mu_product)) * g / denom
        p += u.expand((-lr * mu_next) / (1.0 - mu_product_next)) * m / denom


class RAdam(Optimizer):
    r"""RAdam (rectified Adam), as ``torch.optim.RAdam``.

    With ``rho_inf = 2 / (1 - beta2) - 1`` and
    ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)``::

        g_t   <- g_t + lambda * theta_{t-1}                    (L2, or decoupled:
        theta <- theta * (1 - gamma * lambda)                   with decoupled_weight_decay)
        m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   <- beta2 * v_{t-1} + (1 - beta2) * g_t^2
        mhat  <- m_t / (1 - beta1^t)
        if rho_t > 5:
            r_t   <- sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            theta_t <- theta_{t-1} - gamma * mhat * sqrt(1 - beta2^t) / (sqrt(v_t) + eps) * r_t
        else:
            theta_t <- theta_{t-1} - gamma * mhat

    Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond" (ICLR 2020).
    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        betas = _check_adam_args(lr, betas, eps, weight_decay)
        _no_differentiable("RAdam", differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, eps, beta1, beta2, step = _begin_step(group, u)
        p, m, v = u.param, u.state["exp_avg"], u.state["exp_avg_sq"]
        g = u.grad_with_decay(group, lr, group["decoupled_weight_decay"])
        lerp_(m, g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        mhat = m / u.expand(bias_correction1)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
        plain = mhat * lr
        if isinstance(rho_t, float) and rho_t <= 5.0:
            p -= plain
            return
        with np.errstate(invalid="ignore"):  # rect is NaN where rho_t <= 5; those entries are not used
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        sq = np.sqrt(v)
        sq += eps
        adaptive = np.reciprocal(sq)  # PyTorch's scalar / tensor is reciprocal(tensor) * scalar
        adaptive *= u.expand(bias_correction2 ** 0.5)
        rectified = plain * adaptive * u.expand(rect)
        if isinstance(rho_t, float):
            p -= rectified
        else:
            p -= np.where(u.expand(rho_t > 5.0), rectified, plain)
