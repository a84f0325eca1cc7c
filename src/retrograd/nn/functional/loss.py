"""Losses, with PyTorch's ``reduction`` semantics: regression losses, the fused log-softmax + NLL of
``cross_entropy`` (a ``Rule``), NLL, binary cross-entropy, KL divergence, margin and embedding losses,
Poisson and Gaussian NLL, focal loss and CTC (forward-backward in log space, a ``Rule``)."""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ...amp.autocast_mode import fp32_op
from ... import backend as B
from ... import kernels
from ... import ops as O
from ...ops import Rule, call
from ...tensor import Tensor, _as_tensor, where, wrap_array
from ...tensor_inplace import _torch_name
from ._args import _float_input
from .activation import logsigmoid


_REDUCTIONS = ("none", "mean", "sum")
_INT64 = np.dtype(np.int64)


def _check_reduction(reduction: str, allowed: tuple = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction; expected one of {allowed}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _pointwise_pair(input: Tensor, target: Any, op: str) -> tuple[Tensor, Tensor]:  # noqa: A002
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    if tuple(t.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({tuple(t.shape)}) that is different to the input size "
                      f"({tuple(input.shape)}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)
    x = _float_input(input, op)
    if t.dtype != x.dtype:
        t = t.to(x.dtype)
    return x, t


@fp32_op  # PyTorch's CPU autocast runs it in float32
def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "mse_loss")
    d = x - t
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "l1_loss")
    loss = (x - t).abs()
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``; ``beta=0`` is L1."""
    _check_reduction(reduction)
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    x, t = _pointwise_pair(input, target, "smooth_l1_loss")
    d = x - t
    ad = d.abs()
    if beta == 0:
        return _reduce(ad, reduction)
    loss = where(ad < beta, (0.5 / beta) * d * d, ad - 0.5 * beta)
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,  # noqa: A002
               weight: Tensor | None = None) -> Tensor:
    """``0.5 d**2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``."""
    _check_reduction(reduction)
    if delta <= 0:
        raise RuntimeError(f"huber_loss: delta must be positive, got {delta}")
    x, t = _pointwise_pair(input, target, "huber_loss")
    d = x - t
    ad = d.abs()
    loss = where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- fused log-softmax + NLL
def _ce_f(ins, kw):
    """Rows ``(M, C)`` of logits; per-row loss
    ``(1-eps) w_i (-logp[i, t_i]) + eps/C m_i sum_c W_c (-logp[i, c])``, then reduced."""
    x = ins[0]
    t, wi, mi, W, eps = kw["target"], kw["w_i"], kw["m_i"], kw["W"], kw["eps"]
    if kw.get("bfloat16"):  # PyTorch: log_softmax's bfloat16 kernel (see ops._log_softmax_bf16), then nll_loss
        s = x - x.max(axis=1, keepdims=True)
        lse = B.round_bfloat16(np.log(B.round_bfloat16(np.exp(s).sum(axis=1, keepdims=True))))
        logp = B.round_bfloat16(s - lse)
    else:
        logp = kernels.log_softmax(x)  # s - log(sum(exp(s))), s = x - max(x), row by row
    # (small ones: exp_rows' own NumPy call, without its frame)
    kw["p"] = np.exp(logp) if logp.size < 2 * kernels.MIN_PER_THREAD else kernels.exp_rows(logp)
    picked = logp[np.arange(len(t)), t]
    loss = -(1.0 - eps) * picked if wi is None else -(1.0 - eps) * wi * picked
    if eps:
        smooth = -(logp @ W if W is not None else np.sum(logp, axis=1))
        loss = loss + (eps / x.shape[1]) * (smooth if mi is None else mi * smooth)
    red = kw["reduction"]
    if red == "none":
        return loss.astype(x.dtype, copy=False)
    if kw.get("bfloat16") and not eps:
        return _nll_reduce_bf16(loss, red, kw)
    total = np.add.reduce(loss)  # loss.sum()'s loop, without its Python wrapper
    if red == "mean":
        if kw["denom"]:
            total = total / kw["denom"]
        else:  # every target ignored: 0/0 = nan, as PyTorch
            with np.errstate(invalid="ignore", divide="ignore"):
                total = total / kw["denom"]
    return np.asarray(total, dtype=x.dtype)


def _nll_reduce_bf16(loss: np.ndarray, red: str, kw: dict) -> np.ndarray:
    """PyTorch's bfloat16 nll_loss reduction (LossNLL.cpp): the per-row losses, rounded to bfloat16,
    added into 8 levels of bfloat16 partial sums: row 0 lands in the top level; the rest run in blocks of
    2**max(4, ceil(log2 N) // 8) summed in order, each full block passed up a level (where blocks of
    blocks form the same way) and a part-full one left where it is; then the levels added in order. The
    mean divides by the weight total in bfloat16 (333 rows divide by 332, as PyTorch)."""
    r = B.round_bfloat16
    vals = r(loss.ravel())
    n, levels = len(vals), 8
    step = 1 << (max(4, int(math.ceil(math.log2(n))) // levels) if n > 1 else 4)
    part = np.zeros(levels, np.float32)
    seq = vals[1:]
    for lev in range(levels - 1):
        k = len(seq) // step
        blocks = seq[:k * step].reshape(k, step)
        acc = np.zeros(k, np.float32)
        for c in range(step):  # a block's additions in order, all blocks at once
            acc = r(acc + blocks[:, c])
        rest = np.zeros(1, np.float32)
        for v in seq[k * step:]:
            rest = r(rest + v)
        part[lev] = rest[0]
        seq = acc
    top = vals[:1].copy() if n else np.zeros(1, np.float32)
    for v in seq:
        top = r(top + v)
    part[levels - 1] = top[0]
    total = np.zeros(1, np.float32)
    for v in part:
        total = r(total + v)
    if red == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / kw["denom_bf16"]
    return np.asarray(total[0], np.float32)


def _nll_bf16_f(ins, kw):
    """PyTorch's bfloat16 nll_loss (every target valid, input ``(N, C)``): ``-x[i, t_i] * w_i`` rounded,
    reduced as ``_nll_reduce_bf16``."""
    x, t, wi = ins[0].astype(np.float32), kw["target"], kw["w_i"]
    picked = -x[np.arange(len(t)), t]
    vals = picked if wi is None else B.round_bfloat16(picked * wi)
    return _nll_reduce_bf16(vals, kw["reduction"], kw).astype(B.bfloat16)


def _nll_bf16_b(g, out, ins, kw, needs):
    """``-(grad / total_weight) * w_i`` at each target, each op rounded to bfloat16 (PyTorch's kernel)."""
    x, t, wi = ins[0], kw["target"], kw["w_i"]
    gv = np.asarray(g, dtype=np.float32).reshape(1)
    if kw["reduction"] == "mean":
        gv = B.round_bfloat16(gv / kw["denom_bf16"])
    col = -gv if wi is None else B.round_bfloat16(wi * -gv)
    grad = np.zeros(x.shape, np.float32)
    grad[np.arange(len(t)), t] = col
    return (grad.astype(B.bfloat16),)
NLL_BF16 = Rule("nll_loss", _nll_bf16_f, _nll_bf16_b, needs_inputs=False, lowp="native")


# the probabilities the forward saved, with softmax's derivative (which reads only its output): the
# differentiable backward (create_graph) takes p from here, since the node keeps only an edge to the
# logits (needs_inputs=False) and their values may be a NaN stand-in by then
_SAVED_SOFTMAX = Rule("softmax", lambda ins, kw: kw["p"], O.SOFTMAX.backward, save_out=True, needs_inputs=False)


def _ce_b(g, out, ins, kw, needs):
    x = ins[0]
    t, wi, mi, W, eps = kw["target"], kw["w_i"], kw["m_i"], kw["W"], kw["eps"]
    c = x.shape[1]
    p = kw["p"] if isinstance(x, np.ndarray) else call(_SAVED_SOFTMAX, (x,), {"dim": 1, "p": kw["p"]})
    red = kw["reduction"]
    gi = g if red == "none" else (g / kw["denom"] if red == "mean" else g)
    if kw.get("bfloat16") and red == "mean" and isinstance(g, np.ndarray):
        gi = B.round_bfloat16(g / kw["denom_bf16"])  # nll_loss_backward: grad / total_weight in bfloat16
    gi = np.reshape(gi, (-1, 1)) if red == "none" else gi
    if wi is None:  # every target valid, no class weights (cross_entropy's common case)
        if not eps and isinstance(p, np.ndarray):
            return (kernels.cross_entropy_grad(p, t, gi),)
        wi = mi = np.ones(len(t), p.dtype)
    sw = c if W is None else float(np.sum(W))
    coef = ((1.0 - eps) * wi + (eps / c) * mi * sw).astype(p.dtype)[:, None]
    onehot = (np.arange(c)[None, :] == t[:, None])
    sub = ((1.0 - eps) * wi)[:, None] * onehot
    if eps:
        sub = sub + ((eps / c) * mi)[:, None] * (np.ones(c) if W is None else W)[None, :]
    return (gi * (p * coef - sub.astype(p.dtype)),)
CROSS_ENTROPY = Rule("cross_entropy", _ce_f, _ce_b, needs_inputs=False)


def _class_rows(input: Tensor, target: Any, op: str) -> tuple[Tensor, np.ndarray, tuple, int]:  # noqa: A002
    """Logits ``(N, C, d1, ...)``/``(C,)`` as rows ``(M, C)``, targets as ``(M,)`` and the output shape."""
    t = target._array if isinstance(target, Tensor) else np.asarray(target)
    if input.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    if t.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: expected target of integer class indices (int64) of shape "
                           f"{(input.shape[:1] + input.shape[2:]) if input.ndim > 1 else ()} or class "
                           f"probabilities of the input's shape {tuple(input.shape)}; got a "
                           f"{B.dtype_name(t.dtype)} target of shape {tuple(t.shape)}")
    want = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if tuple(t.shape) != tuple(want):
        raise ValueError(f"{op}: expected target of shape {tuple(want)} for input of shape "
                         f"{tuple(input.shape)}, got target of shape {tuple(t.shape)}")
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    if input.ndim == 1:
        rows = input.reshape(1, c)
    elif input.ndim == 2:
        rows = input
    else:
        rows = input.movedim(1, -1).reshape(-1, c)
    return rows, t.reshape(-1).astype(np.int64, copy=False), tuple(want), c


