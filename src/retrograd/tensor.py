"""``Tensor``: an array plus the autograd bookkeeping, with PyTorch's operators
and methods. Every differentiable method calls one rule of ``ops.py`` through
``Tensor._apply``, which records a ``Node`` (``engine.py``) when grad is needed.

The class lists every method here. Its core (construction, attributes,
autograd, conversion, operators, comparisons) is written out; the larger
method groups are plain functions of ``self`` in modules below this one, bound
by name in the class body: ``tensor_math`` (named arithmetic, elementwise math,
``matmul``, ``where``), ``tensor_reduce``, ``tensor_shape`` (shape, indexing)
and ``tensor_inplace``; ``tensor_convert`` holds PyTorch's conversion and
promotion rules. Above this module: ``tensor_functions`` (``cat``, ``stack``,
``einsum``, ``pad``) and ``tensor_numpy`` (NumPy dispatch for higher-order
gradients)."""
from __future__ import annotations

import copy

import weakref
from typing import Any, Callable, Sequence

import numpy as np

from . import backend as B
from . import ops as O
from .amp.autocast_mode import cast_rule_inputs, state as _autocast
from .engine import EDGE_MIN_BYTES, Node, _check_finite, _sequence, backward, creation_site, edges, state
from .scalars import _C32, _F32, const as _const
from .hooks import RemovableHandle, add_hook
from . import tensor_compat, tensor_convert, tensor_inplace, tensor_math, tensor_reduce, tensor_shape
from .tensor_convert import _as_tensor, _coerce, _to_array
from .versions import FRESH as _FRESH, counter
from .tensor_math import matmul, where  # noqa: F401  (where: re-exported for older importers)
from .tensor_shape import _norm_dim, _norm_dims

_ndarray = np.ndarray
_BF16 = B.bfloat16
_new = object.__new__
_next_seq = _sequence.__next__

# ufunc or NumPy function -> its Tensor implementation, for ``Tensor.__array_ufunc__`` and
# ``Tensor.__array_function__``: filled by tensor_numpy.py (which imports this module, never the reverse)
NUMPY_UFUNCS: dict = {}
NUMPY_FUNCTIONS: dict = {}


def wrap_array(array: np.ndarray) -> Tensor:
    """Library-internal: wrap ``array`` as a leaf Tensor without copying it or checking its
    dtype (``requires_grad`` False, no graph). The Tensor shares the array's memory: use it
    for arrays the library has just made; users call ``rg.tensor``/``rg.from_numpy``."""
    t = object.__new__(Tensor)
    t._array = array
    t.grad = None
    t.requires_grad = False
    t._node = None
    t._vc = [0]
    t._hooks = None
    return t


