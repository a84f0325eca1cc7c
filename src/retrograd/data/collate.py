"""``default_collate``: a list of samples -> one batch, as ``torch.utils.data.default_collate``.

Arrays, Tensors and numbers are stacked into Tensors with a new leading batch
dimension; tuples, lists, namedtuples and dicts are collated field by field;
strings and bytes are returned as lists. Tuples stay tuples (PyTorch turns them
into lists), so a batch of ``(x, y)`` samples is an ``(x, y)`` tuple of Tensors
just as on the vectorised ``get_batch`` path.
"""
from __future__ import annotations

import collections.abc as cabc
from typing import Any

import numpy as np

from .. import backend as B
from ..tensor import Tensor, wrap_array


def _stack(arrays: list, what: str) -> Tensor:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise RuntimeError(f"default_collate: stack expects each {what} to be equal size, but got "
                           f"shapes {sorted(shapes)}")
    out = np.stack(arrays)
    if out.dtype not in B._NAMES:
        if out.dtype.kind in "USO":
            raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts "
                            f"or lists; found array of dtype {out.dtype}")
        out = out.astype(np.int64 if out.dtype.kind in "iu" else np.float64)
    return wrap_array(out)


def default_collate(batch: list) -> Any:
    """Collate a list of samples into a batch (see the module docstring)."""
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise TypeError(f"default_collate: expected a non-empty list of samples, got {batch!r:.60}")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack([b._array for b in batch], "tensor")
    if isinstance(elem, np.ndarray):
        return _stack([np.asarray(b) for b in batch], "array")
    if isinstance(elem, np.generic) and not isinstance(elem, (np.str_, np.bytes_)):
        return _stack([np.asarray(b) for b in batch], "number")
    if isinstance(elem, bool):
        return wrap_array(np.asarray(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return wrap_array(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, float):
        return wrap_array(np.asarray(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, cabc.Mapping):
        return {k: default_collate([d[k] for d in batch]) for k in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, cabc.Sequence):
        n = len(elem)
        if any(len(b) != n for b in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal size")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem).__name__}")


def default_convert(data: Any) -> Any:
    """One sample -> the same structure with arrays as Tensors (``batch_size=None``)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray) and data.dtype.kind not in "USO":
        return wrap_array(data)
    if isinstance(data, np.generic) and not isinstance(data, (np.str_, np.bytes_)):
        return wrap_array(np.asarray(data))
    if isinstance(data, cabc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(v) for v in data))
    if isinstance(data, tuple):
        return tuple(default_convert(v) for v in data)
    if isinstance(data, list):
        return [default_convert(v) for v in data]
    return data


def concat_batches(batches: list, order: np.ndarray | None = None) -> Any:
    """Concatenate collated batches of the same structure along dim 0, then
    (optionally) reorder the samples by ``order``."""
    elem = batches[0]
    if isinstance(elem, (Tensor, np.ndarray)):
        out = np.concatenate([b._array if isinstance(b, Tensor) else b for b in batches])
        return wrap_array(out if order is None else out[order])
    if isinstance(elem, cabc.Mapping):
        return {k: concat_batches([b[k] for b in batches], order) for k in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(concat_batches(list(s), order) for s in zip(*batches)))
    if isinstance(elem, (tuple, list)) and elem and isinstance(elem[0], (str, bytes)):
        flat = [x for b in batches for x in b]
        return flat if order is None else [flat[i] for i in order]
    if isinstance(elem, (tuple, list)):
        fields = [concat_batches(list(s), order) for s in zip(*batches)]
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"concat_batches: cannot concatenate batches of {type(elem).__name__}")
