"""Every op against PyTorch: one table, each entry run on both libraries.

For every entry and shape: result dtypes, shapes and values, and the gradients
of ``sum(out * R)``, in float64 and float32, equal PyTorch's; in float64 the
gradient also matches finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import retrograd as rg
from ref_helpers import In, cases, compare_errors, compare_with_torch, const, differentiable_outputs, gradcheck_float64, ns


def P(*s): return In(s, "pos")            # noqa: E704
def NZ(*s): return In(s, "nonzero")       # noqa: E704
def U(*s): return In(s, "unit")           # noqa: E704
def D(*s): return In(s, "distinct")       # noqa: E704
def N(*s): return In(s)                   # noqa: E704


UNARY = [N(), N(5), N(2, 3, 4), N(1, 3), N(0, 3)]
BINARY = [(N(2, 3), N(2, 3)), (N(3, 1, 4), N(2, 4)), (N(), N(2, 3)), (N(2, 1), N(1, 3)), (N(1), N(0,)),
          (N(4, 1), N())]


def kinds(kind, sets):
    """The same shapes with another way of drawing the values."""
    out = []
    for s in sets:
        s = s if isinstance(s, tuple) else (s,)
        out.append(tuple(In(x.shape, kind) for x in s))
    return out


rng = np.random.default_rng(1234)
IDX_GATHER = rng.integers(0, 4, (3, 2))
IDX_REPEAT = np.array([0, 2, 0, 1, 2, 2])
MASK_34 = rng.random((3, 4)) > 0.5
MASK_4 = np.array([True, False, True, True])
COND_34 = rng.random((3, 4)) > 0.4
SCATTER_IDX = np.array([[0, 1, 0, 2], [2, 2, 1, 0]])

TABLE = []
T = TABLE.extend

# ------------------------------------------------------------------ arithmetic
T(cases("add", lambda x, y: x + y, BINARY))
T(cases("sub", lambda x, y: x - y, BINARY))
T(cases("mul", lambda x, y: x * y, BINARY))
T(cases("div", lambda x, y: x / y, kinds("nonzero", BINARY)))
T(cases("pow", lambda x, y: x ** y, [(P(2, 3), N(2, 3)), (P(3, 1, 4), N(2, 4)), (P(), N(2, 3)), (P(0, 2), N(2))]))
T(cases("pow_scalar2", lambda x: x ** 2, UNARY))
T(cases("pow_scalar_half", lambda x: x ** 0.5, kinds("pos", UNARY)))
T(cases("pow_scalar_neg", lambda x: x ** -1.5, kinds("pos", UNARY)))
T(cases("rpow", lambda x: 2.0 ** x, UNARY))
T(cases("radd_scalar", lambda x: 1.5 + x, UNARY))
T(cases("rsub_scalar", lambda x: 1.5 - x, UNARY))
T(cases("rmul_int", lambda x: 3 * x, UNARY))
T(cases("rdiv_scalar", lambda x: 2.0 / x, kinds("nonzero", UNARY)))
T(cases("neg", lambda x: -x, UNARY))
T(cases("neg_method", lambda x: x.neg(), UNARY))
T(cases("maximum", lambda x, y: ns(x).maximum(x, y), BINARY))
T(cases("minimum", lambda x, y: ns(x).minimum(x, y), BINARY))
T(cases("max_binary", lambda x, y: ns(x).max(x, y), BINARY[:3]))
T(cases("atan2", lambda x, y: ns(x).atan2(x, y), kinds("nonzero", BINARY)))

# ------------------------------------------------------------------ matmul
MATMUL = [(N(3, 4), N(4, 5)), (N(4), N(4)), (N(4), N(4, 3)), (N(2, 3, 4), N(4)), (N(3, 4), N(2, 4, 5)),
          (N(2, 3, 4), N(2, 4, 5)), (N(2, 1, 3, 4), N(5, 4, 2)), (N(2, 3, 4), N(4, 5)), (N(0, 3), N(3, 2)),
          (N(2, 0), N(0, 3)), (N(1, 1), N(1, 1))]
T(cases("matmul", lambda x, y: x @ y, MATMUL))
T(cases("matmul_fn", lambda x, y: ns(x).matmul(x, y), MATMUL[:3]))
T(cases("mm", lambda x, y: x.mm(y), [(N(3, 4), N(4, 5))]))
T(cases("bmm", lambda x, y: x.bmm(y), [(N(2, 3, 4), N(2, 4, 5))]))
T(cases("dot", lambda x, y: x.dot(y), [(N(4), N(4))]))

# ------------------------------------------------------------------ unary
T(cases("exp", lambda x: x.exp(), UNARY))
T(cases("log", lambda x: x.log(), kinds("pos", UNARY)))
T(cases("log1p", lambda x: x.log1p(), kinds("pos", UNARY)))
T(cases("log2", lambda x: x.log2(), kinds("pos", UNARY[:3])))
T(cases("log10", lambda x: x.log10(), kinds("pos", UNARY[:3])))
T(cases("expm1", lambda x: x.expm1(), UNARY))
T(cases("sqrt", lambda x: x.sqrt(), kinds("pos", UNARY)))
T(cases("rsqrt", lambda x: x.rsqrt(), kinds("pos", UNARY)))
T(cases("square", lambda x: x.square(), UNARY))
T(cases("reciprocal", lambda x: x.reciprocal(), kinds("nonzero", UNARY)))
T(cases("abs", lambda x: x.abs(), kinds("nonzero", UNARY)))
T(cases("abs_fn", lambda x: ns(x).abs(x), kinds("nonzero", UNARY[:3])))
T(cases("sign", lambda x: x.sign(), kinds("nonzero", UNARY)))
T(cases("sin", lambda x: x.sin(), UNARY))
T(cases("cos", lambda x: x.cos(), UNARY))
T(cases("tan", lambda x: x.tan(), kinds("unit", UNARY)))
T(cases("asin", lambda x: x.asin(), kinds("unit", UNARY)))
T(cases("acos", lambda x: x.acos(), kinds("unit", UNARY)))
T(cases("atan", lambda x: x.atan(), UNARY))
T(cases("sinh", lambda x: x.sinh(), UNARY))
T(cases("cosh", lambda x: x.cosh(), UNARY))
T(cases("tanh", lambda x: x.tanh(), UNARY))
T(cases("sigmoid", lambda x: x.sigmoid(), UNARY))
T(cases("sigmoid_large", lambda x: (x * 40).sigmoid(), UNARY[:3]))
T(cases("relu", lambda x: x.relu(), kinds("nonzero", UNARY)))
T(cases("relu_fn", lambda x: ns(x).relu(x), kinds("nonzero", UNARY[:3])))
T(cases("erf", lambda x: x.erf(), UNARY))
T(cases("erf_wide", lambda x: (x * 3).erf(), UNARY[:3]))
T(cases("softplus", lambda x: x.softplus(), UNARY, tfn=lambda x: F.softplus(x)))
T(cases("softplus_beta", lambda x: (x * 8).softplus(beta=2.0, threshold=5.0), UNARY,
        tfn=lambda x: F.softplus(x * 8, beta=2.0, threshold=5.0)))
T(cases("clamp", lambda x: x.clamp(-0.5, 0.7), UNARY))
T(cases("clamp_min", lambda x: x.clamp(min=-0.2), UNARY))
T(cases("clamp_max", lambda x: x.clamp(max=0.3), UNARY))
T(cases("clip", lambda x: x.clip(-0.5, 0.5), UNARY[:3]))
T(cases("clamp_fn", lambda x: ns(x).clamp(x, -0.5, 0.5), UNARY[:3]))
T(cases("clamp_tensor", lambda x, lo, hi: x.clamp(lo, hi),
        [(N(2, 3), In((2, 3), "normal"), N(3)), (N(3, 4), N(4), N())]))
T(cases("where", lambda x, y: ns(x).where(const(x, COND_34), x, y),
        [(N(3, 4), N(3, 4)), (N(3, 4), N(4)), (N(1, 4), N()), (N(), N(3, 1))]))
T(cases("where_scalar", lambda x: ns(x).where(const(x, COND_34), x, 0.0), [N(3, 4), N(4)]))
T(cases("masked_fill", lambda x: x.masked_fill(const(x, MASK_34), -2.5), [N(3, 4), N(2, 3, 4)]))
T(cases("masked_fill_bcast_mask", lambda x: x.masked_fill(const(x, MASK_4), 1.0), [N(3, 4), N(0, 4)]))
T(cases("masked_fill_bcast_self", lambda x: x.masked_fill(const(x, MASK_34), 0.5), [N(4), N(1, 1)]))
T(cases("clone", lambda x: x.clone(), UNARY[:3]))
T(cases("to_float32", lambda x: x.to(ns(x).float32) * 2, UNARY[:3], tol={"float64": dict(rtol=1e-6)},
        fd=False))  # a float32 result: finite differences would measure rounding

# ------------------------------------------------------------------ reductions
R3 = [N(2, 3, 4), N(1, 3, 1), N(0, 3, 2)]
R3nz = [N(2, 3, 4), N(1, 3, 1)]  # mean/var of nothing is nan in both; checked elsewhere
T(cases("sum", lambda x: x.sum(), [N(), *R3]))
T(cases("sum_dim", lambda x: x.sum(1), R3))
T(cases("sum_dims_keep", lambda x: x.sum((0, 2), keepdim=True), R3))
T(cases("sum_negdim", lambda x: x.sum(-1), R3))
T(cases("sum_fn", lambda x: ns(x).sum(x, 0), R3))
T(cases("mean", lambda x: x.mean(), [N(), *R3nz]))
T(cases("mean_dim", lambda x: x.mean(1), R3))
T(cases("mean_dims_keep", lambda x: x.mean((0, 2), keepdim=True), R3nz))
T(cases("var", lambda x: x.var(), R3nz))
T(cases("var_dim", lambda x: x.var(-1), [N(2, 3, 4), N(3, 5)]))
T(cases("var_dim_keep", lambda x: x.var(1, keepdim=True), [N(2, 3, 4)]))
T(cases("var_unbiased_false", lambda x: x.var(0, unbiased=False), [N(2, 3, 4), N(1, 3)]))
T(cases("var_correction0", lambda x: x.var(dim=(0, 2), correction=0), [N(2, 3, 4)]))
T(cases("var_correction2", lambda x: x.var(dim=-1, correction=2), [N(2, 3, 4)]))
T(cases("std", lambda x: x.std(), R3nz))
T(cases("std_dim", lambda x: x.std(1), [N(2, 3, 4)]))
T(cases("std_dim_keep_c0", lambda x: x.std(dim=2, keepdim=True, correction=0), [N(2, 3, 4)]))
T(cases("std_fn", lambda x: ns(x).std(x, 0), [N(4, 3)]))
T(cases("var_fn", lambda x: ns(x).var(x, 1, keepdim=True), [N(4, 3)]))
T(cases("max", lambda x: x.max(), [D(), D(5), D(2, 3, 4)]))
T(cases("min", lambda x: x.min(), [D(), D(5), D(2, 3, 4)]))
T(cases("max_dim", lambda x: x.max(1), [D(2, 3, 4), D(3, 1), D(0, 3)]))
T(cases("max_dim_keep", lambda x: x.max(-1, keepdim=True), [D(2, 3, 4), D(5)]))
T(cases("min_dim", lambda x: x.min(0), [D(2, 3, 4), D(3, 1)]))
T(cases("min_dim_keep", lambda x: x.min(2, keepdim=True), [D(2, 3, 4)]))
T(cases("max_fn_dim", lambda x: ns(x).max(x, 1), [D(3, 4)]))
T(cases("amax", lambda x: x.amax(), [D(2, 3, 4)]))
T(cases("amax_dims", lambda x: x.amax((0, 2)), [D(2, 3, 4)]))
T(cases("amax_keep", lambda x: x.amax(1, keepdim=True), [D(2, 3, 4), D(0, 3)]))
T(cases("amin", lambda x: x.amin(1), [D(2, 3, 4)]))
T(cases("amin_dims_keep", lambda x: x.amin((0, 1), keepdim=True), [D(2, 3, 4)]))
T(cases("logsumexp", lambda x: x.logsumexp(1), [N(2, 3, 4), N(3, 1), N(0, 3)]))
T(cases("logsumexp_dims_keep", lambda x: x.logsumexp((0, 2), keepdim=True), [N(2, 3, 4)]))
T(cases("logsumexp_large", lambda x: (x * 300).logsumexp(-1), [N(2, 5)]))
T(cases("logsumexp_fn", lambda x: ns(x).logsumexp(x, 0), [N(4, 3)]))
T(cases("prod", lambda x: x.prod(), [NZ(), NZ(5), NZ(2, 3), NZ(0, 2)]))
T(cases("prod_dim", lambda x: x.prod(1), [NZ(2, 3, 4), NZ(3, 1), NZ(2, 0)]))
T(cases("prod_dim_keep", lambda x: x.prod(-1, keepdim=True), [NZ(2, 3, 4)]))
T(cases("cumsum", lambda x: x.cumsum(1), [N(2, 3, 4), N(3, 1), N(0, 3)]))
T(cases("cumsum_neg", lambda x: x.cumsum(-1), [N(5), N(2, 3)]))
T(cases("cumsum_fn", lambda x: ns(x).cumsum(x, dim=0), [N(4, 3)]))
T(cases("cumprod", lambda x: x.cumprod(1), [NZ(2, 3, 4), NZ(3, 1)]))
T(cases("norm", lambda x: x.norm(), [NZ(5), NZ(2, 3, 4)]))
T(cases("norm_dim", lambda x: x.norm(dim=1), [NZ(2, 3, 4), NZ(3, 1)]))
T(cases("norm_dim_keep", lambda x: x.norm(dim=(0, 2), keepdim=True), [NZ(2, 3, 4)]))
T(cases("norm_p1", lambda x: x.norm(p=1), [NZ(2, 3, 4)]))
T(cases("norm_p1_dim", lambda x: x.norm(1, dim=-1), [NZ(2, 3, 4)]))
T(cases("norm_p3", lambda x: x.norm(3, dim=1), [NZ(2, 3, 4)]))
T(cases("norm_pinf", lambda x: x.norm(float("inf"), dim=1), [D(2, 3, 4)]))
T(cases("norm_pinf_all", lambda x: x.norm(float("inf")), [D(3, 4)]))
T(cases("norm_fn", lambda x: ns(x).norm(x, dim=0), [NZ(4, 3)]))
T(cases("softmax", lambda x: x.softmax(1), [N(2, 3, 4), N(3, 1), N(0, 3)]))
T(cases("softmax_neg", lambda x: x.softmax(-1), [N(5), N(2, 3)]))
T(cases("softmax_large", lambda x: (x * 300).softmax(-1), [N(2, 5)]))
T(cases("softmax_fn", lambda x: ns(x).softmax(x, 0), [N(4, 3)]))
T(cases("log_softmax", lambda x: x.log_softmax(1), [N(2, 3, 4), N(3, 1), N(0, 3)]))
T(cases("log_softmax_neg", lambda x: x.log_softmax(-1), [N(5), N(2, 3)]))
T(cases("log_softmax_fn", lambda x: ns(x).log_softmax(x, 0), [N(4, 3)]))

# ------------------------------------------------------------------ shape and movement
T(cases("reshape", lambda x: x.reshape(4, 6), [N(2, 3, 4), N(24)]))
T(cases("reshape_infer", lambda x: x.reshape(-1, 2), [N(2, 3, 4), N(0, 4)]))
T(cases("reshape_tuple", lambda x: x.reshape((3, 8)), [N(2, 3, 4)]))
T(cases("reshape_scalar", lambda x: x.reshape(()), [N(1, 1), N()]))
T(cases("reshape_same", lambda x: x.reshape(x.shape), [N(2, 3)]))
T(cases("view", lambda x: x.view(3, -1), [N(2, 3, 4)]))
T(cases("reshape_fn", lambda x: ns(x).reshape(x, (6, 4)), [N(2, 3, 4)]))
T(cases("flatten", lambda x: x.flatten(), [N(), N(2, 3, 4), N(2, 0)]))
T(cases("flatten_range", lambda x: x.flatten(1, 2), [N(2, 3, 4, 5)]))
T(cases("flatten_start", lambda x: x.flatten(1), [N(2, 3, 4)]))
T(cases("unflatten", lambda x: x.unflatten(1, (2, 3)), [N(4, 6), N(2, 6, 1)]))
T(cases("unflatten_infer", lambda x: x.unflatten(-1, (-1, 2)), [N(3, 4)]))
T(cases("permute", lambda x: x.permute(2, 0, 1), [N(2, 3, 4), N(1, 0, 3)]))
T(cases("permute_tuple", lambda x: x.permute((1, 0)), [N(2, 3)]))
T(cases("permute_fn", lambda x: ns(x).permute(x, (0, 2, 1)), [N(2, 3, 4)]))
T(cases("transpose", lambda x: x.transpose(0, 2), [N(2, 3, 4)]))
T(cases("transpose_neg", lambda x: x.transpose(-1, -2), [N(2, 3, 4), N(3, 1)]))
T(cases("transpose_fn", lambda x: ns(x).transpose(x, 0, 1), [N(2, 3)]))
T(cases("swapaxes", lambda x: x.swapaxes(0, 1), [N(2, 3, 4)]))
T(cases("swapdims", lambda x: x.swapdims(1, 2), [N(2, 3, 4)]))
T(cases("T", lambda x: x.T, [N(2, 3), N(1, 4)]))
T(cases("mT", lambda x: x.mT, [N(2, 3, 4)]))
T(cases("t", lambda x: x.t(), [N(2, 3), N(3)]))
T(cases("movedim", lambda x: x.movedim(0, 2), [N(2, 3, 4)]))
T(cases("squeeze", lambda x: x.squeeze(), [N(1, 3, 1), N(2, 3), N(1), N(1, 0)]))
T(cases("squeeze_dim", lambda x: x.squeeze(0), [N(1, 3, 1), N(2, 3)]))
T(cases("squeeze_dims", lambda x: x.squeeze((0, 2)), [N(1, 3, 1)]))
T(cases("unsqueeze", lambda x: x.unsqueeze(1), [N(2, 3), N(0)]))
T(cases("unsqueeze0", lambda x: x.unsqueeze(0), [N(), N(3)]))
T(cases("unsqueeze_neg", lambda x: x.unsqueeze(-1), [N(2, 3)]))
T(cases("expand", lambda x: x.expand(2, 3, 4), [N(3, 1), N(1), N(), N(3, 4)]))
T(cases("expand_keep", lambda x: x.expand(-1, 4), [N(3, 1)]))
T(cases("expand_zero", lambda x: x.expand(0, 3), [N(1, 3)]))
T(cases("expand_as", lambda x, y: x.expand_as(y), [(N(3, 1), N(2, 3, 4))]))
T(cases("broadcast_to", lambda x: x.broadcast_to((2, 3, 4)), [N(3, 1), N(4)]))
T(cases("broadcast_to_fn", lambda x: ns(x).broadcast_to(x, (2, 3)), [N(3)]))
T(cases("repeat", lambda x: x.repeat(2, 3), [N(2, 3), N(3), N(1, 0)]))
T(cases("repeat_more", lambda x: x.repeat(2, 1, 2), [N(2, 3)]))
T(cases("tile", lambda x: x.tile((2,)), [N(2, 3), N(3)]))
T(cases("tile_more", lambda x: x.tile((2, 1, 3)), [N(2, 3)]))
T(cases("flip", lambda x: x.flip(0), [N(5), N(2, 3, 4)]))
T(cases("flip_dims", lambda x: x.flip((0, 2)), [N(2, 3, 4), N(2, 0, 1)]))
T(cases("flip_fn", lambda x: ns(x).flip(x, (1,)), [N(2, 3)]))
T(cases("fliplr", lambda x: x.fliplr(), [N(2, 3)]))
T(cases("roll", lambda x: x.roll(2, 1), [N(2, 3, 4), N(3, 1)]))
T(cases("roll_neg", lambda x: x.roll(-1, 0), [N(5)]))
T(cases("roll_flat", lambda x: x.roll(3), [N(2, 3)]))
T(cases("roll_multi", lambda x: x.roll((1, -2), (0, 2)), [N(2, 3, 4)]))
T(cases("cat", lambda x, y: ns(x).cat([x, y], 1), [(N(2, 3), N(2, 4)), (N(2, 3, 1), N(2, 0, 1))]))
T(cases("cat0", lambda x, y: ns(x).cat((x, y)), [(N(2, 3), N(1, 3)), (N(3), N(0))]))
T(cases("cat_three", lambda x, y, z: ns(x).cat([x, y, z], -1), [(N(2, 1), N(2, 3), N(2, 2))]))
T(cases("cat_same", lambda x: ns(x).cat([x, x * 2], 0), [N(2, 3)]))
T(cases("concat", lambda x, y: ns(x).concat([x, y], 0), [(N(2, 3), N(1, 3))]))
T(cases("stack", lambda x, y: ns(x).stack([x, y]), [(N(2, 3), N(2, 3)), (N(), N()), (N(0, 2), N(0, 2))]))
T(cases("stack_dim", lambda x, y: ns(x).stack((x, y), dim=-1), [(N(2, 3), N(2, 3))]))
T(cases("hstack", lambda x, y: ns(x).hstack([x, y]), [(N(2, 3), N(2, 1)), (N(3), N(2))]))
T(cases("vstack", lambda x, y: ns(x).vstack([x, y]), [(N(2, 3), N(1, 3)), (N(3), N(3))]))
T(cases("split", lambda x: x.split(2, 1), [N(3, 5), N(2, 4)]))
T(cases("split_sizes", lambda x: x.split([1, 3, 1], 0), [N(5, 2)]))
T(cases("split_fn", lambda x: ns(x).split(x, 2), [N(5)]))
T(cases("chunk", lambda x: x.chunk(3, 1), [N(2, 7), N(2, 6), N(2, 2)]))
T(cases("chunk_fn", lambda x: ns(x).chunk(x, 2), [N(5)]))
T(cases("tensor_split", lambda x: x.tensor_split(3, 1), [N(2, 7)]))
T(cases("unbind", lambda x: x.unbind(1), [N(2, 3, 4)]))
T(cases("unbind0", lambda x: x.unbind(), [N(3)]))
T(cases("unbind_fn", lambda x: ns(x).unbind(x, -1), [N(2, 3)]))
T(cases("pad", lambda x: ns(x).pad(x, (1, 2)), [N(2, 3), N(4), N(2, 0)]))
T(cases("pad_value", lambda x: ns(x).pad(x, (1, 0, 2, 1), value=1.5), [N(2, 3), N(2, 3, 4)]))
T(cases("pad_negative", lambda x: ns(x).pad(x, (-1, 2)), [N(2, 4)]))
T(cases("pad_reflect", lambda x: ns(x).pad(x, (2, 1), mode="reflect"), [N(2, 4), N(2, 3, 4)]))
T(cases("pad_reflect2d", lambda x: ns(x).pad(x, (1, 2, 2, 1), mode="reflect"), [N(1, 4, 5), N(2, 1, 3, 4)]))
T(cases("pad_replicate", lambda x: ns(x).pad(x, (2, 3), mode="replicate"), [N(2, 4), N(1, 2, 1)]))
T(cases("pad_replicate2d", lambda x: ns(x).pad(x, (1, 2, 3, 0), mode="replicate"), [N(1, 3, 4)]))
T(cases("pad_circular", lambda x: ns(x).pad(x, (2, 1), mode="circular"), [N(2, 4)]))
T(cases("pad_circular2d", lambda x: ns(x).pad(x, (1, 2, 2, 1), mode="circular"), [N(1, 3, 4)]))
T(cases("tril", lambda x: x.tril(), [N(3, 4), N(2, 4, 3), N(0, 3)]))
T(cases("tril_k", lambda x: x.tril(1), [N(3, 4)]))
T(cases("tril_negk", lambda x: x.tril(-1), [N(4, 4)]))
T(cases("triu", lambda x: x.triu(), [N(3, 4), N(2, 4, 3)]))
T(cases("triu_k", lambda x: x.triu(-1), [N(3, 4)]))
T(cases("tril_fn", lambda x: ns(x).tril(x, 1), [N(3, 3)]))
T(cases("triu_fn", lambda x: ns(x).triu(x, 1), [N(3, 3)]))

# ------------------------------------------------------------------ indexing
T(cases("gather", lambda x: x.gather(1, const(x, IDX_GATHER)), [N(3, 4), N(3, 5)]))
T(cases("gather_dim0", lambda x: x.gather(0, const(x, IDX_GATHER[:2, :1] % 2)), [N(2, 3)]))
T(cases("gather_fn", lambda x: ns(x).gather(x, 1, const(x, IDX_GATHER)), [N(3, 4)]))
T(cases("take_along_dim", lambda x: ns(x).take_along_dim(x, const(x, IDX_GATHER), 1), [N(3, 4)]))
T(cases("take_along_dim_bcast", lambda x: ns(x).take_along_dim(x, const(x, IDX_GATHER[:1]), dim=1),
        [N(3, 4)]))
T(cases("take_along_dim_flat", lambda x: ns(x).take_along_dim(x, const(x, IDX_REPEAT)), [N(2, 3)]))
T(cases("take_along_dim_method", lambda x: x.take_along_dim(const(x, IDX_GATHER), 1), [N(3, 4)]))
T(cases("index_select", lambda x: x.index_select(1, const(x, IDX_REPEAT)), [N(2, 3), N(0, 3)]))
T(cases("index_select0", lambda x: x.index_select(0, const(x, np.array([2, 0]))), [N(3, 4), N(3)]))
T(cases("index_select_fn", lambda x: ns(x).index_select(x, 0, const(x, IDX_REPEAT)), [N(3, 2)]))
T(cases("scatter_add", lambda x, s: x.scatter_add(1, const(x, SCATTER_IDX), s), [(N(2, 3), N(2, 4)),
                                                                                  (N(3, 3), N(2, 4))]))
T(cases("scatter_add_dim0", lambda x, s: x.scatter_add(0, const(x, SCATTER_IDX), s), [(N(3, 4), N(2, 4))]))
T(cases("scatter_add_fn", lambda x, s: ns(x).scatter_add(x, 1, const(x, SCATTER_IDX), s),
        [(N(2, 3), N(2, 4))]))
T(cases("getitem_int", lambda x: x[1], [N(3, 4), N(3)]))
T(cases("getitem_negint", lambda x: x[-1, 2], [N(3, 4)]))
T(cases("getitem_slice", lambda x: x[1:3], [N(4, 2), N(4)]))
T(cases("getitem_slice_step", lambda x: x[::2, 1:], [N(5, 3)]))
T(cases("getitem_slice_neg", lambda x: x[:, -2:], [N(5, 3)]))
T(cases("getitem_slice_empty", lambda x: x[2:2], [N(4, 3)]))
T(cases("getitem_ellipsis", lambda x: x[..., 1], [N(2, 3, 4)]))
T(cases("getitem_ellipsis_mid", lambda x: x[0, ..., 1:], [N(2, 3, 4)]))
T(cases("getitem_none", lambda x: x[None, :, None], [N(2, 3)]))
T(cases("getitem_none_ellipsis", lambda x: x[..., None], [N(2, 3)]))
T(cases("getitem_intarray", lambda x: x[const(x, IDX_REPEAT)], [N(3, 4), N(3)]))
T(cases("getitem_list", lambda x: x[[0, 2, 0, 0]], [N(3, 4)]))
T(cases("getitem_intarray_2d", lambda x: x[const(x, IDX_GATHER % 3)], [N(3, 2)]))
T(cases("getitem_intarray_dim1", lambda x: x[:, const(x, IDX_REPEAT)], [N(2, 3)]))
T(cases("getitem_two_arrays", lambda x: x[const(x, IDX_REPEAT), const(x, IDX_REPEAT[::-1])], [N(3, 3)]))
T(cases("getitem_array_slice_int", lambda x: x[const(x, IDX_REPEAT), 1:, 0], [N(3, 4, 2)]))
T(cases("getitem_mask", lambda x: x[const(x, MASK_34)], [N(3, 4)]))
T(cases("getitem_mask_row", lambda x: x[:, const(x, MASK_4)], [N(2, 4)]))
T(cases("getitem_mask_1d", lambda x: x[const(x, MASK_4)], [N(4, 2)]))
T(cases("getitem_negint_array", lambda x: x[const(x, np.array([-1, 0, -1]))], [N(3, 2)]))

# ------------------------------------------------------------------ einsum
T(cases("einsum_matmul", lambda x, y: ns(x).einsum("ij,jk->ik", x, y), [(N(3, 4), N(4, 5))]))
T(cases("einsum_batch", lambda x, y: ns(x).einsum("bij,bjk->bik", x, y), [(N(2, 3, 4), N(2, 4, 5))]))
T(cases("einsum_outer", lambda x, y: ns(x).einsum("i,j->ij", x, y), [(N(3), N(4))]))
T(cases("einsum_dot", lambda x, y: ns(x).einsum("i,i->", x, y), [(N(3), N(3))]))
T(cases("einsum_sum", lambda x: ns(x).einsum("ij->", x), [N(3, 4)]))
T(cases("einsum_rowsum", lambda x: ns(x).einsum("ij->i", x), [N(3, 4)]))
T(cases("einsum_transpose", lambda x: ns(x).einsum("ij->ji", x), [N(3, 4)]))
T(cases("einsum_implicit", lambda x, y: ns(x).einsum("ij,jk", x, y), [(N(3, 4), N(4, 2))]))
T(cases("einsum_three", lambda x, y, z: ns(x).einsum("ij,jk,kl->il", x, y, z), [(N(2, 3), N(3, 4), N(4, 2))]))
T(cases("einsum_attn", lambda q, k: ns(q).einsum("bhqd,bhkd->bhqk", q, k), [(N(2, 2, 3, 4), N(2, 2, 5, 4))]))
T(cases("einsum_sum_out", lambda x, y: ns(x).einsum("ij,kj->k", x, y), [(N(3, 4), N(2, 4))]))
T(cases("einsum_bcast1", lambda x, y: ns(x).einsum("ij,ij->ij", x, y), [(N(1, 4), N(3, 4))]))
T(cases("einsum_diag", lambda x: ns(x).einsum("ii->i", x), [N(3, 3)]))
T(cases("einsum_trace", lambda x: ns(x).einsum("ii", x), [N(3, 3)]))
T(cases("einsum_ellipsis", lambda x, y: ns(x).einsum("...ij,...jk->...ik", x, y), [(N(2, 3, 4), N(2, 4, 5))]))
T(cases("einsum_ellipsis_bcast", lambda x, y: ns(x).einsum("...ij,jk->...ik", x, y), [(N(2, 1, 3, 4), N(4, 5))]))
T(cases("einsum_ellipsis_implicit", lambda x: ns(x).einsum("...ii", x), [N(2, 3, 3)]))
T(cases("einsum_diag_batch", lambda x: ns(x).einsum("bii->bi", x), [N(2, 3, 3)]))
T(cases("einsum_diag_mul", lambda x, y: ns(x).einsum("ii,i->i", x, y), [(N(3, 3), N(3))]))
T(cases("einsum_list", lambda x, y: ns(x).einsum("ij,jk->ik", [x, y]), [(N(3, 4), N(4, 5))]))

# ------------------------------------------------------------------ not differentiable (values and dtypes)
T(cases("eq", lambda x, y: x == y.round(), [(N(2, 3), N(2, 3))]))
T(cases("lt", lambda x, y: x < y, BINARY))
T(cases("le", lambda x, y: x <= y, BINARY[:2]))
T(cases("gt", lambda x, y: x > y, BINARY[:2]))
T(cases("ge", lambda x, y: x >= y, BINARY[:2]))
T(cases("ne", lambda x, y: x != y, BINARY[:2]))
T(cases("gt_scalar", lambda x: x > 0.3, UNARY))
T(cases("eq_scalar", lambda x: x.round() == 0, UNARY[:3]))
T(cases("argmax", lambda x: x.argmax(), [D(), D(5), D(2, 3, 4)]))
T(cases("argmax_dim", lambda x: x.argmax(1), [D(2, 3, 4), D(3, 1)]))
T(cases("argmax_dim_keep", lambda x: x.argmax(-1, keepdim=True), [D(2, 3, 4)]))
T(cases("argmax_fn", lambda x: ns(x).argmax(x, 0), [D(3, 4)]))
T(cases("argmin", lambda x: x.argmin(), [D(2, 3, 4)]))
T(cases("argmin_dim", lambda x: x.argmin(0), [D(2, 3, 4)]))
T(cases("argsort", lambda x: x.argsort(), [D(5), D(2, 3, 4), D(0, 2)]))
T(cases("argsort_dim_desc", lambda x: x.argsort(0, descending=True), [D(3, 4)]))
T(cases("argsort_fn", lambda x: ns(x).argsort(x, 1), [D(3, 4)]))
T(cases("sort", lambda x: x.sort(), [D(5), D(2, 3, 4)]))
T(cases("sort_dim_desc", lambda x: x.sort(0, descending=True), [D(3, 4)]))
T(cases("sort_fn", lambda x: ns(x).sort(x, 1), [D(3, 4)]))
T(cases("topk", lambda x: x.topk(2), [D(5), D(2, 3, 4)]))
T(cases("topk_dim_smallest", lambda x: x.topk(3, 0, largest=False), [D(4, 3)]))
T(cases("topk_fn", lambda x: ns(x).topk(x, 1, dim=1), [D(3, 4)]))
T(cases("topk_zero", lambda x: x.topk(0), [D(3, 4)]))
T(cases("isnan", lambda x: (x.log()).isnan(), [N(2, 3)]))
T(cases("isinf", lambda x: (1 / (x.round() * 0)).isinf(), [N(2, 3)]))
T(cases("isfinite", lambda x: x.log().isfinite(), [N(2, 3)]))
T(cases("isnan_fn", lambda x: ns(x).isnan(x.sqrt()), [N(2, 3)]))
T(cases("any", lambda x: (x > 1).any(), [N(2, 3), N(0)]))
T(cases("any_dim", lambda x: (x > 0.5).any(1), [N(3, 4)]))
T(cases("all", lambda x: (x > -1).all(), [N(2, 3), N(0)]))
T(cases("all_dim_keep", lambda x: (x > -0.5).all(0, keepdim=True), [N(3, 4)]))
T(cases("floor", lambda x: x.floor(), UNARY[:3]))
T(cases("ceil", lambda x: x.ceil(), UNARY[:3]))
T(cases("trunc", lambda x: x.trunc(), UNARY[:3]))
T(cases("round", lambda x: (x * 3).round(), UNARY[:3]))
T(cases("logical_not", lambda x: (x > 0).logical_not(), [N(2, 3)]))
T(cases("logical_and", lambda x, y: (x > 0).logical_and(y > 0), BINARY[:2]))

# ------------------------------------------------------------------ ties: the gradient is shared as torch shares it
def TI(*s): return In(s, "ties")          # noqa: E704


T(cases("max_ties", lambda x: x.max(), [TI(3, 4)], fd=False))
T(cases("min_ties", lambda x: x.min(), [TI(3, 4)], fd=False))
T(cases("amax_ties", lambda x: x.amax(1), [TI(3, 4)], fd=False))
T(cases("amin_ties_keep", lambda x: x.amin(0, keepdim=True), [TI(4, 3)], fd=False))
T(cases("max_dim_ties", lambda x: x.max(1), [TI(3, 4)], fd=False))
T(cases("min_dim_ties", lambda x: x.min(0), [TI(4, 3)], fd=False))
T(cases("maximum_ties", lambda x, y: ns(x).maximum(x, y), [(TI(3, 4), TI(3, 4))], fd=False))
T(cases("minimum_ties", lambda x, y: ns(x).minimum(x, y), [(TI(3, 4), TI(4))], fd=False))
T(cases("norm_pinf_ties", lambda x: x.norm(float("inf"), dim=1), [TI(3, 4)], fd=False))
T(cases("clamp_at_bound", lambda x: x.clamp(-0.5, 0.5), [TI(3, 4)], fd=False))
T(cases("relu_at_zero", lambda x: x.relu(), [TI(3, 4)], fd=False))
T(cases("abs_at_zero", lambda x: x.abs(), [TI(3, 4)], fd=False))
T(cases("sort_ties_stable", lambda x: x.sort(stable=True), [TI(3, 6)], fd=False))
T(cases("argsort_ties_stable", lambda x: x.argsort(stable=True), [TI(3, 6)]))

IDS = [c.id for c in TABLE]
assert len(set(IDS)) == len(IDS), "test ids must be unique"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", TABLE, ids=IDS)
def test_against_torch(case, dtype):
    compare_with_torch(case, dtype)


GRAD_CASES = [c for c in TABLE if c.fd and differentiable_outputs(c)]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.id for c in GRAD_CASES])
def test_gradcheck_float64(case):
    gradcheck_float64(case)


# ------------------------------------------------------------------ calls PyTorch rejects: retrograd rejects them too
ERRORS = []
E = ERRORS.extend
E(cases("unsqueeze_out_of_range", lambda x: x.unsqueeze(1), [N()]))
E(cases("sum_dim_out_of_range", lambda x: x.sum(3), [N(2, 3)]))
E(cases("softmax_dim_out_of_range", lambda x: x.softmax(2), [N(2, 3)]))
E(cases("add_shapes", lambda x, y: x + y, [(N(2, 3), N(4,))]))
E(cases("matmul_shapes", lambda x, y: x @ y, [(N(2, 3), N(2, 3)), (N(), N(3)), (N(2, 3, 4), N(3, 4, 5))]))
E(cases("mm_1d", lambda x, y: x.mm(y), [(N(3), N(3, 2))]))
E(cases("cat_shapes", lambda x, y: ns(x).cat([x, y], 0), [(N(2, 3), N(2, 4))]))
E(cases("cat_ndim", lambda x, y: ns(x).cat([x, y], 0), [(N(2, 3), N(3, 2, 3))]))
E(cases("stack_shapes", lambda x, y: ns(x).stack([x, y]), [(N(2, 3), N(3, 2))]))
E(cases("reshape_numel", lambda x: x.reshape(4, 2), [N(2, 3)]))
E(cases("reshape_two_infer", lambda x: x.reshape(-1, -1), [N(2, 3)]))
E(cases("view_numel", lambda x: x.view(5), [N(2, 3)]))
E(cases("expand_shapes", lambda x: x.expand(2, 4), [N(3, 1)]))
E(cases("expand_fewer_dims", lambda x: x.expand(3), [N(2, 3)]))
E(cases("permute_count", lambda x: x.permute(1, 0), [N(2, 3, 4)]))
E(cases("permute_repeat", lambda x: x.permute(0, 0, 1), [N(2, 3, 4)]))
E(cases("getitem_out_of_range", lambda x: x[3], [N(3, 2)]))
E(cases("getitem_too_many", lambda x: x[0, 0, 0], [N(3, 2)]))
E(cases("getitem_array_out_of_range", lambda x: x[const(x, np.array([0, 3]))], [N(3, 2)]))
E(cases("getitem_mask_shape", lambda x: x[const(x, MASK_4)], [N(3, 2)]))
E(cases("gather_out_of_range", lambda x: x.gather(1, const(x, IDX_GATHER + 4)), [N(3, 4)]))
E(cases("gather_ndim", lambda x: x.gather(1, const(x, IDX_REPEAT)), [N(3, 4)]))
E(cases("index_select_out_of_range", lambda x: x.index_select(0, const(x, np.array([5]))), [N(3, 4)]))
E(cases("index_float", lambda x: x.index_select(0, const(x, np.array([0.0]))), [N(3, 4)]))
E(cases("topk_too_many", lambda x: x.topk(5), [N(3, 4)]))
E(cases("max_empty", lambda x: x.max(), [N(0, 3)]))
E(cases("max_dim_empty", lambda x: x.max(0), [N(0, 3)]))
E(cases("amax_empty", lambda x: x.amax(0), [N(0, 3)]))
E(cases("argmax_empty", lambda x: x.argmax(), [N(0, 3)]))
E(cases("tril_1d", lambda x: x.tril(), [N(3)]))
E(cases("split_sizes_sum", lambda x: x.split([1, 1], 0), [N(3)]))
E(cases("chunk_zero", lambda x: x.chunk(0), [N(3)]))
E(cases("pad_reflect_too_wide", lambda x: ns(x).pad(x, (4, 0), mode="reflect"), [N(2, 4)]))
E(cases("pad_odd_length", lambda x: ns(x).pad(x, (1, 2, 3)), [N(2, 4)]))
E(cases("einsum_operands", lambda x, y: ns(x).einsum("ij,jk->ik", x), [(N(2, 3), N(3, 4))]))
E(cases("einsum_sizes", lambda x, y: ns(x).einsum("ij,jk->ik", x, y), [(N(2, 3), N(4, 4))]))
E(cases("where_shapes", lambda x, y: ns(x).where(const(x, COND_34), x, y), [(N(3, 4), N(2, 4))]))
E(cases("masked_fill_float_mask", lambda x: x.masked_fill(const(x, MASK_34.astype(float)), 0.0), [N(3, 4)]))
E(cases("scatter_add_out_of_range", lambda x, s: x.scatter_add(1, const(x, SCATTER_IDX + 3), s),
        [(N(2, 3), N(2, 4))]))
E(cases("clamp_no_bounds", lambda x: x.clamp(), [N(3)]))
E(cases("backward_nonscalar", lambda x: (x * 2).backward(), [N(3)]))
E(cases("neg_bool", lambda x: -(x > 0), [N(3)]))
E(cases("mean_int", lambda x: (x > 0).long().mean(), [N(3)]))
E(cases("item_many", lambda x: x.item(), [N(3)]))
E(cases("roll_mismatch", lambda x: x.roll((1, 2), (0,)), [N(3, 4)]))
E(cases("flatten_order", lambda x: x.flatten(2, 1), [N(2, 3, 4)]))
E(cases("unflatten_sizes", lambda x: x.unflatten(1, (2, 2)), [N(3, 6)]))


@pytest.mark.parametrize("case", ERRORS, ids=[c.id for c in ERRORS])
def test_rejects_what_torch_rejects(case):
    compare_errors(case)
