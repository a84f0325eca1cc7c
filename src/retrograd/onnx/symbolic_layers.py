"""ONNX handlers for the layers issue 16 added to the exporter: ``F.group_norm`` (GroupNormalization
at opset 21, whose scale and bias are per channel; below 21 its formula, because opset 18's
GroupNormalization scales per group), ``F.rms_norm`` (its formula: RMSNormalization arrived in
opset 23), ``F.conv_transpose1d/2d`` -> ConvTranspose, ``F.interpolate`` -> Resize (the modes Resize
computes as retrograd does: linear/bilinear/trilinear with or without ``align_corners``, bicubic;
nearest and nearest-exact are Gathers of retrograd's own indices) and
``F.multi_head_attention_forward`` (``nn.MultiheadAttention``) -> MatMul projections, Softmax
attention with the key padding and attention masks, the averaged weights.
The protocol is ``trace.py``'s: ``handler(graph, out, *args, **kwargs)``."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from onnx import numpy_helper

from ..nn import functional as F
from ..tensor import Tensor
from .errors import ExportError
from .graph import INT64_MAX, Graph
from .symbolic_nn import _batched, _unbatch
from .symbolic_tensor import _operand
from .trace import FUNCTIONS

# rg.nn modules whose forward exports through the functional ops (listed by ``rg.onnx.supported()``)
LAYERS = ("Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "BatchNorm1d",
          "BatchNorm2d", "LayerNorm", "GroupNorm", "RMSNorm", "Embedding", "MaxPool1d", "MaxPool2d", "AvgPool1d",
          "AvgPool2d", "AdaptiveAvgPool2d", "Upsample", "Dropout", "MultiheadAttention", "ReLU", "GELU", "SiLU",
          "Tanh", "Sigmoid", "LeakyReLU", "ELU", "SELU", "Softplus", "Mish", "Softmax", "LogSoftmax", "Flatten")


def _ints(v: Any, n: int) -> list[int]:
    return [int(v)] * n if isinstance(v, (int, np.integer)) else [int(a) for a in v]


def _affine(g: Graph, y: str, weight: Any, bias: Any, nd: int) -> str:
    """``y * weight + bias`` with per-channel ``(C,)`` parameters on ``(N, C, *)`` (``nd`` dims)."""
    for t, op in ((weight, "Mul"), (bias, "Add")):
        if t is not None:
            c = t._array.shape[0]
            y = g.node(op, [y, g.node("Reshape", [g.name(t), g.const(np.array([c] + [1] * (nd - 2), np.int64))])])
    return y


def _group_norm(g: Graph, out: Tensor, input: Tensor, num_groups: int, weight: Any = None,  # noqa: A002
                bias: Any = None, eps: float = 1e-5) -> None:
    dtype = out._array.dtype
    x = g.cast_to(g.name(input), dtype)
    c = input._array.shape[1]
    if g.opset >= 21:  # per-channel scale and bias (opset 18's were per group)
        scale = g.name(weight) if weight is not None else g.const(np.ones(c, dtype))
        b = g.name(bias) if bias is not None else g.const(np.zeros(c, dtype))
        return g.emit(out, "GroupNormalization", [x, scale, b], epsilon=float(eps), num_groups=int(num_groups))
    xg = g.node("Reshape", [x, g.const(np.array([0, int(num_groups), -1], np.int64))])
    xc = g.node("Sub", [xg, g.reduce("ReduceMean", xg, [2], True)])
    var = g.reduce("ReduceMean", g.node("Mul", [xc, xc]), [2], True)
    rstd = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [var, g.name(float(eps), dtype)])])])
    y = g.node("Reshape", [g.node("Mul", [xc, rstd]), g.shape_of(x)])
    g.bind(out, _affine(g, y, weight, bias, input.ndim))


def _rms_norm(g: Graph, out: Tensor, input: Tensor, normalized_shape: Any, weight: Any = None,  # noqa: A002
              eps: Any = None) -> None:
    dtype = out._array.dtype
    k = 1 if isinstance(normalized_shape, int) else len(tuple(normalized_shape))
    eps = float(np.finfo(dtype).eps) if eps is None else float(eps)
    x = g.cast_to(g.name(input), dtype)
    ms = g.reduce("ReduceMean", g.node("Mul", [x, x]), list(range(input.ndim - k, input.ndim)), True)
    y = g.node("Mul", [x, g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [ms, g.name(eps, dtype)])])])])
    g.bind(out, y if weight is None else g.node("Mul", [y, g.name(weight)]))


def _conv_transpose(nd: int):
    def h(g: Graph, out: Tensor, input: Tensor, weight: Tensor, bias: Any = None, stride: Any = 1,  # noqa: A002
          padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> None:
        k = list(weight._array.shape[2:])
        pad = _ints(padding, nd)
        x, unbatched = _batched(g, input, nd)
        ins = [x, g.name(weight)] + ([g.name(bias)] if bias is not None else [])
        y = g.node("ConvTranspose", ins, kernel_shape=k, strides=_ints(stride, nd), dilations=_ints(dilation, nd),
                   pads=pad + pad, output_padding=_ints(output_padding, nd), group=int(groups))
        _unbatch(g, out, y, unbatched)
    return h


# torch's source-index rules as Resize's coordinate transformations (see nn/functional/resample.py);
# the nearest modes are Gathers of indices computed as retrograd computes them (below)
_RESIZE = {"linear": dict(mode="linear"), "bilinear": dict(mode="linear"), "trilinear": dict(mode="linear"),
           "bicubic": dict(mode="cubic", cubic_coeff_a=-0.75)}
_NEAREST = ("nearest", "nearest-exact")


def _scalar(g: Graph, v: str) -> str:
    return g.node("Reshape", [v, g.const(np.array([], np.int64))])


def _nearest(g: Graph, out: Tensor, input: Tensor, sizes: Any, factors: Any, exact: bool,  # noqa: A002
             recompute: bool) -> None:
    """One Gather per spatial axis with retrograd's indices, in float32 as it computes them:
    ``min(floor(dst * scale), n - 1)`` (``(dst + 0.5) * scale`` for nearest-exact), ``scale`` =
    ``float32(1 / factor)`` for a scale factor not recomputed, else ``float32(n) / float32(out)``.
    (Resize divides by out / n instead, which rounds differently for some sizes.)"""
    x = g.name(input)
    f32 = np.dtype(np.float32)
    for d, n in enumerate(g.dims(input)[2:]):
        n_name = g.dim_name(n)
        if sizes is not None:
            o_name, scale = g.dim_name(sizes[d]), None
        else:
            o_name = g.node("Cast", [g.node("Floor", [g.node("Mul", [g.node("Cast", [n_name], to=11),
                                                                     g.const(np.array([factors[d]], np.float64))])])],
                            to=7)
            scale = None if recompute else g.const(np.array([1.0 / factors[d]], np.float32))
        if scale is None:
            scale = g.node("Div", [g.node("Cast", [n_name], to=1), g.node("Cast", [o_name], to=1)])
        dst = g.node("Cast", [g.node("Range", [g.const(np.array(0, np.int64)), _scalar(g, o_name),
                                               g.const(np.array(1, np.int64))])], to=1)
        if exact:
            dst = g.node("Add", [dst, g.name(0.5, f32)])
        src = g.node("Cast", [g.node("Floor", [g.node("Mul", [dst, scale])])], to=7)
        src = g.node("Min", [src, g.node("Sub", [n_name, g.const(np.array([1], np.int64))])])
        x = g.node("Gather", [x, src], axis=2 + d)
    g.bind(out, x)


def _interpolate(g: Graph, out: Tensor, input: Tensor, size: Any = None, scale_factor: Any = None,  # noqa: A002
                 mode: str = "nearest", align_corners: Any = None, recompute_scale_factor: Any = None,
                 antialias: bool = False) -> None:
    if mode not in _RESIZE and mode not in _NEAREST:
        raise ExportError(f"rg.onnx.export: cannot export interpolate with mode={mode!r} (the exporter has "
                          f"{', '.join(_NEAREST + tuple(_RESIZE))})")
    nd = input.ndim - 2
    sizes = sf = None
    if size is not None:
        sizes = [size] * nd if isinstance(size, (int, np.integer)) else list(size)
    else:
        sf = [float(scale_factor)] * nd if isinstance(scale_factor, (int, float)) else [float(s) for s in scale_factor]
    if mode in _NEAREST:
        return _nearest(g, out, input, sizes, sf, mode == "nearest-exact", bool(recompute_scale_factor))
    attrs = dict(_RESIZE[mode], coordinate_transformation_mode="align_corners" if align_corners else "half_pixel")
    x = g.name(input)
    if out._array.dtype != input._array.dtype:
        x = g.cast_to(x, out._array.dtype)
    n, c = g.dims(input)[:2]
    if sizes is not None:
        ins = [x, "", "", g.shape_vector([n, c, *sizes])]
    elif recompute_scale_factor:  # output size floor(in * scale), then the scale in / out: Resize's sizes
        spatial = g.node("Slice", [g.shape_of(x), g.const(np.array([2], np.int64)),
                                   g.const(np.array([INT64_MAX], np.int64))])
        scaled = g.node("Floor", [g.node("Mul", [g.node("Cast", [spatial], to=11), g.const(np.array(sf, np.float64))])])
        ins = [x, "", "", g.node("Concat", [g.shape_vector([n, c]), g.node("Cast", [scaled], to=7)], axis=0)]
    else:
        ins = [x, "", g.const(np.array([1.0, 1.0] + sf, np.float32)), ""]
    g.emit(out, "Resize", ins, **attrs)


def _mha(g: Graph, out: Any, query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
         in_proj_weight: Any, in_proj_bias: Any, bias_k: Any, bias_v: Any, add_zero_attn: bool, dropout_p: float,
         out_proj_weight: Tensor, out_proj_bias: Any, training: bool = True, key_padding_mask: Any = None,
         need_weights: bool = True, attn_mask: Any = None, use_separate_proj_weight: bool = False,
         q_proj_weight: Any = None, k_proj_weight: Any = None, v_proj_weight: Any = None, static_k: Any = None,
         static_v: Any = None, average_attn_weights: bool = True, is_causal: bool = False) -> None:
    """torch's ``multi_head_attention_forward``: (L, N, E) in and out, the heads as (N, H, L, hd)."""
    what = "rg.onnx.export: cannot export MultiheadAttention"
    if bias_k is not None or bias_v is not None or add_zero_attn:
        raise ExportError(f"{what} with add_bias_kv or add_zero_attn")
    if training and dropout_p > 0:
        raise ExportError(f"{what} with dropout in training mode (export runs the model in eval mode)")
    weights = [w for w in (in_proj_weight, in_proj_bias, q_proj_weight, k_proj_weight, v_proj_weight,
                           out_proj_weight, out_proj_bias) if w is not None]
    if any(g.traced(w) for w in weights):
        raise ExportError(f"{what} with weights computed from the inputs (parameters expected)")
    dtype = out[0]._array.dtype
    batched = query.ndim == 3
    E, H = int(embed_dim_to_check), int(num_heads)
    hd = E // H
    label = {id(t): n for n, t in g._params.values()}

    def init(t: Tensor, part: str, array: np.ndarray) -> str:
        return g.initializer(f"{label.get(id(t), 'attention')}{part}", np.ascontiguousarray(array))

    def batch_major(t: Tensor) -> str:  # (L, N, E) or (L, E) -> (N, L, E)
        x = g.cast_to(g.name(t), dtype)
        if not batched:
            return g.node("Unsqueeze", [x, g.const(np.array([0], np.int64))])
        return g.node("Transpose", [x], perm=[1, 0, 2])

    def heads(x: str) -> str:  # (N, L, E) -> (N, H, L, hd)
        return g.node("Transpose", [g.node("Reshape", [x, g.const(np.array([0, 0, H, hd], np.int64))])],
                      perm=[0, 2, 1, 3])

    bias = None if in_proj_bias is None else in_proj_bias._array
    if not use_separate_proj_weight and query is key and key is value:
        qkv = g.node("MatMul", [batch_major(query), init(in_proj_weight, ".T", in_proj_weight._array.T)])
        if bias is not None:
            qkv = g.node("Add", [qkv, g.name(in_proj_bias)])
        q, k, v = g.node("Split", [qkv, g.const(np.array([E, E, E], np.int64))], n_out=3, axis=2)
    else:
        ws = ([in_proj_weight._array[i * E:(i + 1) * E] for i in range(3)] if not use_separate_proj_weight else
              [w._array for w in (q_proj_weight, k_proj_weight, v_proj_weight)])
        owners = [in_proj_weight] * 3 if not use_separate_proj_weight else [q_proj_weight, k_proj_weight,
                                                                            v_proj_weight]
        projected = []
        for i, (t, w, o) in enumerate(zip((query, key, value), ws, owners)):
            part = "" if use_separate_proj_weight else f"[{i * E}:{(i + 1) * E}]"
            y = g.node("MatMul", [batch_major(t), init(o, part + ".T", w.T)])
            if bias is not None:
                y = g.node("Add", [y, init(in_proj_bias, f"[{i * E}:{(i + 1) * E}]", bias[i * E:(i + 1) * E])])
            projected.append(y)
        q, k, v = projected
    q, k, v = heads(q), heads(k), heads(v)
    scale = g.name(math.sqrt(1.0 / hd), dtype)
    kt = g.node("Transpose", [k], perm=[0, 1, 3, 2])
    # the weights path scales q first (torch's math path), the fused one the product (SDPA)
    s = g.node("MatMul", [g.node("Mul", [q, scale]), kt]) if need_weights else \
        g.node("Mul", [g.node("MatMul", [q, kt]), scale])
    mask = None
    if bool(is_causal) and key_padding_mask is None and not need_weights:  # SDPA's causal mask replaces attn_mask
        ls = g.node("Slice", [g.shape_of(s), g.const(np.array([-2], np.int64)),
                              g.const(np.array([INT64_MAX], np.int64))])
        ones = g.node("ConstantOfShape", [ls], value=numpy_helper.from_array(np.array([1.0], np.float32)))
        keep = g.node("Cast", [g.node("Trilu", [ones], upper=0)], to=9)
        mask = g.node("Where", [keep, g.name(0.0, dtype), g.name(-np.inf, dtype)])
    else:
        if attn_mask is not None:
            mask = _additive(g, attn_mask, dtype)
            if attn_mask.ndim == 3:  # (N H, L, S) -> (N, H, L, S)
                mask = g.node("Reshape", [mask, g.shape_vector([-1, H, *g.dims(attn_mask)[1:]])])
        if key_padding_mask is not None:  # (N, S) or (S,) -> (N, 1, 1, S)
            kpm = _additive(g, key_padding_mask, dtype)
            axes = [1, 2] if key_padding_mask.ndim == 2 else [0, 1, 2]
            kpm = g.node("Unsqueeze", [kpm, g.const(np.array(axes, np.int64))])
            mask = kpm if mask is None else g.node("Add", [mask, kpm])
    if mask is not None:
        s = g.node("Add", [s, mask])
    p = g.node("Softmax", [s], axis=-1)
    if mask is not None and not need_weights:  # SDPA: a fully masked row gives zeros
        p = g.node("Where", [g.node("IsNaN", [p]), g.name(0.0, dtype), p])
    o = g.node("Reshape", [g.node("Transpose", [g.node("MatMul", [p, v])], perm=[0, 2, 1, 3]),
                           g.const(np.array([0, 0, E], np.int64))])
    o = g.node("MatMul", [o, init(out_proj_weight, ".T", out_proj_weight._array.T)])
    if out_proj_bias is not None:
        o = g.node("Add", [o, g.name(out_proj_bias)])
    zero = g.const(np.array([0], np.int64))
    g.bind(out[0], g.node("Transpose", [o], perm=[1, 0, 2]) if batched else g.node("Squeeze", [o, zero]))
    if out[1] is not None:
        w = g.reduce("ReduceMean", p, [1], False) if average_attn_weights else p
        g.bind(out[1], w if batched else g.node("Squeeze", [w, zero]))


