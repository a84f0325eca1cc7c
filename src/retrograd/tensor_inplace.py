"""Tensor's in-place methods (``add_``, ``mul_``, ``masked_fill_``, ``copy_``,
``scatter_``, ``index_add_`` ..., the augmented assignments ``+=`` ... and
``__setitem__``) as plain functions that ``Tensor`` binds as methods under their
own names, with PyTorch's semantics:

- The result is written into the tensor's own storage (aliases and views see
  it) and the tensor's version counter is bumped, so a graph that saved the old
  values refuses to backpropagate through them.
- The other operand broadcasts to the tensor's shape (the shape never changes)
  and the result is cast to the tensor's dtype; a result PyTorch cannot cast
  (a float result into an integer tensor, a number into a bool tensor) raises.
- A leaf that requires grad (or a view of one) refuses in-place ops while grad
  mode is on, as in PyTorch; under ``no_grad`` the op just writes.
- On a tensor in a graph (or when an operand requires grad) the op is recorded:
  its out-of-place form runs on a *twin* of the tensor holding the old value,
  the result is written into the storage, and the tensor's node is replaced by
  the new one (PyTorch's history rebase: ``grad_fn`` changes). The new node
  remembers the old one (``Node.extra.prev``), so the engine sends the gradient
  of ops recorded before the change to the old history. The twin keeps a copy of
  the old value only when a backward rule needs it (PyTorch's ``original_self``).
- An in-place op with grad recording on a view of a tensor in a graph is refused
  with NotImplementedError (PyTorch's CopySlices is not implemented): apply the
  op to the base tensor, or ``clone()`` the view first.

Below ``tensor.py``, like ``tensor_shape``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import backend as B
from . import ops as O
from . import tensor_shape as TS
from .engine import Node, _history, new_node, next_seq, no_grad, state
from .tensor_shape import _convert_index, _index_array, _norm_dim, _torch_name
from .versions import bump, counter

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module

def _arr(x: Any) -> Any:
    return x._array if isinstance(x, state.tensor_type) else x


def _can_cast(src: np.dtype, dst: np.dtype) -> bool:
    """PyTorch's ``canCast``: no float -> integral, no complex -> real, no non-bool -> bool."""
    if src.kind == "c" and dst.kind != "c":
        return False
    if src.kind in "fcV" and dst.kind in "iu":
        return False
    return not (src.kind != "b" and dst.kind == "b")


_OVERLAP = ("unsupported operation: more than one element of the written-to tensor refers to a single memory "
            "location. Please clone() the tensor before performing the operation.")


def _view_error(label: str, kind: str, has_node: bool, indirect: bool) -> str:
    """PyTorch's message for an in-place change of a view made under no_grad or by a multi-view
    function (``indirect``: the change was to its base or another view of the base)."""
    label = TS.view_label(label)
    what = "its base or another view of its base has been" if indirect else "is being"
    if kind == TS.NO_GRAD or not has_node:
        prefix = f"{label} is a view of a view which was created in" if has_node else "A view was created in"
        msg = f"{prefix} no_grad mode and {what} modified inplace with grad mode enabled."
    else:
        msg = f"{label} is a view and {what} modified inplace."
    if kind == TS.MULTI:
        return msg + (" This view is the output of a function that returns multiple views. Such functions do "
                      "not allow the output views to be modified inplace. You should replace the inplace "
                      "operation by an out-of-place one.")
    return msg + (" Given that this use case is ambiguous and error-prone, it is forbidden. You can clarify "
                  "your code by moving both the view and the inplace either both inside the no_grad block "
                  "(if you don't want the inplace to be tracked) or both outside (if you want the inplace "
                  "to be tracked).")


def _check_inplace(self: Tensor, name: str) -> None:
    """Refuse what PyTorch refuses when an in-place op on ``self`` is recorded (grad mode on and
    something requires grad): a view made under no_grad or by split/chunk/unbind, a view of a
    leaf that requires grad, a leaf that requires grad."""
    vi = getattr(self, "_viewinfo", None)
    if vi is not None:
        root, kind, label = vi
        if kind is not None:
            raise RuntimeError(f"{name}: {_view_error(label, kind, self._node is not None, False)}")
        if root._node is None and root.requires_grad:
            raise RuntimeError(f"{name}: a view of a leaf Variable that requires grad is being used in an "
                               "in-place operation.")
    elif self._node is None and self.requires_grad:
        raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an in-place "
                           "operation. (Wrap the update in `with rg.no_grad():`, as optimizers do, or "
                           "use the out-of-place version.)")


