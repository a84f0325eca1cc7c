"""``Tensor``: an array plus the autograd bookkeeping, with PyTorch's operators
and methods. Every differentiable method calls one rule of ``ops.py`` through
``Tensor._apply``, which records a ``Node`` when grad is needed."""
from __future__ import annotations

import math
import numbers
import weakref
from collections import namedtuple
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import backend as B
from . import ops as O
from .engine import Node, _check_finite, backward, creation_site, state
from .hooks import RemovableHandle, add_hook

_ndarray = np.ndarray
_PY_SCALARS = (bool, int, float, np.bool_, np.integer, np.floating)

values_indices = namedtuple("values_indices", ["values", "indices"])

# ufunc or NumPy function -> its Tensor implementation, for ``Tensor.__array_ufunc__`` and
# ``Tensor.__array_function__``: filled by tensor_numpy.py (which imports this module, never the reverse)
NUMPY_UFUNCS: dict = {}
NUMPY_FUNCTIONS: dict = {}


def _as_shape(args: tuple) -> tuple:
    """Accept f(2, 3), f((2, 3)) and f([2, 3])."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    try:
        return tuple(int(a) for a in args)
    except TypeError as e:
        raise TypeError(f"sizes must be ints, got {args!r}") from e


def _norm_dim(d: int, ndim: int, op: str) -> int:
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return d % n


def _norm_dims(dim: Any, ndim: int, op: str) -> tuple | None:
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        dim = (dim,)
    dims = tuple(sorted(_norm_dim(int(d), ndim, op) for d in dim))
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"{op}: dim {tuple(dim)} appears multiple times in the list of dims")
    return dims if ndim else None


def wrap_array(array: np.ndarray) -> Tensor:
    """Library-internal: wrap ``array`` as a leaf Tensor without copying it or checking its
    dtype (``requires_grad`` False, no graph). The Tensor shares the array's memory: use it
    for arrays the library has just made; users call ``rg.tensor``/``rg.from_numpy``."""
    t = object.__new__(Tensor)
    t.data = array
    t.grad = None
    t.requires_grad = False
    t._node = None
    t._vc = [0]
    t._hooks = None
    return t


def _apply(rule: O.Rule, ins: tuple, kw: Any = None) -> Tensor:
    """Run ``rule`` forward on the inputs' arrays; record a Node if any input needs grad."""
    n = len(ins)
    try:
        if n == 1:
            x = ins[0]
            out = rule.forward((x.data,), kw)
            record = x.requires_grad
        elif n == 2:
            x, y = ins
            out = rule.forward((x.data, y.data), kw)
            record = x.requires_grad or y.requires_grad
        else:
            out = rule.forward(tuple([t.data for t in ins]), kw)
            record = any([t.requires_grad for t in ins])
    except ValueError as e:
        if "broadcast" not in str(e):
            raise
        shapes = " and ".join(str(tuple(t.shape)) for t in ins)
        raise RuntimeError(f"{rule.name}: shapes {shapes} are not broadcastable (sizes must be equal, or 1, "
                           "in each trailing dimension)") from None
    if type(out) is not _ndarray:
        out = np.asarray(out)
    t = object.__new__(Tensor)
    t.data = out
    t.grad = None
    t._vc = [0]
    t._hooks = None
    if record and state.enabled:
        if rule.backward is None:
            raise RuntimeError(f"{rule.name}: this op is not differentiable")
        if not rule.needs_inputs:
            version = 0
        elif n == 1:
            version = x._vc[0]
        elif n == 2:
            version = x._vc[0] + y._vc[0]
        else:
            version = sum([t._vc[0] for t in ins])
        node = Node(rule, ins, out if rule.save_out else None, kw, version)
        if rule.save_out:
            node.out_vc = (t._vc, 0)
        t.requires_grad = True
        t._node = node
        if state.anomaly:
            node.site = creation_site()
            _check_finite(out, "forward", node)
    else:
        t.requires_grad = False
        t._node = None
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
    apply = _apply

    def forward(self: Tensor, other: Any) -> Tensor:
        to = type(other)
        if to is Tensor:
            if other.data.dtype is self.data.dtype and (not true_div or self.data.dtype.kind == "f"):
                return apply(rule, (self, other))
        elif (to is float or to is int) and self.data.dtype.kind == "f":
            return apply(scalar_rule, (self,), other)
        if check is not None:
            check(self, other)
        a, b = _coerce(self, other, name, true_div)
        return apply(rule, (a, b))

    def reflected(self: Tensor, other: Any) -> Tensor:
        to = type(other)
        if (to is float or to is int) and self.data.dtype.kind == "f":
            return apply(rscalar_rule, (self,), other)
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

    def op(self: Tensor, other: Any) -> Tensor:
        a, b = _coerce(self, other, name)
        return wrap_array(np.asarray(f(a.data, b.data)))

    _name_method(op, f"__{name.removeprefix('bitwise_')}__")
    return op


def _no_bool_sub(a: Tensor, other: Any) -> None:
    if a.data.dtype == np.bool_ or type(other) is bool or (isinstance(other, Tensor) and other.dtype == np.bool_):
        raise RuntimeError("sub: subtraction, the `-` operator, with a bool tensor is not supported; to invert "
                           "a mask use the `~` or `logical_not()` operator instead")


def _name_method(f: Callable, name: str) -> None:
    f.__name__ = name
    f.__qualname__ = f"Tensor.{name}"


