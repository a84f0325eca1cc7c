"""``rg.onnx.export``: a model to an ONNX file, with PyTorch's signature::

    rg.onnx.export(model, (x,), "model.onnx", input_names=["x"], output_names=["logits"],
                   dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})

How: export runs one forward pass on the example inputs in a tracing mode (``trace.py``) where
Tensor methods, ``rg`` and ``rg.nn.functional`` functions and recurrent modules record ONNX nodes
as they run; layers are written as their ONNX op (``Linear`` -> MatMul + Add, ``Conv2d`` -> Conv,
``BatchNorm2d`` in eval mode -> BatchNormalization, ``LayerNorm`` -> LayerNormalization, ``LSTM``
/ ``GRU`` / ``RNN`` -> ONNX's LSTM / GRU / RNN, ``Embedding`` -> Gather, GELU -> Gelu or its Erf
formula, ``scaled_dot_product_attention`` -> MatMul, Softmax, MatMul) and the tensor code between
them op by op. Sizes read from a traced tensor's shape stay computations in the graph, so the
``dynamic_axes`` (batch, sequence length) may take other sizes at run time. An op with no ONNX
mapping, or Python control flow on tensor values, raises ``ExportError`` naming it.

The model runs in eval mode during the export (as PyTorch's default ``training=EVAL``); its mode is
restored afterwards. Needs ``pip install 'retrograd[export]'`` (``onnx``; ``onnxruntime`` to run
and quantise the files)."""
from __future__ import annotations

import io
import os
from typing import Any, Mapping, Sequence

from .errors import ExportError

__all__ = ["export", "ExportError", "supported", "DEFAULT_OPSET", "OPSETS"]

DEFAULT_OPSET = 17  # LayerNormalization arrived in opset 17
OPSETS = range(17, 22)  # 17..21: the range the exporter writes and the tests run


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("rg.onnx.export needs the onnx package: pip install 'retrograd[export]'") from None
    return onnx


def supported() -> dict[str, list[str]]:
    """What the exporter maps, by name: Tensor methods, functions (``F.*``, ``rg.*``) and modules (those
    exported whole, and the ``rg.nn`` layers whose forward exports through the functions), for error
    messages and docs."""
    _onnx()
    from . import symbolic_layers, trace
    _register()
    return {"tensor_methods": sorted(k for k, v in trace.TENSOR.items() if v is not None),
            "functions": sorted(q for q, h in trace.FUNCTIONS.values() if h is not None),
            "modules": sorted({c.__name__ for c in trace.MODULES} | set(symbolic_layers.LAYERS))}


_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        from . import symbolic_layers, symbolic_nn, symbolic_tensor
        symbolic_tensor.register()
        symbolic_nn.register()
        symbolic_layers.register()
        _registered = True


def _flatten(out: Any, path: str = "output") -> list:
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [t for i, o in enumerate(out) for t in _flatten(o, f"{path}[{i}]")]
    from ..tensor import Tensor
    if isinstance(out, Tensor):
        return [out]
    raise ExportError(f"rg.onnx.export: the model returned {type(out).__name__} at {path}; expected Tensors "
                      f"(or tuples and lists of them)")


def _axes(spec: Any, name: str, rank: int) -> dict[int, str]:
    if isinstance(spec, Mapping):
        items = {int(k): str(v) for k, v in spec.items()}
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        items = {int(k): f"{name}_dynamic_axes_{int(k) + 1}" for k in spec}
    else:
        raise ExportError(f"rg.onnx.export: dynamic_axes[{name!r}] must be a list of axes or a dict "
                          f"{{axis: name}}, got {spec!r}")
    for k in items:
        if not -rank <= k < rank:
            raise ExportError(f"rg.onnx.export: dynamic_axes[{name!r}] names axis {k}, but {name!r} has {rank} dims")
    return {k % rank: v for k, v in items.items()}


def _prune(model: Any, outputs: list[str]) -> None:
    """Drop the nodes and initializers no output needs (sizes read but never used, unused splits)."""
    g = model.graph
    need, keep = set(outputs), []
    for node in reversed(g.node):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    inits = [t for t in g.initializer if t.name in need]
    del g.initializer[:]
    g.initializer.extend(inits)


