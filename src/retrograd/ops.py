"""The rule table: every differentiable op's forward and vector-Jacobian product.

Each ``Rule`` pairs ``forward(ins, kw) -> array`` with
``backward(g, out, ins, kw, needs) -> tuple`` (one gradient per input, ``None``
where an input needs none). ``ins`` are the input arrays, ``out`` the output
array (only if ``save_out``), ``kw`` the op's keyword arguments plus whatever
the forward stored in it, ``needs[i]`` whether input ``i`` wants a gradient.

Rules are written in plain array code (operators, ``np.*`` functions and
``call(OTHER_RULE, ...)``) that also works when the engine hands them Tensors:
that is how ``create_graph=True`` makes gradients differentiable at no cost to
the first-order path. Rules never modify ``g`` in place (it may be shared) and
return gradients in the shape of the broadcast output: the engine sums them
back to each input's shape.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import backend as B
from . import kernels
from .kernels import conv as _relu_kernels
from .engine import state
from .scalars import const
from .special import erf_array

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)


class Rule:
    """One op: its name, forward and backward, and what the backward reads."""

    __slots__ = ("name", "forward", "backward", "save_out", "needs_inputs", "node_name", "scatter", "lowp",
                 "array_op", "scalar_op", "scalar_grad", "out_grad", "passes_grad", "keeps_shape")

    def __init__(self, name: str, forward: Callable, backward: Callable | None, *,
                 save_out: bool = False, needs_inputs: bool = True, scatter: Callable | None = None,
                 lowp: str = "float32", array_op: Callable | None = None, scalar_op: Callable | None = None,
                 scalar_grad: Callable | None = None, out_grad: Callable | None = None, passes_grad: bool = False,
                 keeps_shape: bool = False) -> None:
        self.name = name
        # what the engine's hot path may take for granted (each only saves Python frames; the rule stays
        # complete; a float32 twin made by ``lowp_twin`` has none of them, a "native" one is the rule):
        # ``array_op(*arrays)`` is ``forward(arrays, kw)`` for a rule that ignores ``kw``, as one C call
        # (a NumPy ufunc); for a tensor-scalar rule, ``scalar_op(x, const(s, x))`` is ``forward((x,), s)``
        # and ``scalar_grad(g, const(s, g))`` its input gradient when ``g`` is an array; ``out_grad(g, out)``
        # is a one-input rule's input gradient from its saved output alone (``backward``'s only item);
        # ``passes_grad``: ``backward`` returns ``g`` itself for every input; ``keeps_shape``: a one-input
        # rule whose input gradient always has the input's shape (elementwise), so no unbroadcast test.
        self.array_op = array_op
        self.scalar_op = scalar_op
        self.scalar_grad = scalar_grad
        self.out_grad = out_grad
        self.passes_grad = passes_grad
        self.keeps_shape = keeps_shape
        # how the op runs on bfloat16 inputs (see ``lowp_twin``): "float32" (upcast, compute, round
        # once), "native" (data movement, exact on the bfloat16 arrays, views stay views) or
        # "backward" (native forward, float32 backward: a view whose gradient is a sum)
        self.lowp = lowp
        self.forward = forward
        self.backward = backward
        self.save_out = save_out
        self.needs_inputs = needs_inputs
        # scatter(acc, g, kw): add this one-input op's input gradient into the
        # engine's full-size accumulator in place. For ops that read a small part
        # of their input (slices, unbind, split) this costs the part, not the whole.
        self.scatter = scatter
        self.node_name = "".join(p.capitalize() for p in name.split("_")) + "Backward"

    def __repr__(self) -> str:
        return f"Rule({self.name})"


def call(rule: Rule, ins: tuple, kw: dict | None = None) -> Any:
    """Run ``rule`` on arrays, or record it when any input is a Tensor (create_graph)."""
    T = state.tensor_type
    for x in ins:
        if isinstance(x, T):
            return T._apply(rule, tuple(x if isinstance(x, T) else T._wrap(np.asarray(x)) for x in ins),
                            dict(kw) if kw else kw)
    return rule.forward(ins, dict(kw) if kw else kw)


# ============================================================== bfloat16
_BF16 = np.dtype(B.bfloat16)
_TWINS: dict = {}


def _up(x: Any) -> Any:
    if x is None or x.dtype != _BF16:
        return x
    return x.float() if isinstance(x, state.tensor_type) else x.astype(np.float32)


def _down(x: Any) -> Any:
    if x is None or x.dtype != np.float32:
        return x
    return x.to(_BF16) if isinstance(x, state.tensor_type) else np.asarray(x).astype(_BF16)


def lowp_twin(rule: Rule) -> Rule:
    """The rule to run when an input is bfloat16. PyTorch's CPU kernels compute a bfloat16 op in
    float32 and round its result once; the twin does that around ``rule``: bfloat16 inputs
    (and the gradient, and the saved output) upcast to float32, every float32 result rounded to
    bfloat16. Data-movement rules (``lowp="native"``) run as they are."""
    twin = _TWINS.get(rule)
    if twin is not None:
        return twin
    if rule.lowp == "native":
        twin = rule
    else:
        fwd, bwd = rule.forward, rule.backward
        if rule in _LOWP_FORWARD:
            forward = _LOWP_FORWARD[rule]
        elif rule.lowp == "float32":
            def forward(ins, kw):
                return _down(fwd(tuple([_up(x) for x in ins]), _scalar_kw(rule, kw)))
        else:
            forward = fwd

        def backward(g, out, ins, kw, needs):
            grads = bwd(_up(g), _up(out), tuple([_up(x) for x in ins]), _scalar_kw(rule, kw), needs)
            return tuple([_down(gi) for gi in grads])
        twin = Rule(rule.name, forward, backward if bwd is not None else None, save_out=rule.save_out,
                    needs_inputs=rule.needs_inputs, scatter=rule.scatter, lowp=rule.lowp)
        twin.node_name = rule.node_name
    _TWINS[rule] = twin
    return twin


def _scalar_kw(rule: Rule, kw: Any) -> Any:
    """PyTorch's bfloat16 add/sub round a Python-number operand to bfloat16 first (mul and div
    use it in float32, as given)."""
    if rule in _ROUNDED_SCALAR and isinstance(kw, float):
        return float(np.float32(kw).astype(_BF16))
    return kw


def _normdims(dim: Any, ndim: int) -> tuple | None:
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    return tuple(sorted(d % ndim if ndim else 0 for d in dim))


def _expand_reduced(g: Any, shape: tuple, dim: tuple | None, keepdim: bool) -> Any:
    """Broadcast a reduction's gradient back over the reduced dims."""
    if dim is not None and not keepdim and len(shape):
        g = np.reshape(g, tuple(1 if i in dim else s for i, s in enumerate(shape)))
    return np.broadcast_to(g, shape)


