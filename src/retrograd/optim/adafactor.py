"""Adafactor: Adam-like steps with factored second moments for matrices."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor, wrap_array
from .optimizer import Optimizer, StepArrays, _check, lerp_, weight_decay

__all__ = ["Adafactor"]


class Adafactor(Optimizer):
    r"""Adafactor, as ``torch.optim.Adafactor`` (PyTorch 2.5+).

    With gradient :math:`G_t` (negated when ``maximize``), ``beta2_decay`` :math:`\tau`,
    ``eps = (eps1, eps2)`` (eps1 None: the dtype's machine epsilon), clipping
    threshold ``d`` and ``RMS(A) = ||A||_2 / sqrt(numel A)``::

        beta2_hat <- 1 - t^tau;  rho_t <- min(lr, 1 / sqrt(t))
        alpha_t   <- max(eps2, RMS(theta_{t-1})) * rho_t
        theta     <- theta * (1 - lr * lambda)                          (weight decay)
        matrices (factored over the last two dimensions, shape (..., m, n)):
            R_t <- lerp(R_{t-1}, mean_n(G_t^2), 1 - beta2_hat)          shape (..., m, 1)
            C_t <- lerp(C_{t-1}, mean_m(G_t^2), 1 - beta2_hat)          shape (..., 1, n)
            V_t <- R_t C_t / max(mean_m(R_t), eps1)
        vectors:  V_t <- lerp(V_{t-1}, G_t^2, 1 - beta2_hat)
        U_t       <- G_t / sqrt(max(V_t, eps1^2))
        theta_t   <- theta - alpha_t / max(1, RMS(U_t) / d) * U_t

    Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost" (ICML 2018), with PyTorch's placement of ``lr`` and ``eps1``. The step
    runs per parameter on views of the flat buffers.
    State per parameter: ``step``, and ``row_var``/``col_var`` (>= 2-D) or ``variance`` (1-D).
    """

    _state_keys = ("step", "row_var", "col_var", "variance")
    _scalar_keys = ("step",)

    def __init__(self, params: Any, lr: float = 1e-2, beta2_decay: float = -0.8, eps: tuple = (None, 1e-3),
                 d: float = 1.0, weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False) -> None:
        _check(0.0 <= lr, f"Learning rate should be >= 0 but is: {lr}")
        _check(0.0 >= beta2_decay, f"beta2_decay should be <= 0 but is: {beta2_decay}")
        eps = tuple(eps)
        _check(eps[0] is None or 0.0 <= eps[0], f"epsilon1 should be >= 0 but is: {eps[0]}")
        _check(0.0 <= eps[1], f"epsilon2 should be >= 0 but is: {eps[1]}")
        _check(1.0 <= d, f"Clipping threshold d should be >= 1 but is: {d}")
        _check(0.0 <= weight_decay, f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("step", "scalar", 0.0)]

    def _initialize(self, b: Any, idx: Any, spec: list) -> None:
        super()._initialize(b, idx, spec)
        for i in idx:
            p = b.params[i]
            self.state[p].update(_factored_state(p._array))

    def _step_bucket(self, group: dict, b: Any) -> None:
        # the parameters this step updates, in the order of the StepArrays' views
        self._active = [p for p in b.params if p.grad is not None]
        super()._step_bucket(group, b)

    def _update(self, group: dict, u: StepArrays) -> None:
        lr, beta2_decay, d = float(group["lr"]), float(group["beta2_decay"]), float(group["d"])
        eps1, eps2 = group["eps"]
        wd = float(group["weight_decay"])
        steps = u.scalars["step"]
        steps += 1
        for k, (p, theta, g) in enumerate(zip(self._active, u.split(u.param), u.split(u.grad))):
            st = self.state[p]
            g = -g if group["maximize"] else g
            e1 = float(np.finfo(theta.dtype).eps) if eps1 is None else float(eps1)
            step = float(steps[k])
            one_minus_beta2_t = step ** beta2_decay
            rho_t = min(lr, 1 / (step ** 0.5))
            alpha = max(eps2, float(np.linalg.norm(theta.reshape(-1))) / (theta.size ** 0.5)) * rho_t
            weight_decay(theta, g, wd, lr=lr, decoupled=True)
            if g.ndim > 1:
                row_var, col_var = st["row_var"]._array, st["col_var"]._array
                row_mean = np.sqrt((g * g).sum(axis=-1, keepdims=True))
                row_mean = row_mean * row_mean / g.shape[-1]
                lerp_(row_var, row_mean, one_minus_beta2_t)
                col_mean = np.sqrt((g * g).sum(axis=-2, keepdims=True))
                col_mean = col_mean * col_mean / g.shape[-2]
                lerp_(col_var, col_mean, one_minus_beta2_t)
                var_estimate = row_var @ col_var
                var_estimate /= np.maximum(row_var.mean(axis=-2, keepdims=True), e1)
            else:
                variance = st["variance"]._array
                lerp_(variance, g * g, one_minus_beta2_t)
                var_estimate = variance.copy()
            update = 1 / np.sqrt(np.maximum(var_estimate, e1 * e1))
            update *= g
            denom = max(1.0, float(np.linalg.norm(update.reshape(-1))) / ((update.size ** 0.5) * d))
            theta += (-alpha / denom) * update

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict of an Adafactor (this library's or PyTorch's, tensors as arrays)."""
        extra_keys = ("row_var", "col_var", "variance")
        stripped = {k: {n: v for n, v in s.items() if n not in extra_keys} for k, s in state_dict["state"].items()}
        super().load_state_dict({"state": stripped, "param_groups": state_dict["param_groups"]})
        index = {}
        for g_saved, g in zip(state_dict["param_groups"], self.param_groups):
            index.update(zip(g_saved["params"], g["params"]))
        for key, st in state_dict["state"].items():
            p = index.get(key)
            if p is None or not st:
                continue
            fresh = _factored_state(p._array)
            for name, t in fresh.items():
                if name in st:
                    v = st[name]
                    arr = v._array if isinstance(v, Tensor) else np.asarray(v)
                    if arr.shape != t.shape:
                        raise ValueError(f"load_state_dict: state {name!r} of parameter {key} has shape "
                                         f"{arr.shape}, expected {t.shape}")
                    np.copyto(t._array, arr, casting="unsafe")
            self.state[p].update(fresh)


def _factored_state(x: np.ndarray) -> dict:
    if x.ndim > 1:
        row_shape, col_shape = list(x.shape), list(x.shape)
        row_shape[-1] = 1
        col_shape[-2] = 1
        return {"row_var": wrap_array(np.zeros(row_shape, x.dtype)),
                "col_var": wrap_array(np.zeros(col_shape, x.dtype))}
    return {"variance": wrap_array(np.zeros(x.shape, x.dtype))}
