"""Check analytical gradients against central finite differences (``torch.autograd.gradcheck``).

The analytical Jacobian is built one row at a time: for every element ``j`` of
every output, ``rg.grad`` with a one-hot ``grad_outputs`` gives row ``j`` of
``J^T`` (one vector-Jacobian product per output element). The numerical one
perturbs every element of every input that requires grad by ``±eps`` and
takes ``(f(x + eps) - f(x - eps)) / (2 eps)``. Both run in float64: with
``eps=1e-6`` a float32 finite difference is mostly rounding noise.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..engine import enable_grad, grad
from ..tensor import Tensor, wrap_array

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(RuntimeError):
    """The analytical and numerical Jacobians of a function disagree."""


def _as_tuple(x: Any) -> tuple:
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _outputs(fn: Callable, inputs: tuple) -> tuple:
    out = _as_tuple(fn(*inputs))
    for k, o in enumerate(out):
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: output {k} of fn is a {type(o).__name__}, expected a Tensor or a "
                            "tuple of Tensors")
    return out


def _diff_inputs(inputs: tuple) -> list[int]:
    """Indices of the inputs that require grad; refuse those that are not float64."""
    idx = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad:
            if x.dtype != np.float64:
                raise ValueError(
                    f"gradcheck: input {i} (shape {tuple(x.shape)}) requires grad but has dtype "
                    f"{x.dtype}; finite differences with eps=1e-6 need float64 inputs "
                    "(use x.double() / dtype=rg.float64)")
            idx.append(i)
    if not idx:
        raise ValueError("gradcheck: no input requires grad; set requires_grad=True on at least one "
                         "float64 input Tensor")
    return idx


def _analytical(outs: tuple, xs: list) -> list[list[np.ndarray]]:
    """``jac[i][k]``: d output k / d input i as an array of shape (numel(input), numel(output))."""
    jac = [[np.zeros((x._array.size, o._array.size)) for o in outs] for x in xs]
    for k, o in enumerate(outs):
        if not o.requires_grad or o.dtype.kind not in "fV":
            continue  # no path to the inputs: the analytical Jacobian is zero
        for j in range(o._array.size):
            onehot = np.zeros(o._array.size, dtype=o.dtype)
            onehot[j] = 1
            gs = grad(o, xs, grad_outputs=wrap_array(onehot.reshape(o.shape)), retain_graph=True,
                      allow_unused=True)
            for i, (x, g) in enumerate(zip(xs, gs)):
                if g is None:
                    continue
                if tuple(g.shape) != tuple(x.shape):
                    raise GradcheckError(f"gradcheck: gradient of output {k} for an input of shape "
                                         f"{tuple(x.shape)} has shape {tuple(g.shape)}")
                jac[i][k][:, j] = np.asarray(g._array, dtype=np.float64).reshape(-1)
    return jac


def _numerical(fn: Callable, inputs: tuple, xs: list, outs: tuple, eps: float) -> list[list[np.ndarray]]:
    """Central differences, perturbing the inputs' arrays in place (and restoring them)."""
    jac = [[np.zeros((x._array.size, o._array.size)) for o in outs] for x in xs]
    for i, x in enumerate(xs):
        if not x._array.flags.writeable:  # e.g. a broadcast view: perturb a private copy instead
            x._array = x._array.copy()
        arr = x._array
        for e in range(arr.size):
            idx = np.unravel_index(e, arr.shape)
            orig = arr[idx]
            # copy each result at once: an output may be a view of the input being perturbed
            arr[idx] = orig + eps
            plus = [np.array(o._array, dtype=np.float64) if o.dtype.kind in "fV" else None
                    for o in _outputs(fn, inputs)]
            arr[idx] = orig - eps
            minus = [np.array(o._array, dtype=np.float64) if o.dtype.kind in "fV" else None
                     for o in _outputs(fn, inputs)]
            arr[idx] = orig
            for k, (p, m) in enumerate(zip(plus, minus)):
                if p is None:
                    continue
                d = (p - m) / (2 * eps)
                jac[i][k][e, :] = d.reshape(-1)
    return jac


def _fmt_index(flat: int, shape: tuple) -> str:
    return str(tuple(int(v) for v in np.unravel_index(flat, shape))) if shape else "()"