# ============================================================== elementwise binary
def _add_b(g, out, ins, kw, needs):
    return g, g
ADD = Rule("add", lambda ins, kw: ins[0] + ins[1], _add_b, needs_inputs=False, array_op=np.add,
           passes_grad=True)


def _sub_b(g, out, ins, kw, needs):
    return g, -g if needs[1] else None
SUB = Rule("sub", lambda ins, kw: ins[0] - ins[1], _sub_b, needs_inputs=False, array_op=np.subtract)


def _mul_b(g, out, ins, kw, needs):
    a, b = ins
    return (g * b if needs[0] else None), (g * a if needs[1] else None)
MUL = Rule("mul", lambda ins, kw: ins[0] * ins[1], _mul_b, array_op=np.multiply)


def _div_b(g, out, ins, kw, needs):
    a, b = ins
    ga = g / b if needs[0] else None
    gb = -g * a / (b * b) if needs[1] else None
    return ga, gb
DIV = Rule("div", lambda ins, kw: ins[0] / ins[1], _div_b, array_op=np.true_divide)


def _pow_b(g, out, ins, kw, needs):
    a, b = ins
    ga = gb = None
    if needs[0]:
        ga = g * b * a ** (b - 1)
        # d/da a**0 is 0 everywhere (PyTorch), never 0 * inf
        ga = np.where(b == 0, 0.0 * g, ga)
    if needs[1]:
        gb = g * np.where(a > 0, a ** b * np.log(np.where(a > 0, a, 1.0)), 0.0 * g)
    return ga, gb
POW = Rule("pow", lambda ins, kw: ins[0] ** ins[1], _pow_b)


def _maxmin_b(g, out, ins, kw, needs):
    a, b = ins
    pick_a = (a > b) if kw["max"] else (a < b)
    tie = a == b
    half = g * 0.5
    ga = np.where(pick_a, g, np.where(tie, half, 0.0 * g)) if needs[0] else None
    gb = np.where(pick_a, 0.0 * g, np.where(tie, half, g)) if needs[1] else None
    return ga, gb
MAXIMUM = Rule("maximum", lambda ins, kw: np.maximum(ins[0], ins[1]), _maxmin_b)
MINIMUM = Rule("minimum", lambda ins, kw: np.minimum(ins[0], ins[1]), _maxmin_b)


def _atan2_b(g, out, ins, kw, needs):
    a, b = ins
    den = a * a + b * b
    return (g * b / den if needs[0] else None), (-g * a / den if needs[1] else None)
ATAN2 = Rule("atan2", lambda ins, kw: np.arctan2(ins[0], ins[1]), _atan2_b)


# ============================================================== tensor-scalar
# A Python number on one side: ``kw`` is the number itself. PyTorch has the same
# split (``mul.Scalar``); it saves wrapping the number in a Tensor on the hot path.
_add, _sub, _mul, _div = np.add, np.subtract, np.multiply, np.true_divide


def _scalar_forward(f: Callable, reflected: bool = False) -> Callable:
    """``forward(ins, s)`` of a tensor-scalar rule: the ufunc ``f`` called directly on the array and the
    number as ``const`` gives it (an operator on an ndarray reaches the same ufunc through one more call)."""
    if reflected:
        def forward(ins, s):
            x = ins[0]
            return f(const(s, x), x)
    else:
        def forward(ins, s):
            x = ins[0]
            return f(x, const(s, x))
    return forward


_add_s_f, _sub_s_f, _mul_s_f, _div_s_f = (_scalar_forward(f) for f in (_add, _sub, _mul, _div))
_rsub_s_f, _rdiv_s_f = _scalar_forward(_sub, True), _scalar_forward(_div, True)


ADD_S = Rule("add", _add_s_f, lambda g, out, ins, s, needs: (g,), needs_inputs=False, passes_grad=True,
             keeps_shape=True, scalar_op=_add)
