"""L-BFGS with an optional strong-Wolfe line search (PyTorch's algorithm, step for step)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..engine import enable_grad
from ..tensor import Tensor, wrap_array
from .optimizer import Optimizer, _check, _finite_nonneg

__all__ = ["LBFGS"]

# The scalars below (dot products, step lengths, curvature ratios) are NumPy
# scalars of the parameters' dtype, like PyTorch's 0-d tensors: mixed with Python
# floats they keep that dtype (NEP 50), so comparisons and branches fall as in PyTorch.


def _cubic_interpolate(x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple | None = None) -> Any:
    """Minimiser of the cubic through ``(x1, f1, g1)`` and ``(x2, f2, g2)``, clipped to ``bounds``
    (torch/optim's ``polyinterp.lua``)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func: Callable, x: list, t: Any, d: np.ndarray, f: float, g: np.ndarray, gtd: Any,
                  c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9, max_ls: int = 25) -> tuple:
    """Line search along ``d`` for a step ``t`` meeting the strong Wolfe conditions
    (torch/optim's ``lswolfe.lua``): bracket, then zoom by cubic interpolation.
    Returns ``(f_new, g_new, t, function evaluations)``."""
    d_norm = np.abs(d).max()
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = g_new.dot(d)

    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # extrapolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point meets the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial too close to the bracket's ends makes little progress: move it 10% inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo fails or no lower than the lowest point: the new point is the high end
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals


class LBFGS(Optimizer):
    r"""L-BFGS, as ``torch.optim.LBFGS`` (one parameter group; ``step(closure)``).

    Each ``step`` runs up to ``max_iter`` iterations. With gradient :math:`g_k`,
    the last ``history_size`` pairs :math:`s_i = \theta_{i+1} - \theta_i`,
    :math:`y_i = g_{i+1} - g_i` (kept when :math:`y_i^\top s_i > 10^{-10}`),
    :math:`\rho_i = 1 / y_i^\top s_i` and :math:`H_0 = y^\top s / y^\top y`, the
    two-loop recursion gives the direction :math:`d_k = -H_k g_k`::

        q <- -g_k;  for i = newest..oldest:  a_i <- rho_i s_i.q;  q <- q - a_i y_i
        r <- H_0 q;  for i = oldest..newest: b_i <- rho_i y_i.r;  r <- r + (a_i - b_i) s_i
        theta_{k+1} <- theta_k + t_k d_k

    with :math:`t_0 = \min(1, 1/\|g_0\|_1)\,lr`, then ``lr`` (no line search), or
    :math:`t_k` from a strong-Wolfe line search (``line_search_fn="strong_wolfe"``,
    c1 = 1e-4, c2 = 0.9, cubic interpolation). Stops early when
    :math:`\|g\|_\infty \le` ``tolerance_grad``, or when the step, the loss change
    or the directional derivative falls below ``tolerance_change``.

    Nocedal, "Updating quasi-Newton matrices with limited storage" (Math. Comp.
    1980); Liu & Nocedal (Math. Prog. 1989); Nocedal & Wright, "Numerical
    Optimization", algorithms 3.5/3.6 and 7.4. The closure must zero the
    gradients, compute the loss, call ``backward()`` and return the loss.
    State (on the first parameter, as PyTorch): ``func_evals``, ``n_iter``, ``d``,
    ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``,
    ``prev_loss``, ``al``.
    """

    def __init__(self, params: Any, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        _check(_finite_nonneg(lr), f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]
        # PyTorch's flat vector runs over the parameters in order; the buckets (one
        # per dtype) run in that order only when there is one dtype, so with mixed
        # dtypes d, s, y and prev_flat_grad are gathered parameter by parameter
        # (the layout a loaded PyTorch state dict has)
        self._segments = None
        if len(self._buckets[0]) > 1:
            self._segments = []
            for p in self._params:
                b, i = self._where[p]
                seg = b.segment(i)
                self._segments.append((b._array[seg], b.grad[seg]))

    def add_param_group(self, param_group: dict) -> None:
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # the flat vector of all parameters, in parameter order (as PyTorch)
    def _gather_flat_grad(self) -> np.ndarray:
        grads = self.flat_grads()  # also makes the gradient buffers current
        if self._segments is None:
            return grads[0].copy()
        return np.concatenate([g for _, g in self._segments])

    def _add_grad(self, step_size: Any, update: np.ndarray) -> None:
        if self._segments is None:
            flat = self.flat_params()[0]
            flat += step_size * update
        else:
            o = 0
            for flat, _ in self._segments:
                n = flat.size
                flat += step_size * update[o:o + n]
                o += n
        self._mark_modified()

    def _clone_param(self) -> list[np.ndarray]:
        return [flat.copy() for flat in self.flat_params()]

    def _set_param(self, params_data: list[np.ndarray]) -> None:
        for flat, x in zip(self.flat_params(), params_data):
            np.copyto(flat, x)
        self._mark_modified()

    def _mark_modified(self) -> None:
        for b in self._buckets[0]:
            b.mark_modified()

    def _directional_evaluate(self, closure: Callable, x: list, t: Any, d: np.ndarray) -> tuple:
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def step(self, closure: Callable) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; returns the closure's first loss."""
        if closure is None:
            raise RuntimeError("LBFGS.step needs a closure that re-evaluates the model and returns the loss")
        for b in self._buckets[0]:  # take back parameters whose .data was rebound
            b.retake_rebound("LBFGS")

        def closure_with_grad() -> Any:
            with enable_grad():
                return closure()

        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure_with_grad()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = self._gather_flat_grad()
        opt_cond = np.abs(flat_grad).max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        d, t = _arr(state.get("d")), state.get("t")
        old_dirs = [_arr(v) for v in state.get("old_dirs", [])] if "old_dirs" in state else None
        old_stps = [_arr(v) for v in state.get("old_stps", [])] if "old_stps" in state else None
        ro, H_diag = state.get("ro"), state.get("H_diag")
        prev_flat_grad, prev_loss = _arr(state.get("prev_flat_grad")), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = y.dot(s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / y.dot(y)
                num_old = len(old_dirs)
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = old_stps[i].dot(q) * ro[i]
                    q += -al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = old_dirs[i].dot(r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                np.copyto(prev_flat_grad, flat_grad)
            prev_loss = loss

            # step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr
            else:
                t = lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = self._clone_param()

                def obj_func(x: list, t: Any, d: np.ndarray) -> tuple:
                    return self._directional_evaluate(closure_with_grad, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                                  max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # no re-evaluation after the last iteration (stochastic settings gain nothing)
                    loss = float(closure_with_grad())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = _tensor(d)
        state["t"] = t
        state["old_dirs"] = [_tensor(v) for v in old_dirs]
        state["old_stps"] = [_tensor(v) for v in old_stps]
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = _tensor(prev_flat_grad)
        state["prev_loss"] = prev_loss
        return orig_loss

    def load_state_dict(self, state_dict: dict) -> None:
        """Load ``state_dict()`` of an LBFGS (this library's or PyTorch's, tensors as arrays)."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self._params):
            raise ValueError("loaded state dict does not match this LBFGS's single parameter group")
        ng = {k: v for k, v in groups[0].items() if k != "params"}
        for k, v in self.defaults.items():
            ng.setdefault(k, v)
        ng["params"] = self._params
        self.param_groups = [ng]
        self.state.clear()
        for key, st in state_dict["state"].items():
            if key != groups[0]["params"][0]:
                continue
            new = {}
            for name, v in st.items():
                if isinstance(v, list):
                    new[name] = [_scalar_or_tensor(x) for x in v]
                else:
                    new[name] = _scalar_or_tensor(v)
            self.state[self._params[0]] = new


def _arr(v: Any) -> Any:
    """The array behind a state value (a Tensor here, a NumPy array from PyTorch)."""
    if v is None:
        return None
    return (v._array if isinstance(v, Tensor) else np.asarray(v)).copy()


def _tensor(v: Any) -> Any:
    return None if v is None else wrap_array(v)


def _scalar_or_tensor(v: Any) -> Any:
    if v is None or isinstance(v, (int, float)):
        return v
    arr = v._array if isinstance(v, Tensor) else np.asarray(v)
    return arr[()] if arr.ndim == 0 else wrap_array(arr.copy())