class Tensor:
    """A multi-dimensional array that records the ops applied to it.

    ``data`` is the NumPy array; ``grad`` the accumulated gradient (a Tensor or
    None); ``requires_grad`` whether ops on it are recorded.
    """

    # _gslot: optional preallocated array (a view into an optimizer's flat gradient
    # buffer) that backward writes this leaf's gradient into instead of allocating
    __slots__ = ("data", "grad", "requires_grad", "_node", "_vc", "_hooks", "_gslot", "__weakref__")
    __array_priority__ = 1000
    __hash__ = object.__hash__

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        arr = _to_array(data, dtype)
        self.data = arr
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

    # ------------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> str:
        return "cpu"

    def dim(self) -> int:
        return self.data.ndim

    ndimension = dim

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self.data.shape
        return self.data.shape[_norm_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        return self.data.size

    nelement = numel

    def element_size(self) -> int:
        return self.data.itemsize

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
        return self.data.dtype.kind == "f"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def item(self) -> Any:
        if self.data.size != 1:
            raise RuntimeError(f"item: a Tensor with {self.data.size} elements cannot be converted to "
                               "a Python scalar")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy: can't call numpy() on a Tensor that requires grad; use "
                               "tensor.detach().numpy() instead")
        return self.data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.data
        return a if dtype is None else a.astype(dtype)

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.data.size} values is ambiguous")
        return bool(self.data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __repr__(self) -> str:
        return _format(self)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return repr(self)

    # ------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(f"requires_grad_: only Tensors of floating point dtype can require "
                               f"gradients, got {B.dtype_name(self.data.dtype)}")
        if not requires_grad and self._node is not None:
            raise RuntimeError("requires_grad_: you can only change requires_grad flags of leaf "
                               "variables; use detach() to get a tensor that does not require grad")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        t = wrap_array(self.data)
        t._vc = self._vc  # shares storage: in-place changes are seen by both
        return t

    def detach_(self) -> "Tensor":
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
    def to(self, *args: Any, **kwargs: Any) -> "Tensor":
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif not isinstance(a, str):  # a device string is accepted and ignored (CPU only)
                dtype = a
        if dtype is None:
            return self
        return self._cast(B.as_dtype(dtype))

    def _cast(self, dtype: np.dtype) -> "Tensor":
        if self.data.dtype == dtype:
            return self
        if self.requires_grad and dtype.kind != "f":
            return wrap_array(self.data.astype(dtype))
        return Tensor._apply(O.CAST, (self,), {"dtype": dtype})

    def astype(self, dtype: Any) -> "Tensor":
        return self._cast(B.as_dtype(dtype))

    def type_as(self, other: "Tensor") -> "Tensor":
        return self._cast(other.dtype)

    def float(self) -> "Tensor":
        return self._cast(B.float32)

    def double(self) -> "Tensor":
        return self._cast(B.float64)

    def half(self) -> "Tensor":
        return self._cast(B.float16)

    def long(self) -> "Tensor":
        return self._cast(B.int64)

    def int(self) -> "Tensor":
        return self._cast(B.int32)

    def bool(self) -> "Tensor":
        return self._cast(B.bool_)

    def cpu(self) -> "Tensor":
        return self

    def clone(self) -> "Tensor":
        return Tensor._apply(O.CLONE, (self,))

    def contiguous(self) -> "Tensor":
        return self

    def is_contiguous(self) -> bool:
        return bool(self.data.flags.c_contiguous)

    # ------------------------------------------------------------------ arithmetic
    __add__, __radd__ = _binary_operators("add", O.ADD, O.ADD_S, O.ADD_S)
    __sub__, __rsub__ = _binary_operators("sub", O.SUB, O.SUB_S, O.RSUB_S, check=_no_bool_sub)
    __mul__, __rmul__ = _binary_operators("mul", O.MUL, O.MUL_S, O.MUL_S)
    __truediv__, __rtruediv__ = _binary_operators("div", O.DIV, O.DIV_S, O.RDIV_S, true_div=True)

    def __floordiv__(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "floor_divide")
        return wrap_array(np.asarray(a.data // b.data))

    def __mod__(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "remainder")
        return wrap_array(np.asarray(np.mod(a.data, b.data)))

    def __pow__(self, other: Any) -> "Tensor":
        to = type(other)
        if (to is float or to is int) and self.data.dtype.kind == "f":
            return Tensor._apply(O.POW_S, (self,), other)
        a, b = _coerce(self, other, "pow")
        if a.data.dtype == np.bool_:  # torch: no bool ** bool kernel; a Python bool exponent keeps bool
            if type(other) is not bool:
                raise RuntimeError("pow: not implemented for two bool tensors")
            return wrap_array(np.asarray(a.data | (not other)))
        if a.data.dtype.kind in "iu" and ((type(other) is int and other < 0) or
                                          (b.data.dtype.kind == "i" and np.any(b.data < 0))):
            raise RuntimeError("pow: integers to negative integer powers are not allowed")
        return Tensor._apply(O.POW, (a, b))

    def __rpow__(self, other: Any) -> "Tensor":
        to = type(other)
        if (to is float or to is int) and self.data.dtype.kind == "f":
            return Tensor._apply(O.RPOW_S, (self,), other)
        b, a = _coerce(self, other, "pow")
        return Tensor._apply(O.POW, (a, b))

    def __matmul__(self, other: Any) -> "Tensor":
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return matmul(_as_tensor(other), self)

    def __neg__(self) -> "Tensor":
        if self.data.dtype == B.bool_:
            raise TypeError("neg: negation, the `-` operator, on a bool tensor is not supported; use "
                            "the `~` or `logical_not()` operator instead")
        return Tensor._apply(O.NEG, (self,))

    def __pos__(self) -> "Tensor":
        return self

    def __abs__(self) -> "Tensor":
        return self.abs()

    def __invert__(self) -> "Tensor":
        if self.data.dtype.kind not in "biu":
            raise TypeError(f"bitwise_not: only integral and bool tensors are supported, got "
                            f"{B.dtype_name(self.dtype)}")
        return wrap_array(np.asarray(~self.data))

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

    def equal(self, other: "Tensor") -> bool:
        return self.shape == other.shape and bool(np.array_equal(self.data, other.data))

    def allclose(self, other: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
        return bool(np.allclose(self.data, _as_tensor(other).data, rtol=rtol, atol=atol, equal_nan=equal_nan))

    def isclose(self, other: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> "Tensor":
        return wrap_array(np.isclose(self.data, _as_tensor(other).data, rtol=rtol, atol=atol,
                                       equal_nan=equal_nan))

    def logical_not(self) -> "Tensor":
        return wrap_array(np.logical_not(self.data))

    def logical_and(self, other: Any) -> "Tensor":
        return wrap_array(np.logical_and(self.data, _as_tensor(other).data))

    def logical_or(self, other: Any) -> "Tensor":
        return wrap_array(np.logical_or(self.data, _as_tensor(other).data))

    def isnan(self) -> "Tensor":
        return wrap_array(np.isnan(self.data))

    def isinf(self) -> "Tensor":
        return wrap_array(np.isinf(self.data))

    def isfinite(self) -> "Tensor":
        return wrap_array(np.isfinite(self.data))

    def any(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        d = _norm_dims(dim, self.ndim, "any")
        r = np.asarray(np.any(self.data, axis=d, keepdims=keepdim))
        return wrap_array(r.astype(np.uint8) if self.data.dtype == np.uint8 else r)  # torch keeps uint8

    def all(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        d = _norm_dims(dim, self.ndim, "all")
        r = np.asarray(np.all(self.data, axis=d, keepdims=keepdim))
        return wrap_array(r.astype(np.uint8) if self.data.dtype == np.uint8 else r)

    # ------------------------------------------------------------------ named arithmetic
    def add(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return self - (other if alpha == 1 else other * alpha)

    subtract = sub

    def mul(self, other: Any) -> "Tensor":
        return self * other

    multiply = mul

    def div(self, other: Any, *, rounding_mode: str | None = None) -> "Tensor":
        if rounding_mode is None:
            return self / other
        a, b = _coerce(self, other, "div")
        if rounding_mode == "floor":
            return wrap_array(np.asarray(np.floor_divide(a.data, b.data)))
        if rounding_mode == "trunc":
            q = np.trunc(a.data / b.data)
            return wrap_array(np.asarray(q.astype(a.dtype) if a.dtype.kind != "f" else q))
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")

    divide = true_divide = div

    def pow(self, exponent: Any) -> "Tensor":
        return self ** exponent

    def matmul(self, other: Any) -> "Tensor":
        return matmul(self, other)

    def dot(self, other: "Tensor") -> "Tensor":
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"dot: 1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors")
        return matmul(self, other)

    def mm(self, other: "Tensor") -> "Tensor":
        if self.ndim != 2 or other.ndim != 2:
            raise RuntimeError(f"mm: two 2-D matrices expected, got {self.ndim}-D and {other.ndim}-D")
        return matmul(self, other)

    def bmm(self, other: "Tensor") -> "Tensor":
        if self.ndim != 3 or other.ndim != 3:
            raise RuntimeError(f"bmm: batch1 and batch2 must be 3-D tensors, got {self.ndim}-D and "
                               f"{other.ndim}-D")
        return matmul(self, other)

    def neg(self) -> "Tensor":
        return -self

    negative = neg

    def maximum(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "maximum")
        return Tensor._apply(O.MAXIMUM, (a, b), {"max": True})

    def minimum(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "minimum")
        return Tensor._apply(O.MINIMUM, (a, b), {"max": False})

    def atan2(self, other: Any) -> "Tensor":
        a, b = _coerce(self, other, "atan2", true_div=True)
        return Tensor._apply(O.ATAN2, (a, b))

    arctan2 = atan2

    def _unary(self, rule: O.Rule, kw: dict | None = None) -> "Tensor":
        x = self
        if x.data.dtype.kind != "f":
            x = x._cast(B.defaults.float_dtype)
        return Tensor._apply(rule, (x,), kw)

    def exp(self) -> "Tensor":
        return self._unary(O.EXP)

    def expm1(self) -> "Tensor":
        return self._unary(O.EXPM1)

    def log(self) -> "Tensor":
        return self._unary(O.LOG)

    def log1p(self) -> "Tensor":
        return self._unary(O.LOG1P)

    def log2(self) -> "Tensor":
        return self.log() / math.log(2.0)

    def log10(self) -> "Tensor":
        return self.log() / math.log(10.0)

    def sqrt(self) -> "Tensor":
        return self._unary(O.SQRT)

    def rsqrt(self) -> "Tensor":
        return self._unary(O.RSQRT)

    def square(self) -> "Tensor":
        return self * self

    def reciprocal(self) -> "Tensor":
        return 1.0 / self

    def sin(self) -> "Tensor":
        return self._unary(O.SIN)

    def cos(self) -> "Tensor":
        return self._unary(O.COS)

    def tan(self) -> "Tensor":
        return self._unary(O.TAN)

    def asin(self) -> "Tensor":
        return self._unary(O.ASIN)

    def acos(self) -> "Tensor":
        return self._unary(O.ACOS)

    def atan(self) -> "Tensor":
        return self._unary(O.ATAN)

    arcsin, arccos, arctan = asin, acos, atan

    def sinh(self) -> "Tensor":
        return self._unary(O.SINH)

    def cosh(self) -> "Tensor":
        return self._unary(O.COSH)

    def tanh(self) -> "Tensor":
        return self._unary(O.TANH)

    def sigmoid(self) -> "Tensor":
        return self._unary(O.SIGMOID)

    def erf(self) -> "Tensor":
        return self._unary(O.ERF)

    def relu(self) -> "Tensor":
        return Tensor._apply(O.RELU, (self,))

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> "Tensor":
        return self._unary(O.SOFTPLUS, {"beta": beta, "threshold": threshold})

    def abs(self) -> "Tensor":
        if self.data.dtype == np.bool_:
            raise RuntimeError("abs: not implemented for bool tensors")
        return Tensor._apply(O.ABS, (self,))

    absolute = abs

    def sign(self) -> "Tensor":
        if self.data.dtype == np.bool_:
            return _nondiff(self, np.copy)
        return Tensor._apply(O.SIGN, (self,))

    def _rounding(self, rule: O.Rule, kw: dict | None = None) -> "Tensor":
        if self.data.dtype == np.bool_:
            raise RuntimeError(f"{rule.name}: not implemented for bool tensors")
        if self.data.dtype.kind != "f":  # integers are already whole: a copy of the same dtype
            return _nondiff(self, np.copy)
        return Tensor._apply(rule, (self,), kw)

    def floor(self) -> "Tensor":
        return self._rounding(O.FLOOR)

    def ceil(self) -> "Tensor":
        return self._rounding(O.CEIL)

    def round(self, *, decimals: int = 0) -> "Tensor":
        return self._rounding(O.ROUND, {"decimals": decimals})

    def trunc(self) -> "Tensor":
        return self._rounding(O.TRUNC)

    def clamp(self, min: Any = None, max: Any = None) -> "Tensor":  # noqa: A002
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            out = self
            if min is not None:
                out = out.maximum(min)
            if max is not None:
                out = out.minimum(max)
            return out
        x = self
        if x.data.dtype.kind != "f":  # integer/bool tensors promote with float or int bounds
            x = x._cast(B.promote([(x.dtype, _rank(x))] + [(np.result_type(type(v)), 0) for v in (min, max)
                                                            if v is not None]))
        return Tensor._apply(O.CLAMP, (x,), {"min": min, "max": max})

    clip = clamp

    def where(self, condition: Any, other: Any) -> "Tensor":
        return where(condition, self, other)

    def masked_fill(self, mask: Any, value: Any) -> "Tensor":
        m = _as_tensor(mask).data
        if m.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be a bool tensor, got {B.dtype_name(m.dtype)}")
        try:
            np.broadcast_shapes(m.shape, self.shape)
        except ValueError:
            raise RuntimeError(f"masked_fill: mask of shape {m.shape} does not broadcast to the tensor's "
                               f"shape {self.shape}") from None
        if isinstance(value, Tensor):
            if value.ndim != 0:
                raise RuntimeError("masked_fill: only supports a 0-dimensional value tensor")
            return where(m, value.to(self.dtype), self)
        # out of place, the result takes the broadcast shape of mask and tensor (as torch.masked_fill)
        return Tensor._apply(O.MASKED_FILL, (self,), {"mask": m, "value": value})

    # ------------------------------------------------------------------ reductions
    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None) -> "Tensor":
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        if x.data.dtype.kind in "biu" and dtype is None:
            x = x._cast(B.int64)
        dim = axis if dim is None else dim
        return Tensor._apply(O.SUM, (x,), {"dim": _norm_dims(dim, x.ndim, "sum"), "keepdim": keepdim})

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        if x.data.dtype.kind != "f":
            raise RuntimeError(f"mean: could not infer output dtype. Input dtype must be either a floating "
                               f"point or complex dtype. Got: {B.dtype_name(x.dtype)}")
        return Tensor._apply(O.MEAN, (x,), {"dim": _norm_dims(dim, x.ndim, "mean"), "keepdim": keepdim})

    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: Any = None) -> "Tensor":
        if unbiased is not None and not isinstance(unbiased, bool):  # var(dim) positional form
            dim, unbiased = unbiased, None
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        x = self._float()
        return Tensor._apply(O.VAR, (x,), {"dim": _norm_dims(dim, x.ndim, "var"), "keepdim": keepdim,
                                           "correction": correction})

    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: Any = None) -> "Tensor":
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def _float(self) -> "Tensor":
        return self if self.data.dtype.kind == "f" else self._cast(B.defaults.float_dtype)

    def amax(self, dim: Any = (), keepdim: bool = False) -> "Tensor":
        return self._amax(dim, keepdim, True)

    def amin(self, dim: Any = (), keepdim: bool = False) -> "Tensor":
        return self._amax(dim, keepdim, False)

    def _amax(self, dim: Any, keepdim: bool, is_max: bool) -> "Tensor":
        name = "amax" if is_max else "amin"
        if dim == () or dim == []:
            dim = None
        d = _norm_dims(dim, self.ndim, name)
        if self.numel() == 0 and (d is None or any(self.shape[i] == 0 for i in d)):
            raise IndexError(f"{name}: expected reduction dim to have non-zero size")
        return Tensor._apply(O.AMAX, (self,), {"dim": d, "keepdim": keepdim, "max": is_max})

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self._maxmin(dim, keepdim, True)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self._maxmin(dim, keepdim, False)

    def _maxmin(self, dim: Any, keepdim: bool, is_max: bool) -> Any:
        if isinstance(dim, Tensor):  # torch.max(a, b): elementwise
            return self.maximum(dim) if is_max else self.minimum(dim)
        if dim is None:
            return self._amax(None, False, is_max)
        name = "max" if is_max else "min"
        d = _norm_dim(dim, self.ndim, name)
        if self.ndim and self.shape[d] == 0:
            raise IndexError(f"{name}: expected reduction dim {d} to have non-zero size")
        if self.ndim == 0:
            return values_indices(self, wrap_array(np.asarray(0, dtype=np.int64)))
        kw = {"dim": d, "keepdim": keepdim, "max": is_max}
        vals = Tensor._apply(O.MAX_DIM, (self,), kw)
        idx = kw["idx"] if keepdim else np.squeeze(kw["idx"], d)
        return values_indices(vals, wrap_array(idx.astype(np.int64)))

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return self._argm(dim, keepdim, np.argmax)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return self._argm(dim, keepdim, np.argmin)

    def _argm(self, dim: Any, keepdim: bool, f: Callable) -> "Tensor":
        if self.data.dtype == np.bool_:
            raise RuntimeError(f"{f.__name__}: not implemented for bool tensors")
        if self.data.size == 0 and (dim is None or self.shape[_norm_dim(dim, self.ndim, f.__name__)] == 0):
            raise IndexError(f"{f.__name__}: expected reduction dim to have non-zero size (input shape "
                             f"{tuple(self.shape)})")
        if dim is None:
            r = f(self.data.reshape(-1))
            r = np.asarray(r).reshape((1,) * self.ndim if keepdim else ())
        else:
            d = _norm_dim(dim, self.ndim, f.__name__)
            r = f(self.data, axis=d, keepdims=keepdim) if self.ndim else np.asarray(0)
        return wrap_array(np.asarray(r, dtype=np.int64))

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> "Tensor":
        d = _norm_dim(dim, self.ndim, "argsort")
        if self.ndim == 0:
            return wrap_array(np.asarray(0, dtype=np.int64))
        x = -self.data if descending and self.dtype.kind != "b" else self.data
        idx = np.argsort(x, axis=d, kind="stable")
        if descending and self.dtype.kind == "b":
            idx = np.flip(np.argsort(x, axis=d, kind="stable"), axis=d)
        return wrap_array(idx.astype(np.int64))

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        idx = self.argsort(dim, descending, stable)
        return values_indices(self.gather(dim, idx) if self.ndim else self, idx)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
        d = _norm_dim(dim, self.ndim, "topk")
        n = self.shape[d] if self.ndim else 1
        if not 0 <= k <= n:
            raise RuntimeError(f"topk: k ({k}) is out of range for dimension {d} of size {n}")
        idx = self.argsort(d, descending=largest, stable=True).data
        idx = np.take(idx, np.arange(k), axis=d)
        idx_t = wrap_array(idx.astype(np.int64))
        return values_indices(self.gather(d, idx_t), idx_t)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> "Tensor":
        x = self._float()
        return Tensor._apply(O.LOGSUMEXP, (x,), {"dim": _norm_dims(dim, x.ndim, "logsumexp"),
                                                 "keepdim": keepdim})

    def prod(self, dim: int | None = None, keepdim: bool = False, *, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        if x.data.dtype.kind in "biu" and dtype is None:
            x = x._cast(B.int64)
        d = None if dim is None else _norm_dims(dim, x.ndim, "prod")
        return Tensor._apply(O.PROD, (x,), {"dim": d, "keepdim": keepdim})

    def cumsum(self, dim: int, *, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        if x.data.dtype.kind in "biu" and dtype is None:
            x = x._cast(B.int64)
        return Tensor._apply(O.CUMSUM, (x,), {"dim": _norm_dim(dim, x.ndim, "cumsum")})

    def cumprod(self, dim: int, *, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        return Tensor._apply(O.CUMPROD, (x,), {"dim": _norm_dim(dim, x.ndim, "cumprod")})

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> "Tensor":
        if p in ("fro", None):
            p = 2
        if p == "nuc":
            raise NotImplementedError("norm: the nuclear norm is not supported")
        x = self._float()
        return Tensor._apply(O.NORM, (x,), {"p": float(p), "dim": _norm_dims(dim, x.ndim, "norm"),
                                            "keepdim": keepdim})

    def softmax(self, dim: int, *, dtype: Any = None) -> "Tensor":
        if dtype is None and self.data.dtype.kind != "f":
            raise RuntimeError(f"softmax: not implemented for {B.dtype_name(self.dtype)} tensors; pass dtype= or "
                               "convert with .float()")
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        return Tensor._apply(O.SOFTMAX, (x,), {"dim": _norm_dim(dim, x.ndim, "softmax")})

    def log_softmax(self, dim: int, *, dtype: Any = None) -> "Tensor":
        if dtype is None and self.data.dtype.kind != "f":
            raise RuntimeError(f"log_softmax: not implemented for {B.dtype_name(self.dtype)} tensors; pass dtype= or "
                               "convert with .float()")
        x = self if dtype is None else self._cast(B.as_dtype(dtype))
        return Tensor._apply(O.LOG_SOFTMAX, (x,), {"dim": _norm_dim(dim, x.ndim, "log_softmax")})

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape: Any) -> "Tensor":
        shape = _as_shape(shape)
        if shape == self.shape:
            return self
        try:
            out_shape = _infer_shape(shape, self.numel())
        except ValueError as e:
            raise RuntimeError(f"reshape: shape {list(shape)} is invalid for input of size "
                               f"{self.numel()}") from e
        return _view(self, O.RESHAPE, {"shape": out_shape})

    view = reshape

    def view_as(self, other: "Tensor") -> "Tensor":
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        if self.ndim == 0:
            return self.reshape(1)
        s = _norm_dim(start_dim, self.ndim, "flatten")
        e = _norm_dim(end_dim, self.ndim, "flatten")
        if s > e:
            raise RuntimeError("flatten: start_dim cannot come after end_dim")
        shp = self.shape
        return self.reshape(shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])

    def unflatten(self, dim: int, sizes: Sequence[int]) -> "Tensor":
        d = _norm_dim(dim, self.ndim, "unflatten")
        sizes = tuple(sizes)
        n = self.shape[d]
        inner = _infer_shape(sizes, n) if -1 in sizes else sizes
        if math.prod(inner) != n:
            raise RuntimeError(f"unflatten: provided sizes {list(sizes)} don't multiply up to the size of "
                               f"dim {dim} ({n}) in the input tensor")
        return self.reshape(self.shape[:d] + inner + self.shape[d + 1:])

    def permute(self, *dims: Any) -> "Tensor":
        dims = _as_shape(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute: number of dims don't match in permute: input has {self.ndim} "
                               f"dims, got {len(dims)}")
        dims = tuple(_norm_dim(d, self.ndim, "permute") for d in dims)
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"permute: repeated dim in {dims}")
        if dims == tuple(range(self.ndim)):
            return self
        return _view(self, O.PERMUTE, {"dims": dims})

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        if self.ndim == 0:
            return self
        d0 = _norm_dim(dim0, self.ndim, "transpose")
        d1 = _norm_dim(dim1, self.ndim, "transpose")
        dims = list(range(self.ndim))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self.permute(*dims)

    swapaxes = swapdims = transpose

    def t(self) -> "Tensor":
        if self.ndim > 2:
            raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.T

    def movedim(self, source: int, destination: int) -> "Tensor":
        s = _norm_dim(source, self.ndim, "movedim")
        d = _norm_dim(destination, self.ndim, "movedim")
        order = [i for i in range(self.ndim) if i != s]
        order.insert(d, s)
        return self.permute(*order)

    moveaxis = movedim

    def squeeze(self, dim: Any = None) -> "Tensor":
        if dim is None:
            shape = tuple(s for s in self.shape if s != 1)
        else:
            dims = _norm_dims(dim, self.ndim, "squeeze") or ()
            shape = tuple(s for i, s in enumerate(self.shape) if not (i in dims and s == 1))
        return self.reshape(shape)

    def unsqueeze(self, dim: int) -> "Tensor":
        d = _norm_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def expand(self, *sizes: Any) -> "Tensor":
        sizes = _as_shape(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                               f"equal to the number of dimensions in the tensor ({self.ndim})")
        lead = len(sizes) - self.ndim
        shape = []
        for i, s in enumerate(sizes):
            if i >= lead:
                cur = self.shape[i - lead]
                if s == -1:
                    s = cur
                elif cur != 1 and cur != s:
                    raise RuntimeError(f"expand: the expanded size of the tensor ({s}) must match the "
                                       f"existing size ({cur}) at non-singleton dimension {i}. Target "
                                       f"sizes: {list(sizes)}. Tensor sizes: {list(self.shape)}")
            elif s < 0:
                raise RuntimeError(f"expand: the expanded size {s} is not allowed in a leading, "
                                   "non-existing dimension")
            shape.append(s)
        shape = tuple(shape)
        if shape == self.shape:
            return self
        return _view(self, O.EXPAND, {"shape": shape})

    def expand_as(self, other: "Tensor") -> "Tensor":
        return self.expand(other.shape)

    def broadcast_to(self, shape: Sequence[int]) -> "Tensor":
        return self.expand(tuple(shape))

    def repeat(self, *sizes: Any) -> "Tensor":
        reps = _as_shape(sizes)
        if len(reps) < self.ndim:
            raise RuntimeError("repeat: number of dimensions of repeat dims can not be smaller than number "
                               "of dimensions of tensor")
        x = self.reshape((1,) * (len(reps) - self.ndim) + self.shape)
        return Tensor._apply(O.TILE, (x,), {"reps": reps})

    def tile(self, *dims: Any) -> "Tensor":
        reps = _as_shape(dims)
        if len(reps) < self.ndim:
            reps = (1,) * (self.ndim - len(reps)) + reps
        return self.repeat(reps)

    def flip(self, *dims: Any) -> "Tensor":
        dims = _as_shape(dims)
        d = _norm_dims(dims, self.ndim, "flip")
        return Tensor._apply(O.FLIP, (self,), {"dims": d})

    def fliplr(self) -> "Tensor":
        return self.flip(1)

    def flipud(self) -> "Tensor":
        return self.flip(0)

    def roll(self, shifts: Any, dims: Any = None) -> "Tensor":
        if dims is None:
            flat = self.flatten()
            return Tensor._apply(O.ROLL, (flat,), {"shifts": int(shifts), "dims": 0}).reshape(self.shape)
        if isinstance(shifts, (int, np.integer)):
            shifts = (int(shifts),)
            dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
        shifts, dims = tuple(shifts), tuple(dims) if not isinstance(dims, int) else (dims,)
        if len(shifts) != len(dims):
            raise RuntimeError(f"roll: shifts and dimensions must align. shifts: {len(shifts)}, dims: "
                               f"{len(dims)}")
        dims = tuple(_norm_dim(d, self.ndim, "roll") for d in dims)
        return Tensor._apply(O.ROLL, (self,), {"shifts": shifts, "dims": dims})

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple:
        d = _norm_dim(dim, self.ndim, "split")
        n = self.shape[d]
        if isinstance(split_size_or_sections, (int, np.integer)):
            s = int(split_size_or_sections)
            if s <= 0:
                raise RuntimeError(f"split: split_size must be positive, got {s}")
            sizes = [s] * (n // s) + ([n % s] if n % s else [])
            if n == 0:
                sizes = [0]
        else:
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n:
                raise RuntimeError(f"split: split_with_sizes expects split_sizes to sum exactly to {n} "
                                   f"(input tensor's size at dimension {d}), but got split_sizes={sizes}")
        out = []
        start = 0
        for s in sizes:
            idx = (slice(None),) * d + (slice(start, start + s),)
            out.append(self[idx])
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        if chunks <= 0:
            raise RuntimeError(f"chunk: number of chunks must be greater than 0, got {chunks}")
        d = _norm_dim(dim, self.ndim, "chunk")
        n = self.shape[d]
        size = -(-n // chunks) if n else 1
        return self.split(max(size, 1), d)

    def tensor_split(self, sections: int, dim: int = 0) -> tuple:
        d = _norm_dim(dim, self.ndim, "tensor_split")
        n = self.shape[d]
        q, r = divmod(n, sections)
        return self.split([q + 1] * r + [q] * (sections - r), d)

    def unbind(self, dim: int = 0) -> tuple:
        d = _norm_dim(dim, self.ndim, "unbind")
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    def tril(self, diagonal: int = 0) -> "Tensor":
        if self.ndim < 2:
            raise RuntimeError(f"tril: input tensor must have at least 2 dimensions, got {self.ndim}")
        return Tensor._apply(O.TRI, (self,), {"k": diagonal, "lower": True})

    def triu(self, diagonal: int = 0) -> "Tensor":
        if self.ndim < 2:
            raise RuntimeError(f"triu: input tensor must have at least 2 dimensions, got {self.ndim}")
        return Tensor._apply(O.TRI, (self,), {"k": diagonal, "lower": False})

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, index: Any) -> "Tensor":
        idx, advanced = _convert_index(index, self.shape)
        if advanced:
            return Tensor._apply(O.INDEX, (self,), {"index": idx, "advanced": True})
        return _view(self, O.INDEX, {"index": idx, "advanced": False})

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace("__setitem__ (index_put_)")
        idx, _ = _convert_index(index, self.shape)
        v = value.data if isinstance(value, Tensor) else value
        self.data[idx] = v
        self._vc[0] += 1

    def gather(self, dim: int, index: "Tensor") -> "Tensor":
        d = _norm_dim(dim, self.ndim, "gather")
        idx = _index_array(index, "gather")
        if idx.ndim != self.ndim:
            raise RuntimeError(f"gather: index tensor must have the same number of dimensions as input "
                               f"tensor ({idx.ndim} != {self.ndim})")
        for i, (si, sx) in enumerate(zip(idx.shape, self.shape)):
            if i != d and si > sx:
                raise RuntimeError(f"gather: size of index {tuple(idx.shape)} does not match input "
                                   f"{tuple(self.shape)} at dimension {i} (expected <= {sx})")
        n = self.shape[d]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"gather: index {int(idx.max() if idx.max() >= n else idx.min())} is out of "
                             f"bounds for dimension {d} with size {n}")
        idx = idx % n if n else idx
        if idx.shape != self.shape:  # torch reads only the index's extent of the input
            x = self[tuple(slice(0, s) if i != d else slice(None) for i, s in enumerate(idx.shape))]
        else:
            x = self
        return Tensor._apply(O.TAKE_ALONG, (x,), {"index": idx, "dim": d})

    def take_along_dim(self, indices: "Tensor", dim: int | None = None) -> "Tensor":
        if dim is None:
            return self.flatten().gather(0, _as_tensor(indices).flatten())
        idx = _index_array(indices, "take_along_dim")
        d = _norm_dim(dim, self.ndim, "take_along_dim")
        shape = list(np.broadcast_shapes(
            tuple(s for i, s in enumerate(self.shape) if i != d),
            tuple(s for i, s in enumerate(idx.shape) if i != d)))
        xs, is_ = list(shape), list(shape)
        xs.insert(d, self.shape[d])
        is_.insert(d, idx.shape[d])
        return self.expand(xs).gather(d, wrap_array(np.broadcast_to(idx, is_)))

    def index_select(self, dim: int, index: "Tensor") -> "Tensor":
        d = _norm_dim(dim, self.ndim, "index_select")
        idx = _index_array(index, "index_select")
        if idx.ndim > 1:
            raise IndexError(f"index_select: index must be 0- or 1-D, got {idx.ndim}-D")
        return self[(slice(None),) * d + (idx.reshape(-1),)]

    def scatter_add(self, dim: int, index: "Tensor", src: "Tensor") -> "Tensor":
        d = _norm_dim(dim, self.ndim, "scatter_add")
        idx = _index_array(index, "scatter_add")
        if idx.ndim != self.ndim:
            raise RuntimeError(f"scatter_add: index must have the same number of dimensions as self "
                               f"({idx.ndim} != {self.ndim})")
        n = self.shape[d]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"scatter_add: index {int(idx.max())} is out of bounds for dimension {d} "
                             f"with size {n}")
        a, b = _coerce(self, src, "scatter_add")
        return Tensor._apply(O.SCATTER_ADD, (a, b), {"index": idx % n if n else idx, "dim": d})

    # ------------------------------------------------------------------ in place
    def _check_inplace(self, name: str) -> None:
        if self.requires_grad and state.enabled:
            what = ("a leaf Variable that requires grad" if self._node is None else
                    "a tensor that is part of a graph")
            raise RuntimeError(f"{name}: in-place operation on {what} is not supported while grad is "
                               "enabled; use the out-of-place version, or wrap the update in "
                               "`with rg.no_grad():` (as optimizers do)")

    def _inplace(self, name: str, f: Callable, other: Any = None) -> "Tensor":
        self._check_inplace(name)
        o = other.data if isinstance(other, Tensor) else other
        try:
            if other is None:
                f(self.data, out=self.data)
            else:
                f(self.data, o, out=self.data, casting="same_kind")
        except TypeError as e:  # NumPy's output-casting error is a TypeError
            raise RuntimeError(f"{name}: result type of {B.dtype_name(np.result_type(self.data, o))} "
                               f"can't be cast to the desired output type {B.dtype_name(self.dtype)}") from e
        except ValueError as e:
            raise RuntimeError(f"{name}: shape {np.shape(o)} does not broadcast to the tensor's shape "
                               f"{self.shape}") from e
        self._vc[0] += 1
        return self

    def add_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        if alpha != 1:
            other = (other.data if isinstance(other, Tensor) else other) * alpha
        return self._inplace("add_", np.add, other)

    def sub_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        if alpha != 1:
            other = (other.data if isinstance(other, Tensor) else other) * alpha
        return self._inplace("sub_", np.subtract, other)

    def mul_(self, other: Any) -> "Tensor":
        return self._inplace("mul_", np.multiply, other)

    def div_(self, other: Any) -> "Tensor":
        return self._inplace("div_", np.true_divide, other)

    def pow_(self, other: Any) -> "Tensor":
        return self._inplace("pow_", np.power, other)

    def neg_(self) -> "Tensor":
        return self._inplace("neg_", np.negative)

    def sqrt_(self) -> "Tensor":
        return self._inplace("sqrt_", np.sqrt)

    def exp_(self) -> "Tensor":
        return self._inplace("exp_", np.exp)

    def clamp_(self, min: Any = None, max: Any = None) -> "Tensor":  # noqa: A002
        self._check_inplace("clamp_")
        np.clip(self.data, min, max, out=self.data)
        self._vc[0] += 1
        return self

    def addcmul_(self, t1: Any, t2: Any, *, value: Any = 1) -> "Tensor":
        return self._inplace("addcmul_", np.add, _arr(t1) * _arr(t2) * value)

    def addcdiv_(self, t1: Any, t2: Any, *, value: Any = 1) -> "Tensor":
        return self._inplace("addcdiv_", np.add, _arr(t1) / _arr(t2) * value)

    def lerp_(self, end: Any, weight: Any) -> "Tensor":
        return self._inplace("lerp_", np.add, (_arr(end) - self.data) * _arr(weight))

    def zero_(self) -> "Tensor":
        return self.fill_(0)

    def fill_(self, value: Any) -> "Tensor":
        self._check_inplace("fill_")
        self.data[...] = _arr(value)
        self._vc[0] += 1
        return self

    def copy_(self, src: Any) -> "Tensor":
        self._check_inplace("copy_")
        s = _arr(src)
        try:
            np.copyto(self.data, np.broadcast_to(s, self.shape), casting="unsafe")
        except ValueError as e:
            raise RuntimeError(f"copy_: source of shape {np.shape(s)} does not broadcast to the "
                               f"destination's shape {self.shape}") from e
        self._vc[0] += 1
        return self

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> "Tensor":
        from .random import resolve
        return self.copy_(resolve(generator).uniform(a, b, self.shape))

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> "Tensor":
        from .random import resolve
        return self.copy_(resolve(generator).normal(mean, std, self.shape))

    # ------------------------------------------------------------------ NumPy protocol
    # NumPy functions called on Tensors run as Tensor ops (how rules written in array code run on
    # Tensors for higher-order gradients); tensor_numpy.py fills the two tables.
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        f = NUMPY_UFUNCS.get(ufunc)
        if method != "__call__" or f is None or kwargs:
            return NotImplemented
        return f(*inputs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        f = NUMPY_FUNCTIONS.get(func)
        if f is None:
            return NotImplemented
        return f(*args, **kwargs)


state.tensor_type = Tensor


# ====================================================================== helpers
def _arr(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _nondiff(t: Tensor, f: Callable) -> Tensor:
    return wrap_array(np.asarray(f(t.data)))


def _view(t: Tensor, rule: O.Rule, kw: dict) -> Tensor:
    """An op whose output shares memory with its input: both share one version counter."""
    out = Tensor._apply(rule, (t,), kw)
    if out.data.base is not None:
        out._vc = t._vc
        if out._node is not None and out._node.out_vc is not None:
            out._node.out_vc = (t._vc, t._vc[0])
    return out


def _infer_shape(shape: tuple, n: int) -> tuple:
    if shape.count(-1) > 1:
        raise ValueError("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or n % known:
            raise ValueError("bad shape")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if math.prod(shape) != n or any(s < 0 for s in shape):
        raise ValueError("bad shape")
    return shape


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Build an array as ``torch.tensor`` would: floats default to the default
    dtype, ints to int64, arrays keep their dtype."""
    if isinstance(data, Tensor):
        arr = data.data.copy()
        return arr if dtype is None else arr.astype(B.as_dtype(dtype))
    if dtype is not None:
        d = B.as_dtype(dtype)
        try:
            return np.array(data, dtype=d)
        except (TypeError, ValueError) as e:
            raise TypeError(f"tensor: could not convert {type(data).__name__} to {B.dtype_name(d)}: {e}") from e
    if isinstance(data, np.ndarray):
        arr = data.copy()
    elif isinstance(data, (np.generic,)):
        arr = np.array(data)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat_iter(data)):
            data = _tensor_list_to_nested(data)
        try:
            arr = np.array(data)
        except ValueError as e:
            raise ValueError(f"tensor: expected a rectangular nested sequence of numbers: {e}") from e
        if arr.dtype.kind == "f":
            arr = arr.astype(B.defaults.float_dtype)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "O" or arr.dtype.kind in "USV":
            raise TypeError(f"tensor: can't convert {type(data).__name__} of {arr.dtype} objects to a tensor; "
                            "expected numbers, bools or nested sequences of them")
    if arr.dtype not in B._NAMES:
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"tensor: unsupported dtype {arr.dtype}")
    return arr


def _flat_iter(seq: Any) -> Iterable:
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flat_iter(x)
        else:
            yield x


def _tensor_list_to_nested(seq: Any) -> Any:
    if isinstance(seq, (list, tuple)):
        return [_tensor_list_to_nested(x) for x in seq]
    return seq.data if isinstance(seq, Tensor) else seq


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return wrap_array(_to_array(x))


def _rank(x: Any) -> int:
    if isinstance(x, Tensor):
        return 2 if x.data.ndim else 1
    if isinstance(x, _PY_SCALARS) and not isinstance(x, np.generic):
        return 0
    return 2 if np.ndim(x) else 1


def _coerce(a: Tensor, other: Any, op: str, true_div: bool = False) -> tuple[Tensor, Tensor]:
    """Two Tensors of one dtype, promoted as PyTorch does; ``a`` is a Tensor."""
    ad = a.data.dtype
    if type(other) is Tensor:
        b = other
        bd = b.data.dtype
        if bd is ad or bd == ad:
            if true_div and ad.kind != "f":
                d = B.defaults.float_dtype
                return a._cast(d), b._cast(d)
            return a, b
        d = B.promote([(ad, _rank(a)), (bd, _rank(b))])
    else:
        if isinstance(other, (bool, int, float)):
            # Python scalars are "weak": they keep the tensor's dtype unless they raise its category
            k = ad.kind
            if isinstance(other, bool) or (isinstance(other, int) and k != "b") or (k == "f"):
                if not (true_div and k != "f"):
                    # uint8 wraps a negative int around, as torch does (np.array(-3, uint8) raises)
                    return a, wrap_array(np.array(other).astype(ad) if k == "u" else np.array(other, dtype=ad))
            d = B.promote([(ad, _rank(a)), (np.result_type(type(other)), 0)])
            if true_div and d.kind != "f":
                d = B.defaults.float_dtype
            return a._cast(d), wrap_array(np.array(other, dtype=d))
        if other is None or isinstance(other, (str, bytes, dict, set)):
            raise TypeError(f"{op}: unsupported operand type {type(other).__name__} for a Tensor")
        b = _as_tensor(other) if not isinstance(other, np.ndarray) else wrap_array(other)
        bd = b.data.dtype
        if bd == ad:
            d = ad
        else:
            d = B.promote([(ad, _rank(a)), (bd, _rank(b))])
    if true_div and d.kind != "f":
        d = B.defaults.float_dtype
    return a._cast(d), b._cast(d)


def _index_array(index: Any, op: str) -> np.ndarray:
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor (int64), got {B.dtype_name(idx.dtype)}")
    return idx


def _convert_index(index: Any, shape: tuple) -> tuple[Any, bool]:
    """Turn a PyTorch index into a NumPy one; check bounds with a clear error."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    advanced = False
    dim = 0
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis
                 and not (isinstance(i, (Tensor, np.ndarray)) and getattr(i, "dtype", None) == np.bool_))
    n_real += sum(getattr(i, "ndim", 0) for i in index
                  if isinstance(i, (Tensor, np.ndarray)) and i.dtype == np.bool_)
    if n_real > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
    for i in index:
        if isinstance(i, Tensor):
            i = i.data
        if i is None:
            out.append(None)
            continue
        if i is Ellipsis:
            out.append(i)
            dim = len(shape) - (n_real - dim)
            continue
        if isinstance(i, bool):
            out.append(i)
            advanced = True
            continue
        if isinstance(i, (int, np.integer)):
            n = shape[dim]
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
            out.append(int(i))
            dim += 1
            continue
        if isinstance(i, slice):
            out.append(i)
            dim += 1
            continue
        arr = np.asarray(i)
        if arr.dtype == np.bool_:
            if arr.shape != shape[dim:dim + arr.ndim]:
                raise IndexError(f"the shape of the mask {arr.shape} at index {dim} does not match the shape "
                                 f"of the indexed tensor {shape[dim:dim + arr.ndim]}")
            out.append(arr)
            advanced = True
            dim += arr.ndim
            continue
        if arr.dtype.kind not in "iu":
            raise IndexError(f"tensors used as indices must be long, int, bool or byte tensors, got "
                             f"{arr.dtype}")
        n = shape[dim]
        if arr.size and (arr.max() >= n or arr.min() < -n):
            bad = arr.max() if arr.max() >= n else arr.min()
            raise IndexError(f"index {int(bad)} is out of bounds for dimension {dim} with size {n}")
        out.append(arr)
        advanced = True
        dim += 1
    return tuple(out), advanced


# ====================================================================== functions
def matmul(a: Any, b: Any) -> Tensor:
    a, b = _coerce(_as_tensor(a), b, "matmul")
    sa, sb = a.shape, b.shape
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {sa} and {sb}")
    ka = sa[-1]
    kb = sb[0] if b.ndim == 1 else sb[-2]
    if ka != kb:
        raise RuntimeError(f"matmul: shapes {sa} and {sb} do not align ({ka} != {kb})")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise RuntimeError(f"matmul: batch dimensions of shapes {sa} and {sb} do not broadcast") from None
    return Tensor._apply(O.MATMUL, (a, b))


def where(condition: Any, input: Any = None, other: Any = None) -> Any:  # noqa: A002
    c = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if input is None and other is None:
        return tuple(wrap_array(i.astype(np.int64)) for i in np.nonzero(c))
    if c.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {B.dtype_name(c.dtype)}")
    if isinstance(input, Tensor):
        a, b = _coerce(input, other, "where")
    elif isinstance(other, Tensor):
        b, a = _coerce(other, input, "where")
    else:
        a, b = _coerce(_as_tensor(input), other, "where")
    try:
        np.broadcast_shapes(c.shape, a.shape, b.shape)
    except ValueError:
        raise RuntimeError(f"where: shapes of condition {c.shape}, input {a.shape} and other {b.shape} "
                           "do not broadcast") from None
    return Tensor._apply(O.WHERE, (a, b), {"cond": c})


# ====================================================================== repr
def _format(t: Tensor) -> str:
    data = t.data
    dt = data.dtype
    opts: dict = {"separator": ", ", "prefix": "tensor("}
    if dt.kind == "f" and data.size:
        finite = data[np.isfinite(data)]
        if finite.size and np.any(finite != np.round(finite)):
            big = np.abs(finite).max()
            if big >= 1e8 or (np.abs(finite[finite != 0]).min() < 1e-4 if np.any(finite != 0) else False):
                opts["formatter"] = {"float_kind": lambda v: f"{v:.4e}"}
            else:
                opts.update(precision=4, floatmode="fixed")
    body = np.array2string(data, threshold=1000, edgeitems=3, **opts)
    extras = []
    default = B.defaults.float_dtype
    if (dt.kind == "f" and dt != default) or dt.kind not in "fbi" or (dt.kind == "i" and dt != np.int64) \
            or data.size == 0 and dt != default:
        extras.append(f"dtype=retrograd.{B.dtype_name(dt)}")
    if t._node is not None:
        extras.append(f"grad_fn=<{t._node.rule.node_name}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
