"""User-defined differentiable ops: ``rg.autograd.Function``, as in PyTorch.

::

    class Cube(rg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 3 * g * x ** 2

    y = Cube.apply(x)

Each subclass gets one engine ``Rule`` (node name ``CubeBackward``); the
per-call state (the ``ctx``) lives in the node's keyword arguments, so it is
freed with the node after backward. The forward runs under ``no_grad`` on the
caller's Tensors; the backward receives Tensors and runs with grad enabled
only under ``create_graph=True``, so a backward written with Tensor ops gives
higher-order gradients.

Several outputs are supported by packing the differentiable outputs into one
flat array (the node's single output) that each returned Tensor is a slice
of: the engine then sums the outputs' gradients into that array, and unused
outputs get zero gradients, as PyTorch's materialised grads. (The returned
Tensors' ``grad_fn`` is then the slice, whose input is the op's node.)
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from .. import ops as O
from ..engine import new_node, no_grad, state
from ..tensor import Tensor, wrap_array
from ..versions import counter

__all__ = ["Function", "FunctionCtx"]


class FunctionCtx:
    """The ``ctx`` handed to ``forward`` and ``backward``: saves tensors between them.

    Any other attribute (``ctx.alpha = 2``) may be set freely.
    """

    def __init__(self, name: str, needs_input_grad: tuple) -> None:
        self.needs_input_grad = needs_input_grad
        self._name = name
        self._saved: tuple | None = None
        self._saved_raw: tuple = ()
        self._non_diff: list = []
        self._out_arrays: tuple = ()   # the forward's output arrays, for saved outputs
        self._out_vcs: tuple = ()      # their version counters (lists, not Tensors: no cycles)
        self._layout: tuple = ()       # (start, stop, shape) of each packed output; () for one output
        self._ins: tuple | None = None  # the node's input Tensors during a create_graph backward
        self._kw: dict | None = None

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        """Keep ``tensors`` (inputs, outputs or intermediates) for ``backward``."""
        for k, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"{self._name}.save_for_backward: argument {k} is a {type(t).__name__}; only "
                                "Tensors (or None) can be saved; keep other values as ctx attributes")
        self._saved_raw = tensors

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """Outputs that get no gradient (indices, masks); ``backward`` receives None for them, as for
        integer outputs."""
        self._non_diff.extend(tensors)

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:
            raise RuntimeError(f"{self._name}: saved_tensors accessed outside backward, or after the graph "
                               "was freed; pass retain_graph=True to backward through it again")
        out = []
        for kind, val, vc, version in self._saved:
            if vc is not None and vc[0] != version:
                raise RuntimeError(
                    f"one of the tensors needed to compute the gradient of op '{self._name}' (a saved tensor "
                    f"of shape {tuple(self._out_arrays[val].shape) if kind == 'out' else tuple(val.shape)}) "
                    "has been modified by an in-place operation after it was saved; clone it before "
                    "modifying it in place")
            if kind == "out":
                val = self._saved_output(val)
            out.append(val)
        return tuple(out)

    def _saved_output(self, k: int) -> Tensor:
        """A saved output: its array in a first-order backward; under create_graph a Tensor whose node
        is a twin of this op's node, so its gradient flows back to the op's inputs."""
        arr = self._out_arrays[k]
        if self._ins is None:
            t = wrap_array(arr)
            t._vc = self._out_vcs[k]
            return t
        packed = np.concatenate([a.reshape(-1) for a in self._out_arrays]) if self._layout else arr
        twin = wrap_array(packed)
        twin._node = new_node(self._kw["rule"], self._ins, None, self._kw, 0)
        twin.requires_grad = True
        if not self._layout:
            return twin
        start, stop, shape = self._layout[k]
        return twin[start:stop].reshape(shape)


def _rule_forward(ins: tuple, kw: dict) -> np.ndarray:
    # the user's forward already ran in apply(); keep no second reference to its output
    return kw.pop("array")


def _rule_backward(g: Any, out: Any, ins: tuple, kw: dict, needs: tuple) -> tuple:
    ctx: FunctionCtx = kw["ctx"]
    create_graph = isinstance(g, Tensor)
    gt = g if create_graph else wrap_array(g)
    grads: list = [None] * kw["n_outs"]
    if ctx._layout:
        for (a, b, shape), k in zip(ctx._layout, kw["diff"]):
            grads[k] = gt[a:b].reshape(shape)
    else:
        grads[kw["diff"][0]] = gt
    ctx._ins = ins if create_graph else None
    try:
        res = kw["cls"].backward(ctx, *grads)
    finally:
        ctx._ins = None
    res = res if isinstance(res, tuple) else (res,)
    if len(res) != kw["n_args"]:
        raise RuntimeError(f"function {ctx._name} returned an incorrect number of gradients (expected "
                           f"{kw['n_args']}, got {len(res)}): one per forward argument, None for "
                           "non-Tensor arguments")
    pos = kw["arg_pos"]
    tensor_pos = set(pos)
    for p, r in enumerate(res):
        if p not in tensor_pos and r is not None:
            raise RuntimeError(f"function {ctx._name} returned a gradient different than None at position "
                               f"{p}, but the corresponding forward input was not a Tensor")
    out = []
    for x, p, need in zip(ins, pos, needs):
        r = res[p]
        if r is None or not need:
            out.append(None)
            continue
        if not isinstance(r, Tensor):
            r = wrap_array(np.asarray(r, dtype=x.dtype))
        try:
            np.broadcast_shapes(tuple(r.shape), tuple(x.shape))
        except ValueError:
            raise RuntimeError(f"function {ctx._name} returned an invalid gradient at index {p}: got shape "
                               f"{tuple(r.shape)} but expected a shape compatible with {tuple(x.shape)}") from None
        out.append(r if create_graph else r._array)
    return tuple(out)


class _FunctionMeta(type):
    """Gives each ``Function`` subclass its own engine rule."""

    def __init__(cls, name: str, bases: tuple, ns: dict) -> None:
        super().__init__(name, bases, ns)
        cls._rule = O.Rule(_snake(name), _rule_forward, _rule_backward, needs_inputs=False,
                           lowp="native")  # a bfloat16 input reaches the user's forward as it is
        cls._rule.node_name = name + "Backward"


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


class Function(metaclass=_FunctionMeta):
    """Base class of user-defined ops: subclass it with static ``forward(ctx, *args)`` and
    ``backward(ctx, *grad_outputs)``, then call ``MyOp.apply(*args)``.

    ``backward`` returns one gradient per ``forward`` argument (``None`` for
    non-Tensor arguments or inputs that need none); a gradient may have the
    input's shape or one that broadcasts to it (it is summed back).
    Alternatively ``forward(*args)`` without ``ctx`` plus a static
    ``setup_context(ctx, inputs, output)``, as in PyTorch 2.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement the backward function for custom autograd.Function "
                                  "(or mark its outputs non-differentiable).")

    @staticmethod
    def setup_context(ctx: FunctionCtx, inputs: tuple, output: Any) -> None:
        raise NotImplementedError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{type(self).__name__}: autograd.Function is not instantiated; call the static "
                           f"method {type(self).__name__}.apply(...)")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` and, if any Tensor argument requires grad, record one node for the call."""
        name = cls.__name__
        uses_setup = cls.setup_context is not Function.setup_context
        if kwargs:  # bind keyword arguments to positions: backward returns one grad per position
            sig = inspect.signature(cls.forward)
            params = list(sig.parameters.values())[0 if uses_setup else 1:]
            bound = inspect.Signature(params).bind(*args, **kwargs)
            bound.apply_defaults()
            args = tuple(bound.arguments[p.name] for p in params)
        grad_on = state.enabled
        needs = tuple(isinstance(a, Tensor) and a.requires_grad and grad_on for a in args)
        ctx = FunctionCtx(name + "Backward", needs)
        with no_grad():
            if uses_setup:
                result = cls.forward(*args)
                cls.setup_context(ctx, args, result)
            else:
                result = cls.forward(ctx, *args)
        single = not isinstance(result, tuple)
        outs = (result,) if single else result
        for k, o in enumerate(outs):
            if not isinstance(o, Tensor):
                raise TypeError(f"{name}.forward must return a Tensor or a tuple of Tensors; output {k} is a "
                                f"{type(o).__name__}")

        non_diff = {id(t) for t in ctx._non_diff}
        diff = [k for k, o in enumerate(outs) if o.dtype.kind in "fV" and id(o) not in non_diff]
        pos = [p for p, a in enumerate(args) if isinstance(a, Tensor)]
        if not (diff and any(needs)):
            return result if single else tuple(outs)  # nothing to record

        if len({outs[k].dtype for k in diff}) > 1:
            raise NotImplementedError(f"{name}: differentiable outputs of different dtypes "
                                      f"({', '.join(str(outs[k].dtype) for k in diff)}) are not supported; "
                                      "cast them to one dtype inside forward")
        ctx._out_arrays = tuple(outs[k]._array for k in diff)
        packed_outputs = not single or len(diff) != 1
        layout: list = []
        start = 0
        for k in diff:
            n = outs[k]._array.size
            layout.append((start, start + n, outs[k].shape))
            start += n
        ctx._layout = tuple(layout) if packed_outputs else ()
        arr = (np.concatenate([a.reshape(-1) for a in ctx._out_arrays]) if packed_outputs
               else ctx._out_arrays[0])

        kw = {"ctx": ctx, "cls": cls, "rule": cls._rule, "array": arr, "arg_pos": pos, "n_args": len(args),
              "diff": diff, "n_outs": len(outs)}
        ctx._kw = kw
        node_out = Tensor._apply(cls._rule, tuple(args[p] for p in pos), kw)
        if packed_outputs:
            new_outs = list(outs)
            for (a, b, shape), k in zip(layout, diff):
                new_outs[k] = node_out[a:b].reshape(shape)
        else:
            new_outs = [node_out]
        ctx._out_vcs = tuple(counter(new_outs[k]) for k in diff)

        # saved tensors: outputs by position (rebuilt in backward), everything else as is
        out_pos = {id(outs[k]): i for i, k in enumerate(diff)}
        saved = []
        for t in ctx._saved_raw:
            if t is None:
                saved.append(("val", None, None, 0))
            elif id(t) in out_pos:
                i = out_pos[id(t)]
                saved.append(("out", i, ctx._out_vcs[i], ctx._out_vcs[i][0]))
            else:
                vc = counter(t)
                saved.append(("val", t, vc, vc[0]))
        ctx._saved = tuple(saved)
        ctx._saved_raw = ()
        for k, o in enumerate(outs):
            if k not in diff:
                new_outs[k] = wrap_array(o._array)  # non-differentiable: a plain tensor
        return new_outs[0] if single else tuple(new_outs)
