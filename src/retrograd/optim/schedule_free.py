"""Schedule-free AdamW and SGD: no learning-rate schedule, averaged iterates instead."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .optimizer import (Optimizer, StepArrays, _check, _closure_loss, _finite_nonneg, lerp_, required,
                        weight_decay)

__all__ = ["ScheduleFreeAdamW", "ScheduleFreeSGD"]


class _ScheduleFree(Optimizer):
    """Shared machinery: group-level step bookkeeping, ``z`` state, train/eval swaps.

    The parameters hold ``y`` in train mode and ``x`` in eval mode; ``z`` is
    state. ``_beta(group)`` is the interpolation constant (AdamW's ``beta1``,
    SGD's ``momentum``).
    """

    _state_keys = ("z", "exp_avg_sq")

    def _beta(self, group: dict) -> float:
        raise NotImplementedError

    def _check_schedule_args(self, lr: Any, weight_decay: Any, warmup_steps: Any, r: Any,
                             weight_lr_power: Any) -> None:
        who = type(self).__name__
        _check(lr is required or _finite_nonneg(lr), f"{who}: invalid learning rate {lr!r}: expected >= 0")
        _check(_finite_nonneg(weight_decay), f"{who}: invalid weight_decay {weight_decay!r}: expected >= 0")
        _check(isinstance(warmup_steps, (int, np.integer)) and not isinstance(warmup_steps, bool)
               and warmup_steps >= 0, f"{who}: invalid warmup_steps {warmup_steps!r}: expected an integer >= 0")
        _check(_finite_nonneg(r), f"{who}: invalid r {r!r}: expected >= 0")
        _check(_finite_nonneg(weight_lr_power), f"{who}: invalid weight_lr_power {weight_lr_power!r}: "
                                                f"expected >= 0")

    # ------------------------------------------------------------------ modes
    def _swap(self, to_train: bool) -> None:
        for group, buckets in zip(self.param_groups, self._buckets):
            if group["train_mode"] == to_train:
                continue
            beta = self._beta(group)
            w = 1 - beta if to_train else 1 - 1 / beta
            for b in buckets:
                if "z" not in b.buffers or not b.initialized.any():
                    continue
                b.retake_rebound(type(self).__name__)
                b.mark_modified()
                if b.all_initialized:
                    lerp_(b._array, b.buffers["z"], w)
                else:
                    em = np.repeat(b.initialized, b.sizes)
                    sub = b._array[em]
                    lerp_(sub, b.buffers["z"][em], w)
                    b._array[em] = sub
            group["train_mode"] = to_train

    def train(self, mode: bool = True) -> "_ScheduleFree":
        """Put ``y`` (the point where gradients are taken) in the parameters: call before training steps."""
        self._swap(bool(mode))
        return self

    def eval(self) -> "_ScheduleFree":
        """Put ``x`` (the averaged iterate, the one to evaluate and save) in the parameters."""
        self._swap(False)
        return self

    # ------------------------------------------------------------------ step
    def step(self, closure: Callable | None = None) -> Any:
        """One schedule-free step (the parameters must hold ``y``: train mode)."""
        for i, group in enumerate(self.param_groups):
            if not group["train_mode"]:
                raise RuntimeError(f"{type(self).__name__}.step: param group {i} is in eval mode (its parameters "
                                   "hold the average x); call optimizer.train() before training steps and "
                                   "optimizer.eval() before evaluating or saving")
        loss = _closure_loss(closure)
        for group, buckets in zip(self.param_groups, self._buckets):
            k = int(group["k"])
            warmup = int(group["warmup_steps"])
            sched = (k + 1) / warmup if k < warmup else 1.0
            lr = float(group["lr"]) * sched
            group["scheduled_lr"] = lr
            lr_max = group["lr_max"] = max(lr, float(group["lr_max"]))
            weight = ((k + 1) ** float(group["r"])) * (lr_max ** float(group["weight_lr_power"]))
            weight_sum = group["weight_sum"] = float(group["weight_sum"]) + weight
            ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
            self._now = (lr, ckp1, k)
            for b in buckets:
                self._step_bucket(group, b)
            group["k"] = k + 1
        return loss

    def _fresh_z(self, u: StepArrays) -> None:
        z = u.state["z"]
        if u.fresh is True:
            np.copyto(z, u.param)
        elif u.fresh is not None:
            np.copyto(z, u.param, where=u.fresh)

    def _move(self, group: dict, u: StepArrays, d: np.ndarray) -> None:
        """``y <- lerp(y, z, c) + lr (beta (1 - c) - 1) d``;  ``z <- z - lr d``."""
        lr, ckp1, _ = self._now
        beta = self._beta(group)
        z = u.state["z"]
        lerp_(u.param, z, ckp1)
        u.param += (lr * (beta * (1 - ckp1) - 1)) * d
        z -= lr * d


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-free AdamW.

    Three sequences: ``z`` (the SGD-like base iterate), ``x`` (a weighted
    average of ``z``, the one to evaluate) and ``y`` (where the gradient is
    taken, the parameters in train mode). With step :math:`t = k + 1`,
    ``lr_t = lr * min(1, t / warmup_steps)``::

        y_t     = (1 - beta1) z_t + beta1 x_t
        v_t     <- beta2 v_{t-1} + (1 - beta2) g(y_t)^2
        d_t     = g(y_t) / (sqrt(v_t / (1 - beta2^t)) + eps) + lambda y_t
        z_{t+1} = z_t - lr_t d_t
        w_t     = t^r * max_{s<=t}(lr_s)^weight_lr_power,   c_{t+1} = w_t / sum_{s<=t} w_s
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    The parameters hold ``y`` and are updated in place (``x`` is never
    stored): ``y <- lerp(y, z, c) + lr (beta1 (1 - c) - 1) d``. ``eval()``
    turns them into ``x = lerp(y, z, 1 - 1/beta1)``, ``train()`` back into
    ``y = lerp(x, z, 1 - beta1)``; a step in eval mode raises. Defazio et al.,
    "The Road Less Scheduled" (NeurIPS 2024), following the reference
    ``AdamWScheduleFree`` (facebookresearch/schedule_free); unlike it the
    optimizer starts in train mode. Group bookkeeping (``k``, ``weight_sum``,
    ``lr_max``, ``scheduled_lr``, ``train_mode``) lives in the param groups.
    State per parameter: ``z``, ``exp_avg_sq``.
    """

    def __init__(self, params: Any, lr: float = 0.0025, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, warmup_steps: int = 0, r: float = 0.0,
                 weight_lr_power: float = 2.0) -> None:
        self._check_schedule_args(lr, weight_decay, warmup_steps, r, weight_lr_power)
        _check(_finite_nonneg(eps), f"ScheduleFreeAdamW: invalid eps {eps!r}: expected >= 0")
        betas = tuple(betas)
        _check(len(betas) == 2, f"ScheduleFreeAdamW: betas must be a pair (beta1, beta2), got {betas}")
        _check(_finite_nonneg(betas[0]) and 0 < float(betas[0]) < 1,
               f"ScheduleFreeAdamW: invalid beta1 {betas[0]!r}: expected 0 < beta1 < 1 (eval divides by it)")
        _check(_finite_nonneg(betas[1]) and float(betas[1]) < 1,
               f"ScheduleFreeAdamW: invalid beta2 {betas[1]!r}: expected 0 <= beta2 < 1")
        defaults = dict(lr=lr, betas=betas, eps=eps, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
                        weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _beta(self, group: dict) -> float:
        return float(group["betas"][0])

    def _update(self, group: dict, u: StepArrays) -> None:
        _, _, k = self._now
        beta2, eps, wd = float(group["betas"][1]), float(group["eps"]), float(group["weight_decay"])
        self._fresh_z(u)
        v = u.state["exp_avg_sq"]
        v *= beta2
        v += (1 - beta2) * u.grad * u.grad
        denom = np.sqrt(v / (1 - beta2 ** (k + 1)))
        denom += eps
        d = u.grad / denom
        d = weight_decay(u.param, d, wd, inplace=True)  # decay at y
        self._move(group, u, d)


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-free SGD (with its built-in momentum-like interpolation).

    As :class:`ScheduleFreeAdamW` with ``beta1 = momentum`` and the plain
    gradient, ``lr_t = lr * min(1, t / warmup_steps)``::

        y_t     = (1 - momentum) z_t + momentum x_t
        d_t     = g(y_t) + lambda y_t
        z_{t+1} = z_t - lr_t d_t
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},   c_{t+1} = w_t / sum_{s<=t} w_s,
        w_t     = t^r * max_{s<=t}(lr_s)^weight_lr_power

    Defazio et al., "The Road Less Scheduled" (NeurIPS 2024), following the
    reference ``SGDScheduleFree``; ``train()``/``eval()`` swap ``y`` and ``x``
    in the parameters, a step in eval mode raises. State per parameter: ``z``.
    """

    _state_keys = ("z",)

    def __init__(self, params: Any, lr: float = required, momentum: float = 0.9, weight_decay: float = 0,
                 warmup_steps: int = 0, r: float = 0.0, weight_lr_power: float = 2.0) -> None:
        self._check_schedule_args(lr, weight_decay, warmup_steps, r, weight_lr_power)
        _check(_finite_nonneg(momentum) and 0 < float(momentum) < 1,
               f"ScheduleFreeSGD: invalid momentum {momentum!r}: expected 0 < momentum < 1 (eval divides by it)")
        defaults = dict(lr=lr, momentum=momentum, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
                        weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _beta(self, group: dict) -> float:
        return float(group["momentum"])

    def _update(self, group: dict, u: StepArrays) -> None:
        wd = float(group["weight_decay"])
        self._fresh_z(u)
        d = weight_decay(u.param, u.grad, wd)
        self._move(group, u, d)
