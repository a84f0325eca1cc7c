"""The ONNX graph a trace builds: value names for traced Tensors, initializers for parameters and
constants, nodes, and ``TracedDim`` (a size read from a traced tensor's shape, which stays a
computation in the graph so that dynamic axes stay dynamic).

Needs the ``onnx`` package (``pip install retrograd[export]``); only ``rg.onnx.export`` imports
this module."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..tensor import Tensor
from .errors import ExportError

INT64_MAX = np.iinfo(np.int64).max


def onnx_dtype(dtype: np.dtype) -> int:
    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"rg.onnx.export: dtype {dtype} has no ONNX type") from None


class TracedDim(int):
    """An ``int`` (the size seen while tracing) that also knows how to compute itself in the graph:
    ``x.shape[1]`` of a traced ``x`` is ``Gather(Shape(x), 1)``; ``+ - * //`` with ints or other
    TracedDims record the same arithmetic, so ``reshape(b, t, c // h)`` stays correct for other sizes.
    Comparisons and Python control flow see the plain number."""

    __hash__ = int.__hash__

    def __new__(cls, value: int, graph: "Graph", source: str | None, axis: int | None = None,
                name: str | None = None) -> "TracedDim":
        d = int.__new__(cls, value)
        d.graph, d.source, d.axis, d._name = graph, source, axis, name
        return d

    def value_name(self) -> str:
        """The ONNX value (int64, shape ``(1,)``) holding this size."""
        if self._name is None:
            shape = self.graph.shape_of(self.source)
            self._name = self.graph.node("Gather", [shape, self.graph.const(np.array([self.axis], np.int64))],
                                         axis=0)
        return self._name

    def _arith(self, other: Any, op: str, reflected: bool = False) -> Any:
        if not isinstance(other, (int, np.integer)) or isinstance(other, bool):
            return NotImplemented
        value = {"Add": int.__add__, "Sub": int.__sub__, "Mul": int.__mul__, "Div": int.__floordiv__}[op]
        a, b = (int(other), int(self)) if reflected else (int(self), int(other))
        g = self.graph
        ins = [g.dim_name(other), self.value_name()] if reflected else [self.value_name(), g.dim_name(other)]
        return TracedDim(value(a, b), g, None, name=g.node(op, ins))

    def __add__(self, o): return self._arith(o, "Add")  # noqa: E704
    def __radd__(self, o): return self._arith(o, "Add", True)  # noqa: E704
    def __sub__(self, o): return self._arith(o, "Sub")  # noqa: E704
    def __rsub__(self, o): return self._arith(o, "Sub", True)  # noqa: E704
    def __mul__(self, o): return self._arith(o, "Mul")  # noqa: E704
    def __rmul__(self, o): return self._arith(o, "Mul", True)  # noqa: E704
    def __floordiv__(self, o): return self._arith(o, "Div")  # noqa: E704  (sizes are >= 0: Div is floor)
    def __rfloordiv__(self, o): return self._arith(o, "Div", True)  # noqa: E704


class Graph:
    """Nodes and initializers under construction; ``names`` maps ``id(tensor)`` of every traced
    Tensor to its ONNX value name (the Tensors are kept alive so that ids stay unique)."""

    def __init__(self, opset: int, params: dict[int, tuple[str, Tensor]]) -> None:
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[int, str] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self._alive: list = []
        self._params = params  # id(parameter or buffer) -> (state_dict name, tensor)
        self._consts: dict[Any, str] = {}
        self._shapes: dict[str, str] = {}
        self._used: set[str] = set()
        self.module_names: dict[str, Any] = {}  # qualified name -> module (for initializer names)

    # ------------------------------------------------------------------ names
    def fresh(self, hint: str) -> str:
        i, name = 0, hint
        while name in self._used:
            i += 1
            name = f"{hint}_{i}"
        self._used.add(name)
        return name

    def bind(self, tensor: Tensor, name: str) -> None:
        """``tensor`` is the value ``name`` from now on."""
        self.names[id(tensor)] = name
        self.dtypes[name] = tensor._array.dtype
        self._alive.append(tensor)

    def traced(self, x: Any) -> bool:
        return isinstance(x, Tensor) and id(x) in self.names

    def name(self, x: Any, like: Any = None) -> str:
        """The value name of a traced Tensor; else an initializer for a parameter, buffer or
        constant Tensor, or a constant for a Python number (in ``like``'s dtype) or a TracedDim."""
        if isinstance(x, Tensor):
            n = self.names.get(id(x))
            if n is not None:
                return n
            hit = self._params.get(id(x))
            if hit is not None:
                return self.initializer(hit[0], x._array)
            return self.const(x._array, key=("tensor", id(x)), keep=x)
        if isinstance(x, TracedDim):
            return x.value_name()  # (1,) int64: a scalar size is used as a 1-element vector
        dtype = like if isinstance(like, np.dtype) else (like._array.dtype if isinstance(like, Tensor) else None)
        if dtype is None:
            dtype = np.dtype(np.float32) if isinstance(x, float) else np.dtype(np.int64)
        return self.const(np.array(x, dtype=dtype))

    def dim_name(self, d: Any) -> str:
        return d.value_name() if isinstance(d, TracedDim) else self.const(np.array([int(d)], np.int64))

    def shape_vector(self, dims: Any) -> str:
        """An int64 shape vector from ints and TracedDims (one Concat where any is traced)."""
        dims = list(dims)
        if not any(isinstance(d, TracedDim) for d in dims):
            return self.const(np.array([int(d) for d in dims], np.int64))
        parts, run = [], []
        for d in dims:
            if isinstance(d, TracedDim):
                if run:
                    parts.append(self.const(np.array(run, np.int64)))
                    run = []
                parts.append(d.value_name())
            else:
                run.append(int(d))
        if run:
            parts.append(self.const(np.array(run, np.int64)))
        return parts[0] if len(parts) == 1 else self.node("Concat", parts, axis=0)

    def shape_of(self, value: str) -> str:
        if value not in self._shapes:
            self._shapes[value] = self.node("Shape", [value])
        return self._shapes[value]

    def dims(self, x: Tensor) -> tuple:
        """``x.shape`` as TracedDims (for a traced ``x``) or ints."""
        if not self.traced(x):
            return tuple(x._array.shape)
        n = self.names[id(x)]
        return tuple(TracedDim(s, self, n, i) for i, s in enumerate(x._array.shape))

    # ------------------------------------------------------------------ initializers and nodes
    def initializer(self, name: str, array: np.ndarray) -> str:
        key = ("init", name)
        if key not in self._consts:
            self._consts[key] = n = self.fresh(name)
            self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), n))
            self.dtypes[n] = array.dtype
        return self._consts[key]

    def const(self, array: np.ndarray, key: Any = None, keep: Any = None) -> str:
        """An initializer for ``array`` (small arrays are shared by value)."""
        array = np.asarray(array)
        if key is None and array.size <= 16:
            key = ("value", array.dtype.str, array.shape, array.tobytes())
        if key is not None and key in self._consts:
            return self._consts[key]
        n = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), n))
        self.dtypes[n] = array.dtype
        if keep is not None:
            self._alive.append(keep)
        if key is not None:
            self._consts[key] = n
        return n

    def node(self, op: str, inputs: list, n_out: int = 1, **attrs: Any) -> Any:
        """Append ``op``; returns its output name (or a list of ``n_out`` names)."""
        outs = [self.fresh(f"{op.lower()}_out") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, [i or "" for i in inputs], outs, name=self.fresh(op),
                                           **{k: v for k, v in attrs.items() if v is not None}))
        return outs[0] if n_out == 1 else outs

    def emit(self, out: Tensor, op: str, inputs: list, **attrs: Any) -> str:
        """``node`` and bind its output to ``out``."""
        n = self.node(op, inputs, **attrs)
        self.bind(out, n)
        return n

    def cast_to(self, name: str, dtype: np.dtype) -> str:
        have = self.dtypes.get(name)
        if have is not None and have == dtype:
            return name
        n = self.node("Cast", [name], to=onnx_dtype(dtype))
        self.dtypes[n] = np.dtype(dtype)
        return n

    # ------------------------------------------------------------------ opset-dependent helpers
    def reduce(self, op: str, x: str, axes: list[int], keepdims: bool) -> str:
        if op == "ReduceSum" or self.opset >= 18:  # axes became an input (ReduceSum: opset 13)
            return self.node(op, [x, self.const(np.array(axes, np.int64))], keepdims=int(keepdims))
        return self.node(op, [x], axes=list(axes), keepdims=int(keepdims))

    def model(self, inputs: list, outputs: list, producer: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "retrograd", inputs, outputs, self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                 producer_name="retrograd", producer_version=producer)