def _all_targets_valid(t: np.ndarray, c: int, ignore_index: int) -> bool:
    """Whether every target is a class in ``[0, c)`` and none can equal ``ignore_index``
    (two reductions instead of ``_check_targets``' masks; False sends the caller there)."""
    if not t.size:
        return False
    lo, hi = np.minimum.reduce(t), np.maximum.reduce(t)  # (t.min() and t.max() run a Python wrapper each)
    return 0 <= lo and hi < c and not lo <= ignore_index <= hi


def _check_targets(t: np.ndarray, c: int, ignore_index: int, op: str) -> np.ndarray:
    valid = t != ignore_index
    tv = t[valid]
    if tv.size and (tv.min() < 0 or tv.max() >= c):
        bad = int(tv.max() if tv.max() >= c else tv.min())
        raise IndexError(f"{op}: target {bad} is out of bounds for {c} classes (expected 0 <= target < {c} "
                         f"or target == ignore_index ({ignore_index}))")
    return valid


def _weights_array(weight: Any, c: int, dtype: np.dtype, op: str) -> np.ndarray | None:
    if weight is None:
        return None
    w = weight._array if isinstance(weight, Tensor) else np.asarray(weight)
    if w.shape != (c,):
        raise RuntimeError(f"{op}: weight tensor should be defined either for all {c} classes or no "
                           f"classes but got weight tensor of shape {tuple(w.shape)}")
    return w.astype(dtype, copy=False)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Logits ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)`` against class indices ``(N, d1, ...)``
    (fused log-softmax + NLL; mean divides by the summed weights of non-ignored targets) or
    class probabilities of the input's shape."""
    if reduction not in _REDUCTIONS:
        _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    x = input if isinstance(input, Tensor) and input._array.dtype.kind in "fV" else _float_input(input, "cross_entropy")
    tgt = target if isinstance(target, Tensor) else _as_tensor(target)
    xa, ta = x._array, tgt._array
    if xa.ndim == 2 and ta.dtype is _INT64 and ta.shape == xa.shape[:1]:
        # (N, C) logits and int64 class indices: _class_rows' answers read off the arrays here (a classifier's
        # step, where its frame and the Tensor properties cost more than the small op itself)
        rows, t, out_shape, c = x, ta, ta.shape, xa.shape[1]
    else:
        if tgt.dtype.kind in "fV" and tuple(tgt.shape) == tuple(x.shape):
            return _cross_entropy_probs(x, tgt.to(x.dtype), weight, reduction, label_smoothing)
        rows, t, out_shape, c = _class_rows(x, tgt, "cross_entropy")
    W = None if weight is None else _weights_array(weight, c, xa.dtype, "cross_entropy")
    if W is None and _all_targets_valid(t, c, ignore_index):
        # w_i = m_i = 1 for every row: None spares the rule the multiplications by one
        kw = {"target": t, "w_i": None, "m_i": None, "W": None, "eps": float(label_smoothing),
              "reduction": reduction, "denom": float(t.size)}
    else:
        valid = _check_targets(t, c, ignore_index, "cross_entropy")
        tsafe = np.where(valid, t, 0)
        mi = valid.astype(xa.dtype)
        wi = mi if W is None else W[tsafe] * mi
        kw = {"target": tsafe, "w_i": wi, "m_i": mi, "W": W, "eps": float(label_smoothing),
              "reduction": reduction, "denom": float(np.sum(wi, dtype=np.float64))}
    if xa.dtype == B.bfloat16:
        kw["bfloat16"] = True
        kw["denom_bf16"] = np.float32(B.round_bfloat16(np.array([kw["denom"]], np.float32))[0])
    out = Tensor._apply(CROSS_ENTROPY, (rows,), kw)
    return out.reshape(out_shape) if reduction == "none" else out


