"""ONNX handlers for Tensor methods and ``rg`` functions (see ``trace.py`` for the protocol:
``handler(graph, out, *args, **kwargs)`` writes the nodes computing ``out`` and binds it)."""
from __future__ import annotations

import types
from typing import Any

import numpy as np

from .. import creation, tensor_functions, tensor_math, tensor_reduce, tensor_shape
from ..tensor import Tensor
from .errors import ExportError
from .graph import INT64_MAX, Graph, TracedDim, onnx_dtype
from .trace import FUNCTIONS, TENSOR


def _norm(d: int, ndim: int) -> int:
    return int(d) + ndim if d < 0 else int(d)


def _shape_args(shape: tuple) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def alias(g: Graph, out: Tensor, x: Any) -> None:
    if out is not x:
        g.bind(out, g.name(x))


def _operand(g: Graph, x: Any, dtype: np.dtype) -> str:
    """``x`` (a Tensor or a number) as a value of ``dtype``."""
    if isinstance(x, Tensor):
        return g.cast_to(g.name(x), dtype)
    return g.name(x, dtype)


# ---------------------------------------------------------------------- elementwise
UNARY = {"exp": "Exp", "log": "Log", "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "sqrt": "Sqrt",
         "abs": "Abs", "neg": "Neg", "__neg__": "Neg", "negative": "Neg", "__abs__": "Abs", "erf": "Erf",
         "sin": "Sin", "cos": "Cos", "reciprocal": "Reciprocal", "floor": "Floor", "ceil": "Ceil", "sign": "Sign",
         "logical_not": "Not", "__invert__": "Not"}


def _unary(op: str):
    def h(g: Graph, out: Tensor, x: Tensor, *_: Any, **__: Any) -> None:
        g.emit(out, op, [g.cast_to(g.name(x), out._array.dtype) if op != "Not" else g.name(x)])
    return h


def _rsqrt(g: Graph, out: Tensor, x: Tensor) -> None:
    g.emit(out, "Reciprocal", [g.node("Sqrt", [g.name(x)])])


def _square(g: Graph, out: Tensor, x: Tensor) -> None:
    n = g.name(x)
    g.emit(out, "Mul", [n, n])


BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "truediv": "Div", "pow": "Pow",
          "matmul": "MatMul", "maximum": "Max", "minimum": "Min"}
COMPARE = {"eq": "Equal", "ne": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater",
           "ge": "GreaterOrEqual", "and": "And", "or": "Or", "xor": "Xor"}


def _binary(op: str, reflected: bool = False):
    def h(g: Graph, out: Tensor, a: Any, b: Any, *rest: Any, alpha: Any = 1, rounding_mode: Any = None) -> None:
        if rest or rounding_mode is not None:
            raise ExportError(f"rg.onnx.export: cannot export {op} with {rest or rounding_mode!r}")
        dtype = out._array.dtype
        x, y = (b, a) if reflected else (a, b)
        if op == "Pow" and not isinstance(y, Tensor):
            ins = [_operand(g, x, dtype), g.name(float(y) if dtype.kind == "f" else y, dtype)]
        else:
            ins = [_operand(g, x, dtype), _operand(g, y, dtype)]
        if alpha != 1:
            ins[1] = g.node("Mul", [ins[1], g.name(alpha, dtype)])
        g.emit(out, op, ins)
    return h


def _compare(name: str, reflected: bool = False):
    op = COMPARE[name]

    def h(g: Graph, out: Tensor, a: Any, b: Any) -> None:
        x, y = (b, a) if reflected else (a, b)
        arrays = [v._array if isinstance(v, Tensor) else v for v in (x, y)]
        dtype = np.result_type(*arrays) if op not in ("And", "Or", "Xor") else np.dtype(bool)
        ins = [_operand(g, x, dtype), _operand(g, y, dtype)]
        if name == "ne":
            g.emit(out, "Not", [g.node("Equal", ins)])
        else:
            g.emit(out, op, ins)
    return h


def _where(g: Graph, out: Tensor, cond: Any, a: Any = None, b: Any = None) -> None:
    if a is None and b is None:
        raise ExportError("rg.onnx.export: cannot export where(condition) (nonzero): its shape depends on the values")
    dtype = out._array.dtype
    g.emit(out, "Where", [_operand(g, cond, np.dtype(bool)), _operand(g, a, dtype), _operand(g, b, dtype)])


def _where_method(g: Graph, out: Tensor, self: Tensor, cond: Any, other: Any) -> None:
    _where(g, out, cond, self, other)


