"""The tracing mode of ``rg.onnx.export``: while it is on, the Tensor methods, the functions of
``rg`` and ``rg.nn.functional`` and the calls of known modules record ONNX nodes as the forward
pass runs them on real arrays.

Three tables drive it (filled by ``symbolic_tensor`` and ``symbolic_nn``):

- ``TENSOR``: Tensor method or property name -> handler;
- ``FUNCTIONS``: a function object (``F.gelu``, ``rg.cat``, ...) -> handler;
- ``MODULES``: a Module class -> handler, used when a module of that class (or of a subclass that
  keeps its ``forward``) is called: the module becomes its ONNX op(s) and its own forward runs
  untraced. Any other module is traced through, op by op.

A handler is ``handler(graph, out, *args, **kwargs)``: it runs after the op itself ran (``out`` is
its result, computed by retrograd as usual) and writes the nodes that compute ``out`` from the
args' values, binding ``out`` (or each Tensor in it) to a value name. An op that meets a traced
Tensor (or a TracedDim) and has no handler raises ``ExportError`` naming it; ops on constants
alone run as usual and their results are constants in the graph.

Functions are swapped wherever a module of the process holds them (``from .x import f`` copies
included) and every swap is undone when tracing ends, also on errors."""
from __future__ import annotations

import contextlib
import sys
import types
from typing import Any, Callable, Iterator

from ..nn.module import Module
from ..tensor import Tensor
from .errors import ExportError
from .graph import Graph, TracedDim

TENSOR: dict[str, Callable | None] = {}
FUNCTIONS: dict[Callable, tuple[str, Callable | None]] = {}
MODULES: dict[type, Callable] = {}

# Tensor methods that read no values and make no new tensor: they run as usual on traced tensors
PASSTHROUGH = {
    "dim", "ndimension", "numel", "nelement", "element_size", "is_floating_point", "is_contiguous", "get_device",
    "requires_grad_", "register_hook", "retain_grad", "data_ptr", "storage_offset", "untyped_storage", "_is_view",
    "is_complex", "is_signed", "__len__", "__repr__", "__str__", "__format__", "__hash__", "__init__",
    "__getstate__", "__setstate__", "__deepcopy__", "__reduce_ex__", "__reduce__", "__sizeof__", "__dir__",
    "__class__", "__init_subclass__", "__subclasshook__", "__setattr__", "__getattribute__", "__delattr__",
    "__new__", "_copy_state", "_wrap", "__array_ufunc__", "__array_function__", "__iter__",
    "is_leaf", "grad_fn", "retains_grad", "device", "is_cuda", "is_cpu", "dtype", "ndim", "layout", "is_sparse",
    "is_quantized", "is_meta", "names", "itemsize", "nbytes", "_base", "grad", "output_nr", "is_nested",
}
# reading values: a Python number or array made from a traced tensor cannot follow other inputs
DATA_DEPENDENT = {"item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__array__",
                  "equal", "allclose", "__complex__"}


class _State:
    graph: Graph | None = None
    depth = 0  # > 0 inside an op that is being recorded as a whole


state = _State()


def _involves(args: tuple, kwargs: dict) -> bool:
    g = state.graph
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            if id(a) in g.names:
                return True
        elif isinstance(a, TracedDim):
            return True
        elif isinstance(a, (list, tuple)) and a and _involves(tuple(a), {}):
            return True
    return False


def _record(what: str, run: Callable, handler: Callable | None, args: tuple, kwargs: dict) -> Any:
    """Run ``run(*args, **kwargs)``; when tracing and a traced value is among the args, hand the
    result to ``handler`` (or refuse with an ``ExportError`` when there is none)."""
    if state.graph is None or state.depth or not _involves(args, kwargs):
        return run(*args, **kwargs)
    if handler is None:
        raise ExportError(f"rg.onnx.export: cannot export {what}: it has no ONNX mapping in retrograd's exporter "
                          f"(see retrograd.onnx.supported() for what is supported)")
    state.depth += 1
    try:
        out = run(*args, **kwargs)
    finally:
        state.depth -= 1
    handler(state.graph, out, *args, **kwargs)
    return out


def _method(name: str, orig: Callable, handler: Callable | None) -> Callable:
    def traced(*args: Any, **kwargs: Any) -> Any:
        return _record(f"Tensor.{name}", orig, handler, args, kwargs)
    traced.__name__ = name
    return traced