def _cross_entropy_probs(x: Tensor, t: Tensor, weight: Any, reduction: str, eps: float) -> Tensor:
    cdim = 1 if x.ndim > 1 else 0
    c = x.shape[cdim]
    logp = x.log_softmax(cdim)
    if eps:
        t = t * (1.0 - eps) + eps / c
    prod = logp * t
    if weight is not None:
        w = _weights_array(weight, c, x.dtype, "cross_entropy")
        prod = prod * wrap_array(w.reshape((c,) + (1,) * (x.ndim - 2)) if cdim else w)
    loss = -prod.sum(cdim)
    if reduction == "mean":
        return loss.sum() / (x.numel() // c) if x.ndim > 1 else loss.sum()
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,  # noqa: A002
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``-input[i, t_i] * weight[t_i]`` for log-probabilities ``(N, C, d1, ...)``; mean divides by
    the summed weights of non-ignored targets."""
    _check_reduction(reduction)
    x = _float_input(input, "nll_loss")
    rows, t, out_shape, c = _class_rows(x, target, "nll_loss")
    valid = _check_targets(t, c, ignore_index, "nll_loss")
    W = _weights_array(weight, c, x.dtype, "nll_loss")
    tsafe = np.where(valid, t, 0)
    if x.dtype == B.bfloat16 and reduction != "none" and x.ndim <= 2 and valid.all():
        wi = None if W is None else W[tsafe].astype(np.float32)
        kw = {"target": tsafe, "w_i": wi, "reduction": reduction}
        kw["denom_bf16"] = (np.float32(B.round_bfloat16(np.array([len(t)], np.float32))[0]) if wi is None
                            else _nll_reduce_bf16(wi, "sum", kw))
        return Tensor._apply(NLL_BF16, (rows,), kw)
    mi = valid.astype(x.dtype)
    wi = mi if W is None else W[tsafe] * mi
    picked = rows.gather(1, wrap_array(tsafe[:, None]))[:, 0]
    loss = -picked * wrap_array(wi)
    if reduction == "none":
        return loss.reshape(out_shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wrap_array(np.asarray(np.sum(wi), dtype=x.dtype))


@fp32_op  # PyTorch's CPU autocast runs it in float32
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                         size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``-w (t log x + (1 - t) log(1 - x))`` with each log clamped to >= -100 (PyTorch)."""
    _check_reduction(reduction)
    x = _float_input(input, "binary_cross_entropy")
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(f"Using a target size ({tuple(t.shape)}) that is different to the input size "
                         f"({tuple(x.shape)}) is deprecated. Please ensure they have the same size.")
    if t.dtype != x.dtype:  # PyTorch refuses a target of another dtype here (not in the _with_logits form)
        raise RuntimeError(f"binary_cross_entropy: Found dtype {_torch_name(t._array.dtype)} but expected "
                           f"{_torch_name(x._array.dtype)} (the target must have the input's dtype)")
    if x.numel() and (np.any(x._array < 0) or np.any(x._array > 1)):
        raise RuntimeError("binary_cross_entropy: all elements of input should be between 0 and 1 "
                           "(apply sigmoid first, or use binary_cross_entropy_with_logits)")
    loss = -(t * x.log().clamp(min=-100.0) + (1 - t) * (1 - x).log().clamp(min=-100.0))
    if weight is not None:  # the loss keeps the input's dtype, whatever the weight's (as PyTorch)
        loss = loss * (weight.to(x.dtype) if isinstance(weight, Tensor) else weight)
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                     size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """``(1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x)``, times ``weight``: finite for any logit."""
    _check_reduction(reduction)
    x = _float_input(input, "binary_cross_entropy_with_logits")
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(f"Target size ({tuple(t.shape)}) must be the same as input size ({tuple(x.shape)})")
    t = t.to(x.dtype)
    neg_log_sig = (-x).softplus()  # -log(sigmoid(x)), stable for any magnitude
    if pos_weight is not None:
        lw = (pos_weight - 1) * t + 1
        loss = (1 - t) * x + lw * neg_log_sig
    else:
        loss = (1 - t) * x + neg_log_sig
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def kl_div(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """Pointwise ``target * (log(target) - input)`` with ``input`` log-probabilities
    (``exp(t) * (t - input)`` when ``log_target``); ``'batchmean'`` divides the sum by ``N``."""
    _check_reduction(reduction, _REDUCTIONS + ("batchmean",))
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      UserWarning, stacklevel=2)
    x = _float_input(input, "kl_div")
    t = (target if isinstance(target, Tensor) else _as_tensor(target)).to(x.dtype)
    if log_target:
        loss = t.exp() * (t - x)
    else:
        pos = t > 0
        loss = t * where(pos, t, 1.0).log() - t * x
    if reduction == "batchmean":
        return loss.sum() / x.shape[0] if x.ndim else loss.sum()
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``1 - cos(x1, x2)`` where ``target == 1``, ``max(0, cos - margin)`` where ``target == -1``;
    inputs ``(N, D)`` or ``(D,)``, ``cos`` with torch's ``1e-12`` added to each squared norm."""
    _check_reduction(reduction)
    if input1.ndim not in (1, 2) or input1.shape != input2.shape:
        raise RuntimeError(f"cosine_embedding_loss: expected two 1-D or 2-D inputs of the same shape, got "
                           f"{tuple(input1.shape)} and {tuple(input2.shape)}")
    x1 = _float_input(input1, "cosine_embedding_loss")
    x2 = input2.to(x1.dtype)
    t = target._array if isinstance(target, Tensor) else np.asarray(target)
    if t.shape != tuple(x1.shape[:-1]):
        raise RuntimeError(f"cosine_embedding_loss: expected target of shape {tuple(x1.shape[:-1])}, got "
                           f"{tuple(t.shape)}")
    eps = 1e-12
    cos = (x1 * x2).sum(-1) / (((x1 * x1).sum(-1) + eps) * ((x2 * x2).sum(-1) + eps)).sqrt()
    zero = wrap_array(np.zeros(cos.shape, dtype=cos.dtype))
    loss = where(wrap_array(t == 1), 1 - cos, zero) + where(wrap_array(t == -1), (cos - margin).clamp(min=0),
                                                            zero)
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``max(0, -target (x1 - x2) + margin)``."""
    _check_reduction(reduction)
    if input1.ndim != input2.ndim or input1.ndim != np.ndim(target):
        raise RuntimeError(f"margin_ranking_loss: all inputs should have the same dimension, got input1 "
                           f"{tuple(input1.shape)}, input2 {tuple(input2.shape)}, target {tuple(np.shape(target))}")
    x1 = _float_input(input1, "margin_ranking_loss")
    t = (target if isinstance(target, Tensor) else _as_tensor(target)).to(x1.dtype)
    return _reduce((-t * (x1 - input2) + margin).clamp(min=0), reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def soft_margin_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,  # noqa: A002
                     reduction: str = "mean") -> Tensor:
    """``log(1 + exp(-target * input))``, as PyTorch computes it (``log1p(exp(.))``)."""
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "soft_margin_loss")
    return _reduce((-t * x).exp().log1p(), reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average: Any = None,  # noqa: A002
                         reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``x`` where ``target == 1``, ``max(0, margin - x)`` where ``target == -1`` (PyTorch's formula: the
    margin term where ``target != 1`` plus ``x`` where ``target != -1``)."""
    _check_reduction(reduction)
    x = _float_input(input, "hinge_embedding_loss")
    t = target._array if isinstance(target, Tensor) else np.asarray(target)
    zero = wrap_array(np.zeros((), dtype=x.dtype))
    loss = where(wrap_array(np.asarray(t != 1)), (margin - x).clamp(min=0), zero) + \
        where(wrap_array(np.asarray(t != -1)), x, zero)
    return _reduce(loss, reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """``-(y log sigmoid(x) + (1 - y) log sigmoid(-x))``, averaged over the classes (last dim), then reduced."""
    _check_reduction(reduction)
    x = _float_input(input, "multilabel_soft_margin_loss")
    t = (target if isinstance(target, Tensor) else _as_tensor(target)).to(x.dtype)
    loss = -(t * logsigmoid(x) + (1 - t) * logsigmoid(-x))
    if weight is not None:
        loss = loss * weight
    c = x.shape[-1] if x.ndim else 1
    return _reduce(loss.sum(dim=x.ndim - 1) / c if x.ndim else loss, reduction)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dim."""
    return (x1 - x2 + eps).norm(p, dim=-1, keepdim=keepdim)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """``max(0, margin + d(a, p) - d(a, n))`` with ``d`` the ``pairwise_distance``; ``swap`` uses
    ``min(d(a, n), d(p, n))``."""
    _check_reduction(reduction)
    if not (anchor.ndim == positive.ndim == negative.ndim) or anchor.ndim not in (1, 2):
        raise RuntimeError(f"triplet_margin_loss: expected anchor, positive and negative of the same rank (1 or 2), "
                           f"got {tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}")
    if margin <= 0:
        raise ValueError(f"triplet_margin_loss: expected margin to be greater than 0, got {margin} instead")
    a = _float_input(anchor, "triplet_margin_loss")
    d_ap = pairwise_distance(a, positive, p, eps)
    d_an = pairwise_distance(a, negative, p, eps)
    if swap:
        d_an = d_an.minimum(pairwise_distance(positive, negative, p, eps))
    return _reduce((d_ap - d_an + margin).clamp(min=0), reduction)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,  # noqa: A002
                     size_average: Any = None, eps: float = 1e-8, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """``exp(x) - t x`` (``log_input``) or ``x - t log(x + eps)``; ``full`` adds Stirling's
    ``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``."""
    _check_reduction(reduction)
    x, t = _pointwise_pair(input, target, "poisson_nll_loss")
    loss = x.exp() - t * x if log_input else x - t * (x + eps).log()
    if full:
        td = t._array
        safe = np.where(td > 1, td, 1.0)
        stirling = np.where(td > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * math.pi * safe), 0.0)
        if t.requires_grad:
            big = wrap_array(td > 1)
            ts = where(big, t, 1.0)
            loss = loss + where(big, ts * ts.log() - ts + 0.5 * (2 * math.pi * ts).log(), 0.0)
        else:
            loss = loss + wrap_array(stirling.astype(x.dtype))
    return _reduce(loss, reduction)


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Any, full: bool = False, eps: float = 1e-6,  # noqa: A002
                      reduction: str = "mean") -> Tensor:
    """``0.5 (log(var) + (x - t)**2 / var)`` (+ ``0.5 log(2 pi)`` if ``full``); ``var`` of the input's
    shape, one dim short, or with one dim of size 1; clamped to ``eps`` without blocking its gradient
    (as torch)."""
    x = _float_input(input, "gaussian_nll_loss")
    v = var if isinstance(var, Tensor) else _as_tensor(np.asarray(var, dtype=x.dtype))
    if tuple(v.shape) != tuple(x.shape):
        if tuple(x.shape[:-1]) == tuple(v.shape):
            v = v.unsqueeze(-1)
        elif x.ndim == v.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1:
            pass
        else:
            raise ValueError(f"gaussian_nll_loss: var is of incorrect size: expected {tuple(x.shape)}, "
                             f"{tuple(x.shape[:-1])} or one dim of size 1, got {tuple(v.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not valid")
    if np.any(v._array < 0):
        raise ValueError("var has negative entry/entries")
    v = v.to(x.dtype)
    # clamp the value but pass the gradient straight through, as torch's in-place clamp under no_grad
    v = v + wrap_array(np.maximum(v._array, eps) - v._array)
    t = target if isinstance(target, Tensor) else _as_tensor(target)
    d = x - t.to(x.dtype)
    loss = 0.5 * (v.log() + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """torchvision's focal loss (Lin et al. 2017): ``BCE-with-logits * (1 - p_t)**gamma``, times
    ``alpha_t`` if ``alpha >= 0``; ``p_t = p t + (1 - p)(1 - t)``, ``p = sigmoid(inputs)``."""
    x = _float_input(inputs, "sigmoid_focal_loss")
    t = (targets if isinstance(targets, Tensor) else _as_tensor(targets)).to(x.dtype)
    p = x.sigmoid()
    ce = binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if reduction == "none":
        return loss
    if reduction in ("mean", "sum"):
        return _reduce(loss, reduction)
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', "
                     "'mean', 'sum'")


# ---------------------------------------------------------------- CTC
def _ctc_f(ins, kw):
    """Per-sample ``-log p(target | input)`` by the forward-backward algorithm in log space over the
    blank-extended label ``l'`` (length ``2S+1``); the gradient with respect to ``log_probs`` is kept."""
    lp = ins[0]  # (T, N, C)
    T, N, C = lp.shape
    ext, il, tl = kw["ext"], kw["il"], kw["tl"]  # ext (N, 2Smax+1)
    S2 = ext.shape[1]
    ninf = -np.inf
    n_idx = np.arange(N)[:, None]
    em = lp[:, n_idx, ext]  # (T, N, S2): emission log-prob of each extended label
    s_idx = np.arange(S2)[None, :]
    valid = s_idx < (2 * tl[:, None] + 1)
    # a skip s-2 -> s is allowed onto a non-blank that differs from the label two back
    skip = np.zeros((N, S2), dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != kw["blank"]) & (ext[:, 2:] != ext[:, :-2])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alpha = np.full((T, N, S2), ninf, dtype=lp.dtype)
        alpha[0, :, 0] = em[0, :, 0]
        if S2 > 1:
            alpha[0, :, 1] = np.where(tl > 0, em[0, :, 1], ninf)
        alpha[0] = np.where(valid, alpha[0], ninf)
        for t in range(1, T):
            a = alpha[t - 1]
            a1 = np.concatenate([np.full((N, 1), ninf, lp.dtype), a[:, :-1]], axis=1)
            a2 = np.where(skip, np.concatenate([np.full((N, 2), ninf, lp.dtype), a[:, :-2]], axis=1), ninf)
            alpha[t] = np.where(valid, np.logaddexp(np.logaddexp(a, a1), a2) + em[t], ninf)
        beta = np.full((T, N, S2), ninf, dtype=lp.dtype)
        last = 2 * tl
        tlast = il - 1
        beta[tlast, np.arange(N), last] = em[tlast, np.arange(N), last]
        has_lab = tl > 0
        beta[tlast[has_lab], np.arange(N)[has_lab], last[has_lab] - 1] = \
            em[tlast[has_lab], np.arange(N)[has_lab], last[has_lab] - 1]
        skip_next = np.zeros((N, S2), dtype=bool)  # from s to s+2 allowed iff skip[s+2]
        skip_next[:, :-2] = skip[:, 2:]
        for t in range(T - 2, -1, -1):
            b = beta[t + 1]
            b1 = np.concatenate([b[:, 1:], np.full((N, 1), ninf, lp.dtype)], axis=1)
            b2 = np.where(skip_next, np.concatenate([b[:, 2:], np.full((N, 2), ninf, lp.dtype)], axis=1), ninf)
            new = np.where(valid, np.logaddexp(np.logaddexp(b, b1), b2) + em[t], ninf)
            active = (t < tlast)[:, None]  # samples whose input ends later take the recursion
            beta[t] = np.where(active, new, beta[t])
        end = alpha[tlast, np.arange(N), last]
        end1 = np.where(has_lab, alpha[tlast, np.arange(N), np.maximum(last - 1, 0)], ninf)
        nll = -np.logaddexp(end, end1)
        # d nll / d lp[t, n, c] = -sum_{s: l'_s = c} exp(alpha + beta - lp + nll)
        post = np.exp(alpha + beta - em + nll[None, :, None])
        post = np.where(np.isfinite(nll)[None, :, None] & (np.arange(T)[:, None, None] < il[None, :, None]),
                        post, 0.0)
        grad = np.zeros((T, N, C), dtype=lp.dtype)
        tt = np.broadcast_to(np.arange(T)[:, None, None], post.shape)
        nn_ = np.broadcast_to(np.arange(N)[None, :, None], post.shape)
        cc = np.broadcast_to(ext[None], post.shape)
        np.add.at(grad, (tt.reshape(-1), nn_.reshape(-1), cc.reshape(-1)), -post.reshape(-1))
    inf = ~np.isfinite(nll)
    if kw["zero_infinity"]:
        nll = np.where(inf, 0.0, nll)
        grad[:, inf] = 0.0
    kw["grad"] = grad
    return nll.astype(lp.dtype)


def _ctc_b(g, out, ins, kw, needs):
    if not isinstance(g, np.ndarray):
        raise NotImplementedError("ctc_loss: double backward (create_graph=True) is not supported yet")
    return (kw["grad"] * g[None, :, None],)
CTC_LOSS = Rule("ctc_loss", _ctc_f, _ctc_b, needs_inputs=False)


@fp32_op  # PyTorch's CPU autocast runs it in float32
def ctc_loss(log_probs: Tensor, targets: Any, input_lengths: Any, target_lengths: Any, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """Connectionist temporal classification: ``log_probs`` ``(T, N, C)`` (or ``(T, C)``), ``targets``
    padded ``(N, S)`` or concatenated ``(sum(target_lengths),)``; ``'mean'`` divides each loss by its
    target length, then averages over the batch. The gradient is the exact one with respect to
    ``log_probs`` (torch's adds ``exp(log_probs)``, which cancels once behind ``log_softmax``)."""
    _check_reduction(reduction)
    x = _float_input(log_probs, "ctc_loss")
    unbatched = x.ndim == 2
    if x.ndim not in (2, 3):
        raise RuntimeError(f"ctc_loss: expected log_probs of shape (T, N, C) or (T, C), got {tuple(x.shape)}")
    if unbatched:
        x = x.unsqueeze(1)
    T, N, C = x.shape
    arr = lambda v: (v._array if isinstance(v, Tensor) else np.asarray(v)).astype(np.int64).reshape(-1)  # noqa: E731
    tg = targets._array if isinstance(targets, Tensor) else np.asarray(targets)
    tg = tg.astype(np.int64)
    il, tl = arr(input_lengths), arr(target_lengths)
    if il.shape != (N,) or tl.shape != (N,):
        raise RuntimeError(f"ctc_loss: expected input_lengths and target_lengths of {N} elements, got "
                           f"{il.shape[0]} and {tl.shape[0]}")
    if np.any(il > T) or np.any(il < 1):
        raise RuntimeError(f"ctc_loss: input_lengths must be in [1, {T}], got {il.tolist()}")
    if unbatched and tg.ndim == 1:
        tg = tg.reshape(1, -1)
    if tg.ndim == 2:
        if tg.shape[0] != N or (N and tg.shape[1] < tl.max(initial=0)):
            raise RuntimeError(f"ctc_loss: expected targets of shape ({N}, >= {tl.max(initial=0)}), got "
                               f"{tuple(tg.shape)}")
        rows = [tg[i, :tl[i]] for i in range(N)]
    else:
        if tg.shape[0] != tl.sum():
            raise RuntimeError(f"ctc_loss: concatenated targets have {tg.shape[0]} labels but target_lengths "
                               f"sum to {int(tl.sum())}")
        offs = np.concatenate([[0], np.cumsum(tl)])
        rows = [tg[offs[i]:offs[i + 1]] for i in range(N)]
    smax = int(tl.max(initial=0))
    ext = np.full((N, 2 * smax + 1), blank, dtype=np.int64)
    for i, r in enumerate(rows):
        if r.size and (r.min() < 0 or r.max() >= C or np.any(r == blank)):
            raise RuntimeError(f"ctc_loss: targets must be in [0, {C}) and differ from blank ({blank}), got "
                               f"{r.tolist()}")
        ext[i, 1:2 * len(r):2] = r
    nll = Tensor._apply(CTC_LOSS, (x,), {"ext": ext, "il": il, "tl": tl, "blank": int(blank),
                                         "zero_infinity": bool(zero_infinity)})
    if reduction == "mean":
        return (nll / wrap_array(np.maximum(tl, 1).astype(x.dtype))).mean()
    if reduction == "sum":
        return nll.sum()
    return nll.squeeze(0) if unbatched else nll
