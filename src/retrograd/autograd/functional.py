"""Higher-level autodiff of functions: ``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``vhp``, ``hvp``.

Same signatures and return conventions as ``torch.autograd.functional``: a
Tensor argument gives a Tensor result, a tuple gives a tuple. Everything is
built on reverse mode (``rg.grad``): ``jvp`` uses the double-vjp trick (the
vjp ``u -> J^T u`` is linear in ``u``, so its own vjp with ``v`` is ``J v``),
``jacobian`` one vjp per output element, ``hessian`` the Jacobian of the
gradient. Results are detached unless ``create_graph=True``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..engine import enable_grad, grad
from ..tensor import Tensor, wrap_array
from ..tensor_functions import stack

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]


def _as_tuple(x: Any, arg: str, fn: str) -> tuple[bool, tuple]:
    is_tuple = isinstance(x, (tuple, list))
    xs = tuple(x) if is_tuple else (x,)
    for i, t in enumerate(xs):
        if not isinstance(t, Tensor):
            where = f"{arg} {i}" if is_tuple else arg
            raise TypeError(f"{fn}: the {where} given is a {type(t).__name__}; expected a Tensor or a tuple "
                            "of Tensors")
    return is_tuple, xs


def _prep_inputs(xs: tuple, create_graph: bool) -> tuple:
    """Inputs to differentiate with respect to: the caller's own Tensors when their graph should be
    kept (create_graph), fresh leaves otherwise."""
    out = []
    for x in xs:
        if create_graph and x.requires_grad:
            out.append(x)
        else:
            out.append(x.detach().requires_grad_(True))
    return tuple(out)


def _call(func: Callable, inputs: tuple, fn: str) -> tuple[bool, tuple]:
    with enable_grad():
        res = func(*inputs)
    return _as_tuple(res, "output of the user-provided function", fn)


def _post(ts: Any, create_graph: bool) -> Any:
    if isinstance(ts, tuple):
        return tuple(_post(t, create_graph) for t in ts)
    if ts is None or create_graph:
        return ts
    return ts.detach()


def _unpack(ts: tuple, is_tuple: bool) -> Any:
    return ts if is_tuple else ts[0]


def _check_v(v: Any, refs: tuple, arg: str, fn: str) -> tuple:
    _, vs = _as_tuple(v, "v", fn)
    if len(vs) != len(refs):
        raise RuntimeError(f"{fn}: v is a tuple of {len(vs)} Tensors but the {arg} has {len(refs)}")
    for i, (a, r) in enumerate(zip(vs, refs)):
        if tuple(a.shape) != tuple(r.shape):
            raise RuntimeError(f"{fn}: entry {i} of v has invalid size: should be {tuple(r.shape)} but got "
                               f"{tuple(a.shape)}")
    return vs


def _grads(outs: tuple, ins: tuple, gos: tuple, create_graph: bool, strict: bool, fn: str,
           what: str = "output of the user-provided function") -> tuple:
    """``sum_k gos[k] . d outs[k] / d ins`` with zeros (not None) for independent inputs."""
    pairs = [(o, g) for o, g in zip(outs, gos) if o.requires_grad]
    res: tuple = (None,) * len(ins)
    if pairs:
        res = grad([o for o, _ in pairs], list(ins), grad_outputs=[g for _, g in pairs], retain_graph=True,
                   create_graph=create_graph, allow_unused=True)
    out = []
    for i, (x, g) in enumerate(zip(ins, res)):
        if g is None:
            if strict:
                raise RuntimeError(f"{fn}: the {what} is independent of input {i}; this is not allowed in "
                                   "strict mode")
            g = wrap_array(np.zeros(x.shape, dtype=x.dtype))
        out.append(g)
    return tuple(out)


def vjp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """``(func(*inputs), v^T J)``: the vector-Jacobian product at ``inputs``.

    ``v`` has the outputs' shapes; it may be omitted when ``func`` returns a
    single one-element Tensor.
    """
    is_in_tuple, xs = _as_tuple(inputs, "inputs", "vjp")
    xs = _prep_inputs(xs, create_graph)
    is_out_tuple, outs = _call(func, xs, "vjp")
    if v is None:
        if is_out_tuple or outs[0].numel() != 1:
            raise RuntimeError("vjp: the vector v can only be None if the user-provided function returns a "
                               "single Tensor with a single element")
        vs = (wrap_array(np.ones(outs[0].shape, dtype=outs[0].dtype)),)
    else:
        vs = _check_v(v, outs, "output of the user-provided function", "vjp")
    res = _grads(outs, xs, vs, create_graph, strict, "vjp")
    return _post(_unpack(outs, is_out_tuple), create_graph), _post(_unpack(res, is_in_tuple), create_graph)


def jvp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """``(func(*inputs), J v)``: the Jacobian-vector product at ``inputs``.

    ``v`` has the inputs' shapes; it may be omitted when the input is a single
    one-element Tensor.
    """
    is_in_tuple, xs = _as_tuple(inputs, "inputs", "jvp")
    xs = _prep_inputs(xs, create_graph)
    if v is None:
        if is_in_tuple or xs[0].numel() != 1:
            raise RuntimeError("jvp: the vector v can only be None if the input to the user-provided "
                               "function is a single Tensor with a single element")
        vs = (wrap_array(np.ones(xs[0].shape, dtype=xs[0].dtype)),)
    else:
        vs = _check_v(v, xs, "inputs", "jvp")
    is_out_tuple, outs = _call(func, xs, "jvp")
    # u -> J^T u is linear in u; differentiating it with respect to u along v gives J v
    us = tuple(Tensor(np.zeros(o.shape, dtype=o.dtype), requires_grad=True) for o in outs)
    with enable_grad():
        gu = _grads(outs, xs, us, True, strict, "jvp")
        live = [(g, w) for g, w in zip(gu, vs) if g.requires_grad]
        res: tuple = (None,) * len(us)
        if live:
            res = grad([g for g, _ in live], list(us), grad_outputs=[w for _, w in live],
                       create_graph=create_graph, allow_unused=True)
    out = []
    for i, (o, r) in enumerate(zip(outs, res)):
        if r is None:
            if strict:
                raise RuntimeError(f"jvp: output {i} of the user-provided function is independent of the "
                                   "inputs; this is not allowed in strict mode")
            r = wrap_array(np.zeros(o.shape, dtype=o.dtype))
        out.append(r)
    return _post(_unpack(outs, is_out_tuple), create_graph), _post(_unpack(tuple(out), is_out_tuple),
                                                                   create_graph)


def jacobian(func: Callable[..., Any], inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """The Jacobian of ``func`` at ``inputs``: for output ``o`` and input ``x`` an array of shape
    ``o.shape + x.shape``; nested in tuples as ``[output][input]`` where ``func`` returns / takes
    tuples. ``vectorize`` and ``strategy`` are accepted for PyTorch compatibility (one vjp per
    output element either way)."""
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(f"jacobian: expected strategy to be 'reverse-mode' or 'forward-mode', got {strategy!r}")
    is_in_tuple, xs = _as_tuple(inputs, "inputs", "jacobian")
    xs = _prep_inputs(xs, create_graph)
    is_out_tuple, outs = _call(func, xs, "jacobian")
    jac: list[list[Any]] = []
    for k, o in enumerate(outs):
        rows: list[list[Tensor]] = [[] for _ in xs]
        n = o.numel()
        for j in range(n):
            onehot = np.zeros(n, dtype=o.dtype)
            onehot[j] = 1
            if o.requires_grad:
                gs = grad(o, list(xs), grad_outputs=wrap_array(onehot.reshape(o.shape)), retain_graph=True,
                          create_graph=create_graph, allow_unused=True)
            else:
                gs = (None,) * len(xs)
            for i, (x, g) in enumerate(zip(xs, gs)):
                if g is None:
                    if strict:
                        raise RuntimeError(f"jacobian: output {k} of the user-provided function is independent "
                                           f"of input {i}; this is not allowed in strict mode")
                    g = wrap_array(np.zeros(x.shape, dtype=x.dtype))
                rows[i].append(g)
        per_in = []
        for i, x in enumerate(xs):
            if create_graph:  # a differentiable stack keeps each row's graph
                block = stack(rows[i]) if rows[i] else wrap_array(np.zeros((0,) + tuple(x.shape), x.dtype))
                block = block.reshape(tuple(o.shape) + tuple(x.shape))
            else:
                arr = (np.stack([g._array for g in rows[i]]) if rows[i]
                       else np.zeros((0,) + tuple(x.shape), dtype=x.dtype))
                block = wrap_array(arr.reshape(tuple(o.shape) + tuple(x.shape)))
            per_in.append(block)
        jac.append(per_in)
    if is_out_tuple:
        return tuple(tuple(r) if is_in_tuple else r[0] for r in jac)
    return tuple(jac[0]) if is_in_tuple else jac[0][0]


def _scalar_output(func: Callable, xs: tuple, fn: str) -> Tensor:
    is_tuple, outs = _call(func, xs, fn)
    if is_tuple or outs[0].numel() != 1:
        shape = [tuple(o.shape) for o in outs]
        raise RuntimeError(f"{fn}: the function given to {fn} should return a single Tensor with a single "
                           f"element, got output shapes {shape}")
    return outs[0]


def hessian(func: Callable[..., Any], inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """The Hessian of a scalar ``func``: shape ``x.shape + x.shape`` for one input, a tuple of tuples
    ``[i][j]`` (shape ``x_i.shape + x_j.shape``) for several."""
    is_in_tuple, xs = _as_tuple(inputs, "inputs", "hessian")

    def grad_fn(*ins: Tensor) -> tuple:
        out = _scalar_output(func, ins, "hessian")
        ones = wrap_array(np.ones(out.shape, dtype=out.dtype))
        return _grads((out,), ins, (ones,), True, strict, "hessian")

    res = jacobian(grad_fn, xs, create_graph=create_graph, strict=strict)
    return res if is_in_tuple else res[0][0]


def vhp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """``(func(*inputs), v^T H)`` for a scalar ``func``."""
    return _hessian_product(func, inputs, v, create_graph, strict, "vhp")


def hvp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """``(func(*inputs), H v)`` for a scalar ``func``. The Hessian of a twice
    differentiable function is symmetric, so this is the vjp of the gradient."""
    return _hessian_product(func, inputs, v, create_graph, strict, "hvp")


def _hessian_product(func: Callable, inputs: Any, v: Any, create_graph: bool, strict: bool,
                     fn: str) -> tuple:
    is_in_tuple, xs = _as_tuple(inputs, "inputs", fn)
    xs = _prep_inputs(xs, create_graph)
    if v is None:
        if is_in_tuple or xs[0].numel() != 1:
            raise RuntimeError(f"{fn}: the vector v can only be None if the input to the user-provided "
                               "function is a single Tensor with a single element")
        vs = (wrap_array(np.ones(xs[0].shape, dtype=xs[0].dtype)),)
    else:
        vs = _check_v(v, xs, "inputs", fn)
    out = _scalar_output(func, xs, fn)
    ones = wrap_array(np.ones(out.shape, dtype=out.dtype))
    with enable_grad():
        gs = _grads((out,), xs, (ones,), True, strict, fn)
        res = _grads(gs, xs, vs, create_graph, strict, fn, what="gradient of the user-provided function")
    return _post(out, create_graph), _post(_unpack(res, is_in_tuple), create_graph)
