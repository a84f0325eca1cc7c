"""Functions that build one Tensor from several: ``cat``, ``stack``, ``hstack``,
``vstack``, ``einsum`` and ``pad`` (PyTorch's ``torch.cat`` ... and ``F.pad``).

They sit right above ``tensor.py`` (no Tensor method needs them); ``matmul`` and
``where``, which Tensor methods call, stay in ``tensor.py``.
"""
from __future__ import annotations

from typing import Any, Sequence

from . import backend as B
from . import ops as O
from . import ops_linalg as OL
from .amp.autocast_mode import cast_rule_inputs, state as _autocast
from .tensor import Tensor, _apply
from .tensor_convert import _as_tensor, _rank
from .tensor_shape import _norm_dim


def cat(tensors: Sequence, dim: int = 0) -> Tensor:
    ts = [_as_tensor(t) for t in tensors]
    if not ts:
        raise RuntimeError("cat: expected a non-empty list of Tensors")
    full = [t for t in ts if not (t.ndim == 1 and t.shape[0] == 0)]
    ref = full[0] if full else ts[0]
    d = _norm_dim(dim, ref.ndim, "cat")
    if full and len(full) != len(ts):
        # torch skips legacy 1-D empties; reshaped to size 0 along dim they stay in the graph (grad: empty)
        empty = ref.shape[:d] + (0,) + ref.shape[d + 1:]
        ts = [t.reshape(empty) if t.ndim == 1 and t.shape[0] == 0 else t for t in ts]
    for i, t in enumerate(ts):
        if t.ndim != ref.ndim:
            raise RuntimeError(f"cat: tensors must have the same number of dimensions: got {ref.ndim} and "
                               f"{t.ndim} (tensor {i})")
        for j, (s0, s1) in enumerate(zip(ref.shape, t.shape)):
            if j != d and s0 != s1:
                raise RuntimeError(f"cat: sizes of tensors must match except in dimension {d}. Expected "
                                   f"size {s0} but got size {s1} for tensor number {i} in the list")
    dt = B.promote([(t.dtype, _rank(t)) for t in ts])
    ts = [t._cast(dt) for t in ts]
    return _apply(O.CAT, tuple(ts), {"dim": d})


concatenate = concat = cat


def stack(tensors: Sequence, dim: int = 0) -> Tensor:
    ts = [_as_tensor(t) for t in tensors]
    if not ts:
        raise RuntimeError("stack: expected a non-empty list of Tensors")
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise RuntimeError(f"stack: expects each tensor to be equal size, but got {list(ts[0].shape)} at "
                               f"entry 0 and {list(t.shape)} at entry {i}")
    d = _norm_dim(dim, ts[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in ts], d)


def hstack(tensors: Sequence) -> Tensor:
    ts = [_as_tensor(t) for t in tensors]
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence) -> Tensor:
    return cat([_as_tensor(t).reshape(1, -1) if _as_tensor(t).ndim == 1 else _as_tensor(t) for t in tensors], 0)


def einsum(equation: str, *operands: Any) -> Tensor:
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ts = [_as_tensor(t) for t in operands]
    eq = equation.replace(" ", "")
    if "..." in eq:
        eq = _einsum_ellipsis(eq, ts)
    lhs = eq.split("->")[0]
    if "->" not in eq:
        letters = lhs.replace(",", "")
        eq = lhs + "->" + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = eq.split("->")[0].split(",")
    if len(terms) != len(ts):
        raise RuntimeError(f"einsum: {len(terms)} operands in the equation '{equation}' but {len(ts)} "
                           "tensors were given")
    sizes: dict = {}
    for term, t in zip(terms, ts):
        if len(term) != t.ndim:
            raise RuntimeError(f"einsum: the operand '{term}' has {len(term)} subscripts but the tensor has "
                               f"{t.ndim} dimensions (shape {t.shape})")
        for c, s in zip(term, t.shape):
            if sizes.setdefault(c, s) != s and s != 1 and sizes[c] != 1:
                raise RuntimeError(f"einsum: subscript '{c}' has size {s} for one operand and {sizes[c]} "
                                   "for another")
    dt = B.promote([(t.dtype, _rank(t)) for t in ts])
    return _apply(OL.EINSUM, tuple(t._cast(dt) for t in ts), {"eq": eq})


def _einsum_ellipsis(eq: str, ts: list) -> str:
    """Write '...' out as letters: each operand's broadcast dims, right-aligned as in broadcasting;
    an implicit output puts them first (NumPy and PyTorch)."""
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ts):
        raise RuntimeError(f"einsum: {len(terms)} operands in the equation '{eq}' but {len(ts)} tensors were "
                           "given")
    free = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    n_ell = [t.ndim - (len(term) - 3) if "..." in term else 0 for term, t in zip(terms, ts)]
    width = max(n_ell)
    if width > len(free) or min(n_ell) < 0:
        raise RuntimeError(f"einsum: the equation '{eq}' does not fit the operands' dimensions")
    ell = "".join(free[:width])
    terms = [term.replace("...", ell[width - n:]) for term, n in zip(terms, n_ell)]
    if arrow:
        rhs = rhs.replace("...", ell)
    else:
        letters = "".join(terms).replace(",", "")
        rhs = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    return ",".join(terms) + "->" + rhs


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:  # noqa: A002
    """PyTorch's ``F.pad``: ``pad`` lists (left, right) pairs starting from the last dim."""
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise RuntimeError(f"pad: padding length must be even and at most 2*ndim ({2 * input.ndim}), got "
                           f"{len(pad)}")
    modes = ("constant", "reflect", "replicate", "circular")
    if mode not in modes:
        raise ValueError(f"pad: mode must be one of {modes}, got {mode!r}")
    if mode in ("reflect", "replicate") and _autocast.cpu_enabled:
        input = cast_rule_inputs("reflection_pad", (input,))[0]  # noqa: A001  (PyTorch's CPU fp32 list)
    width = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        width[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if mode == "reflect":
        for d, (lo, hi) in enumerate(width):
            if (lo or hi) and max(lo, hi) >= input.shape[d]:
                raise RuntimeError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the input's size "
                                   f"{input.shape[d]} in dimension {d} (input shape {tuple(input.shape)})")
    if any(lo < 0 or hi < 0 for lo, hi in width):
        x = input
        sl = tuple(slice(max(-lo, 0), s - max(-hi, 0)) for (lo, hi), s in zip(width, input.shape))
        x = x[sl]
        return _pad_fn(x, [max(p, 0) for p in pad], mode, value)
    return _apply(O.PAD, (input,), {"width": width, "mode": mode, "value": value})


_pad_fn = pad  # inside pad() the name is the padding argument