def _apply(rule: O.Rule, ins: tuple, kw: Any = None) -> Tensor:
    """Run ``rule`` forward on the inputs' arrays; record a Node if any input needs grad.

    The hot path of every op (a few hundred bytecodes): the node is built in place (``_new`` and slot
    stores instead of ``Node.__init__``), and inputs that are all small skip ``edges``."""
    if _autocast.cpu_enabled:
        ins = cast_rule_inputs(rule.name, ins)
    n = len(ins)
    try:
        if n == 1:
            x = ins[0]
            a = x._array
            if a.dtype is _BF16:
                rule = O.lowp_twin(rule)
            f = rule.array_op
            if f is not None:
                out = f(a)
            elif rule.scalar_op is not None:  # engine.const, its float32 hit inline
                c = _C32.get(kw) if a.dtype is _F32 and type(kw) is float and type(a) is _ndarray else None
                out = rule.scalar_op(a, _const(kw, a) if c is None else c)
            else:
                out = rule.forward((a,), kw)
            record = x.requires_grad
        elif n == 2:
            x, y = ins
            a, b = x._array, y._array
            if a.dtype is _BF16 or b.dtype is _BF16:
                rule = O.lowp_twin(rule)
            f = rule.array_op
            out = rule.forward((a, b), kw) if f is None else f(a, b)
            record = x.requires_grad or y.requires_grad
        elif n == 3:  # linear with a bias, addmm, where ...
            x, y, z = ins
            a, b, c = x._array, y._array, z._array
            if a.dtype is _BF16 or b.dtype is _BF16 or c.dtype is _BF16:
                rule = O.lowp_twin(rule)
            out = rule.forward((a, b, c), kw)
            record = x.requires_grad or y.requires_grad or z.requires_grad
        else:
            if any([t._array.dtype is _BF16 for t in ins]):
                rule = O.lowp_twin(rule)
            out = rule.forward(tuple([t._array for t in ins]), kw)
            record = any([t.requires_grad for t in ins])
    except ValueError as e:
        if "broadcast" not in str(e):
            raise
        shapes = " and ".join(str(tuple(t.shape)) for t in ins)
        raise RuntimeError(f"{rule.name}: shapes {shapes} are not broadcastable (sizes must be equal, or 1, "
                           "in each trailing dimension)") from None
    if type(out) is not _ndarray:
        out = np.asarray(out)
    t = _new(Tensor)
    t._array = out
    t.grad = None
    t._vc = _FRESH  # versions.FRESH: a list only when needed
    t._hooks = None
    if not record or not state.enabled:
        t.requires_grad = False
        t._node = None
        return t
    if rule.backward is None:
        raise RuntimeError(f"{rule.name}: this op is not differentiable")
    node = Node()  # (no __init__) and its fields, stored here: engine.new_node's frame costs more than the op's add
    node.seq = _next_seq()
    node.rule = rule
    node.kw = kw
    node.extra = None
    if rule.needs_inputs:
        node._ins = x if n == 1 else ins  # (one input as itself: Node.inputs)
        if n == 1:
            node.version = x._vc[0]
        elif n == 2:
            node.version = x._vc[0] + y._vc[0]
        elif n == 3:
            node.version = x._vc[0] + y._vc[0] + z._vc[0]
        else:
            node.version = sum([t._vc[0] for t in ins])
    else:  # (version unset: read only for a rule that reads its inputs)
        # the backward reads no input value: keep edges, not arrays (small inputs as they are)
        if n == 1:
            node._ins = x if a.nbytes < EDGE_MIN_BYTES else edges(ins)
        elif n == 2:
            node._ins = ins if a.nbytes < EDGE_MIN_BYTES and b.nbytes < EDGE_MIN_BYTES else edges(ins)
        else:
            node._ins = edges(ins)
    if rule.save_out:
        node.out = out
        node.out_vc = t._vc = [0]
        node.out_v = 0
    else:
        node.out = node.out_vc = None
    t.requires_grad = True
    t._node = node
    if state.anomaly:
        node.site = creation_site()
        _check_finite(out, "forward", node, ins)
    return t


def _apply1(rule: O.Rule, x: Tensor, kw: Any = None) -> Tensor:
    """``_apply(rule, (x,), kw)`` for a rule whose forward is its ``array_op`` or ``scalar_op`` (the
    operators with a number, the elementwise methods): the same result and node, without the tuple
    when no node keeps it and without ``_apply``'s dispatch on the number of inputs. Autocast,
    bfloat16 and other rules take ``_apply``."""
    a = x._array
    d = a.dtype
    if _autocast.cpu_enabled or d is _BF16:
        return _apply(rule, (x,), kw)
    f = rule.array_op
    if f is not None:
        out = f(a)
    elif rule.scalar_op is not None:  # engine.const, its float32 hit inline
        c = _C32.get(kw) if d is _F32 and type(kw) is float and type(a) is _ndarray else None
        out = rule.scalar_op(a, _const(kw, a) if c is None else c)
    else:
        return _apply(rule, (x,), kw)
    return _record1(rule, x, a, out, kw)


def _record1(rule: O.Rule, x: Tensor, a: np.ndarray, out: Any, kw: Any) -> Tensor:
    """``_apply1``'s second half: ``out``, the result of ``rule`` on ``x``'s array ``a``, as a Tensor, with
    its node when ``x`` requires grad. The operators with a float32 tensor and a number and the
    elementwise methods on float32 compute ``out`` themselves and call this directly (one frame less)."""
    if type(out) is not _ndarray:
        out = np.asarray(out)
    t = _new(Tensor)
    t._array = out
    t.grad = None
    t._vc = _FRESH  # versions.FRESH: a list only when needed
    t._hooks = None
    if not x.requires_grad or not state.enabled:
        t.requires_grad = False
        t._node = None
        return t
    if rule.backward is None:
        raise RuntimeError(f"{rule.name}: this op is not differentiable")
    node = Node()
    node.seq = _next_seq()
    node.rule = rule
    node.kw = kw
    node.extra = None
    if rule.needs_inputs:  # (the one input as itself, not a tuple: Node.inputs)
        node._ins = x
        node.version = x._vc[0]
    else:  # (version unset: read only for a rule that reads its inputs)
        node._ins = x if a.nbytes < EDGE_MIN_BYTES else edges((x,))
    if rule.save_out:
        node.out = out
        node.out_vc = t._vc = [0]
        node.out_v = 0
    else:
        node.out = node.out_vc = None
    t.requires_grad = True
    t._node = node
    if state.anomaly:
        node.site = creation_site()
        _check_finite(out, "forward", node, (x,))
    return t