def _additive(g: Graph, mask: Any, dtype: np.dtype) -> str:
    """A bool mask (True: blocked) as 0 / -inf; a float mask as it is."""
    m = mask if isinstance(mask, Tensor) else Tensor(np.asarray(mask))
    if m._array.dtype == np.bool_:
        return g.node("Where", [g.name(m), g.name(-np.inf, dtype), g.name(0.0, dtype)])
    return _operand(g, m, dtype)


def _canonical_mask(g: Graph, out: Any, mask: Any, name: str, other: Any, other_name: str, dtype: Any,
                    check_other: bool = True) -> None:
    """The transformer layers' mask canonicalisation: a bool mask becomes 0 / -inf in the graph."""
    if out is not None and out is not mask:  # a float mask comes back as it is (already traced)
        g.bind(out, _additive(g, mask, np.dtype(dtype)))


def register() -> None:
    from ..nn import transformer
    FUNCTIONS[transformer._canonical_mask] = ("nn.transformer._canonical_mask", _canonical_mask)
    handled = {F.group_norm: _group_norm, F.rms_norm: _rms_norm, F.conv_transpose1d: _conv_transpose(1),
               F.conv_transpose2d: _conv_transpose(2), F.interpolate: _interpolate,
               F.multi_head_attention_forward: _mha}
    for f, h in handled.items():
        FUNCTIONS[f] = (f"F.{f.__name__}", h)