SUB_S = Rule("sub", _sub_s_f, lambda g, out, ins, s, needs: (g,), needs_inputs=False, passes_grad=True,
             keeps_shape=True, scalar_op=_sub)
RSUB_S = Rule("rsub", _rsub_s_f, lambda g, out, ins, s, needs: (-g,), needs_inputs=False, keeps_shape=True)
MUL_S = Rule("mul", _mul_s_f, lambda g, out, ins, s, needs: (g * const(s, g),), needs_inputs=False,
             keeps_shape=True, scalar_op=_mul, scalar_grad=_mul)
DIV_S = Rule("div", _div_s_f, lambda g, out, ins, s, needs: (g / const(s, g),), needs_inputs=False,
             keeps_shape=True, scalar_op=_div, scalar_grad=_div)
RDIV_S = Rule("reciprocal", _rdiv_s_f,
              lambda g, out, ins, s, needs: (-g * const(s, g) / (ins[0] * ins[0]),), keeps_shape=True)


def _pow_s_b(g, out, ins, s, needs):
    if s == 0:
        return (0.0 * g,)
    if s == 2:
        return (g * 2 * ins[0],)
    return (g * s * ins[0] ** (s - 1),)
POW_S = Rule("pow", lambda ins, s: ins[0] ** s, _pow_s_b)
RPOW_S = Rule("pow", lambda ins, s: s ** ins[0],
              lambda g, out, ins, s, needs: (g * (s ** ins[0]) * math.log(s) if s > 0 else 0.0 * g,))


# ============================================================== elementwise unary
NEG = Rule("neg", lambda ins, kw: -ins[0], lambda g, out, ins, kw, needs: (-g,), needs_inputs=False,
           array_op=np.negative, keeps_shape=True)
EXP = Rule("exp", lambda ins, kw: np.exp(ins[0]),
           lambda g, out, ins, kw, needs: (g * out,), save_out=True, needs_inputs=False, array_op=np.exp,
           out_grad=np.multiply, keeps_shape=True)
EXPM1 = Rule("expm1", lambda ins, kw: np.expm1(ins[0]),
             lambda g, out, ins, kw, needs: (g * (out + 1),), save_out=True, needs_inputs=False)
LOG = Rule("log", lambda ins, kw: np.log(ins[0]), lambda g, out, ins, kw, needs: (g / ins[0],),
           array_op=np.log, keeps_shape=True)
LOG1P = Rule("log1p", lambda ins, kw: np.log1p(ins[0]),
             lambda g, out, ins, kw, needs: (g / (ins[0] + 1),))
SQRT = Rule("sqrt", lambda ins, kw: np.sqrt(ins[0]),
            lambda g, out, ins, kw, needs: (g / (2 * out),), save_out=True, needs_inputs=False, array_op=np.sqrt,
            keeps_shape=True)
RSQRT = Rule("rsqrt", lambda ins, kw: 1 / np.sqrt(ins[0]),
             lambda g, out, ins, kw, needs: (-0.5 * g * out * out * out,), save_out=True,
             needs_inputs=False)
ABS = Rule("abs", lambda ins, kw: np.abs(ins[0]), lambda g, out, ins, kw, needs: (g * np.sign(ins[0]),))
SIN = Rule("sin", lambda ins, kw: np.sin(ins[0]), lambda g, out, ins, kw, needs: (g * np.cos(ins[0]),))
COS = Rule("cos", lambda ins, kw: np.cos(ins[0]), lambda g, out, ins, kw, needs: (-g * np.sin(ins[0]),))
TAN = Rule("tan", lambda ins, kw: np.tan(ins[0]),
           lambda g, out, ins, kw, needs: (g * (1 + out * out),), save_out=True, needs_inputs=False)
_ONE32 = const(1, np.ones(1, np.float32))


def _tanh_g(g, out):
    return g * ((_ONE32 if type(out) is _ndarray and out.dtype is _F32 else const(1, out)) - out * out)
TANH = Rule("tanh", lambda ins, kw: np.tanh(ins[0]), lambda g, out, ins, kw, needs: (_tanh_g(g, out),),
            save_out=True, needs_inputs=False, array_op=np.tanh, out_grad=_tanh_g, keeps_shape=True)
ASIN = Rule("asin", lambda ins, kw: np.arcsin(ins[0]),
            lambda g, out, ins, kw, needs: (g / np.sqrt(1 - ins[0] * ins[0]),))
ACOS = Rule("acos", lambda ins, kw: np.arccos(ins[0]),
            lambda g, out, ins, kw, needs: (-g / np.sqrt(1 - ins[0] * ins[0]),))
ATAN = Rule("atan", lambda ins, kw: np.arctan(ins[0]),
            lambda g, out, ins, kw, needs: (g / (1 + ins[0] * ins[0]),))
SINH = Rule("sinh", lambda ins, kw: np.sinh(ins[0]), lambda g, out, ins, kw, needs: (g * np.cosh(ins[0]),))
COSH = Rule("cosh", lambda ins, kw: np.cosh(ins[0]), lambda g, out, ins, kw, needs: (g * np.sinh(ins[0]),))