# ====================================================================== operator factory
# Each operator method is made here once instead of written out per operator. The rules and
# the helpers are closure cells, so a made method runs as fast as a hand-written one.
def _binary_operators(name: str, rule: O.Rule, scalar_rule: O.Rule, rscalar_rule: O.Rule, *,
                      true_div: bool = False, check: Callable | None = None) -> tuple[Callable, Callable]:
    """``(__op__, __rop__)`` for an arithmetic operator: ``rule`` on two Tensors, ``scalar_rule``
    on ``tensor <op> number`` and ``rscalar_rule`` on ``number <op> tensor``.

    Fast paths first: a float tensor with a Python number, or two tensors of one dtype (a float
    dtype for ``true_div``); everything else goes through PyTorch's promotion in ``_coerce``.
    ``check(tensor, other)`` runs before promotion (e.g. to refuse bool subtraction)."""
    apply, apply1, record1, C32, sop = _apply, _apply1, _record1, _C32, scalar_rule.scalar_op
    autocast = _autocast

    def forward(self: Tensor, other: Any) -> Tensor:
        to = type(other)
        if to is Tensor:
            if other._array.dtype is self._array.dtype and (not true_div or self._array.dtype.kind in "fV"):
                return apply(rule, (self, other))
        elif to is float or to is int:
            a = self._array
            d = a.dtype
            if d is _F32:
                # float32 with a float whose constant is made (scalars.const): _apply1's path, inline
                if to is float and sop is not None and type(a) is _ndarray and not autocast.cpu_enabled:
                    c = C32.get(other)
                    if c is not None:
                        return record1(scalar_rule, self, a, sop(a, c), other)
                return apply1(scalar_rule, self, other)
            if d.kind in "fV":
                return apply1(scalar_rule, self, other)
        if check is not None:
            check(self, other)
        a, b = _coerce(self, other, name, true_div)
        return apply(rule, (a, b))

    def reflected(self: Tensor, other: Any) -> Tensor:
        to = type(other)
        if to is float or to is int:
            d = self._array.dtype
            if d is _F32 or d.kind in "fV":
                return apply1(rscalar_rule, self, other)
        if check is not None:
            check(self, other)
        b, a = _coerce(self, other, name, true_div)
        return apply(rule, (a, b))

    dunder = "truediv" if true_div else name
    _name_method(forward, f"__{dunder}__")
    _name_method(reflected, f"__r{dunder}__")
    return forward, reflected


def _comparison(name: str, f: Callable) -> Callable:
    """An elementwise comparison or bitwise operator (never differentiable): ``f`` on the promoted arrays."""
    none = {"eq": False, "ne": True}.get(name)

    def op(self: Tensor, other: Any) -> Tensor:
        if other is None and none is not None:  # torch: `tensor == None` is False, `!= None` True
            return none
        a, b = _coerce(self, other, name)
        return wrap_array(np.asarray(f(a._array, b._array)))

    _name_method(op, f"__{name.removeprefix('bitwise_')}__")
    return op


def _no_bool_sub(a: Tensor, other: Any) -> None:
    if a._array.dtype == np.bool_ or type(other) is bool or (isinstance(other, Tensor) and other.dtype == np.bool_):
        raise RuntimeError("sub: subtraction, the `-` operator, with a bool tensor is not supported; to invert "
                           "a mask use the `~` or `logical_not()` operator instead")


def _name_method(f: Callable, name: str) -> None:
    f.__name__ = name
    f.__qualname__ = f"Tensor.{name}"


