"""ONNX handlers for ``rg.nn.functional`` and for the modules exported whole (``nn.LSTM``,
``nn.GRU``, ``nn.RNN`` -> ONNX's LSTM/GRU/RNN ops). Layers that call one functional op
(``Linear``, ``Conv2d``, ``BatchNorm2d``, ``LayerNorm``, ``Embedding``, the activations, pools and
dropouts) are exported through that op: ``F.linear`` -> MatMul + Add, ``F.conv2d`` -> Conv,
``F.batch_norm`` (eval) -> BatchNormalization, ``F.layer_norm`` -> LayerNormalization,
``F.scaled_dot_product_attention`` -> MatMul, Softmax, MatMul (with the causal or given mask),
``F.gelu`` -> Gelu (opset >= 20) or its Erf/Tanh formula."""
from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
from onnx import numpy_helper

from .. import nn
from ..nn import functional as F
from ..nn.functional.conv import _conv_padding
from ..nn.functional.pool import _pool_args
from ..nn.rnn import RNNBase
from ..tensor import Tensor
from .errors import ExportError
from .graph import Graph
from .symbolic_tensor import TENSOR, _operand, alias
from .trace import FUNCTIONS, MODULES


def _f32(g: Graph, v: float, like: Tensor) -> str:
    return g.name(float(v), like._array.dtype)


def _weight_T(g: Graph, w: Tensor) -> str:
    """``w.T`` for a MatMul: a transposed initializer for a parameter (what dynamic quantisation
    needs: a constant weight), else a Transpose node."""
    hit = g._params.get(id(w))
    if hit is not None and not g.traced(w):
        return g.initializer(hit[0] + ".T", np.ascontiguousarray(w._array.T))
    return g.node("Transpose", [g.name(w)], perm=[1, 0])


def _linear(g: Graph, out: Tensor, input: Tensor, weight: Tensor, bias: Tensor | None = None) -> None:  # noqa: A002
    y = g.node("MatMul", [g.name(input), _weight_T(g, weight)])
    g.bind(out, y if bias is None else g.node("Add", [y, g.name(bias)]))


def _embedding(g: Graph, out: Tensor, input: Tensor, weight: Tensor, padding_idx: Any = None,  # noqa: A002
               max_norm: Any = None, *_: Any, **__: Any) -> None:
    if max_norm is not None:
        raise ExportError("rg.onnx.export: cannot export embedding with max_norm (it renormalises the weight in place)")
    g.emit(out, "Gather", [g.name(weight), g.cast_to(g.name(input), np.dtype(np.int64))], axis=0)