def _sigmoid_f(ins, kw):
    x = ins[0]
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
SIGMOID = Rule("sigmoid", _sigmoid_f, lambda g, out, ins, kw, needs: (g * out * (const(1, out) - out),),
               save_out=True, needs_inputs=False, keeps_shape=True)


_RELU_MIN = _relu_kernels.MIN_KERNEL  # below it both kernels would run NumPy's loop: called here directly


def _relu_f(ins, kw):
    x = ins[0]
    return np.maximum(x, 0) if x.size < _RELU_MIN else _relu_kernels.relu(x)  # one threaded pass if compiled


def _relu_b(g, out, ins, kw, needs):
    if type(out) is _ndarray and out.size >= _RELU_MIN:  # (a Tensor under create_graph: below)
        return (_relu_kernels.relu_backward(g, out),)
    return (g * (out > 0),)
RELU = Rule("relu", _relu_f, _relu_b, save_out=True, needs_inputs=False, keeps_shape=True)


def _softplus_f(ins, kw):
    x = ins[0]
    beta, threshold = kw["beta"], kw["threshold"]
    bx = x * beta
    soft = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, soft).astype(x.dtype, copy=False)


def _softplus_b(g, out, ins, kw, needs):
    x = ins[0]
    bx = x * kw["beta"]
    return (np.where(bx > kw["threshold"], g, g * call(SIGMOID, (bx,))),)
SOFTPLUS = Rule("softplus", _softplus_f, _softplus_b)


def _erf_f(ins, kw):
    return erf_array(ins[0])


def _erf_b(g, out, ins, kw, needs):
    x = ins[0]
    return (g * (2.0 / math.sqrt(math.pi)) * np.exp(-x * x),)
ERF = Rule("erf", _erf_f, _erf_b)


def _sign_b(g, out, ins, kw, needs):
    return (0.0 * g,)
SIGN = Rule("sign", lambda ins, kw: np.sign(ins[0]), _sign_b, needs_inputs=False)
# piecewise constant: zero gradient, but differentiable (out.requires_grad), as in PyTorch
FLOOR = Rule("floor", lambda ins, kw: np.floor(ins[0]), _sign_b, needs_inputs=False)
CEIL = Rule("ceil", lambda ins, kw: np.ceil(ins[0]), _sign_b, needs_inputs=False)
ROUND = Rule("round", lambda ins, kw: np.round(ins[0], kw["decimals"]), _sign_b, needs_inputs=False)
TRUNC = Rule("trunc", lambda ins, kw: np.trunc(ins[0]), _sign_b, needs_inputs=False)


def _clamp_f(ins, kw):
    x = ins[0]
    lo, hi = kw["min"], kw["max"]
    if lo is not None:
        x = np.maximum(x, np.asarray(lo, dtype=x.dtype))
    if hi is not None:
        x = np.minimum(x, np.asarray(hi, dtype=x.dtype))
    return x


def _clamp_b(g, out, ins, kw, needs):
    x = ins[0]
    lo, hi = kw["min"], kw["max"]
    keep = True
    if lo is not None:
        keep = keep & (x >= lo)
    if hi is not None:
        keep = keep & (x <= hi)
    return (g * keep,)
CLAMP = Rule("clamp", _clamp_f, _clamp_b)


def _where_b(g, out, ins, kw, needs):
    c = kw["cond"]
    z = 0.0 * g
    return (np.where(c, g, z) if needs[0] else None), (np.where(c, z, g) if needs[1] else None)
WHERE = Rule("where", lambda ins, kw: np.where(kw["cond"], ins[0], ins[1]), _where_b, needs_inputs=False)


def _cast_b(g, out, ins, kw, needs):
    return (call(CAST, (g,), {"dtype": ins[0].dtype}),)
CAST = Rule("to_copy", lambda ins, kw: B.astype(ins[0], kw["dtype"]), _cast_b, needs_inputs=False)
CLONE = Rule("clone", lambda ins, kw: ins[0].copy(), lambda g, out, ins, kw, needs: (g,),
             needs_inputs=False)


# ============================================================== reductions
def _sum_f(ins, kw):
    return np.sum(ins[0], axis=kw["dim"], keepdims=kw["keepdim"])


def _sum_b(g, out, ins, kw, needs):
    x = ins[0]
    return (_expand_reduced(g, x.shape, kw["dim"], kw["keepdim"]),)
SUM = Rule("sum", _sum_f, _sum_b, needs_inputs=False)


def _count(shape: tuple, dim: tuple | None) -> int:
    return math.prod(shape) if dim is None else math.prod(shape[d] for d in dim)


def _mean_f(ins, kw):
    return np.mean(ins[0], axis=kw["dim"], keepdims=kw["keepdim"])


def _mean_b(g, out, ins, kw, needs):
    x = ins[0]
    n = _count(x.shape, kw["dim"])
    return (_expand_reduced(g / n if n else g, x.shape, kw["dim"], kw["keepdim"]),)
MEAN = Rule("mean", _mean_f, _mean_b, needs_inputs=False)