def _compare(inputs: tuple, in_idx: list[int], outs: tuple, ana: list, num: list, atol: float,
             rtol: float, what: str) -> str | None:
    """The first mismatch as a message, or None."""
    for i, pos in enumerate(in_idx):
        xshape = tuple(inputs[pos].shape)
        for k, o in enumerate(outs):
            a, n = ana[i][k], num[i][k]
            if a.size == 0:
                continue
            excess = np.abs(a - n) - (atol + rtol * np.abs(n))
            if not np.isfinite(a).all() or not np.isfinite(n).all():
                excess = np.where(np.isfinite(a) & np.isfinite(n), excess, np.inf)
            if (excess <= 0).all():
                continue
            e, j = np.unravel_index(int(np.argmax(excess)), a.shape)
            msg = (f"{what}: Jacobian mismatch for output {k} (shape {tuple(o.shape)}) with respect to "
                   f"input {pos} (shape {xshape}): worst at input element {_fmt_index(e, xshape)}, output "
                   f"element {_fmt_index(j, tuple(o.shape))}: analytical {float(a[e, j])!r} vs numerical "
                   f"{float(n[e, j])!r} (|diff| {abs(a[e, j] - n[e, j]):.3g} > atol {atol} + rtol {rtol} * "
                   f"|numerical|); {int((excess > 0).sum())} of {a.size} entries differ")
            if a.size <= 64:
                msg += f"\nanalytical (input x output):\n{a}\nnumerical:\n{n}"
            return msg
    return None


def gradcheck(fn: Callable[..., Any], inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Compare ``fn``'s analytical Jacobian with central finite differences.

    ``inputs``: a Tensor or a tuple of arguments; the Tensors with
    ``requires_grad=True`` (float64) are checked. ``fn`` returns a Tensor or a
    tuple of Tensors. Returns True, or raises ``GradcheckError`` naming the
    input, the worst element and both values (returns False instead when
    ``raise_exception=False``).
    """
    return _check(fn, _as_tuple(inputs), eps, atol, rtol, raise_exception, "gradcheck")


def _check(fn: Callable, inputs: tuple, eps: float, atol: float, rtol: float, raise_exception: bool,
           what: str) -> bool:
    in_idx = _diff_inputs(inputs)
    xs = [inputs[i] for i in in_idx]
    with enable_grad():
        outs = _outputs(fn, inputs)
        ana = _analytical(outs, xs)
        num = _numerical(fn, inputs, xs, outs, eps)
    msg = _compare(inputs, in_idx, outs, ana, num, atol, rtol, what)
    if msg is None:
        return True
    if raise_exception:
        raise GradcheckError(msg)
    return False


def gradgradcheck(fn: Callable[..., Any], inputs: Any, grad_outputs: Sequence | Tensor | None = None, *,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  raise_exception: bool = True) -> bool:
    """Check second derivatives: gradcheck of ``(inputs, grad_outputs) -> rg.grad(fn(inputs), inputs,
    grad_outputs, create_graph=True)``.

    Without ``grad_outputs`` random float64 ones (fixed seed, so a failure
    reproduces) are drawn; they require grad, so the check also covers the
    backward's linearity in them.
    """
    inputs = _as_tuple(inputs)
    in_idx = _diff_inputs(inputs)
    with enable_grad():
        outs = _outputs(fn, inputs)
    diff_out = [k for k, o in enumerate(outs) if o.requires_grad and o.dtype.kind in "fV"]
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        gos = tuple(Tensor(rng.standard_normal(outs[k].shape), requires_grad=True) for k in diff_out)
    else:
        gos = _as_tuple(grad_outputs)
        if len(gos) != len(diff_out):
            raise ValueError(f"gradgradcheck: got {len(gos)} grad_outputs for {len(diff_out)} "
                             "differentiable outputs")
    n_in = len(inputs)

    def first_grads(*args: Any) -> tuple:
        ins, g_outs = args[:n_in], args[n_in:]
        o = _outputs(fn, ins)
        ys = [o[k] for k in diff_out]
        xs = [ins[i] for i in in_idx]
        gs = grad(ys, xs, grad_outputs=list(g_outs), create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return _check(first_grads, inputs + gos, eps, atol, rtol, raise_exception, "gradgradcheck")
