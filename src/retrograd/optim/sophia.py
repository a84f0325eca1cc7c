"""Sophia: clipped Newton-like steps with a cheap diagonal Hessian estimate."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import grad as _autograd
from ..tensor import Tensor, wrap_array
from .optimizer import Optimizer, StepArrays, _check, _check_betas, _finite_nonneg, weight_decay

__all__ = ["Sophia"]


class Sophia(Optimizer):
    r"""Sophia (Second-order Clipped Stochastic Optimization), Hutchinson estimator.

    Every ``k`` steps the user calls ``update_hessian(loss)`` (with a loss whose
    graph is still alive); it draws a Rademacher vector :math:`u` (entries
    :math:`\pm 1`) per parameter and, with Hessian-vector products from the
    engine (``grad`` of ``g . u`` where ``g = grad(loss, create_graph=True)``)::

        h^_t <- u * (H u)                                   (unbiased: E[u * Hu] = diag H)
        h_t  <- beta2 * h_{t-k} + (1 - beta2) * h^_t

    and every ``step()``::

        theta   <- theta_{t-1} * (1 - lr * lambda)          (decoupled weight decay)
        m_t     <- beta1 * m_{t-1} + (1 - beta1) * g_t
        theta_t <- theta - lr * clip(m_t / max(rho * h_t, eps), -1, 1)

    Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order
    Optimizer for Language Model Pre-training" (ICLR 2024), Algorithm 1 with
    the Hutchinson estimator. Until the first ``update_hessian`` the estimate is
    0 and the step is ``lr * sign(m)``. ``hessian_due()`` tells when the ``k``
    steps are up. ``seed`` seeds the probe vectors.
    State per parameter: ``step``, ``exp_avg``, ``hessian``.

    Typical loop::

        for x, y in data:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            if opt.hessian_due():
                opt.update_hessian(loss)    # before backward: it needs the graph
            loss.backward()
            opt.step()
    """

    _state_keys = ("step", "exp_avg", "hessian")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-4, betas: tuple = (0.965, 0.99), rho: float = 0.04,
                 weight_decay: float = 0.1, k: int = 10, estimator: str = "hutchinson", *, eps: float = 1e-12,
                 seed: int | None = None) -> None:
        _check(_finite_nonneg(lr), f"Sophia: invalid learning rate {lr!r}: expected a number >= 0")
        betas = _check_betas("Sophia", betas)
        _check(_finite_nonneg(rho) and float(rho) > 0, f"Sophia: invalid rho {rho!r}: expected a number > 0")
        _check(_finite_nonneg(weight_decay), f"Sophia: invalid weight_decay {weight_decay!r}: expected >= 0")
        _check(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1,
               f"Sophia: invalid k {k!r}: expected an integer >= 1 (steps between Hessian updates)")
        _check(estimator == "hutchinson",
               f"Sophia: unknown estimator {estimator!r}: only 'hutchinson' is implemented")
        _check(_finite_nonneg(eps) and float(eps) > 0, f"Sophia: invalid eps {eps!r}: expected a number > 0")
        # n_steps: steps taken (group bookkeeping, saved with the state dict) for hessian_due
        defaults = dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, k=k, estimator=estimator, eps=eps,
                        n_steps=0)
        super().__init__(params, defaults)
        self._rng = np.random.default_rng(seed)

    def hessian_due(self) -> bool:
        """True when the steps taken so far are a multiple of ``k`` (of the first group)."""
        group = self.param_groups[0]
        return int(group["n_steps"]) % int(group["k"]) == 0

    def update_hessian(self, loss: Tensor, u: list | None = None) -> list[np.ndarray]:
        """Fold ``u * (H u)`` at ``loss`` into the Hessian EMA of every parameter
        that ``loss`` depends on; returns those estimates (``None`` for the
        others), one per parameter in group order. ``u`` (optional): the probe
        vectors, one array per parameter, instead of random signs."""
        params = [p for g in self.param_groups for p in g["params"]]
        if u is not None and len(u) != len(params):
            raise ValueError(f"Sophia.update_hessian: got {len(u)} probe vectors for {len(params)} parameters")
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("Sophia.update_hessian: loss must be a Tensor with one element, got "
                             f"{type(loss).__name__}{'' if not isinstance(loss, Tensor) else tuple(loss.shape)}")
        gs = _autograd(loss, params, create_graph=True, allow_unused=True)
        live = [i for i, g in enumerate(gs) if g is not None]
        if not live:
            raise RuntimeError("Sophia.update_hessian: the loss depends on none of the optimizer's parameters")
        probes = {}
        for i in live:
            p = params[i]
            if u is None:
                probes[i] = self._rng.choice(np.array([-1.0, 1.0]), size=p.shape).astype(p._array.dtype)
            else:
                probes[i] = np.asarray(u[i], dtype=p._array.dtype)
                if probes[i].shape != tuple(p.shape):
                    raise ValueError(f"Sophia.update_hessian: probe {i} has shape {probes[i].shape}, expected "
                                     f"{tuple(p.shape)}")
        dot = None
        for i in live:
            term = (gs[i] * wrap_array(probes[i])).sum()
            dot = term if dot is None else dot + term
        # keep the graph: the caller still backpropagates the loss for the step
        hvs = _autograd(dot, [params[i] for i in live], retain_graph=True, allow_unused=True)
        group_of = {id(b): g for g, bs in zip(self.param_groups, self._buckets) for b in bs}
        out: list = [None] * len(params)
        for i, hv in zip(live, hvs):
            p = params[i]
            est = probes[i] * (np.zeros(p.shape, p._array.dtype) if hv is None else hv._array)
            out[i] = est
            b, j = self._where[p]
            group = group_of[id(b)]
            spec = self._state_spec(group)
            for name, kind, fill in spec:
                (b.buffer if kind == "buffer" else b.scalar)(name, fill)
            if not b.initialized[j]:
                self._initialize(b, [j], spec)
            beta2 = float(group["betas"][1])
            h = b.buffers["hessian"][b.segment(j)]
            h *= beta2
            h += (1 - beta2) * est.reshape(-1)
        return out

    def step(self, closure: Any = None) -> Any:
        """One Sophia step of every parameter that has a gradient."""
        loss = super().step(closure)
        for group in self.param_groups:
            group["n_steps"] = int(group["n_steps"]) + 1
        return loss

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, wd, rho, eps = (float(group[k]) for k in ("lr", "weight_decay", "rho", "eps"))
        beta1 = float(group["betas"][0])
        u.scalars["step"] += 1
        m = u.state["exp_avg"]
        weight_decay(u.param, u.grad, wd, lr=lr, decoupled=True)
        m *= beta1
        m += (1 - beta1) * u.grad
        ratio = m / np.maximum(rho * u.state["hessian"], eps)
        np.clip(ratio, -1.0, 1.0, out=ratio)
        u.param -= lr * ratio