def export(model: Any, args: Any, f: Any, *, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None,
           dynamic_axes: Mapping[str, Any] | None = None, opset_version: int | None = None,
           export_params: bool = True, verbose: bool = False, do_constant_folding: bool = True,
           keep_initializers_as_inputs: bool = False, training: Any = None, verify: bool = False) -> None:
    """Write ``model`` as ONNX to ``f`` (a path or a binary file object).

    ``args``: the example inputs, a Tensor or a tuple of them (``None`` entries pass through as
    ``None``); each Tensor becomes a graph input, named by ``input_names`` (default ``input`` for
    one, else ``input_0``, ``input_1``, ...). The outputs (a Tensor, or tuples and lists of them,
    flattened in order) are named by ``output_names`` (default ``output`` / ``output_0``, ...).
    ``dynamic_axes``: ``{name: [axis, ...]}`` or ``{name: {axis: "symbol"}}`` for the input and
    output axes that may change size at run time (batch, sequence length). ``opset_version``: 17
    (default) to 21; 20 and up write GELU as one Gelu node. ``do_constant_folding`` is accepted for
    PyTorch's signature (the exporter writes no foldable constants; onnxruntime folds at load);
    ``export_params`` must be True and ``keep_initializers_as_inputs`` False; ``training`` must be
    None or eval (the export runs in eval mode). ``verify``: run the file in onnxruntime on other
    inputs (each dynamic axis one shorter, values permuted) against the model before writing it
    (``verify.py``: catches values the tracer could not see). Raises ``ExportError`` naming what it
    cannot export (and then writes nothing).
    """
    onnx = _onnx()
    from ..engine import no_grad
    from ..nn.module import Module
    from ..tensor import Tensor, wrap_array
    from .graph import Graph, onnx_dtype
    from .trace import tracing
    if not isinstance(model, Module):
        raise ExportError(f"rg.onnx.export: model must be an rg.nn.Module, got {type(model).__name__}")
    opset = DEFAULT_OPSET if opset_version is None else opset_version
    if opset not in OPSETS:
        raise ExportError(f"rg.onnx.export: opset_version must be in {OPSETS.start}..{OPSETS.stop - 1}, got {opset}")
    if not export_params or keep_initializers_as_inputs:
        raise ExportError("rg.onnx.export: only export_params=True and keep_initializers_as_inputs=False are supported")
    if training is not None and str(training).split(".")[-1].upper() not in ("EVAL", "FALSE"):
        raise ExportError(f"rg.onnx.export: training={training!r} is not supported: the export runs in eval mode")
    _register()
    args = args if isinstance(args, tuple) else (args,)
    bad = [i for i, a in enumerate(args) if a is not None and not isinstance(a, Tensor)]
    if bad:
        raise ExportError(f"rg.onnx.export: args[{bad[0]}] is a {type(args[bad[0]]).__name__}; expected Tensors "
                          f"(or None) as the model's example inputs")
    n_in = sum(a is not None for a in args)
    in_names = list(input_names or [])
    if len(in_names) > n_in:
        raise ExportError(f"rg.onnx.export: {len(in_names)} input_names for {n_in} tensor inputs")
    in_names += ["input" if n_in == 1 else f"input_{i}" for i in range(len(in_names), n_in)]
    if len(set(in_names)) != len(in_names):
        raise ExportError(f"rg.onnx.export: input_names must be distinct, got {in_names}")

    params = {id(t): (n, t) for n, t in model.named_parameters()}
    params.update({id(t): (n, t) for n, t in model.named_buffers() if t is not None})
    g = Graph(opset, params)
    g.module_names = dict(model.named_modules())
    for n in in_names:
        g.fresh(n)
    traced_args, inputs = [], []
    for a in args:
        if a is None:
            traced_args.append(None)
            continue
        t = wrap_array(a._array)
        g.bind(t, in_names[len(inputs)])
        traced_args.append(t)
        inputs.append(t)
    was_training = model.training
    model.eval()
    try:
        with no_grad(), tracing(g):
            out = model(*traced_args)
        outs = _flatten(out)
        out_names = list(output_names or [])
        if len(out_names) > len(outs):
            raise ExportError(f"rg.onnx.export: {len(out_names)} output_names for {len(outs)} outputs")
        out_names += ["output" if len(outs) == 1 else f"output_{i}" for i in range(len(out_names), len(outs))]
        if len(set(out_names) | set(in_names)) != len(out_names) + len(in_names):
            raise ExportError(f"rg.onnx.export: output_names {out_names} must be distinct and differ from the "
                              f"input names {in_names}")
        for t, name in zip(outs, out_names):
            g.node("Identity", [g.name(t)])
            g.nodes[-1].output[0] = name
    finally:
        model.train(was_training)

    dyn = dict(dynamic_axes or {})
    unknown = set(dyn) - set(in_names) - set(out_names)
    if unknown:
        raise ExportError(f"rg.onnx.export: dynamic_axes names {sorted(unknown)}, which are neither inputs "
                          f"{in_names} nor outputs {out_names}")
    from onnx import helper

    def info(name: str, t: Any, static: bool) -> Any:
        axes = _axes(dyn[name], name, t.ndim) if name in dyn else {}
        shape = [axes.get(i, s if static else None) for i, s in enumerate(t._array.shape)]
        return helper.make_tensor_value_info(name, onnx_dtype(t._array.dtype), shape)
    graph_inputs = [info(n, t, True) for n, t in zip(in_names, inputs)]
    graph_outputs = [info(n, t, not dyn) for n, t in zip(out_names, outs)]
    from .. import __version__ as version
    m = g.model(graph_inputs, graph_outputs, version)
    _simplify_identities(m, set(out_names))
    _prune(m, out_names)
    onnx.checker.check_model(m)
    if verify:
        from .verify import verify as check_other_inputs
        in_axes = {n: _axes(dyn[n], n, t.ndim) for n, t in zip(in_names, inputs) if n in dyn}
        model.eval()
        try:
            check_other_inputs(model, args, m, in_names, out_names, in_axes, _flatten)
        finally:
            model.train(was_training)
    if verbose:
        print(helper.printable_graph(m.graph))
    if isinstance(f, (str, os.PathLike)):
        onnx.save(m, os.fspath(f))
    elif isinstance(f, io.IOBase) or hasattr(f, "write"):
        f.write(m.SerializeToString())
    else:
        raise ExportError(f"rg.onnx.export: f must be a path or a binary file object, got {type(f).__name__}")


def _simplify_identities(model: Any, outputs: set[str]) -> None:
    """``x -> Identity -> output``: where ``x`` comes from a node, that node writes ``output`` itself."""
    g = model.graph
    producer = {o: node for node in g.node for o in node.output}
    graph_io = {i.name for i in g.input} | {t.name for t in g.initializer}
    claimed: set[str] = set()
    for node in list(g.node):
        if node.op_type != "Identity" or node.output[0] not in outputs:
            continue
        src = node.input[0]
        if src in graph_io or src in claimed or src not in producer:
            continue
        claimed.add(src)
        out = node.output[0]
        p = producer[src]
        p.output[list(p.output).index(src)] = out
        for other in g.node:
            for k, name in enumerate(other.input):
                if name == src:
                    other.input[k] = out
        g.node.remove(node)