def _var_f(ins, kw):
    x = ins[0]
    n = _count(x.shape, kw["dim"])
    ddof = kw["correction"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.var(x, axis=kw["dim"], keepdims=kw["keepdim"], ddof=ddof) if n - ddof > 0 else \
            np.full(np.sum(x, axis=kw["dim"], keepdims=kw["keepdim"]).shape, np.nan, dtype=x.dtype)


def _var_b(g, out, ins, kw, needs):
    x = ins[0]
    dim = kw["dim"]
    n = _count(x.shape, dim)
    mu = np.mean(x, axis=dim, keepdims=True)
    scale = 2.0 / max(n - kw["correction"], 0) if n - kw["correction"] > 0 else math.nan
    return (_expand_reduced(g, x.shape, dim, kw["keepdim"]) * (x - mu) * scale,)
VAR = Rule("var", _var_f, _var_b)


def _amax_f(ins, kw):
    f = np.max if kw["max"] else np.min
    return f(ins[0], axis=kw["dim"], keepdims=kw["keepdim"])


def _amax_b(g, out, ins, kw, needs):
    # gradient split evenly among ties, as torch.amax/amin
    x = ins[0]
    dim, keep = kw["dim"], kw["keepdim"]
    o = _expand_reduced(out, x.shape, dim, keep) if out is not None else None
    if o is None:  # create_graph recomputation passes out
        o = _expand_reduced(call(AMAX, (x,), kw), x.shape, dim, keep)
    mask = (x == o)
    cnt = np.sum(mask, axis=dim, keepdims=True)
    return (_expand_reduced(g, x.shape, dim, keep) * mask / cnt,)
AMAX = Rule("amax", _amax_f, _amax_b, save_out=True)


def _maxdim_f(ins, kw):
    x = ins[0]
    d = kw["dim"]
    idx = np.argmax(x, axis=d) if kw["max"] else np.argmin(x, axis=d)
    # argmax picks the first NaN too, matching torch's NaN-propagation
    idx = np.expand_dims(idx, d)
    kw["idx"] = idx
    vals = np.take_along_axis(x, idx, axis=d)
    return vals if kw["keepdim"] else np.squeeze(vals, d)


def _maxdim_b(g, out, ins, kw, needs):
    x = ins[0]
    d = kw["dim"]
    if not kw["keepdim"]:
        g = np.expand_dims(g, d)
    return (call(SCATTER_NEW, (g,), {"shape": x.shape, "dim": d, "index": kw["idx"]}),)
MAX_DIM = Rule("max_dim", _maxdim_f, _maxdim_b, needs_inputs=False)


def _scatter_new_f(ins, kw):
    g = ins[0]
    z = np.zeros(kw["shape"], dtype=g.dtype)
    np.put_along_axis(z, kw["index"], g, axis=kw["dim"])
    return z


def _scatter_new_b(g, out, ins, kw, needs):
    return (call(TAKE_ALONG, (g,), {"index": kw["index"], "dim": kw["dim"]}),)
SCATTER_NEW = Rule("scatter", _scatter_new_f, _scatter_new_b, needs_inputs=False)


def _logsumexp_f(ins, kw):
    x = ins[0]
    d = kw["dim"]
    m = np.max(x, axis=d, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=d, keepdims=True)) + m
    return s if kw["keepdim"] else np.squeeze(s, axis=d)


def _logsumexp_b(g, out, ins, kw, needs):
    x = ins[0]
    d, keep = kw["dim"], kw["keepdim"]
    o = out if out is not None else call(LOGSUMEXP, (x,), kw)
    return (_expand_reduced(g, x.shape, d, keep) * np.exp(x - _expand_reduced(o, x.shape, d, keep)),)
LOGSUMEXP = Rule("logsumexp", _logsumexp_f, _logsumexp_b, save_out=True)


def _prod_f(ins, kw):
    return np.prod(ins[0], axis=kw["dim"], keepdims=kw["keepdim"])


def _prod_b(g, out, ins, kw, needs):
    # product of all the other elements, exact even with zeros
    x = ins[0]
    d = kw["dim"]
    ge = _expand_reduced(g, x.shape, d, kw["keepdim"])
    if d is None:
        flat = np.reshape(x, (-1,))
        others = _prod_others(flat, 0)
        return (ge * np.reshape(others, x.shape),)
    return (ge * _prod_others(x, d[0]),)


def _prod_others(x, axis):
    """prod over ``axis`` of all elements but each one: exclusive cumprods."""
    n = x.shape[axis]
    ones_shape = list(x.shape)
    ones_shape[axis] = 1
    one = np.ones(tuple(ones_shape), dtype=x.dtype)
    left = np.concatenate([one, call(CUMPROD, (x,), {"dim": axis})], axis=axis)
    rev = np.flip(x, axis=axis)
    right = np.flip(np.concatenate([one, call(CUMPROD, (rev,), {"dim": axis})], axis=axis), axis=axis)
    idx_l = [slice(None)] * x.ndim
    idx_r = [slice(None)] * x.ndim
    idx_l[axis] = slice(0, n)
    idx_r[axis] = slice(1, n + 1)
    return left[tuple(idx_l)] * right[tuple(idx_r)]
PROD = Rule("prod", _prod_f, _prod_b)


def _cumsum_b(g, out, ins, kw, needs):
    d = kw["dim"]
    return (np.flip(call(CUMSUM, (np.flip(g, axis=d),), kw), axis=d),)
CUMSUM = Rule("cumsum", lambda ins, kw: np.cumsum(ins[0], axis=kw["dim"]), _cumsum_b, needs_inputs=False)