def _data_dependent(name: str, orig: Callable) -> Callable:
    def traced(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        if state.graph is not None and not state.depth and state.graph.traced(self):
            raise ExportError(f"rg.onnx.export: cannot export Tensor.{name} on a traced tensor: it turns the "
                              f"tensor's values into Python data, and the exported graph cannot follow them "
                              f"for other inputs (data-dependent control flow is not exportable)")
        return orig(self, *args, **kwargs)
    traced.__name__ = name
    return traced


def _shape_property(orig: property) -> property:
    def fget(self: Tensor) -> tuple:
        if state.graph is not None and not state.depth and state.graph.traced(self):
            return state.graph.dims(self)
        return orig.fget(self)
    return property(fget, orig.fset)


def _size(orig: Callable) -> Callable:
    def size(self: Tensor, dim: int | None = None) -> Any:
        if state.graph is not None and not state.depth and state.graph.traced(self):
            dims = state.graph.dims(self)
            return dims if dim is None else dims[dim]
        return orig(self, dim)
    return size


def _module_call(orig: Callable) -> Callable:
    def __call__(self: Module, *args: Any, **kwargs: Any) -> Any:
        if state.graph is None or state.depth:
            return orig(self, *args, **kwargs)
        handler = _module_handler(type(self))
        if handler is None:
            return orig(self, *args, **kwargs)  # traced through: its forward's ops record themselves
        return _record(type(self).__name__, lambda *a, **k: orig(self, *a, **k),
                       lambda g, out, *a, **k: handler(g, self, out, *a, **k), args, kwargs)
    return __call__


def _module_handler(cls: type) -> Callable | None:
    for base in cls.__mro__:
        h = MODULES.get(base)
        if h is not None:
            return h if cls.forward is base.forward else None  # a subclass with its own forward is traced through
    return None


@contextlib.contextmanager
def tracing(graph: Graph) -> Iterator[None]:
    """Tracing mode for one export (not re-entrant, not thread-safe: export one model at a time)."""
    if state.graph is not None:
        raise ExportError("rg.onnx.export: an export is already running (export is not re-entrant)")
    undo: list[tuple[Any, str, Any]] = []

    def swap(owner: Any, attr: str, new: Any) -> None:
        undo.append((owner, attr, owner.__dict__[attr]))
        setattr(owner, attr, new)

    try:
        for name, value in list(vars(Tensor).items()):
            if name in PASSTHROUGH:
                continue
            if name in ("_apply", "_apply1"):  # an op rule called directly (F functions, modules), no handler above it
                swap(Tensor, name, staticmethod(_rule(value.__func__)))
                continue
            if name == "shape":
                swap(Tensor, name, _shape_property(value))
            elif name == "size":
                swap(Tensor, name, _size(value))
            elif name in DATA_DEPENDENT:
                swap(Tensor, name, _data_dependent(name, value))
            elif isinstance(value, property):
                h = TENSOR.get(name)
                swap(Tensor, name, property(_method(name, value.fget, h), value.fset))
            elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType)) or callable(value) and \
                    not isinstance(value, (type, staticmethod, classmethod)):
                swap(Tensor, name, _method(name, value, TENSOR.get(name)))
        swap(Module, "__call__", _module_call(Module.__dict__["__call__"]))
        wrappers = {id(f): _function(qual, f, h) for f, (qual, h) in FUNCTIONS.items()}
        for mod in list(sys.modules.values()):
            d = getattr(mod, "__dict__", None)
            if not isinstance(d, dict) or not isinstance(mod, types.ModuleType):
                continue
            for attr, value in list(d.items()):
                w = wrappers.get(id(value))
                if w is not None:
                    undo.append((mod, attr, value))
                    d[attr] = w
        state.graph = graph
        yield
    finally:
        state.graph = None
        state.depth = 0
        for owner, attr, old in reversed(undo):
            if isinstance(owner, types.ModuleType):
                owner.__dict__[attr] = old
            else:
                setattr(owner, attr, old)


def _rule(orig: Callable) -> Callable:
    def _apply(rule: Any, ins: tuple, kw: Any = None) -> Tensor:
        return _record(f"op {rule.name!r}", orig, None, (rule, ins, kw), {})
    return _apply


def _function(qual: str, f: Callable, handler: Callable | None) -> Callable:
    def traced(*args: Any, **kwargs: Any) -> Any:
        return _record(qual, f, handler, args, kwargs)
    traced.__name__ = getattr(f, "__name__", qual)
    traced.__wrapped__ = f
    return traced