def _fit(self: Tensor, name: str, r: Tensor) -> Tensor:
    """``r`` checked against ``self``'s shape and cast to its dtype, as an in-place op's result."""
    if r.shape != self.shape:
        raise RuntimeError(f"{name}: output with shape {list(self.shape)} doesn't match the broadcast "
                           f"shape {list(r.shape)}")
    if r.dtype != self.dtype:
        if not _can_cast(r.dtype, self.dtype):
            raise RuntimeError(f"{name}: result type {_torch_name(r.dtype)} can't be cast to the desired "
                               f"output type {_torch_name(self.dtype)}")
        r = r._cast(self.dtype)
    return r


def _requires_grad(operands: tuple) -> bool:
    T = state.tensor_type
    return any(isinstance(o, T) and o.requires_grad for o in operands)


def _apply_inplace(self: Tensor, name: str, compute: Callable, operands: tuple = ()) -> Tensor:
    """Make ``self`` hold ``compute(self)`` (its out-of-place result) in its own storage.

    ``compute(x)`` must read the tensor's value only through ``x``. ``operands``: the other
    tensors it reads (recording is needed when any of them, or ``self``, requires grad)."""
    if not (state.enabled and (self.requires_grad or _requires_grad(operands))):
        with no_grad():
            r = _fit(self, name, compute(self))
        _write(self, r._array, "unsafe", name)
        bump(self)
        return self
    _check_inplace(self, name)
    if getattr(self, "_viewinfo", None) is not None:
        return _record_view(self, name, compute)
    return _record(self, name, compute)


def _raise_unwritable(self: Tensor, name: str) -> None:
    if 0 in self._array.strides:  # an expanded view (PyTorch allows fill_ and setitem there; retrograd not)
        raise RuntimeError(f"{name}: {_OVERLAP}") from None
    raise RuntimeError(f"{name}: the tensor's memory is read-only (a tensor made from a read-only NumPy "
                       "array); clone() it first") from None


def _write(self: Tensor, value: np.ndarray, casting: str = "same_kind", name: str = "in-place") -> None:
    try:
        np.copyto(self._array, value, casting=casting)
    except ValueError as e:
        if not self._array.flags.writeable and 0 in self._array.strides:
            raise RuntimeError(f"{name}: {_OVERLAP}") from None  # an expanded view, as PyTorch
        raise RuntimeError(str(e)) from None


def _new_node(rule: O.Rule, ins: tuple, kw: Any) -> Node:
    return new_node(rule, ins, None, kw, 0)


def _rebased(self: Tensor, node: Node, old: Node | None) -> None:
    """``self``'s history is now ``node`` (its previous node ``old``, for consumers recorded
    before); ``retain_grad`` moves with the tensor, hooks stay with the old history (as PyTorch)."""
    node._extra().prev = old
    if old is not None and old.retain is not None and old.retain() is self:
        node.retain, old.retain = old.retain, None
    self._node = node
    self.requires_grad = True
    vc = counter(self)
    if len(vc) == 1:
        vc.append(True)  # this storage's history changed: the engine checks its views' histories


def _record(self: Tensor, name: str, compute: Callable) -> Tensor:
    T = state.tensor_type
    old = self._node
    twin = T._wrap(self._array)  # the tensor as it was: the new node's input
    twin.requires_grad = self.requires_grad
    twin._node = old
    start = next_seq()
    r = _fit(self, name, compute(twin))
    node = r._node
    if node is None:
        raise RuntimeError(f"{name}: this operation is not differentiable, so it cannot be recorded on a "
                           "tensor that requires grad; run it under rg.no_grad() or on a detach()ed tensor")
    if node.seq > start:  # compute returned an existing tensor (e.g. the operand itself): own node
        r = r.clone()
        node = r._node
    _unalias(node, self, twin, start)
    if _reads(node, {id(twin)}, start):
        twin._array = self._array.copy()  # a backward rule reads the old value: keep it (PyTorch's original_self)
    _write(self, r._array, name=name)
    bump(self)
    if node.out is r._array:  # the saved output is now this tensor's storage, checked like PyTorch's
        node.out = self._array
        node.out_vc = self._vc
        node.out_v = self._vc[0]
    _rebased(self, node, old)
    return self