def _cumprod_b(g, out, ins, kw, needs):
    x = ins[0]
    d = kw["dim"]
    if isinstance(x, np.ndarray) and np.all(x != 0):
        # d out_j / d x_i = out_j / x_i for j >= i: a reversed cumsum
        rc = np.flip(np.cumsum(np.flip(g * out, axis=d), axis=d), axis=d)
        return (rc / x,)
    # exact with zeros (and differentiable): replace x_i by 1 and take the cumprod
    n = x.shape[d]
    mshape = [1] * x.ndim
    mshape[d] = n
    parts = []
    for i in range(n):
        onehot = (np.arange(n) == i).reshape(mshape)
        c = call(CUMPROD, (np.where(onehot, 1.0, x),), kw)
        after = (np.arange(n) >= i).reshape(mshape)
        parts.append(np.sum(g * c * after, axis=d, keepdims=True))
    return (np.concatenate(parts, axis=d),)


CUMPROD = Rule("cumprod", lambda ins, kw: np.cumprod(ins[0], axis=kw["dim"]), _cumprod_b, save_out=True)


def _norm_f(ins, kw):
    x, p, d = ins[0], kw["p"], kw["dim"]
    keep = kw["keepdim"]
    if p == 2:
        return np.sqrt(np.sum(x * x, axis=d, keepdims=keep))
    if p == math.inf:
        return np.max(np.abs(x), axis=d, keepdims=keep)
    if p == -math.inf:
        return np.min(np.abs(x), axis=d, keepdims=keep)
    if p == 0:
        return np.sum(x != 0, axis=d, keepdims=keep).astype(x.dtype)
    if p == 1:
        return np.sum(np.abs(x), axis=d, keepdims=keep)
    return np.sum(np.abs(x) ** p, axis=d, keepdims=keep) ** (1.0 / p)


def _norm_b(g, out, ins, kw, needs):
    x, p, d, keep = ins[0], kw["p"], kw["dim"], kw["keepdim"]
    o = out if out is not None else call(NORM, (x,), kw)
    oe = _expand_reduced(o, x.shape, d, keep)
    ge = _expand_reduced(g, x.shape, d, keep)
    if p == 2:
        safe = np.where(oe == 0, 1.0, oe)
        return (np.where(oe == 0, 0.0 * ge, ge * x / safe),)
    if p == 1:
        return (ge * np.sign(x),)
    if p == 0:
        return (0.0 * ge,)
    if p in (math.inf, -math.inf):
        mask = np.abs(x) == oe
        cnt = np.sum(mask, axis=d, keepdims=True)
        return (ge * np.sign(x) * mask / cnt,)
    safe = np.where(oe == 0, 1.0, oe)
    return (np.where(oe == 0, 0.0 * ge, ge * np.sign(x) * np.abs(x) ** (p - 1) / safe ** (p - 1)),)
NORM = Rule("norm", _norm_f, _norm_b, save_out=True)


def _last(x: Any, d: int) -> bool:
    """Whether ``d`` is the last axis of array ``x`` (where ``retrograd.kernels`` has fused rows)."""
    return isinstance(x, np.ndarray) and x.ndim > 0 and d in (-1, x.ndim - 1)


def _softmax_f(ins, kw):
    x = ins[0]
    d = kw["dim"]
    if _last(x, d):
        return kernels.softmax(x)
    e = np.exp(x - np.max(x, axis=d, keepdims=True))
    e /= np.sum(e, axis=d, keepdims=True)
    return e


def _softmax_b(g, out, ins, kw, needs):
    y = out if out is not None else call(SOFTMAX, ins, kw)
    if _last(y, kw["dim"]) and isinstance(g, np.ndarray):
        return (kernels.softmax_backward(y, g),)
    gy = g * y
    return (gy - y * np.sum(gy, axis=kw["dim"], keepdims=True),)
SOFTMAX = Rule("softmax", _softmax_f, _softmax_b, save_out=True, needs_inputs=False)


def _log_softmax_f(ins, kw):
    x = ins[0]
    d = kw["dim"]
    if _last(x, d):
        return kernels.log_softmax(x)
    s = x - np.max(x, axis=d, keepdims=True)
    s -= np.log(np.sum(np.exp(s), axis=d, keepdims=True))
    return s


def _log_softmax_b(g, out, ins, kw, needs):
    y = out if out is not None else call(LOG_SOFTMAX, ins, kw)
    if _last(y, kw["dim"]) and isinstance(g, np.ndarray):
        return (kernels.log_softmax_backward(y, g),)
    return (g - np.exp(y) * np.sum(g, axis=kw["dim"], keepdims=True),)
LOG_SOFTMAX = Rule("log_softmax", _log_softmax_f, _log_softmax_b, save_out=True, needs_inputs=False)


# ============================================================== shape and movement
RESHAPE = Rule("reshape", lambda ins, kw: np.reshape(ins[0], kw["shape"]),
               lambda g, out, ins, kw, needs: (np.reshape(g, ins[0].shape),), needs_inputs=False)


def _permute_b(g, out, ins, kw, needs):
    return (np.transpose(g, tuple(np.argsort(kw["dims"]))),)
PERMUTE = Rule("permute", lambda ins, kw: np.transpose(ins[0], kw["dims"]), _permute_b, needs_inputs=False)
EXPAND = Rule("expand", lambda ins, kw: np.broadcast_to(ins[0], kw["shape"]),
              lambda g, out, ins, kw, needs: (g,), needs_inputs=False)  # engine unbroadcasts