def _gelu(g: Graph, out: Tensor, input: Tensor, approximate: str = "none") -> None:  # noqa: A002
    x = g.name(input)
    if g.opset >= 20:
        return g.emit(out, "Gelu", [x], approximate=approximate)
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, _f32(g, 0.044715, input)])])
        t = g.node("Tanh", [g.node("Mul", [inner, _f32(g, math.sqrt(2 / math.pi), input)])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        t = g.node("Erf", [g.node("Mul", [x, _f32(g, 1 / math.sqrt(2), input)])])
    half_x = g.node("Mul", [x, _f32(g, 0.5, input)])
    g.emit(out, "Mul", [half_x, g.node("Add", [t, _f32(g, 1.0, input)])])


def _silu(g: Graph, out: Tensor, input: Tensor, inplace: bool = False) -> None:  # noqa: A002
    x = g.name(input)
    g.emit(out, "Mul", [x, g.node("Sigmoid", [x])])


def _simple(op: str, **fixed: Any):
    def h(g: Graph, out: Tensor, input: Tensor, *_: Any, **__: Any) -> None:  # noqa: A002
        g.emit(out, op, [g.name(input)], **fixed)
    return h


def _leaky_relu(g: Graph, out: Tensor, input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> None:  # noqa: A002
    g.emit(out, "LeakyRelu", [g.name(input)], alpha=float(negative_slope))


def _elu(g: Graph, out: Tensor, input: Tensor, alpha: float = 1.0, inplace: bool = False) -> None:  # noqa: A002
    g.emit(out, "Elu", [g.name(input)], alpha=float(alpha))


def _softplus(g: Graph, out: Tensor, input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> None:  # noqa: A002
    x = g.name(input)
    if beta != 1.0:  # softplus(beta x) / beta
        sp = g.node("Softplus", [g.node("Mul", [x, _f32(g, beta, input)])])
        return g.emit(out, "Div", [sp, _f32(g, beta, input)])
    g.emit(out, "Softplus", [x])


def _mish(g: Graph, out: Tensor, input: Tensor, inplace: bool = False) -> None:  # noqa: A002
    x = g.name(input)
    g.emit(out, "Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])])


def _hardtanh(g: Graph, out: Tensor, input: Tensor, min_val: float = -1.0, max_val: float = 1.0,  # noqa: A002
              inplace: bool = False) -> None:
    g.emit(out, "Clip", [g.name(input), _f32(g, min_val, input), _f32(g, max_val, input)])


def _relu6(g: Graph, out: Tensor, input: Tensor, inplace: bool = False) -> None:  # noqa: A002
    _hardtanh(g, out, input, 0.0, 6.0)


def _softmax_f(op: str):
    def h(g: Graph, out: Tensor, input: Tensor, dim: Any = None, _stacklevel: int = 3, dtype: Any = None) -> None:  # noqa: A002
        TENSOR[op](g, out, input, -1 if dim is None else dim)
    return h


def _dropout(g: Graph, out: Tensor, input: Tensor, p: float = 0.5, training: bool = True, *_: Any, **__: Any) -> None:  # noqa: A002
    if training and p > 0:
        raise ExportError("rg.onnx.export: cannot export dropout in training mode (export runs the model in "
                          "eval mode; a functional dropout with training=True stays random)")
    alias(g, out, input)


def _layer_norm(g: Graph, out: Tensor, input: Tensor, normalized_shape: Any, weight: Tensor | None = None,  # noqa: A002
                bias: Tensor | None = None, eps: float = 1e-5) -> None:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dtype = input._array.dtype
    scale = g.name(weight) if weight is not None else g.const(np.ones(shape, dtype))
    b = g.name(bias) if bias is not None else g.const(np.zeros(shape, dtype))
    g.emit(out, "LayerNormalization", [g.name(input), scale, b], axis=-len(shape), epsilon=float(eps))


def _normalize(g: Graph, out: Tensor, input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,  # noqa: A002
               out_: Any = None) -> None:
    if p not in (1, 2, 1.0, 2.0):
        raise ExportError(f"rg.onnx.export: cannot export normalize with p={p} (p=1 or 2)")
    x = g.name(input)
    d = dim + input.ndim if dim < 0 else dim
    norm = g.reduce("ReduceL2" if p == 2 else "ReduceL1", x, [d], True)
    g.emit(out, "Div", [x, g.node("Max", [norm, _f32(g, eps, input)])])


def _batch_norm(g: Graph, out: Tensor, input: Tensor, running_mean: Any, running_var: Any,  # noqa: A002
                weight: Any = None, bias: Any = None, training: bool = False, momentum: float = 0.1,
                eps: float = 1e-5) -> None:
    if training or running_mean is None or running_var is None:
        raise ExportError("rg.onnx.export: cannot export batch_norm with batch statistics: export BatchNorm in eval "
                          "mode with running statistics (track_running_stats=True)")
    c = input._array.shape[1]
    dtype = input._array.dtype
    scale = g.name(weight) if weight is not None else g.const(np.ones(c, dtype))
    b = g.name(bias) if bias is not None else g.const(np.zeros(c, dtype))
    g.emit(out, "BatchNormalization", [g.name(input), scale, b, g.name(running_mean), g.name(running_var)],
           epsilon=float(eps))


def _batched(g: Graph, input: Tensor, nd: int) -> tuple[str, bool]:  # noqa: A002
    x = g.name(input)
    if input.ndim == nd + 1:
        return g.node("Unsqueeze", [x, g.const(np.array([0], np.int64))]), True
    return x, False


def _unbatch(g: Graph, out: Tensor, y: str, unbatched: bool) -> None:
    g.bind(out, g.node("Squeeze", [y, g.const(np.array([0], np.int64))]) if unbatched else y)


def _conv(nd: int):
    def h(g: Graph, out: Tensor, input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,  # noqa: A002
          padding: Any = 0, dilation: Any = 1, groups: int = 1) -> None:
        k = tuple(weight._array.shape[2:])
        stride = (stride,) * nd if isinstance(stride, int) else tuple(stride)
        dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
        pad = _conv_padding(padding, k, stride, dilation, f"conv{nd}d")
        x, unbatched = _batched(g, input, nd)
        ins = [x, g.name(weight)] + ([g.name(bias)] if bias is not None else [])
        y = g.node("Conv", ins, kernel_shape=list(k), strides=list(stride), dilations=list(dilation),
                   pads=[p[0] for p in pad] + [p[1] for p in pad], group=int(groups))
        _unbatch(g, out, y, unbatched)
    return h


def _max_pool(nd: int):
    def h(g: Graph, out: Any, input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
          dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> None:
        if return_indices:
            raise ExportError(f"rg.onnx.export: cannot export max_pool{nd}d with return_indices=True")
        k, s, p, d = _pool_args(f"max_pool{nd}d", input, nd, kernel_size, stride, padding, dilation)
        x, unbatched = _batched(g, input, nd)
        y = g.node("MaxPool", [x], kernel_shape=list(k), strides=list(s), pads=list(p) * 2, dilations=list(d),
                   ceil_mode=int(ceil_mode))
        _unbatch(g, out, y, unbatched)
    return h


def _avg_pool(nd: int):
    def h(g: Graph, out: Tensor, input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,  # noqa: A002
          ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Any = None) -> None:
        if divisor_override:
            raise ExportError(f"rg.onnx.export: cannot export avg_pool{nd}d with divisor_override")
        k, s, p, _ = _pool_args(f"avg_pool{nd}d", input, nd, kernel_size, stride, padding)
        x, unbatched = _batched(g, input, nd)
        y = g.node("AveragePool", [x], kernel_shape=list(k), strides=list(s), pads=list(p) * 2,
                   ceil_mode=int(ceil_mode), count_include_pad=int(count_include_pad))
        _unbatch(g, out, y, unbatched)
    return h


def _adaptive_avg_pool2d(g: Graph, out: Tensor, input: Tensor, output_size: Any) -> None:  # noqa: A002
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if any(s not in (1, None) for s in size):
        raise ExportError(f"rg.onnx.export: cannot export adaptive_avg_pool2d to output_size {output_size} "
                          f"(only 1: GlobalAveragePool)")
    x, unbatched = _batched(g, input, 2)
    _unbatch(g, out, g.node("GlobalAveragePool", [x]), unbatched)


def _sdpa(g: Graph, out: Tensor, query: Tensor, key: Tensor, value: Tensor, attn_mask: Any = None,
          dropout_p: float = 0.0, is_causal: bool = False, scale: Any = None, enable_gqa: bool = False,
          **_: Any) -> None:
    if enable_gqa and key.ndim >= 3 and key._array.shape[-3] != query._array.shape[-3]:
        raise ExportError("rg.onnx.export: cannot export scaled_dot_product_attention with enable_gqa")
    if dropout_p > 0:
        raise ExportError("rg.onnx.export: cannot export scaled_dot_product_attention with dropout_p > 0 "
                          "(pass dropout_p=0.0 outside training)")
    dtype = query._array.dtype
    sc = 1.0 / math.sqrt(query._array.shape[-1]) if scale is None else float(scale)
    perm = list(range(key.ndim))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    kt = g.node("Transpose", [g.cast_to(g.name(key), dtype)], perm=perm)
    s = g.node("Mul", [g.node("MatMul", [g.name(query), kt]), g.name(sc, dtype)])
    if is_causal:  # position i sees j <= i (top-left aligned, as torch)
        ls = g.node("Slice", [g.shape_of(s), g.const(np.array([-2], np.int64)),
                              g.const(np.array([np.iinfo(np.int64).max], np.int64))])
        ones = g.node("ConstantOfShape", [ls], value=numpy_helper.from_array(np.array([1.0], np.float32)))
        keep = g.node("Cast", [g.node("Trilu", [ones], upper=0)], to=9)  # bool
        s = g.node("Where", [keep, s, g.name(-np.inf, dtype)])
    elif attn_mask is not None:
        if isinstance(attn_mask, Tensor) and attn_mask._array.dtype == np.bool_:
            s = g.node("Where", [g.name(attn_mask), s, g.name(-np.inf, dtype)])
        else:
            s = g.node("Add", [s, _operand(g, attn_mask, dtype)])
    p = g.node("Softmax", [s], axis=-1)
    if attn_mask is not None and not is_causal:  # a fully masked row gives zeros (NaN from softmax), as retrograd
        p = g.node("Where", [g.node("IsNaN", [p]), g.name(0.0, dtype), p])
    g.emit(out, "MatMul", [p, g.cast_to(g.name(value), dtype)])


# ---------------------------------------------------------------------- recurrent modules
# ONNX gate orders from PyTorch's: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h
_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}


def _gates(w: np.ndarray, mode: str) -> np.ndarray:
    blocks = np.split(w, len(_ORDER[mode]), axis=0)
    return np.concatenate([blocks[i] for i in _ORDER[mode]], axis=0)


def _rnn(g: Graph, m: RNNBase, out: Any, input: Tensor, hx: Any = None) -> None:  # noqa: A002
    if m.proj_size:
        raise ExportError(f"rg.onnx.export: cannot export {type(m).__name__} with proj_size (ONNX's LSTM has none)")
    mode, lstm = m.mode, m.mode == "LSTM"
    op = {"LSTM": "LSTM", "GRU": "GRU"}.get(mode, "RNN")
    dirs = 2 if m.bidirectional else 1
    H, per, names = m.hidden_size, m._per_direction, m._flat_weights_names
    prefix = next((n for n, mod in g.module_names.items() if mod is m), type(m).__name__)
    batched = input.ndim == 3
    zero = g.const(np.array([0], np.int64))
    one = g.const(np.array([1], np.int64))
    x = g.name(input)
    if not batched:
        x = g.node("Unsqueeze", [x, one])
    elif m.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])
    h0 = c0 = None
    if hx is not None:
        h0, c0 = (hx if lstm else (hx, None))
        h0 = g.name(h0) if batched else g.node("Unsqueeze", [g.name(h0), one])
        if c0 is not None:
            c0 = g.name(c0) if batched else g.node("Unsqueeze", [g.name(c0), one])
    hs, cs = [], []
    for layer in range(m.num_layers):
        W, R, Bias = [], [], []
        for d in range(dirs):
            k = layer * dirs + d
            ws = [getattr(m, n)._array for n in names[k * per:(k + 1) * per]]
            W.append(_gates(ws[0], mode))
            R.append(_gates(ws[1], mode))
            if m.bias:
                Bias.append(np.concatenate([_gates(ws[2], mode), _gates(ws[3], mode)]))
            else:
                Bias.append(np.zeros(2 * ws[0].shape[0], ws[0].dtype))
        ins = [x, g.initializer(f"{prefix}.onnx_W_l{layer}", np.stack(W)),
               g.initializer(f"{prefix}.onnx_R_l{layer}", np.stack(R)),
               g.initializer(f"{prefix}.onnx_B_l{layer}", np.stack(Bias)), ""]
        for state in (h0, c0) if lstm else (h0,):
            if state is None:
                ins.append("")
            else:
                ins.append(g.node("Slice", [state, g.const(np.array([layer * dirs], np.int64)),
                                            g.const(np.array([(layer + 1) * dirs], np.int64)), zero]))
        attrs: dict = {"hidden_size": H, "direction": "bidirectional" if dirs == 2 else "forward"}
        if op == "GRU":
            attrs["linear_before_reset"] = 1
        if op == "RNN":
            attrs["activations"] = ["Tanh" if mode == "RNN_TANH" else "Relu"] * dirs
        outs = g.node(op, ins, n_out=3 if lstm else 2, **attrs)
        y = outs[0]  # (T, dirs, N, H) -> (T, N, dirs * H)
        x = g.node("Reshape", [g.node("Transpose", [y], perm=[0, 2, 1, 3]),
                               g.const(np.array([0, 0, -1], np.int64))])
        hs.append(outs[1])
        if lstm:
            cs.append(outs[2])
    h_n = hs[0] if len(hs) == 1 else g.node("Concat", hs, axis=0)
    c_n = (cs[0] if len(cs) == 1 else g.node("Concat", cs, axis=0)) if lstm else None
    if not batched:
        x, h_n = g.node("Squeeze", [x, one]), g.node("Squeeze", [h_n, one])
        c_n = g.node("Squeeze", [c_n, one]) if lstm else None
    elif m.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])
    output, hidden = out
    g.bind(output, x)
    if lstm:
        g.bind(hidden[0], h_n)
        g.bind(hidden[1], c_n)
    else:
        g.bind(hidden, h_n)


def register() -> None:
    handled = {
        F.linear: _linear, F.embedding: _embedding, F.gelu: _gelu, F.silu: _silu, F.relu: _simple("Relu"),
        F.sigmoid: _simple("Sigmoid"), F.tanh: _simple("Tanh"), F.leaky_relu: _leaky_relu, F.elu: _elu,
        F.selu: _simple("Selu", alpha=1.6732632423543772, gamma=1.0507009873554805), F.softplus: _softplus,
        F.mish: _mish, F.hardtanh: _hardtanh, F.relu6: _relu6, F.softmax: _softmax_f("softmax"),
        F.log_softmax: _softmax_f("log_softmax"), F.dropout: _dropout, F.layer_norm: _layer_norm,
        F.batch_norm: _batch_norm, F.normalize: _normalize, F.conv1d: _conv(1), F.conv2d: _conv(2),
        F.max_pool1d: _max_pool(1),
        F.max_pool2d: _max_pool(2), F.avg_pool1d: _avg_pool(1), F.avg_pool2d: _avg_pool(2),
        F.adaptive_avg_pool2d: _adaptive_avg_pool2d, F.scaled_dot_product_attention: _sdpa,
    }
    for name in ("dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"):
        f = getattr(F, name, None)
        if f is not None:
            handled[f] = _dropout
    for name, f in vars(F).items():
        if isinstance(f, types.FunctionType) and not name.startswith("_") and f not in FUNCTIONS:
            FUNCTIONS[f] = (f"F.{name}", handled.get(f))
    for f, h in handled.items():
        FUNCTIONS[f] = (f"F.{f.__name__}", h)
    for cls in (nn.LSTM, nn.GRU, nn.RNN):
        MODULES[cls] = _rnn