def _unalias(node: Node, self: Tensor, twin: Tensor, start: int) -> None:
    """Replace ``self`` by ``twin`` among the inputs of the nodes ``compute`` recorded (an operand
    that is the tensor itself, as in ``h.mul_(h)``). A node whose backward reads its inputs then
    refuses to run, as PyTorch's, which saved ``self`` before the op changed it."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if id(n) in seen or n.inputs is None or n.seq > start:
            continue
        seen.add(id(n))
        if any(t is self for t in n.inputs):
            n.inputs = tuple(twin if t is self else t for t in n.inputs)
            if n.rule.needs_inputs:
                n.version = -1
        stack.extend(t._node for t in n.inputs if t is not None and t._node is not None)


def _view_positions(root: np.ndarray, view: np.ndarray) -> np.ndarray:
    """The flat (C-order) positions in ``root`` of each element of ``view``, an array sharing its memory."""
    isz = root.itemsize
    r0 = root.__array_interface__["data"][0]
    v0 = view.__array_interface__["data"][0]
    addr = np.full((), v0 - r0, dtype=np.int64)
    for n, st in zip(view.shape, view.strides):
        addr = np.add.outer(addr, np.arange(n, dtype=np.int64) * st)
    if root.flags.c_contiguous:
        pos = addr // isz
        if pos.size and (pos.min() < 0 or pos.max() >= root.size):
            raise RuntimeError("in-place operation on a view: the view no longer lies in its base's storage "
                               "(was the base's .data replaced?)")
        return pos
    raddr = np.zeros((), dtype=np.int64)
    for n, st in zip(root.shape, root.strides):
        raddr = np.add.outer(raddr, np.arange(n, dtype=np.int64) * st)
    flat = raddr.reshape(-1)
    order = np.argsort(flat, kind="stable")
    k = np.searchsorted(flat[order], addr).clip(0, max(flat.size - 1, 0))
    if flat.size == 0 or not np.array_equal(flat[order][k], addr):
        raise RuntimeError("in-place operation on a view: the view no longer lies in its base's storage "
                           "(was the base's .data replaced?)")
    return order[k]


def _record_view(self: Tensor, name: str, compute: Callable) -> Tensor:
    """``_record`` for a view: PyTorch's CopySlices. The op runs on the view's values taken from
    the base's history; the base's new history writes the result into the view's positions, and
    the view's new history reads those positions of the base (PyTorch's AsStridedBackward)."""
    T = state.tensor_type
    root = self._viewinfo[0]
    a = self._array
    if any(st == 0 and n > 1 for st, n in zip(a.strides, a.shape)):  # expand: the only overlapping views
        raise RuntimeError(f"{name}: {_OVERLAP}")
    pos = _view_positions(root._array, a)
    kw = {"pos": pos, "shape": root.shape}
    old_root = root._node
    twin = T._wrap(root._array)  # the base as it was (AS_STRIDED reads only its shape)
    twin.requires_grad = root.requires_grad
    twin._node = old_root
    start = next_seq()
    view = twin._apply(AS_STRIDED, (twin,), kw)  # a copy of the view's old values
    r = _fit(self, name, compute(view))
    if r._node is None:
        raise RuntimeError(f"{name}: this operation is not differentiable, so it cannot be recorded on a "
                           "tensor that requires grad")
    if r._node.seq > start:
        r = r.clone()
    _unalias(r._node, self, view, start)
    node = _new_node(COPY_SLICES, (twin, r), kw)
    _write(self, r._array, name=name)
    bump(self)  # shared with the base
    _rebased(root, node, old_root)
    vnode = _new_node(AS_STRIDED, (root,), kw)
    _rebased(self, vnode, self._node)
    return self


def _as_strided_f(ins: tuple, kw: dict) -> np.ndarray:
    return np.reshape(ins[0], -1)[kw["pos"]]


def _as_strided_b(g: Any, out: Any, ins: tuple, kw: dict, needs: tuple) -> tuple:
    return (O.call(AS_STRIDED_T, (g,), kw),)


def _as_strided_t_f(ins: tuple, kw: dict) -> np.ndarray:
    g = ins[0]
    z = np.zeros(math.prod(kw["shape"]), dtype=g.dtype)
    np.add.at(z, kw["pos"].reshape(-1), np.reshape(g, -1))
    return z.reshape(kw["shape"])


def _copy_slices_f(ins: tuple, kw: dict) -> np.ndarray:
    z = np.array(ins[0], copy=True, order="C")
    z.reshape(-1)[kw["pos"]] = ins[1]
    return z


def _copy_slices_b(g: Any, out: Any, ins: tuple, kw: dict, needs: tuple) -> tuple:
    keep = np.ones(math.prod(kw["shape"]), dtype=bool)
    keep[kw["pos"].reshape(-1)] = False
    keep = keep.reshape(kw["shape"])
    return (g * keep if needs[0] else None, O.call(AS_STRIDED, (g,), kw) if needs[1] else None)


# the elements of a base at the flat positions ``pos`` (a view's elements), its adjoint, and the
# base with the elements at ``pos`` replaced (PyTorch's CopySlices): the graph of in-place ops on views
AS_STRIDED = O.Rule("as_strided", _as_strided_f, _as_strided_b, needs_inputs=False)
AS_STRIDED_T = O.Rule("as_strided_scatter", _as_strided_t_f,
                      lambda g, out, ins, kw, needs: (O.call(AS_STRIDED, (g,), kw),), needs_inputs=False)
COPY_SLICES = O.Rule("copy_slices", _copy_slices_f, _copy_slices_b, needs_inputs=False)
COPY_SLICES.node_name = "CopySlices"
for _r in (AS_STRIDED, AS_STRIDED_T, COPY_SLICES):
    _r.lowp = "native"  # bfloat16: element moves, exact on the bfloat16 arrays (see ops.lowp_twin)
del _r


def _view_history(t: Tensor, gi: Any, seq: int) -> tuple:
    """The engine's question for an input ``t`` whose storage had in-place changes: where does the
    gradient ``gi`` of ``t`` (as it was when the node numbered ``seq`` read it) go? A view whose
    base's history changed after the view's own node was made reads the base's newer history
    (PyTorch regenerates such a view's grad_fn): ``(base's node, gi placed in the base's shape)``.
    Otherwise ``(t's node then, gi)``; a node of None: a leaf (``t``) or no history then."""
    own = t._node
    if own is not None and own.seq < seq:
        own = _history(own, seq)
    vi = getattr(t, "_viewinfo", None)
    if vi is None:
        return own, gi
    root = vi[0]
    h = root._node
    if h is not None and h.seq < seq:
        h = _history(h, seq)
    if h is None or (own is not None and own.seq <= h.seq):
        return own, gi
    if vi[1] is not None:  # PyTorch refuses when such a view is used (here: found in backward)
        raise RuntimeError(_view_error(vi[2], vi[1], own is not None, True))
    kw = {"pos": _view_positions(root._array, t._array), "shape": root.shape}
    return h, O.call(AS_STRIDED_T, (gi,), kw)


state.view_history = _view_history


def _reads(node: Any, twins: set, start: int) -> bool:
    """Whether a node recorded since ``start`` (by compute) needs the values of a tensor whose id
    is in ``twins`` in its backward."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if id(n) in seen or n.inputs is None:
            continue
        seen.add(id(n))
        for t in n.inputs:
            if t is None:
                continue
            if id(t) in twins and n.rule.needs_inputs:
                return True
            if t._node is not None and t._node.seq < start:
                stack.append(t._node)
    return False


# ====================================================================== arithmetic
def _binary(name: str, method: str, ufunc: Any) -> Callable:
    """The in-place form of the Tensor method ``method`` (a binary op), fast on plain arrays
    when nothing is recorded and no promotion is involved."""

    def op(self: Tensor, other: Any, **kw: Any) -> Tensor:
        T = state.tensor_type
        if ufunc is not None and not kw and not (state.enabled and (self.requires_grad or (
                isinstance(other, T) and other.requires_grad))) and self._array.dtype.kind == "f":
            # (bfloat16 takes the general path: its op computes in float32 as PyTorch's, see ops.lowp_twin)
            to = type(other)
            try:
                if to is float or to is int:
                    ufunc(self._array, other, out=self._array)
                    bump(self)
                    return self
                if isinstance(other, T) and other._array.dtype == self._array.dtype and \
                        np.broadcast_shapes(other.shape, self.shape) == self.shape:
                    ufunc(self._array, other._array, out=self._array)
                    bump(self)
                    return self
            except ValueError:
                if 0 in self._array.strides:
                    raise RuntimeError(f"{name}: {_OVERLAP}") from None
                raise

        def compute(x: Tensor) -> Tensor:
            # other may be self (h *= h): recorded as such, then _unalias makes it torch's saved self
            return getattr(x, method)(other, **kw)

        return _apply_inplace(self, name, compute, (other,))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"In-place ``{method}``: writes the result into this tensor (PyTorch's ``{name}``)."
    return op


add_ = _binary("add_", "add", np.add)
sub_ = _binary("sub_", "sub", np.subtract)
mul_ = _binary("mul_", "mul", np.multiply)
div_ = _binary("div_", "div", np.true_divide)
pow_ = _binary("pow_", "pow", None)
floor_divide_ = _binary("floor_divide_", "__floordiv__", None)
remainder_ = _binary("remainder_", "__mod__", None)
bitwise_and_ = _binary("bitwise_and_", "__and__", None)
bitwise_or_ = _binary("bitwise_or_", "__or__", None)
bitwise_xor_ = _binary("bitwise_xor_", "__xor__", None)
maximum_ = _binary("maximum_", "maximum", None)
minimum_ = _binary("minimum_", "minimum", None)


def _augmented(inplace: Callable, dunder: str) -> Callable:
    """``x op= y``: PyTorch runs the in-place op and rebinds ``x`` to the same tensor."""

    def op(self: Tensor, other: Any) -> Tensor:
        return inplace(self, other)

    op.__name__ = dunder
    op.__qualname__ = f"Tensor.{dunder}"
    return op


__iadd__ = _augmented(add_, "__iadd__")
__isub__ = _augmented(sub_, "__isub__")
__imul__ = _augmented(mul_, "__imul__")
__itruediv__ = _augmented(div_, "__itruediv__")
__ifloordiv__ = _augmented(floor_divide_, "__ifloordiv__")
__imod__ = _augmented(remainder_, "__imod__")
__ipow__ = _augmented(pow_, "__ipow__")
__iand__ = _augmented(bitwise_and_, "__iand__")
__ior__ = _augmented(bitwise_or_, "__ior__")
__ixor__ = _augmented(bitwise_xor_, "__ixor__")


def _unary(name: str, method: str) -> Callable:
    def op(self: Tensor, *args: Any, **kw: Any) -> Tensor:
        return _apply_inplace(self, name, lambda x: getattr(x, method)(*args, **kw))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"In-place ``{method}`` (PyTorch's ``{name}``)."
    return op


neg_ = _unary("neg_", "neg")
abs_ = _unary("abs_", "abs")
sqrt_ = _unary("sqrt_", "sqrt")
rsqrt_ = _unary("rsqrt_", "rsqrt")
exp_ = _unary("exp_", "exp")
log_ = _unary("log_", "log")
sin_ = _unary("sin_", "sin")
cos_ = _unary("cos_", "cos")
tanh_ = _unary("tanh_", "tanh")
sigmoid_ = _unary("sigmoid_", "sigmoid")
relu_ = _unary("relu_", "relu")
square_ = _unary("square_", "square")
reciprocal_ = _unary("reciprocal_", "reciprocal")
floor_ = _unary("floor_", "floor")
ceil_ = _unary("ceil_", "ceil")
round_ = _unary("round_", "round")
trunc_ = _unary("trunc_", "trunc")
sign_ = _unary("sign_", "sign")


def clamp_(self: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    return _apply_inplace(self, "clamp_", lambda x: x.clamp(min, max), (min, max))


clip_ = clamp_


def addcmul_(self: Tensor, t1: Any, t2: Any, *, value: Any = 1) -> Tensor:
    """``self += value * t1 * t2``."""
    return _apply_inplace(self, "addcmul_", lambda x: x + t1 * t2 * value if value != 1 else x + t1 * t2,
                          (t1, t2))


def addcdiv_(self: Tensor, t1: Any, t2: Any, *, value: Any = 1) -> Tensor:
    """``self += value * t1 / t2``."""
    return _apply_inplace(self, "addcdiv_", lambda x: x + t1 / t2 * value if value != 1 else x + t1 / t2,
                          (t1, t2))


def lerp_(self: Tensor, end: Any, weight: Any) -> Tensor:
    """``self += weight * (end - self)``."""
    return _apply_inplace(self, "lerp_", lambda x: x + (end - x) * weight, (end, weight))


def masked_fill_(self: Tensor, mask: Any, value: Any) -> Tensor:
    """Write ``value`` where ``mask`` (bool, broadcastable to this tensor's shape) is True."""
    return _apply_inplace(self, "masked_fill_", lambda x: x.masked_fill(mask, value), (value,))


# ====================================================================== fill and copy
_ALL = np.ones((), dtype=bool)


def fill_(self: Tensor, value: Any) -> Tensor:
    """Every element set to ``value`` (a number or a 0-d tensor, cast to this tensor's dtype)."""
    T = state.tensor_type
    if isinstance(value, T):
        if value.ndim != 0:
            raise RuntimeError(f"fill_: only supports 0-dimension value tensor but got tensor with "
                               f"{value.ndim} dimensions")
        value = value._cast(self.dtype)
    elif not (state.enabled and self.requires_grad):
        try:
            self._array[...] = value
        except ValueError:
            _raise_unwritable(self, "fill_")
        bump(self)
        return self
    return _apply_inplace(self, "fill_", lambda x: x.masked_fill(_ALL, value), (value,))


def zero_(self: Tensor) -> Tensor:
    return fill_(self, 0)


def copy_(self: Tensor, src: Any, non_blocking: bool = False) -> Tensor:
    """Copy ``src`` (broadcast to this tensor's shape, cast to its dtype) into this tensor."""
    T = state.tensor_type
    if not (state.enabled and (self.requires_grad or isinstance(src, T) and src.requires_grad)):
        s = _arr(src)
        if not self._array.flags.writeable:
            _raise_unwritable(self, "copy_")
        try:
            np.copyto(self._array, np.broadcast_to(s, self.shape), casting="unsafe")
        except ValueError as e:
            raise RuntimeError(f"copy_: source of shape {tuple(np.shape(s))} does not broadcast to the "
                               f"destination's shape {tuple(self.shape)}") from e
        bump(self)
        return self
    if not isinstance(src, T):
        src = T._wrap(np.asarray(src))
    try:
        np.broadcast_shapes(src.shape, self.shape)
    except ValueError:
        raise RuntimeError(f"copy_: source of shape {tuple(src.shape)} does not broadcast to the "
                           f"destination's shape {tuple(self.shape)}") from None
    s = src._cast(self.dtype) if src.dtype != self.dtype else src
    # where(True, src, old): the old value gets a zero gradient, as PyTorch's CopyBackwards
    return _apply_inplace(self, "copy_", lambda x: s.where(_ALL, x), (src,))


def uniform_(self: Tensor, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> Tensor:
    from .random import resolve
    return copy_(self, resolve(generator).uniform(a, b, self.shape))


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Tensor:
    from .random import resolve
    return copy_(self, resolve(generator).normal(mean, std, self.shape))


# ====================================================================== indexed writes
def _put_f(ins: tuple, kw: dict) -> np.ndarray:
    z = np.zeros(kw["shape"], dtype=ins[0].dtype)
    z[kw["index"]] = ins[0]
    return z


def _put_b(g: Any, out: Any, ins: tuple, kw: dict, needs: tuple) -> tuple:
    return (O.call(O.INDEX, (g,), {"index": kw["index"], "advanced": kw["advanced"]}),)


# ``value`` placed at ``index`` of a zero array of ``shape`` (PyTorch's index_put_ without
# accumulate, where ``where(mask, placed, self)`` keeps the rest of self)
PUT = O.Rule("index_put", _put_f, _put_b, needs_inputs=False, lowp="native")  # bfloat16: exact as it is


def setitem(self: Tensor, index: Any, value: Any) -> None:
    """``self[index] = value`` (PyTorch's ``index_put_``); recorded when either needs grad."""
    T = state.tensor_type
    idx, advanced = _convert_index(index, self.shape)
    if not (state.enabled and (self.requires_grad or isinstance(value, T) and value.requires_grad)):
        try:
            self._array[idx] = _arr(value)
        except ValueError:
            if self._array.flags.writeable:
                raise
            _raise_unwritable(self, "__setitem__")
        bump(self)
        return
    mask = np.zeros(self.shape, dtype=bool)
    mask[idx] = True
    if not isinstance(value, T) and np.ndim(value):
        value = T._wrap(np.asarray(value, dtype=self.dtype))
    if not isinstance(value, T):
        _apply_inplace(self, "__setitem__ (index_put_)", lambda x: x.masked_fill(mask, value))
        return
    region = mask[idx].shape
    try:
        np.broadcast_to(np.empty(value.shape, dtype=bool), region)
    except ValueError:
        raise RuntimeError(f"__setitem__ (index_put_): shape mismatch: value tensor of shape "
                           f"{list(value.shape)} cannot be broadcast to indexing result of shape "
                           f"{list(region)}") from None
    v = value._cast(self.dtype) if value.dtype != self.dtype else value

    def compute(x: Tensor) -> Tensor:
        placed = x._apply(PUT, (v,), {"index": idx, "shape": self.shape, "advanced": advanced})
        return placed.where(mask, x)

    _apply_inplace(self, "__setitem__ (index_put_)", compute, (value,))


def _positions(self: Tensor, name: str, dim: int, index: Any, src: Any) -> tuple[int, np.ndarray, tuple]:
    """Checked ``dim`` and ``index`` of scatter: the index array and the positions it writes."""
    T = state.tensor_type
    d = _norm_dim(dim, self.ndim, name)
    idx = _index_array(index, name)
    if idx.ndim != self.ndim and not (idx.ndim <= 1 and self.ndim <= 1):
        raise RuntimeError(f"{name}: Index tensor must have the same number of dimensions as self tensor "
                           f"({idx.ndim} != {self.ndim})")
    idx = idx.reshape(idx.shape if self.ndim else ())
    src_shape = src.shape if isinstance(src, T) else None
    if any((i != d and si > sx) or (src_shape is not None and si > ss) for i, (si, sx, ss) in
           enumerate(zip(idx.shape, self.shape, src_shape or idx.shape))):
        raise RuntimeError(f"{name}: Expected index {list(idx.shape)} to be no larger than self "
                           f"{list(self.shape)} apart from dimension {d}" +
                           (f" and to be no larger size than src {list(src_shape)}" if src_shape else ""))
    n = self.shape[d] if self.ndim else 1
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.min() if idx.min() < 0 else idx.max())
        raise RuntimeError(f"{name}: index {bad} is out of bounds for dimension {d} with size {n}")
    if not self.ndim:
        return d, idx, ()
    pos = list(np.indices(idx.shape, sparse=True))
    pos[d] = idx
    return d, idx, tuple(pos)


def _scatter_compute(self: Tensor, name: str, dim: int, index: Any, src: Any, value: Any,
                     reduce: str | None) -> tuple[Callable, tuple]:
    T = state.tensor_type
    if src is None and value is None:
        raise TypeError(f"{name}: expected a src tensor or a value (scatter(dim, index, src) or "
                        "scatter(dim, index, value))")
    if src is not None and not isinstance(src, T):
        src, value = None, src  # scatter(dim, index, 1.5): the third positional argument is a value
    d, idx, pos = _positions(self, name, dim, index, src)
    if src is not None and src.dtype != self.dtype:
        raise RuntimeError(f"{name}: Expected self.dtype to be equal to src.dtype ({_torch_name(self.dtype)} "
                           f"!= {_torch_name(src.dtype)})")
    part = src[tuple(slice(0, s) for s in idx.shape)] if src is not None else None
    if reduce is not None:
        if reduce not in ("add", "multiply"):
            raise RuntimeError(f"{name}: reduce argument must be either add or multiply, got {reduce!r}")
        vals = part._array if part is not None else np.full(idx.shape, value, dtype=self.dtype)
        ufunc = np.add if reduce == "add" else np.multiply

        def reduced(x: Tensor) -> Tensor:
            if x.requires_grad or (part is not None and part.requires_grad):
                raise RuntimeError(f"{name}: the derivative of scatter with reduce= is not implemented (as in "
                                   "PyTorch); use scatter_add or scatter_reduce-free code, or run it under "
                                   "rg.no_grad()")
            z = np.array(x._array, copy=True)
            ufunc.at(z, pos, vals)
            return x._wrap(z)

        return reduced, (part,)
    mask = np.zeros(self.shape, dtype=bool)
    mask[pos] = True
    if part is None:
        return (lambda x: x.masked_fill(mask, value)), ()

    def compute(x: Tensor) -> Tensor:
        placed = x._apply(PUT, (part,), {"index": pos, "shape": self.shape, "advanced": True})
        return placed.where(mask, x)

    return compute, (part,)


def scatter_(self: Tensor, dim: int, index: Any, src: Any = None, *, value: Any = None,
             reduce: str | None = None) -> Tensor:
    """Write ``src[i][j]`` (or ``value``) at ``self[index[i][j]][j]`` (dim 0; likewise for any
    ``dim``). ``reduce='add'``/``'multiply'`` combines instead (not differentiable, as in PyTorch)."""
    compute, operands = _scatter_compute(self, "scatter_", dim, index, src, value, reduce)
    return _apply_inplace(self, "scatter_", compute, operands)


def scatter(self: Tensor, dim: int, index: Any, src: Any = None, *, value: Any = None,
            reduce: str | None = None) -> Tensor:
    """Out-of-place ``scatter_``: a new tensor, ``self`` unchanged."""
    compute, _ = _scatter_compute(self, "scatter", dim, index, src, value, reduce)
    return compute(self)


def _index_vector(self: Tensor, name: str, dim: int, index: Any) -> tuple[int, np.ndarray]:
    d = _norm_dim(dim, self.ndim, name)
    idx = _arr(index) if isinstance(index, state.tensor_type) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"{name}: Expected dtype int32/int64 for index but got: {_torch_name(idx.dtype)}")
    if idx.ndim > 1:
        raise RuntimeError(f"{name}: Index has to be a vector/scalar, got a {idx.ndim}-D index")
    return d, idx.reshape(-1)


def _index_add_compute(self: Tensor, name: str, dim: int, index: Any, source: Any, alpha: Any) -> Callable:
    T = state.tensor_type
    d, idx = _index_vector(self, name, dim, index)
    if not isinstance(source, T):
        raise TypeError(f"{name}: source must be a Tensor, got {type(source).__name__}")
    if source.dtype != self.dtype:
        raise RuntimeError(f"{name}: self ({_torch_name(self.dtype)}) and source ({_torch_name(source.dtype)}) "
                           "must have the same scalar type")
    expect = tuple(len(idx) if i == d else s for i, s in enumerate(self.shape))
    if tuple(source.shape) != expect and not (self.ndim == 0 and source.numel() == len(idx) == 1):
        raise RuntimeError(f"{name}: source of shape {list(source.shape)} does not match self of shape "
                           f"{list(self.shape)} with {len(idx)} indices along dim {d} (expected "
                           f"{list(expect)})")
    n = self.shape[d] if self.ndim else 1
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.min() if idx.min() < 0 else idx.max())
        raise RuntimeError(f"{name}: index {bad} is out of bounds for dimension {d} with size {n}")
    where = (slice(None),) * d + (idx,) if self.ndim else idx.reshape(())

    def compute(x: Tensor) -> Tensor:
        s = source if alpha == 1 else source * alpha
        s = s.reshape(expect) if self.ndim else s.reshape(())
        added = x._apply(O.INDEX_ADD_NEW, (s,), {"index": where, "shape": self.shape, "advanced": True})
        return x + added

    return compute


def index_add_(self: Tensor, dim: int, index: Any, source: Any, *, alpha: Any = 1) -> Tensor:
    """``self[..., index[i], ...] += alpha * source[..., i, ...]`` along ``dim`` (repeated indices add up)."""
    return _apply_inplace(self, "index_add_", _index_add_compute(self, "index_add_", dim, index, source, alpha),
                          (source,))


def index_add(self: Tensor, dim: int, index: Any, source: Any, *, alpha: Any = 1) -> Tensor:
    """Out-of-place ``index_add_``."""
    return _index_add_compute(self, "index_add", dim, index, source, alpha)(self)


def _index_fill_mask(self: Tensor, name: str, dim: int, index: Any) -> np.ndarray:
    d, idx = _index_vector(self, name, dim, index)
    n = self.shape[d] if self.ndim else 1
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = int(idx.min() if idx.min() < -n else idx.max())
        raise IndexError(f"{name}: index {bad} is out of bounds for dimension {d} with size {n}")
    mask = np.zeros(self.shape, dtype=bool)
    mask[(slice(None),) * d + (idx % n,) if self.ndim else ()] = True
    return mask


def index_fill_(self: Tensor, dim: int, index: Any, value: Any) -> Tensor:
    """Set the slices ``index`` along ``dim`` to ``value`` (a number or a 0-d tensor)."""
    mask = _index_fill_mask(self, "index_fill_", dim, index)
    return _apply_inplace(self, "index_fill_", lambda x: x.masked_fill(mask, value), (value,))


def index_fill(self: Tensor, dim: int, index: Any, value: Any) -> Tensor:
    """Out-of-place ``index_fill_``."""
    return self.masked_fill(_index_fill_mask(self, "index_fill", dim, index), value)