def _flip_b(g, out, ins, kw, needs):
    return (np.flip(g, axis=kw["dims"]),)
FLIP = Rule("flip", lambda ins, kw: np.flip(ins[0], axis=kw["dims"]).copy(), _flip_b, needs_inputs=False)


def _roll_b(g, out, ins, kw, needs):
    sh = kw["shifts"]
    neg = tuple(-s for s in sh) if isinstance(sh, tuple) else -sh
    return (np.roll(g, neg, axis=kw["dims"]),)
ROLL = Rule("roll", lambda ins, kw: np.roll(ins[0], kw["shifts"], axis=kw["dims"]), _roll_b,
            needs_inputs=False)


def _tile_f(ins, kw):
    return np.tile(ins[0], kw["reps"])


def _tile_b(g, out, ins, kw, needs):
    shape = ins[0].shape
    reps = kw["reps"]  # same length as shape (tensor.py pads it)
    inter = []
    for r, s in zip(reps, shape):
        inter += [r, s]
    g = np.reshape(g, tuple(inter))
    return (np.sum(g, axis=tuple(range(0, 2 * len(shape), 2))),)
TILE = Rule("repeat", _tile_f, _tile_b, needs_inputs=False)


def _cat_f(ins, kw):
    return np.concatenate(ins, axis=kw["dim"])


def _cat_b(g, out, ins, kw, needs):
    d = kw["dim"]
    res = []
    start = 0
    for x, need in zip(ins, needs):
        n = x.shape[d]
        if need:
            sl = [slice(None)] * g.ndim
            sl[d] = slice(start, start + n)
            res.append(g[tuple(sl)])
        else:
            res.append(None)
        start += n
    return tuple(res)
CAT = Rule("cat", _cat_f, _cat_b, needs_inputs=False)


_NP_PAD_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_f(ins, kw):
    return np.pad(ins[0], kw["width"], mode=_NP_PAD_MODE[kw["mode"]],
                  **({"constant_values": kw["value"]} if kw["mode"] == "constant" else {}))


def _pad_b(g, out, ins, kw, needs):
    mode = kw["mode"]
    if mode != "constant":
        return (call(PAD_ADJOINT, (g,), kw | {"shape": ins[0].shape}),)
    sl = tuple(slice(lo, g.shape[i] - hi) for i, (lo, hi) in enumerate(kw["width"]))
    return (g[sl],)


def _pad_adjoint_f(ins, kw):
    # adjoint of reflect/replicate/circular padding: pad a one-hot index map, then scatter-add
    shape = kw["shape"]
    idx = np.arange(math.prod(shape)).reshape(shape)
    src = np.pad(idx, kw["width"], mode=_NP_PAD_MODE[kw["mode"]])
    kw["src"] = src
    g = ins[0]
    flat = np.zeros(math.prod(shape), dtype=g.dtype)
    np.add.at(flat, src.reshape(-1), g.reshape(-1))
    return flat.reshape(shape)


def _pad_adjoint_b(g, out, ins, kw, needs):
    return (np.reshape(g, (-1,))[kw["src"]],) if isinstance(g, np.ndarray) else \
        (call(INDEX, (np.reshape(g, (-1,)),), {"index": kw["src"]}),)
PAD_ADJOINT = Rule("pad_backward", _pad_adjoint_f, _pad_adjoint_b, needs_inputs=False)
PAD = Rule("pad", _pad_f, _pad_b, needs_inputs=False)


def _tri_f(ins, kw):
    return (np.tril if kw["lower"] else np.triu)(ins[0], kw["k"])


def _tri_b(g, out, ins, kw, needs):
    return (call(TRI, (g,), kw),)
TRI = Rule("tril", _tri_f, _tri_b, needs_inputs=False)


# ============================================================== indexing
def _index_f(ins, kw):
    out = ins[0][kw["index"]]
    if kw["advanced"] and type(out) is np.ndarray and not out.flags.c_contiguous:
        out = np.ascontiguousarray(out)  # NumPy may lay a gathered dim out first; torch's result is contiguous
    return out


def _index_b(g, out, ins, kw, needs):
    return (call(INDEX_ADD_NEW, (g,), {"index": kw["index"], "shape": ins[0].shape,
                                       "advanced": kw["advanced"]}),)
def _index_scatter(acc, g, kw):
    if kw["advanced"]:
        np.add.at(acc, kw["index"], g)  # repeated indices accumulate
    else:
        acc[kw["index"]] += g
INDEX = Rule("index", _index_f, _index_b, needs_inputs=False, scatter=_index_scatter)


def _index_add_new_f(ins, kw):
    g = ins[0]
    z = np.zeros(kw["shape"], dtype=g.dtype)
    if kw.get("advanced", True):
        np.add.at(z, kw["index"], g)  # repeated indices accumulate
    else:
        z[kw["index"]] = g
    return z


def _index_add_new_b(g, out, ins, kw, needs):
    return (call(INDEX, (g,), {"index": kw["index"], "advanced": kw.get("advanced", True)}),)
INDEX_ADD_NEW = Rule("index_put", _index_add_new_f, _index_add_new_b, needs_inputs=False)


def _take_along_f(ins, kw):
    return np.take_along_axis(ins[0], kw["index"], axis=kw["dim"])


