"""Attention: the fused core ``softmax(Q K^T scale + mask) V`` of ``scaled_dot_product_attention``
(a ``Rule``) and ``multi_head_attention_forward`` built on it."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ... import backend as B
from ... import kernels
from ... import ops as O
from ...ops import Rule, call
from ...random import Generator, resolve
from ...tensor import Tensor, wrap_array
from ._args import _float_input
from .dense import linear
from .regularization import dropout


def _attn_scores(q, k, kw):
    s = (q @ np.swapaxes(k, -1, -2)) * kw["scale"]
    if kw["mask"] is not None:
        s = s + kw["mask"]
    return s


def _attn_f(ins, kw):
    q, k, v = ins
    s = kernels.bmm(q, np.swapaxes(k, -1, -2))  # the stack of heads' GEMMs on retrograd's threads
    mask = kw["mask"]
    if mask is not None and mask.dtype != s.dtype:
        mask = mask.astype(s.dtype)
    # scale, mask and softmax in one pass over each row (fully masked rows give zeros)
    p = kernels.softmax(s, kw["scale"], mask, safe=mask is not None)
    kw["p"] = p
    if kw["drop"] is not None:
        p = p * kw["drop"]
    return kernels.bmm(p, v)


def _attn_b(g, out, ins, kw, needs):
    """``out = P V``, ``P = softmax(Q K^T scale + mask)``: ``dV = P^T g``, ``dP = g V^T``,
    ``dS = P (dP - rowsum(dP P))``, ``dQ = dS K scale``, ``dK = dS^T Q scale``."""
    q, k, v = ins
    if isinstance(g, np.ndarray) and isinstance(q, np.ndarray) and "p" in kw:
        p = kw["p"]
    else:  # create_graph: rebuild P from recorded ops so the gradient is differentiable
        s = _attn_scores(q, k, kw)
        live = None if kw["mask"] is None else np.isfinite(np.max(kw["mask"], axis=-1, keepdims=True))
        if live is not None and not live.all():
            s = np.where(live, s, 0.0)  # fully masked rows: finite scores here, zeroed below
        p = call(O.SOFTMAX, (s,), {"dim": -1})
        if live is not None and not live.all():
            p = p * live
    drop = kw["drop"]
    pd = p if drop is None else p * drop
    mm = kernels.bmm  # the stacks of GEMMs on retrograd's threads (Tensors, under create_graph: ``@``)
    gv = mm(np.swapaxes(pd, -1, -2), g) if needs[2] else None
    gq = gk = None
    if needs[0] or needs[1]:
        gp = mm(g, np.swapaxes(v, -1, -2))
        if drop is not None:
            gp = gp * drop
        if isinstance(p, np.ndarray) and isinstance(gp, np.ndarray):
            gs = kernels.softmax_backward(p, gp, kw["scale"])
        else:
            gs = p * (gp - np.sum(gp * p, axis=-1, keepdims=True))
            gs = gs * kw["scale"]
        gq = mm(gs, k) if needs[0] else None
        gk = mm(np.swapaxes(gs, -1, -2), q) if needs[1] else None
    return gq, gk, gv
ATTENTION = Rule("scaled_dot_product_attention", _attn_f, _attn_b)


def _float_mask(mask: Any, dtype: np.dtype, masked_is_true: bool, op: str) -> np.ndarray | None:
    """A bool or float mask as an additive float array (``-inf`` where attention is not allowed)."""
    if mask is None:
        return None
    m = mask._array if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype == np.bool_:
        blocked = m if masked_is_true else ~m
        return np.where(blocked, -np.inf, 0.0).astype(dtype)
    if m.dtype.kind not in "fV":
        raise TypeError(f"{op}: only bool and floating types of masks are supported, got {B.dtype_name(m.dtype)}")
    return m.astype(dtype, copy=False)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False, *, generator: Generator | None = None) -> Tensor:
    """``softmax(Q K^T scale + mask) V`` in one node: query ``(..., L, E)``, key ``(..., S, E)``, value
    ``(..., S, Ev)``; a bool ``attn_mask`` marks allowed positions with True, a float one is added;
    ``is_causal`` masks the upper triangle; fully masked rows give zeros, as torch."""
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(f"scaled_dot_product_attention: expected query, key and value of at least 2 dims, got "
                           f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: query {tuple(query.shape)}, key {tuple(key.shape)} "
                           f"and value {tuple(value.shape)} do not align (query and key need the same last "
                           f"dim, key and value the same sequence length)")
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True")
    q = _float_input(query, "scaled_dot_product_attention")
    k, v = key.to(q.dtype), value.to(q.dtype)
    if enable_gqa and k.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k = k.unsqueeze(-3).expand(*k.shape[:-2], rep, *k.shape[-2:]).reshape(*q.shape[:-2], *k.shape[-2:])
        v = v.unsqueeze(-3).expand(*v.shape[:-2], rep, *v.shape[-2:]).reshape(*q.shape[:-2], *v.shape[-2:])
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        mask = np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf).astype(q.dtype)
    else:
        mask = _float_mask(attn_mask, q.dtype, False, "scaled_dot_product_attention")
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    drop = None
    if dropout_p > 0.0:
        shape = np.broadcast_shapes(q.shape[:-1], k.shape[:-2] + (1,))[:-1] + (L, S)
        keep = resolve(generator).random(shape) >= dropout_p
        drop = keep.astype(q.dtype) * np.asarray(1.0 / (1.0 - dropout_p), dtype=q.dtype)
    return Tensor._apply(ATTENTION, (q, k, v), {"scale": sc, "mask": mask, "drop": drop})


def multi_head_attention_forward(query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
                                 in_proj_weight: Tensor | None, in_proj_bias: Tensor | None,
                                 bias_k: Tensor | None, bias_v: Tensor | None, add_zero_attn: bool,
                                 dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Tensor | None,
                                 training: bool = True, key_padding_mask: Tensor | None = None,
                                 need_weights: bool = True, attn_mask: Tensor | None = None,
                                 use_separate_proj_weight: bool = False, q_proj_weight: Tensor | None = None,
                                 k_proj_weight: Tensor | None = None, v_proj_weight: Tensor | None = None,
                                 static_k: Tensor | None = None, static_v: Tensor | None = None,
                                 average_attn_weights: bool = True, is_causal: bool = False) -> tuple:
    """torch's ``F.multi_head_attention_forward``: query ``(L, N, E)`` (or ``(L, E)``), key/value
    ``(S, N, E_k/E_v)``; returns ``(output (L, N, E), weights (N, L, S) or (N, H, L, S) or None)``.
    Bool masks mark *blocked* positions with True; float masks are added to the scores."""
    if static_k is not None or static_v is not None:
        raise NotImplementedError("multi_head_attention_forward: static_k/static_v are not supported")
    batched = query.ndim == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.reshape(1, -1) if isinstance(key_padding_mask, Tensor) \
                else np.asarray(key_padding_mask).reshape(1, -1)
    L, N, E = query.shape
    if E != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {E}")
    H = num_heads
    hd = E // H
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    # torch trusts the hint where no key padding or weights need the mask: SDPA's causal mask replaces attn_mask
    causal = bool(is_causal) and key_padding_mask is None and not need_weights
    if causal:
        attn_mask = None
    # (L, N, E) -> (N, L, E): heads then come out as (N, H, L, hd) with one permute
    q_in, k_in, v_in = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    if not use_separate_proj_weight:
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:]
        if query is key and key is value:
            qkv = linear(q_in, in_proj_weight, in_proj_bias)
            q, k, v = qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        else:
            q = linear(q_in, in_proj_weight[:E], bq)
            k = linear(k_in, in_proj_weight[E:2 * E], bk)
            v = linear(v_in, in_proj_weight[2 * E:], bv)
    else:
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:]
        q, k, v = linear(q_in, q_proj_weight, bq), linear(k_in, k_proj_weight, bk), linear(v_in, v_proj_weight, bv)
    dt = q.dtype
    am = _float_mask(attn_mask, dt, True, "multi_head_attention_forward")
    kpm = _float_mask(key_padding_mask, dt, True, "multi_head_attention_forward")
    if am is not None:
        if am.ndim == 2:
            if am.shape != (L, k.shape[1]):
                raise RuntimeError(f"The shape of the 2D attn_mask is {am.shape}, but should be {(L, k.shape[1])}.")
        elif am.ndim == 3:
            if am.shape != (N * H, L, k.shape[1]):
                raise RuntimeError(f"The shape of the 3D attn_mask is {am.shape}, but should be "
                                   f"{(N * H, L, k.shape[1])}.")
            am = am.reshape(N, H, L, k.shape[1])
        else:
            raise RuntimeError(f"attn_mask's dimension {am.ndim} is not supported")
    if bias_k is not None and bias_v is not None:
        k = _cat_along(k, bias_k.reshape(1, 1, -1).expand(N, 1, bias_k.shape[-1]))
        v = _cat_along(v, bias_v.reshape(1, 1, -1).expand(N, 1, bias_v.shape[-1]))
        am = None if am is None else np.concatenate([am, np.zeros(am.shape[:-1] + (1,), dt)], axis=-1)
        kpm = None if kpm is None else np.concatenate([kpm, np.zeros((N, 1), dt)], axis=-1)
    S0 = k.shape[1]
    q = q.reshape(N, L, H, hd).permute(0, 2, 1, 3)
    k = k.reshape(N, S0, H, hd).permute(0, 2, 1, 3)
    v = v.reshape(N, S0, H, hd).permute(0, 2, 1, 3)
    if add_zero_attn:
        k = _cat_along(k, wrap_array(np.zeros((N, H, 1, hd), dt)), 2)
        v = _cat_along(v, wrap_array(np.zeros((N, H, 1, hd), dt)), 2)
        am = None if am is None else np.concatenate([am, np.zeros(am.shape[:-1] + (1,), dt)], axis=-1)
        kpm = None if kpm is None else np.concatenate([kpm, np.zeros((N, 1), dt)], axis=-1)
    S = k.shape[2]
    if kpm is not None:
        if kpm.shape != (N, S):
            raise RuntimeError(f"expected key_padding_mask of shape {(N, S)}, got {kpm.shape}")
        kpm = kpm.reshape(N, 1, 1, S)
        am = kpm if am is None else am + kpm
    p = dropout_p if training else 0.0
    if need_weights:
        # torch's math path: weights are returned (after dropout), so build them from recorded ops
        scores = (q * math.sqrt(1.0 / hd)) @ k.transpose(-2, -1)
        if am is not None:
            scores = scores + wrap_array(am)
        w = scores.softmax(-1)
        if p > 0.0:
            w = dropout(w, p)
        o = w @ v
    else:
        w = None
        o = scaled_dot_product_attention(q, k, v, None if am is None else wrap_array(am), p, is_causal=causal)
    o = o.permute(0, 2, 1, 3).reshape(N, L, E)
    o = linear(o, out_proj_weight, out_proj_bias).transpose(0, 1)
    if w is not None and average_attn_weights:
        w = w.mean(1)
    if not batched:
        o = o.squeeze(1)
        w = None if w is None else w.squeeze(0)
    return o, w


def _cat_along(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    from ...tensor_functions import cat
    return cat([a, b], dim)