class Tensor:
    """A multi-dimensional array that records the ops applied to it.

    ``_array`` is the NumPy array behind it (library-internal; users call ``numpy()``);
    ``data`` is, as in PyTorch, a Tensor sharing that array but detached from the graph;
    ``grad`` the accumulated gradient (a Tensor or None); ``requires_grad`` whether ops on
    it are recorded.
    """

    # _gslot: optional preallocated array (a view into an optimizer's flat gradient
    # buffer) that backward writes this leaf's gradient into instead of allocating
    # _viewinfo: set only on views (tensor_shape._view): (root base, creation kind, label)
    __slots__ = ("_array", "grad", "requires_grad", "_node", "_vc", "_hooks", "_gslot", "_viewinfo", "__weakref__")
    __array_priority__ = 1000
    __hash__ = object.__hash__

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        arr = _to_array(data, dtype)
        self._array = arr
        self.grad = None
        self.requires_grad = False
        self._node = None
        self._vc = [0]
        self._hooks = None
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------------ construction
    _wrap = staticmethod(wrap_array)  # the name the rest of the tree still uses
    _apply = staticmethod(_apply)
    _apply1 = staticmethod(_apply1)
    _record1 = staticmethod(_record1)

    # ------------------------------------------------------------------ attributes
    @property
    def data(self) -> "Tensor":
        """This tensor's storage as a Tensor outside the graph (PyTorch's ``.data``): it shares
        memory but not the version counter, so in-place changes through it are not seen by
        autograd. ``detach()`` is the safe alternative."""
        return wrap_array(self._array)

    @data.setter
    def data(self, value: "Tensor") -> None:
        """``t.data = other``: ``t`` now uses ``other``'s storage (shape and dtype may change);
        ``t`` keeps its identity, gradient and place in the graph, as in PyTorch."""
        if not isinstance(value, Tensor):
            t = type(value)
            name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"
            raise TypeError(f"data: Variable data has to be a tensor, but got {name} (wrap an array with "
                            "retrograd.from_numpy or retrograd.tensor)")
        arr = value._array
        if self.requires_grad and arr.dtype.kind not in "fV":
            raise RuntimeError(f"data: data set to a tensor that requires gradients must be floating point, "
                               f"got {B.dtype_name(arr.dtype)}")
        self._array = arr

    @property
    def shape(self) -> tuple:
        return self._array.shape

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def ndim(self) -> int:
        return self._array.ndim

    device = property(tensor_compat.device)
    is_cuda = property(tensor_compat.is_cuda)
    is_cpu = property(tensor_compat.is_cpu)
    get_device = tensor_compat.get_device

    def dim(self) -> int:
        return self._array.ndim

    ndimension = dim

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self._array.shape
        return self._array.shape[_norm_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        return self._array.size

    nelement = numel

    def element_size(self) -> int:
        return self._array.itemsize

    _base = property(tensor_shape.base)
    _is_view = tensor_shape.is_view
    untyped_storage = tensor_shape.untyped_storage
    data_ptr = tensor_shape.data_ptr
    storage_offset = tensor_shape.storage_offset

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        return self._node

    @property
    def T(self) -> "Tensor":
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> "Tensor":
        if self.ndim < 2:
            raise RuntimeError(f"mT: tensor.mT is only supported on matrices or batches of matrices; got "
                               f"{self.ndim}-D tensor")
        return self.transpose(-2, -1)

    def is_floating_point(self) -> bool:
        return self._array.dtype.kind in "fV"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._array.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def item(self) -> Any:
        if self._array.size != 1:
            raise RuntimeError(f"item: a Tensor with {self._array.size} elements cannot be converted to "
                               "a Python scalar")
        a = self._array
        return (a.astype(np.float32) if a.dtype is _BF16 else a).reshape(()).item()

    def tolist(self) -> Any:
        a = self._array
        return (a.astype(np.float32) if a.dtype is _BF16 else a).tolist()

    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy: can't call numpy() on a Tensor that requires grad; use "
                               "tensor.detach().numpy() instead")
        a = self._array
        return a if type(a) is _ndarray else np.asarray(a)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._array
        if type(a) is not _ndarray:
            a = np.asarray(a)
        if dtype is not None:
            return a.astype(dtype, copy=bool(copy))
        return a.copy() if copy else a  # NumPy 2 passes copy=True and then trusts us to have copied

    def __bool__(self) -> bool:
        if self._array.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._array.size} values is ambiguous")
        return bool(self._array.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._array.dtype.kind not in "iub" or self._array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __repr__ = __str__ = tensor_compat.tensor_repr

    def __format__(self, spec: str) -> str:
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return repr(self)

    # ------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self._array.dtype.kind not in "fV":
            raise RuntimeError(f"requires_grad_: only Tensors of floating point dtype can require "
                               f"gradients, got {B.dtype_name(self._array.dtype)}")
        if not requires_grad and self._node is not None:
            raise RuntimeError("requires_grad_: you can only change requires_grad flags of leaf "
                               "variables; use detach() to get a tensor that does not require grad")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        t = wrap_array(self._array)
        t._vc = counter(self)  # shares storage: in-place changes are seen by both
        return t

    def _copy_state(self) -> dict:
        """Copies of a view are not views (as in PyTorch): ``_viewinfo`` is left out."""
        return {k: getattr(self, k) for k in ("_array", "grad", "requires_grad", "_node", "_vc", "_hooks", "_gslot")
                if hasattr(self, k)}

    def __deepcopy__(self, memo: dict) -> "Tensor":
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self._copy_state().items():
            setattr(new, k, copy.deepcopy(v, memo))
        return new

    def __getstate__(self) -> tuple:
        """A pickle holds the values, not the history: a tensor with a ``grad_fn`` unpickles as a leaf that keeps
        ``requires_grad``, as in PyTorch (its graph and hooks hold functions that do not pickle)."""
        state = self._copy_state()
        state["_node"], state["_hooks"] = None, None
        return None, state

    def detach_(self) -> "Tensor":
        if tensor_shape.is_view(self):
            raise RuntimeError("detach_: Can't detach views in-place. Use detach() instead.")
        self._node = None
        self.requires_grad = False
        return self

    def retain_grad(self) -> None:
        if not self.requires_grad:
            raise RuntimeError("retain_grad: can't retain_grad on Tensor that has requires_grad=False")
        if self._node is not None:
            self._node.retain = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        return self._node is not None and self._node.retain is not None

    def register_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(grad) -> Tensor or None`` runs when this tensor's gradient is computed."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that doesn't require "
                               "gradient")
        if self._node is not None:
            return self._node.register_hook(hook)
        if self._hooks is None:
            self._hooks = {}  # by handle id, in registration order
        return add_hook(self._hooks, hook)

    def backward(self, gradient: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Sequence | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    # ------------------------------------------------------------------ conversion
    to = tensor_compat.to

    def _cast(self, dtype: np.dtype) -> "Tensor":
        if self._array.dtype == dtype:
            return self
        if self.requires_grad and dtype.kind not in "fV":
            return wrap_array(self._array.astype(dtype))
        return Tensor._apply(O.CAST, (self,), {"dtype": dtype})

    astype, type_as = tensor_convert.astype, tensor_convert.type_as
    float, double, half = tensor_convert.float_, tensor_convert.double, tensor_convert.half
    bfloat16, long, int, bool = tensor_convert.bfloat16, tensor_convert.long, tensor_convert.int_, tensor_convert.bool_

    cpu = tensor_compat.cpu
    cuda = tensor_compat.cuda
    pin_memory = tensor_compat.pin_memory
    is_pinned = tensor_compat.is_pinned

    def clone(self) -> "Tensor":
        return Tensor._apply(O.CLONE, (self,))

    def contiguous(self) -> "Tensor":
        """This tensor if its array is C-contiguous, else a C-contiguous copy (differentiable)."""
        if self._array.flags.c_contiguous:
            return self
        return Tensor._apply(O.CLONE, (self,))

    def is_contiguous(self) -> bool:
        return bool(self._array.flags.c_contiguous)

    # ------------------------------------------------------------------ arithmetic
    __add__, __radd__ = _binary_operators("add", O.ADD, O.ADD_S, O.ADD_S)
    __sub__, __rsub__ = _binary_operators("sub", O.SUB, O.SUB_S, O.RSUB_S, check=_no_bool_sub)
    __mul__, __rmul__ = _binary_operators("mul", O.MUL, O.MUL_S, O.MUL_S)
    __truediv__, __rtruediv__ = _binary_operators("div", O.DIV, O.DIV_S, O.RDIV_S, true_div=True)

    def __floordiv__(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "floor_divide")
        return wrap_array(np.asarray(a._array // b._array))

    def __mod__(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "remainder")
        return wrap_array(np.asarray(np.mod(a._array, b._array)))

    def __pow__(self, other: Any) -> "Tensor":
        to = type(other)
        if (to is float or to is int) and self._array.dtype.kind in "fV":
            return Tensor._apply(O.POW_S, (self,), other)
        a, b = _coerce(self, other, "pow")
        if a._array.dtype == np.bool_:  # torch: no bool ** bool kernel; a Python bool exponent keeps bool
            if type(other) is not bool:
                raise RuntimeError("pow: not implemented for two bool tensors")
            return wrap_array(np.asarray(a._array | (not other)))
        if a._array.dtype.kind in "iu" and ((type(other) is int and other < 0) or
                                          (b._array.dtype.kind == "i" and np.any(b._array < 0))):
            raise RuntimeError("pow: integers to negative integer powers are not allowed")
        return Tensor._apply(O.POW, (a, b))

    def __rpow__(self, other: Any) -> "Tensor":
        to = type(other)
        if (to is float or to is int) and self._array.dtype.kind in "fV":
            return Tensor._apply(O.RPOW_S, (self,), other)
        b, a = _coerce(self, other, "pow")
        return Tensor._apply(O.POW, (a, b))

    def __matmul__(self, other: Any) -> "Tensor":
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return matmul(_as_tensor(other), self)

    def __neg__(self) -> "Tensor":
        if self._array.dtype == B.bool_:
            raise TypeError("neg: negation, the `-` operator, on a bool tensor is not supported; use "
                            "the `~` or `logical_not()` operator instead")
        return Tensor._apply(O.NEG, (self,))

    def __pos__(self) -> "Tensor":
        return self

    def __abs__(self) -> "Tensor":
        return self.abs()

    def __invert__(self) -> "Tensor":
        if self._array.dtype.kind not in "biu":
            raise TypeError(f"bitwise_not: only integral and bool tensors are supported, got "
                            f"{B.dtype_name(self.dtype)}")
        return wrap_array(np.asarray(~self._array))

    # comparisons and logic: never differentiable
    __eq__ = _comparison("eq", np.equal)  # type: ignore[assignment]
    __ne__ = _comparison("ne", np.not_equal)  # type: ignore[assignment]
    __lt__ = _comparison("lt", np.less)
    __le__ = _comparison("le", np.less_equal)
    __gt__ = _comparison("gt", np.greater)
    __ge__ = _comparison("ge", np.greater_equal)
    __and__ = __rand__ = _comparison("bitwise_and", np.bitwise_and)
    __or__ = __ror__ = _comparison("bitwise_or", np.bitwise_or)
    __xor__ = __rxor__ = _comparison("bitwise_xor", np.bitwise_xor)
    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    # (never differentiable: plain functions in tensor_reduce)
    equal, allclose, isclose = tensor_reduce.equal, tensor_reduce.allclose, tensor_reduce.isclose
    logical_not, logical_and = tensor_reduce.logical_not, tensor_reduce.logical_and
    logical_or = tensor_reduce.logical_or
    isnan, isinf, isfinite = tensor_reduce.isnan, tensor_reduce.isinf, tensor_reduce.isfinite
    any, all = tensor_reduce.any, tensor_reduce.all

    # ------------------------------------------------------------------ named arithmetic (tensor_math.py)
    # The bodies of the method groups below live in tensor_math, tensor_reduce, tensor_shape and
    # tensor_inplace as plain functions of ``self``; binding them here makes them methods.
    add = tensor_math.add
    sub = tensor_math.sub
    subtract = sub
    mul = tensor_math.mul
    multiply = mul
    div = tensor_math.div
    divide = true_divide = div
    pow = tensor_math.pow
    matmul = tensor_math.matmul  # the free function: t.matmul(o) is matmul(t, o)
    dot = tensor_math.dot
    mm = tensor_math.mm
    bmm = tensor_math.bmm
    neg = tensor_math.neg
    negative = neg
    maximum = tensor_math.maximum
    minimum = tensor_math.minimum
    atan2 = tensor_math.atan2
    arctan2 = atan2
    exp = tensor_math.exp
    expm1 = tensor_math.expm1
    log = tensor_math.log
    log1p = tensor_math.log1p
    log2 = tensor_math.log2
    log10 = tensor_math.log10
    sqrt = tensor_math.sqrt
    rsqrt = tensor_math.rsqrt
    square = tensor_math.square
    reciprocal = tensor_math.reciprocal
    sin = tensor_math.sin
    cos = tensor_math.cos
    tan = tensor_math.tan
    asin = tensor_math.asin
    acos = tensor_math.acos
    atan = tensor_math.atan
    arcsin, arccos, arctan = asin, acos, atan
    sinh = tensor_math.sinh
    cosh = tensor_math.cosh
    tanh = tensor_math.tanh
    sigmoid = tensor_math.sigmoid
    erf = tensor_math.erf
    relu = tensor_math.relu
    softplus = tensor_math.softplus
    abs = tensor_math.abs
    absolute = abs
    sign = tensor_math.sign
    floor = tensor_math.floor
    ceil = tensor_math.ceil
    round = tensor_math.round
    trunc = tensor_math.trunc
    clamp = tensor_math.clamp
    clip = clamp
    where = tensor_math.where_method
    masked_fill = tensor_math.masked_fill

    # ------------------------------------------------------------------ reductions (tensor_reduce.py)
    sum = tensor_reduce.sum
    mean = tensor_reduce.mean
    var = tensor_reduce.var
    std = tensor_reduce.std
    amax = tensor_reduce.amax
    amin = tensor_reduce.amin
    max = tensor_reduce.max
    min = tensor_reduce.min
    argmax = tensor_reduce.argmax
    argmin = tensor_reduce.argmin
    argsort = tensor_reduce.argsort
    sort = tensor_reduce.sort
    topk = tensor_reduce.topk
    logsumexp = tensor_reduce.logsumexp
    prod = tensor_reduce.prod
    cumsum = tensor_reduce.cumsum
    cumprod = tensor_reduce.cumprod
    norm = tensor_reduce.norm
    softmax = tensor_reduce.softmax
    log_softmax = tensor_reduce.log_softmax

    # ------------------------------------------------------------------ shape (tensor_shape.py)
    reshape = tensor_shape.reshape
    view = tensor_shape.view
    view_as = tensor_shape.view_as
    reshape_as = tensor_shape.reshape_as
    flatten = tensor_shape.flatten
    unflatten = tensor_shape.unflatten
    permute = tensor_shape.permute
    transpose = tensor_shape.transpose
    swapaxes = swapdims = transpose

    t = tensor_shape.t
    movedim = tensor_shape.movedim
    moveaxis = movedim
    squeeze = tensor_shape.squeeze
    unsqueeze = tensor_shape.unsqueeze
    expand = tensor_shape.expand
    expand_as = tensor_shape.expand_as
    broadcast_to = tensor_shape.broadcast_to
    repeat = tensor_shape.repeat
    tile = tensor_shape.tile
    flip = tensor_shape.flip
    fliplr = tensor_shape.fliplr
    flipud = tensor_shape.flipud
    roll = tensor_shape.roll
    split = tensor_shape.split
    chunk = tensor_shape.chunk
    tensor_split = tensor_shape.tensor_split
    unbind = tensor_shape.unbind
    tril = tensor_shape.tril
    triu = tensor_shape.triu

    # ------------------------------------------------------------------ indexing (tensor_shape.py)
    __getitem__ = tensor_shape.getitem
    __setitem__ = tensor_inplace.setitem
    gather = tensor_shape.gather
    take_along_dim = tensor_shape.take_along_dim
    index_select = tensor_shape.index_select
    scatter_add = tensor_shape.scatter_add
    scatter = tensor_inplace.scatter
    index_add = tensor_inplace.index_add
    index_fill = tensor_inplace.index_fill

    # ------------------------------------------------------------------ in place (tensor_inplace.py)
    _check_inplace = tensor_inplace._check_inplace
    add_ = tensor_inplace.add_
    sub_ = tensor_inplace.sub_
    subtract_ = sub_
    mul_ = tensor_inplace.mul_
    multiply_ = mul_
    div_ = tensor_inplace.div_
    divide_ = true_divide_ = div_
    pow_ = tensor_inplace.pow_
    floor_divide_ = tensor_inplace.floor_divide_
    remainder_ = tensor_inplace.remainder_
    bitwise_and_ = tensor_inplace.bitwise_and_
    bitwise_or_ = tensor_inplace.bitwise_or_
    bitwise_xor_ = tensor_inplace.bitwise_xor_
    maximum_ = tensor_inplace.maximum_
    minimum_ = tensor_inplace.minimum_
    neg_ = tensor_inplace.neg_
    negative_ = neg_
    abs_ = tensor_inplace.abs_
    absolute_ = abs_
    sqrt_ = tensor_inplace.sqrt_
    rsqrt_ = tensor_inplace.rsqrt_
    exp_ = tensor_inplace.exp_
    log_ = tensor_inplace.log_
    sin_ = tensor_inplace.sin_
    cos_ = tensor_inplace.cos_
    tanh_ = tensor_inplace.tanh_
    sigmoid_ = tensor_inplace.sigmoid_
    relu_ = tensor_inplace.relu_
    square_ = tensor_inplace.square_
    reciprocal_ = tensor_inplace.reciprocal_
    floor_ = tensor_inplace.floor_
    ceil_ = tensor_inplace.ceil_
    round_ = tensor_inplace.round_
    trunc_ = tensor_inplace.trunc_
    sign_ = tensor_inplace.sign_
    clamp_ = tensor_inplace.clamp_
    clip_ = tensor_inplace.clip_
    addcmul_ = tensor_inplace.addcmul_
    addcdiv_ = tensor_inplace.addcdiv_
    lerp_ = tensor_inplace.lerp_
    masked_fill_ = tensor_inplace.masked_fill_
    fill_ = tensor_inplace.fill_
    zero_ = tensor_inplace.zero_
    copy_ = tensor_inplace.copy_
    uniform_ = tensor_inplace.uniform_
    normal_ = tensor_inplace.normal_
    scatter_ = tensor_inplace.scatter_
    index_add_ = tensor_inplace.index_add_
    index_fill_ = tensor_inplace.index_fill_
    __iadd__ = tensor_inplace.__iadd__
    __isub__ = tensor_inplace.__isub__
    __imul__ = tensor_inplace.__imul__
    __itruediv__ = tensor_inplace.__itruediv__
    __ifloordiv__ = tensor_inplace.__ifloordiv__
    __imod__ = tensor_inplace.__imod__
    __ipow__ = tensor_inplace.__ipow__
    __iand__ = tensor_inplace.__iand__
    __ior__ = tensor_inplace.__ior__
    __ixor__ = tensor_inplace.__ixor__

    # ------------------------------------------------------------------ PyTorch's extras (tensor_compat.py)
    new_zeros = tensor_compat.new_zeros
    new_ones = tensor_compat.new_ones
    new_empty = tensor_compat.new_empty
    new_full = tensor_compat.new_full
    new_tensor = tensor_compat.new_tensor
    repeat_interleave = tensor_compat.repeat_interleave
    unique = tensor_compat.unique
    narrow = tensor_compat.narrow
    outer = tensor_compat.outer
    ger = outer
    type = tensor_compat.type_method  # last: the name shadows the builtin in the rest of the class body

    # ------------------------------------------------------------------ NumPy protocol
    # NumPy functions called on Tensors run as Tensor ops (how rules written in array code run on
    # Tensors for higher-order gradients); tensor_numpy.py fills the two tables.
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        f = NUMPY_UFUNCS.get(ufunc)
        if method != "__call__" or f is None or kwargs:
            return getattr(ufunc, method)(*_plain(inputs), **_plain(kwargs))
        return f(*inputs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        f = NUMPY_FUNCTIONS.get(func)
        if f is None:
            return func(*_plain(args), **_plain(kwargs))
        return f(*args, **kwargs)


state.tensor_type = Tensor


def _plain(x: Any) -> Any:
    """Tensors (also inside lists, tuples, dicts) as their NumPy arrays, for a NumPy function that
    has no Tensor implementation: as with a torch tensor, it runs on the values (``numpy()``
    raises for a tensor that requires grad, so no graph is silently dropped)."""
    if isinstance(x, Tensor):
        return x.numpy()
    t = type(x)
    if t is tuple or t is list:
        return t(_plain(v) for v in x)
    if t is dict:
        return {k: _plain(v) for k, v in x.items()}
    return x