def _take_along_b(g, out, ins, kw, needs):
    return (call(SCATTER_ADD_NEW, (g,), {"index": kw["index"], "dim": kw["dim"], "shape": ins[0].shape}),)
TAKE_ALONG = Rule("gather", _take_along_f, _take_along_b, needs_inputs=False)


def _scatter_add_new_f(ins, kw):
    g = ins[0]
    z = np.zeros(kw["shape"], dtype=g.dtype)
    _scatter_add_into(z, kw["index"], g, kw["dim"])
    return z


def _scatter_add_into(z, index, src, dim):
    """z.scatter_add_(dim, index, src) with NumPy: repeated indices accumulate."""
    idx = list(np.indices(index.shape, sparse=True))
    idx[dim] = index
    sl = tuple(slice(0, s) for s in index.shape)
    np.add.at(z, tuple(idx), src[sl])


def _scatter_add_new_b(g, out, ins, kw, needs):
    return (call(TAKE_ALONG, (g,), {"index": kw["index"], "dim": kw["dim"]}),)
SCATTER_ADD_NEW = Rule("scatter_add_backward", _scatter_add_new_f, _scatter_add_new_b, needs_inputs=False)


def _scatter_add_f(ins, kw):
    x, src = ins
    z = x.copy()
    _scatter_add_into(z, kw["index"], src, kw["dim"])
    return z


def _scatter_add_b(g, out, ins, kw, needs):
    gs = None
    if needs[1]:
        index, d = kw["index"], kw["dim"]
        if any(i != d and si != sg for i, (si, sg) in enumerate(zip(index.shape, g.shape))):
            # index smaller than self outside dim: only that extent of g was scattered into
            g_read = g[tuple(slice(0, si) if i != d else slice(None) for i, si in enumerate(index.shape))]
        else:
            g_read = g
        gs = call(TAKE_ALONG, (g_read,), {"index": index, "dim": d})
        if gs.shape != ins[1].shape:  # index smaller than src: the rest of src gets zero
            gs = call(PAD, (gs,), {"width": [(0, s - i) for s, i in zip(ins[1].shape, gs.shape)],
                                  "mode": "constant", "value": 0})
    return (g if needs[0] else None), gs
SCATTER_ADD = Rule("scatter_add", _scatter_add_f, _scatter_add_b, needs_inputs=False)


def _masked_fill_f(ins, kw):
    return np.where(kw["mask"], np.asarray(kw["value"], dtype=ins[0].dtype), ins[0])


def _masked_fill_b(g, out, ins, kw, needs):
    return (np.where(kw["mask"], 0.0 * g, g),)
MASKED_FILL = Rule("masked_fill", _masked_fill_f, _masked_fill_b, needs_inputs=False)


# bfloat16 (see ``lowp_twin``): data movement runs on the bfloat16 arrays as it is (exact; views stay
# views); a view whose gradient is a sum or a copy whose gradient is a sum runs only its backward in float32
for _r in (CAST, CLONE, RESHAPE, PERMUTE, FLIP, ROLL, CAT, PAD, TRI, INDEX, WHERE, MASKED_FILL, MAXIMUM, MINIMUM,
           NEG, ABS, RELU, AMAX, MAX_DIM, TAKE_ALONG, SIGN, FLOOR, CEIL, TRUNC):
    _r.lowp = "native"
for _r in (EXPAND, TILE):
    _r.lowp = "backward"
del _r
_ROUNDED_SCALAR = frozenset((ADD_S, SUB_S, RSUB_S))
PROD.lowp = "backward"  # PyTorch multiplies bfloat16 products in bfloat16 (each rounded), as NumPy does


def _f32(x: Any) -> Any:
    return np.asarray(x, np.float32)


# bfloat16 forwards whose PyTorch kernels round between steps (measured bit for bit against PyTorch 2.13)
def _log_softmax_bf16(ins, kw):
    """PyTorch keeps the sum of exponentials and its log in bfloat16 before the subtraction."""
    x, d = _f32(ins[0]), kw["dim"]
    s = x - np.max(x, axis=d, keepdims=True)
    lse = B.round_bfloat16(np.log(B.round_bfloat16(np.sum(np.exp(s), axis=d, keepdims=True))))
    return (s - lse).astype(_BF16)


def _logsumexp_bf16(ins, kw):
    """PyTorch's logsumexp is a composite of bfloat16 ops: amax, sub, exp, sum, log, add."""
    x, d = ins[0], kw["dim"]
    m = np.max(x, axis=d, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(_BF16)
    e = np.exp(_f32(x - m)).astype(_BF16)
    s = np.log(_f32(np.sum(_f32(e), axis=d, keepdims=True).astype(_BF16))).astype(_BF16) + m
    return s if kw["keepdim"] else np.squeeze(s, axis=d)


def _rdiv_bf16(ins, s):
    """``number / tensor`` is ``tensor.reciprocal() * number`` in PyTorch: two bfloat16 ops."""
    return (_f32(np.reciprocal(_f32(ins[0])).astype(_BF16)) * np.float32(s)).astype(_BF16)


_LOWP_FORWARD = {LOG_SOFTMAX: _log_softmax_bf16, LOGSUMEXP: _logsumexp_bf16, RDIV_S: _rdiv_bf16}
