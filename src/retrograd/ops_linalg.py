"""The rule table's products: ``matmul`` (with ``_folded_matmul``, which runs a stacked
input as one GEMM and large ones on retrograd's threads), ``linear`` (one fused node with its
bias) and ``einsum``. The rules' contract is ``ops``' (see its docstring)."""
from __future__ import annotations

import numpy as np

from . import kernels
from .ops import Rule, call

_ndarray = np.ndarray

_SPLIT_GEMM = kernels.BLAS_THREADED  # multiply-adds of a 2-D product worth kernels.matmul's test
_PAIR_GEMM = 2 * kernels.MIN_GEMM_PER_THREAD  # a linear's input-gradient product worth kernels.matmul_pair's test


def _folded_matmul(a, b, bias=None):
    """``a @ b [+ bias]``, a C-contiguous (..., k) ``a`` and a 2-D ``b`` as one (N, k) @ (k, n) product (NumPy
    runs a stacked ``a`` as one small GEMM per leading index), large ones on retrograd's threads
    (``kernels.matmul``); other inputs (Tensors under create_graph, views) go to ``@`` as given."""
    if type(a) is _ndarray and type(b) is _ndarray and b.ndim == 2:
        nd = a.ndim
        if nd == 2:
            if a.size * b.shape[1] >= _SPLIT_GEMM:
                return kernels.matmul(a, b, bias)  # (smaller ones would stay one call there too)
        elif nd > 2 and a.flags.c_contiguous:
            return kernels.matmul(a.reshape(-1, a.shape[-1]), b, bias).reshape(*a.shape[:-1], b.shape[-1])
    out = a @ b
    if bias is not None:
        out += bias
    return out


def _matmul_b(g, out, ins, kw, needs):
    a, b = ins
    a1, b1 = a.ndim == 1, b.ndim == 1
    if a1 and b1:
        return (g * b if needs[0] else None), (g * a if needs[1] else None)
    a2 = np.expand_dims(a, 0) if a1 else a
    b2 = np.expand_dims(b, -1) if b1 else b
    if a1:
        g = np.expand_dims(g, -2)
    if b1:
        g = np.expand_dims(g, -1)
    ga = gb = None
    if needs[0]:
        ga = _folded_matmul(g, np.swapaxes(b2, -1, -2))
        if a1:
            ga = np.squeeze(ga, -2)
    if needs[1]:
        if b2.ndim == 2 and a2.ndim > 2:
            # (B, m, k) @ (k, n): fold the batch into one matmul instead of summing B products
            k = a2.shape[-1]
            gb = np.swapaxes(np.reshape(a2, (-1, k)), -1, -2) @ np.reshape(g, (-1, g.shape[-1]))
        else:
            gb = np.swapaxes(a2, -1, -2) @ g
        if b1:
            gb = np.squeeze(gb, -1)
    return ga, gb
MATMUL = Rule("matmul", lambda ins, kw: _folded_matmul(ins[0], ins[1]), _matmul_b)


def _linear_f(ins, kw):
    # the bias added in place on the fresh product: no second (batch, out) temporary
    return _folded_matmul(ins[0], ins[1].T, ins[2] if len(ins) == 3 else None)


def _linear_b(g, out, ins, kw, needs):
    # y = x W^T + b in one node, so the graph never holds the bare product x W^T
    x, w = ins[0], ins[1]
    gb = None
    if (needs[0] and needs[1] and type(g) is type(x) is _ndarray and g.ndim == x.ndim == 2
            and g.size * w.shape[1] >= _PAIR_GEMM):
        # both products at once: side by side on two threads when large (kernels.matmul_pair)
        gx, gw = kernels.matmul_pair(g, w, g.T, x)
        if len(ins) == 3 and needs[2]:
            gb = kernels.sum_rows(g)
        return (gx, gw, gb) if len(ins) == 3 else (gx, gw)
    gx = _folded_matmul(g, w) if needs[0] else None
    gw = None
    if needs[1] or (len(ins) == 3 and needs[2]):
        # methods, not np.* functions: no dispatch cost, and Tensors (create_graph) have them too
        g2 = g if g.ndim == 2 else g.reshape(-1, g.shape[-1])
        if needs[1]:
            gw = _folded_matmul(g2.T, x if x.ndim == 2 else x.reshape(-1, x.shape[-1]))
        if len(ins) == 3 and needs[2]:
            gb = kernels.sum_rows(g2) if type(g2) is _ndarray and g2.ndim == 2 else g2.sum(axis=0)
    return (gx, gw, gb) if len(ins) == 3 else (gx, gw)
LINEAR = Rule("linear", _linear_f, _linear_b)


def _einsum_f(ins, kw):
    return np.einsum(kw["eq"], *ins, optimize=len(ins) > 2)


def _einsum_b(g, out, ins, kw, needs):
    lhs, rhs = kw["eq"].split("->")
    terms = lhs.split(",")
    grads = []
    for i, need in enumerate(needs):
        if not need:
            grads.append(None)
            continue
        others = [t for j, t in enumerate(terms) if j != i]
        other_ins = [x for j, x in enumerate(ins) if j != i]
        target = terms[i]
        # letters of the input that appear nowhere else were summed out: broadcast back
        avail = set(rhs) | set("".join(others))
        kept = "".join(c for c in target if c in avail)
        kept_unique = "".join(dict.fromkeys(kept))
        eq = ",".join([rhs] + others) + "->" + kept_unique
        gi = call(EINSUM, (g, *other_ins), {"eq": eq})
        if kept_unique != target:
            gi = _einsum_expand(gi, kept_unique, target, ins[i].shape)
        grads.append(gi)
    return tuple(grads)


def _einsum_expand(gi, have: str, target: str, shape: tuple):
    """Map a gradient over letters ``have`` onto an input written ``target``
    (summed-out letters broadcast; repeated letters become diagonals)."""
    if len(set(target)) != len(target):
        # a repeated letter reads a diagonal: its gradient is written back there, through
        # identity matrices joining each repeat (renamed to a fresh letter) with its first use
        fresh = iter(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in target)
        seen: dict = {}
        renamed, eyes, subs = "", [], []
        for k, c in enumerate(target):
            if c in seen:
                f = next(fresh)
                eyes.append(np.eye(shape[k], dtype=gi.dtype))
                subs.append(c + f)
                renamed += f
            else:
                seen[c] = k
                renamed += c
        covered = set(have) | set("".join(subs))
        out = "".join(c for c in renamed if c in covered)
        gi = call(EINSUM, (gi, *eyes), {"eq": ",".join([have] + subs) + "->" + out})
        have, target = out, renamed
    view_shape = [shape[k] if c in have else 1 for k, c in enumerate(target)]
    order = [have.index(c) for c in target if c in have]
    gi = np.transpose(gi, order) if order != sorted(order) else gi
    return np.broadcast_to(np.reshape(gi, tuple(view_shape)), shape)


EINSUM = Rule("einsum", _einsum_f, _einsum_b)
