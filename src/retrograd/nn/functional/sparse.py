"""Sparse (index) lookups, torch's "sparse functions": ``embedding``, a ``Rule`` whose backward (a
scatter-add, compiled where Numba is available) is itself a ``Rule``, so gradients of any order stay
lookups and scatters."""
from __future__ import annotations

import numpy as np

from ... import accel
from ... import backend as B
from ...ops import Rule, call
from ...tensor import Tensor
from ...versions import bump


def _embedding_f(ins, kw):
    return ins[0][kw["index"]]


def _embedding_b(g, out, ins, kw, needs):
    return (call(EMBEDDING_BACKWARD, (g,), kw),)


@accel.jit
def _rows_add_at_kernel(z, idx, gg):
    """``np.add.at(z, idx, gg)`` for rows: row ``r`` of ``gg`` added to ``z[idx[r]]`` in the order of ``r``."""
    d = gg.shape[1]
    for r in range(idx.shape[0]):
        row = idx[r]
        for j in range(d):
            z[row, j] += gg[r, j]


def _embedding_backward_f(ins, kw):
    g = ins[0]
    d = g.shape[-1]
    z = np.zeros((kw["num_weights"], d), dtype=g.dtype)
    idx = kw["index"].reshape(-1)
    gg = g.reshape(-1, d)
    if kw["scale_grad_by_freq"]:
        counts = np.bincount(idx, minlength=kw["num_weights"])
        gg = gg / counts[idx][:, None]
    if gg.size and accel.handles(gg):
        _rows_add_at_kernel(z, idx, gg)  # the same additions in the same order, without add.at's overhead
    else:
        np.add.at(z, idx, gg)
    if kw["padding_idx"] is not None:
        z[kw["padding_idx"]] = 0
    return z


def _embedding_backward_b(g, out, ins, kw, needs):
    return (call(EMBEDDING, (g,), kw),)
EMBEDDING = Rule("embedding", _embedding_f, _embedding_b, needs_inputs=False)
EMBEDDING_BACKWARD = Rule("embedding_backward", _embedding_backward_f, _embedding_backward_b,
                          needs_inputs=False)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,  # noqa: A002
              max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of ``weight`` ``(num_embeddings, dim)`` picked by integer ``input`` of any shape;
    the ``padding_idx`` row gets no gradient."""
    idx = input._array if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"embedding: expected indices of an integer dtype (int64 or int32), got "
                           f"{B.dtype_name(idx.dtype)}")
    n = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.max() if idx.max() >= n else idx.min())
        raise IndexError(f"embedding: index {bad} is out of range for an embedding of {n} rows "
                         f"(expected 0 <= index < {n})")
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx must be within num_embeddings ({n}), got {padding_idx}")
        padding_idx = padding_idx % n
    if max_norm is not None:
        rows = np.unique(idx)
        w = weight._array
        norms = np.linalg.norm(w[rows], ord=norm_type, axis=1, keepdims=True)
        scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        w[rows] = w[rows] * scale.astype(w.dtype)  # in place, as torch.embedding_renorm_
        bump(weight)
    return Tensor._apply(EMBEDDING, (weight,), {"index": idx, "num_weights": n, "padding_idx": padding_idx,
                                                "scale_grad_by_freq": scale_grad_by_freq})


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """``(*)`` int64 class indices -> ``(*, num_classes)`` int64 one-hot rows; ``num_classes=-1``
    means ``max + 1``."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"one_hot(): argument 'tensor' must be Tensor, not {type(tensor).__name__}")
    idx = tensor._array
    if idx.dtype != B.int64:
        raise RuntimeError(f"one_hot is only applicable to index tensor of type LongTensor (int64), got "
                           f"{B.dtype_name(idx.dtype)}")
    if idx.size and idx.min() < 0:
        raise RuntimeError("one_hot: class values must be non-negative.")
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("one_hot: can not infer total number of classes from empty tensor.")
        num_classes = int(idx.max()) + 1
    if idx.size and idx.max() >= num_classes:
        raise RuntimeError(f"one_hot: class values must be smaller than num_classes ({num_classes}), got "
                           f"{int(idx.max())}")
    return Tensor._wrap(np.eye(num_classes, dtype=np.int64)[idx])