def _masked_fill(g: Graph, out: Tensor, x: Tensor, mask: Any, value: Any) -> None:
    dtype = out._array.dtype
    g.emit(out, "Where", [_operand(g, mask, np.dtype(bool)), _operand(g, value, dtype), g.name(x)])


def _clamp(g: Graph, out: Tensor, x: Tensor, min: Any = None, max: Any = None) -> None:  # noqa: A002
    dtype = out._array.dtype
    g.emit(out, "Clip", [g.name(x), None if min is None else _operand(g, min, dtype),
                         None if max is None else _operand(g, max, dtype)])


def _cast(g: Graph, out: Tensor, x: Tensor, *_: Any, **__: Any) -> None:
    if out._array.dtype == x._array.dtype:
        alias(g, out, x)
    else:
        g.emit(out, "Cast", [g.name(x)], to=onnx_dtype(out._array.dtype))


def _identity(g: Graph, out: Any, x: Tensor, *_: Any, **__: Any) -> None:
    alias(g, out, x)


# ---------------------------------------------------------------------- reductions
def _reduce(op: str):
    def h(g: Graph, out: Tensor, x: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None,
          axis: Any = None) -> None:
        dim = axis if dim is None else dim
        n = x.ndim
        axes = list(range(n)) if dim is None or dim == () else \
            [_norm(d, n) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
        src = g.cast_to(g.name(x), out._array.dtype)
        g.bind(out, g.reduce(op, src, axes, keepdim))
    return h


def _softmax(op: str):
    def h(g: Graph, out: Tensor, x: Tensor, dim: int = None, *_: Any, dtype: Any = None) -> None:
        d = -1 if dim is None else dim
        g.emit(out, op, [g.cast_to(g.name(x), out._array.dtype)], axis=_norm(d, x.ndim))
    return h


def _argmax(g: Graph, out: Tensor, x: Tensor, dim: Any = None, keepdim: bool = False) -> None:
    if dim is None:
        flat = g.node("Reshape", [g.name(x), g.const(np.array([-1], np.int64))])
        g.emit(out, "ArgMax", [flat], axis=0, keepdims=0)
    else:
        g.emit(out, "ArgMax", [g.name(x)], axis=_norm(dim, x.ndim), keepdims=int(keepdim))



def _maxmin(is_max: bool):
    """``max()``/``min()``: all elements (ReduceMax); ``max(other)``: elementwise (Max);
    ``max(dim, keepdim)``: values and indices (ReduceMax + ArgMax, the first extremum as retrograd)."""
    op, arg = ("ReduceMax", "ArgMax") if is_max else ("ReduceMin", "ArgMin")

    def h(g: Graph, out: Any, x: Tensor, dim: Any = None, keepdim: bool = False) -> None:
        if isinstance(dim, Tensor):
            return _binary("Max" if is_max else "Min")(g, out, x, dim)
        if dim is None:
            return g.bind(out, g.reduce(op, g.name(x), list(range(x.ndim)), False))
        if x.ndim == 0:
            g.bind(out[0], g.name(x))
            g.bind(out[1], g.const(np.array(0, np.int64)))
            return
        d = _norm(dim, x.ndim)
        g.bind(out[0], g.reduce(op, g.name(x), [d], keepdim))
        g.bind(out[1], g.node(arg, [g.name(x)], axis=d, keepdims=int(keepdim)))
    return h


def _argmin(g: Graph, out: Tensor, x: Tensor, dim: Any = None, keepdim: bool = False) -> None:
    src = g.node("Reshape", [g.name(x), g.const(np.array([-1], np.int64))]) if dim is None else g.name(x)
    g.emit(out, "ArgMin", [src], axis=0 if dim is None else _norm(dim, x.ndim),
           keepdims=0 if dim is None else int(keepdim))


def _cumsum(g: Graph, out: Tensor, x: Tensor, dim: int, *, dtype: Any = None) -> None:
    src = g.cast_to(g.name(x), out._array.dtype)
    g.emit(out, "CumSum", [src, g.const(np.array(_norm(dim, max(x.ndim, 1)), np.int64))])


def _einsum(g: Graph, out: Tensor, equation: str, *operands: Any) -> None:
    """Einsum with the equation as retrograd reads it: '...' written out as letters and an implicit
    output made explicit, so ONNX's rules for those never come into play."""
    from ..tensor_functions import _einsum_ellipsis
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ts = [o if isinstance(o, Tensor) else Tensor(np.asarray(o)) for o in operands]
    spaced = equation.replace(" ", "")
    lhs, arrow, rhs = (_einsum_ellipsis(spaced, ts) if "..." in spaced else spaced).partition("->")
    once = [c for c in lhs if c != "," and lhs.count(c) == 1]  # implicit output: these, sorted (NumPy's rule)
    eq = f"{lhs}->{rhs if arrow else ''.join(sorted(once))}"
    if not eq.replace(",", "").replace("->", "").isalpha() or not eq.isascii():
        raise ExportError(f"rg.onnx.export: cannot export einsum {equation!r}: ONNX's Einsum takes letters only")
    g.emit(out, "Einsum", [_operand(g, t, out._array.dtype) for t in ts], equation=eq)


# ---------------------------------------------------------------------- shapes
def reshape_to(g: Graph, out: Tensor, x: Tensor, dims: Any) -> None:
    g.emit(out, "Reshape", [g.name(x), g.shape_vector(dims)])


def _reshape(g: Graph, out: Tensor, x: Tensor, *shape: Any) -> None:
    if out is x:
        return
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
        raise ExportError("rg.onnx.export: cannot export Tensor.view(dtype) (a reinterpretation of the bytes)")
    reshape_to(g, out, x, _shape_args(shape))


def _reshape_as(g: Graph, out: Tensor, x: Tensor, other: Tensor) -> None:
    if out is not x:
        g.emit(out, "Reshape", [g.name(x), g.shape_of(g.name(other))])


def _flatten(g: Graph, out: Tensor, x: Tensor, start_dim: int = 0, end_dim: int = -1) -> None:
    n = max(x.ndim, 1)
    s, e = _norm(start_dim, n), _norm(end_dim, n)
    if out is x or (s == e and x.ndim):
        return alias(g, out, x)
    dims = g.dims(x)
    reshape_to(g, out, x, [0] * s + [-1] + list(dims[e + 1:]))


def _permute(g: Graph, out: Tensor, x: Tensor, *dims: Any) -> None:
    dims = _shape_args(dims)
    g.emit(out, "Transpose", [g.name(x)], perm=[_norm(d, x.ndim) for d in dims])


def _transpose(g: Graph, out: Tensor, x: Tensor, dim0: int, dim1: int) -> None:
    perm = list(range(x.ndim))
    a, b = _norm(dim0, x.ndim), _norm(dim1, x.ndim)
    perm[a], perm[b] = perm[b], perm[a]
    if a == b:
        return alias(g, out, x)
    g.emit(out, "Transpose", [g.name(x)], perm=perm)


def _T(g: Graph, out: Tensor, x: Tensor) -> None:  # noqa: N802
    g.emit(out, "Transpose", [g.name(x)], perm=list(range(x.ndim))[::-1])


def _mT(g: Graph, out: Tensor, x: Tensor) -> None:  # noqa: N802
    _transpose(g, out, x, -2, -1)


def _unsqueeze(g: Graph, out: Tensor, x: Tensor, dim: int) -> None:
    g.emit(out, "Unsqueeze", [g.name(x), g.const(np.array([_norm(dim, x.ndim + 1)], np.int64))])


def _squeeze(g: Graph, out: Tensor, x: Tensor, dim: Any = None) -> None:
    shape = x._array.shape
    dims = range(x.ndim) if dim is None else (dim if isinstance(dim, (tuple, list)) else (dim,))
    axes = [a for a in (_norm(d, x.ndim) for d in dims) if shape[a] == 1]
    if not axes:
        return alias(g, out, x)
    g.emit(out, "Squeeze", [g.name(x), g.const(np.array(axes, np.int64))])


def _expand(g: Graph, out: Tensor, x: Tensor, *sizes: Any) -> None:
    sizes = _shape_args(sizes)  # -1 keeps a size: Expand broadcasts, so 1 does the same
    g.emit(out, "Expand", [g.name(x), g.shape_vector([1 if (type(s) is int and s == -1) else s for s in sizes])])


def _expand_as(g: Graph, out: Tensor, x: Tensor, other: Tensor) -> None:
    g.emit(out, "Expand", [g.name(x), g.shape_of(g.name(other))])


def _split_outputs(g: Graph, outs: tuple, x: Tensor, dim: int) -> None:
    d = _norm(dim, x.ndim)
    sizes = [o._array.shape[d] for o in outs]
    names = g.node("Split", [g.name(x), g.const(np.array(sizes, np.int64))], n_out=len(outs), axis=d)
    for o, n in zip(outs, [names] if len(outs) == 1 else names):
        g.bind(o, n)


def _split(g: Graph, outs: tuple, x: Tensor, split_size_or_sections: Any, dim: int = 0) -> None:
    _split_outputs(g, outs, x, dim)


def _chunk(g: Graph, outs: tuple, x: Tensor, chunks: int, dim: int = 0) -> None:
    _split_outputs(g, outs, x, dim)


def _tri(upper: int):
    def h(g: Graph, out: Tensor, x: Tensor, diagonal: int = 0) -> None:
        g.emit(out, "Trilu", [g.name(x), g.const(np.array(diagonal, np.int64))], upper=upper)
    return h


def _getitem(g: Graph, out: Tensor, x: Tensor, index: Any) -> None:
    idx = list(index) if isinstance(index, tuple) else [index]
    tensors = [i for i, v in enumerate(idx) if isinstance(v, (Tensor, list, np.ndarray))]
    if tensors:
        if len(tensors) > 1 or any(not (isinstance(v, slice) and v == slice(None)) for i, v in enumerate(idx)
                                   if i != tensors[0]):
            raise ExportError(f"rg.onnx.export: cannot export Tensor.__getitem__ with index {index!r}: only one "
                              f"integer tensor index with full slices ':' elsewhere is supported")
        ix = idx[tensors[0]]
        ix = ix if isinstance(ix, Tensor) else Tensor(np.asarray(ix))
        if ix._array.dtype == np.bool_:
            raise ExportError("rg.onnx.export: cannot export boolean-mask indexing (its shape depends on the values)")
        return g.emit(out, "Gather", [g.name(x), g.cast_to(g.name(ix), np.dtype(np.int64))], axis=tensors[0])
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        given = sum(1 for v in idx if v is not None and v is not Ellipsis)
        idx = idx[:k] + [slice(None)] * (x.ndim - given) + idx[k + 1:]
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis = out_pos = 0
    for v in idx:
        if v is None:
            unsqueeze.append(out_pos)
            out_pos += 1
            continue
        if isinstance(v, slice):
            step = 1 if v.step is None else v.step
            if v != slice(None):
                if type(step) is not int or (type(v.start) not in (int, type(None), TracedDim)) or \
                        (type(v.stop) not in (int, type(None), TracedDim)):
                    raise ExportError(f"rg.onnx.export: cannot export the slice {v!r} (int bounds expected)")
                starts.append((0 if step > 0 else -1) if v.start is None else v.start)
                ends.append((INT64_MAX if step > 0 else -INT64_MAX) if v.stop is None else v.stop)
                axes.append(axis)
                steps.append(step)
            out_pos += 1
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            starts.append(v)
            ends.append(INT64_MAX if (type(v) is not TracedDim and int(v) == -1) else v + 1)
            axes.append(axis)
            steps.append(1)
            squeeze.append(axis)
        else:
            raise ExportError(f"rg.onnx.export: cannot export Tensor.__getitem__ with the index {v!r}")
        axis += 1
    name = g.name(x)
    if axes:
        name = g.node("Slice", [name, g.shape_vector(starts), g.shape_vector(ends),
                                g.const(np.array(axes, np.int64)), g.const(np.array(steps, np.int64))])
    if squeeze:
        name = g.node("Squeeze", [name, g.const(np.array(squeeze, np.int64))])
    if unsqueeze:
        name = g.node("Unsqueeze", [name, g.const(np.array(unsqueeze, np.int64))])
    if name == g.name(x):
        return alias(g, out, x)
    g.bind(out, name)


# ---------------------------------------------------------------------- functions
def _cat(g: Graph, out: Tensor, tensors: Any, dim: int = 0, *, axis: Any = None) -> None:
    d = _norm(axis if axis is not None else dim, out.ndim)
    g.emit(out, "Concat", [_operand(g, t, out._array.dtype) for t in tensors], axis=d)


def _stack(g: Graph, out: Tensor, tensors: Any, dim: int = 0) -> None:
    d = _norm(dim, out.ndim)
    axes = g.const(np.array([d], np.int64))
    g.emit(out, "Concat", [g.node("Unsqueeze", [_operand(g, t, out._array.dtype), axes]) for t in tensors], axis=d)


def _arange(g: Graph, out: Tensor, start: Any, end: Any = None, step: Any = 1, **_: Any) -> None:
    if end is None:
        start, end = 0, start
    scalar = g.const(np.array([], np.int64))  # Reshape to this: a (1,) size becomes a scalar

    def s(v: Any) -> str:
        if isinstance(v, TracedDim):
            return g.node("Reshape", [v.value_name(), scalar])
        return g.name(v, np.dtype(np.int64) if isinstance(v, int) else np.dtype(np.float64))
    if not all(isinstance(v, int) for v in (start, end, step)):
        raise ExportError("rg.onnx.export: cannot export arange with float bounds of traced sizes")
    r = g.node("Range", [s(start), s(end), s(step)])
    g.bind(out, g.cast_to(r, out._array.dtype) if out._array.dtype != np.int64 else r)


def _full_like_sizes(value: float):
    def h(g: Graph, out: Tensor, *size: Any, dtype: Any = None, **_: Any) -> None:
        arr = np.array([value], dtype=out._array.dtype)
        from onnx import numpy_helper
        g.emit(out, "ConstantOfShape", [g.shape_vector(_shape_args(size))], value=numpy_helper.from_array(arr))
    return h


def register() -> None:
    for name, op in UNARY.items():
        TENSOR[name] = _unary(op)
    for name, op in BINARY.items():
        TENSOR[name] = TENSOR[f"__{name}__"] = _binary(op)
        TENSOR[f"__r{name}__"] = _binary(op, reflected=True)
    for name in COMPARE:
        TENSOR[f"__{name}__"] = TENSOR[name] = _compare(name)
        if name in ("and", "or", "xor"):
            TENSOR[f"__r{name}__"] = _compare(name, True)
    TENSOR.update({
        "subtract": TENSOR["sub"], "multiply": TENSOR["mul"], "divide": TENSOR["div"],
        "true_divide": TENSOR["div"], "mm": TENSOR["matmul"], "bmm": TENSOR["matmul"],
        "__rsub__": _binary("Sub", True), "rsqrt": _rsqrt, "square": _square, "where": _where_method,
        "masked_fill": _masked_fill, "clamp": _clamp, "clip": _clamp,
        "float": _cast, "double": _cast, "half": _cast, "long": _cast, "int": _cast, "bool": _cast,
        "to": _cast, "type_as": _cast, "astype": _cast, "contiguous": _identity, "clone": _identity,
        "detach": _identity, "data": _identity, "__pos__": _identity, "cpu": _identity,
        "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"), "amax": _reduce("ReduceMax"),
        "amin": _reduce("ReduceMin"), "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
        "argmax": _argmax, "argmin": _argmin, "max": _maxmin(True), "min": _maxmin(False), "cumsum": _cumsum,
        "reshape": _reshape, "view": _reshape, "reshape_as": _reshape_as,
        "view_as": _reshape_as, "flatten": _flatten, "permute": _permute, "transpose": _transpose,
        "swapaxes": _transpose, "swapdims": _transpose, "T": _T, "mT": _mT, "unsqueeze": _unsqueeze,
        "squeeze": _squeeze, "expand": _expand, "expand_as": _expand_as, "split": _split, "chunk": _chunk,
        "tril": _tri(0), "triu": _tri(1), "__getitem__": _getitem,
    })
    handled = {
        tensor_functions.cat: _cat, tensor_functions.stack: _stack, tensor_math.where: _where,
        tensor_math.matmul: _binary("MatMul"), creation.arange: _arange, tensor_functions.einsum: _einsum,
        creation.zeros: _full_like_sizes(0.0), creation.ones: _full_like_sizes(1.0),
    }
    for alias_name in ("concat", "concatenate"):
        f = getattr(tensor_functions, alias_name, None)
        if f is not None:
            handled[f] = _cat
    import sys
    root = sys.modules["retrograd"]  # the functions ``rg.*`` exposes from the tensor modules
    mods = {m.__name__ for m in (tensor_functions, tensor_math, tensor_reduce, tensor_shape, creation)}
    for name, f in vars(root).items():
        if isinstance(f, types.FunctionType) and f.__module__ in mods and not name.startswith(("_", "is_")) \
                and f not in FUNCTIONS:
            FUNCTIONS[f] = (f"rg.{name}", handled.get(f, TENSOR.get(name)))
    for name, f in vars(root).items():  # ``rg.sum(x, ...)``-style wrappers of Tensor methods
        if isinstance(f, types.FunctionType) and f.__module__ == "retrograd" and TENSOR.get(name) is not None \
                and f not in FUNCTIONS:
            FUNCTIONS[f] = (f"rg.{name}", TENSOR[name])
    for f, h in handled.items():
        FUNCTIONS.setdefault(f, (f"rg.{f.__name__}", h))
