"""Tensor methods that PyTorch programs call around the math: devices (``to``, ``cpu``, ``cuda``,
``device``, ``is_cuda``, ``pin_memory``), legacy type names (``type()``), the ``new_*`` factories, and
``repeat_interleave``, ``unique``, ``narrow``, ``outer``.

Plain functions of ``self``, bound as methods by ``tensor.py`` (as ``tensor_shape`` is); this module
sits below ``tensor.py`` and makes Tensors through ``self._wrap``."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend as B
from . import devices
from .engine import state
from .tensor_shape import _as_shape, _norm_dim

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module

# ------------------------------------------------------------------ legacy type names
# PyTorch's names for the CPU tensor types; ``Tensor.type()`` returns "torch.<name>" so that
# comparisons written for PyTorch (``x.type() == "torch.LongTensor"``) keep working.
LEGACY_NAMES = {
    B.float32: "FloatTensor", B.float64: "DoubleTensor", B.float16: "HalfTensor", B.int64: "LongTensor",
    B.int32: "IntTensor", B.int16: "ShortTensor", B.int8: "CharTensor", B.uint8: "ByteTensor",
    B.bool_: "BoolTensor", B.bfloat16: "BFloat16Tensor",
}
_BY_NAME = {name: dt for dt, name in LEGACY_NAMES.items()}


def legacy_dtype(name: str) -> np.dtype:
    """The dtype of a legacy type name: "torch.FloatTensor", "retrograd.LongTensor" or "FloatTensor"."""
    short = name.rpartition(".")[2]
    if short not in _BY_NAME or name.startswith(("torch.cuda.", "retrograd.cuda.")):
        if ".cuda." in name:
            raise devices.unavailable("cuda", f"type({name!r})")
        raise ValueError(f"invalid type: {name!r}; expected one of "
                         f"{', '.join('torch.' + n for n in _BY_NAME)}")
    return _BY_NAME[short]


def type_method(self, dtype: Any = None, non_blocking: bool = False, **kwargs: Any) -> Any:
    """``t.type()`` is the type name ("torch.FloatTensor"); ``t.type(dtype)`` casts (a dtype, a type
    name string or a legacy class such as ``rg.LongTensor``)."""
    if dtype is None:
        return "torch." + LEGACY_NAMES.get(self.dtype, B.dtype_name(self.dtype))
    if isinstance(dtype, str):
        d = legacy_dtype(dtype)
    else:
        d = B.as_dtype(getattr(dtype, "legacy_dtype", dtype))
    return self._cast(d)


# ------------------------------------------------------------------ devices
def device(self) -> devices.device:
    return devices.CPU


def is_cuda(self) -> bool:
    return False


def is_cpu(self) -> bool:
    return True


def get_device(self) -> int:
    return -1  # PyTorch's answer for a CPU tensor


def to(self, *args: Any, **kwargs: Any) -> "Tensor":
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other_tensor)``, keywords ``device``,
    ``dtype``, ``copy``, ``non_blocking``. Devices other than the CPU raise (retrograd runs on the CPU)."""
    unknown = set(kwargs) - {"dtype", "device", "copy", "non_blocking", "memory_format"}
    if unknown:
        raise TypeError(f"to() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    if len(args) > 3:
        raise TypeError(f"to() takes at most 3 positional arguments ({len(args)} given)")
    dtype = kwargs.get("dtype")
    devices.check(kwargs.get("device"), "to")
    for a in args:
        if isinstance(a, state.tensor_type):
            dtype = a.dtype
        elif isinstance(a, bool):  # to(dtype, non_blocking) / to(device, dtype, non_blocking)
            continue
        elif isinstance(a, int) or devices.is_device(a):
            devices.check(a, "to")
        elif a is not None:
            dtype = a
    out = self if dtype is None else self._cast(B.as_dtype(dtype))
    if kwargs.get("copy") and out is self:
        out = self.clone()
    return out


def cpu(self, memory_format: Any = None) -> "Tensor":
    return self


def cuda(self, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> "Tensor":
    """Raises: retrograd runs on the CPU."""
    raise devices.unavailable("cuda" if device is None else str(devices.device(device)), "Tensor.cuda")


def pin_memory(self, device: Any = None) -> "Tensor":
    """Returns ``self``: pinned memory only speeds up copies to a GPU."""
    return self


def is_pinned(self, device: Any = None) -> bool:
    return False


# ------------------------------------------------------------------ new_* factories
def _new(self, shape: tuple, fill: Any, dtype: Any, device: Any, requires_grad: bool, op: str) -> "Tensor":
    devices.check(device, op)
    if any(s < 0 for s in shape):
        raise RuntimeError(f"{op}: trying to create tensor with negative dimension: {list(shape)}")
    d = self.dtype if dtype is None else B.as_dtype(dtype)
    arr = np.empty(shape, d) if fill is None else np.full(shape, fill, d)
    t = self._wrap(arr)
    return t.requires_grad_(True) if requires_grad else t


def new_zeros(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
              **kwargs: Any) -> "Tensor":
    """Zeros of ``size`` with this tensor's dtype (unless ``dtype`` is given)."""
    return _new(self, _as_shape(size), 0, dtype, device, requires_grad, "new_zeros")


def new_ones(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
             **kwargs: Any) -> "Tensor":
    return _new(self, _as_shape(size), 1, dtype, device, requires_grad, "new_ones")


def new_empty(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
              **kwargs: Any) -> "Tensor":
    return _new(self, _as_shape(size), None, dtype, device, requires_grad, "new_empty")


def new_full(self, size: Any, fill_value: Any, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False, **kwargs: Any) -> "Tensor":
    return _new(self, _as_shape((size,)), fill_value, dtype, device, requires_grad, "new_full")


def new_tensor(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
               **kwargs: Any) -> "Tensor":
    """A new leaf tensor holding a copy of ``data``, with this tensor's dtype unless ``dtype`` is given."""
    devices.check(device, "new_tensor")
    arr = data._array if isinstance(data, state.tensor_type) else data
    d = self.dtype if dtype is None else B.as_dtype(dtype)
    t = self._wrap(np.array(arr, dtype=d))
    return t.requires_grad_(True) if requires_grad else t


# ------------------------------------------------------------------ shape and set ops
def repeat_interleave(self, repeats: Any = None, dim: int | None = None, *,
                      output_size: int | None = None) -> "Tensor":
    """Repeat each element ``repeats`` times along ``dim`` (the flattened tensor when ``dim`` is None);
    ``repeats`` is an int or a 0-/1-D integer tensor with one count per element. Differentiable
    (an ``index_select``). ``t.repeat_interleave()`` with no repeats treats ``t`` as the counts and
    returns ``arange(len(t))`` repeated by them, as ``torch.repeat_interleave(counts)``."""
    if repeats is None:
        counts = np.asarray(self._array)
        if counts.ndim != 1 or counts.dtype.kind not in "iu":
            raise RuntimeError("repeat_interleave: repeats must be a 1-D integer tensor, got "
                               f"{counts.ndim}-D {B.dtype_name(counts.dtype)}")
        return self._wrap(_counts_to_index(counts, counts.shape[0]))
    x = self.reshape(-1) if dim is None else self
    d = 0 if dim is None else _norm_dim(dim, x.ndim, "repeat_interleave")
    n = x.shape[d] if x.ndim else 1
    if x.ndim == 0:
        x = x.reshape(1)
    if isinstance(repeats, state.tensor_type):
        counts = np.asarray(repeats._array)
        if counts.dtype.kind not in "iu":
            raise RuntimeError(f"repeat_interleave: repeats must be an integer tensor, got "
                               f"{B.dtype_name(counts.dtype)}")
        if counts.ndim > 1:
            raise RuntimeError(f"repeat_interleave: repeats must be 0-dim or 1-dim tensor, got {counts.ndim}-D")
        if counts.ndim == 1 and counts.shape[0] != n:
            raise RuntimeError(f"repeat_interleave: repeats must have the same size as input along dim, but "
                               f"got repeats.size(0) = {counts.shape[0]} and input.size({d}) = {n}")
        counts = np.broadcast_to(counts.reshape(-1), (n,))
    elif isinstance(repeats, (int, np.integer)) and not isinstance(repeats, bool):
        counts = np.full(n, int(repeats))
    else:
        raise TypeError(f"repeat_interleave: repeats must be an int or an integer Tensor, got "
                        f"{type(repeats).__name__}")
    idx = _counts_to_index(counts, n)
    if output_size is not None and output_size != idx.shape[0]:
        raise RuntimeError(f"repeat_interleave: output_size {output_size} does not match the sum of "
                           f"repeats {idx.shape[0]}")
    return x.index_select(d, self._wrap(idx))


def _counts_to_index(counts: np.ndarray, n: int) -> np.ndarray:
    if counts.size and counts.min() < 0:
        raise RuntimeError("repeat_interleave: repeats can not be negative")
    return np.repeat(np.arange(n, dtype=np.int64), counts)


def unique(self, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False,  # noqa: A002
           dim: int | None = None) -> Any:
    """The distinct elements (or, with ``dim``, the distinct slices along ``dim``), in ascending order;
    with ``return_inverse`` also where each element went, with ``return_counts`` how often each occurs.
    Not differentiable. The result is sorted for ``sorted=False`` too, as PyTorch 2.13's CPU kernel
    (PyTorch documents that order as unspecified). Each NaN is distinct, as in PyTorch."""
    a = np.asarray(self._array)
    if dim is None:
        vals, inv, counts = np.unique(a.reshape(-1), return_inverse=True, return_counts=True, equal_nan=False)
        inv = inv.reshape(a.shape)
    else:
        d = _norm_dim(dim, a.ndim, "unique")
        moved = np.moveaxis(a, d, 0)
        vals, inv, counts = np.unique(moved.reshape(moved.shape[0], -1), axis=0, return_inverse=True,
                                      return_counts=True)
        vals = np.moveaxis(vals.reshape((vals.shape[0],) + moved.shape[1:]), 0, d)
        inv = inv.reshape(-1)
    out = [self._wrap(np.ascontiguousarray(vals))]
    if return_inverse:
        out.append(self._wrap(inv.astype(np.int64)))
    if return_counts:
        out.append(self._wrap(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def narrow(self, dim: int, start: Any, length: int) -> "Tensor":
    """The slice ``start : start + length`` along ``dim`` (a view, differentiable)."""
    if self.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
    d = _norm_dim(dim, self.ndim, "narrow")
    n = self.shape[d]
    start = int(start)
    if not -n <= start <= n:
        raise IndexError(f"narrow: start out of range (expected to be in range of [{-n}, {n}], but got {start})")
    if start < 0:
        start += n
    if length < 0 or start + length > n:
        raise RuntimeError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return self[(slice(None),) * d + (slice(start, start + length),)]


def outer(self, vec2: "Tensor") -> "Tensor":
    """``out[i, j] = self[i] * vec2[j]`` for 1-D tensors (differentiable)."""
    if not isinstance(vec2, state.tensor_type):
        raise TypeError(f"outer(): argument 'vec2' must be Tensor, not {type(vec2).__name__}")
    if self.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got {self.ndim}-D and {vec2.ndim}-D")
    return self.reshape(-1, 1) * vec2.reshape(1, -1)


# ------------------------------------------------------------------ repr
def tensor_repr(t: Tensor) -> str:
    """``repr(t)`` as PyTorch prints a tensor: ``tensor([...], dtype=..., grad_fn=<...>)``."""
    data = t._array
    dt = data.dtype
    if dt is B.bfloat16:
        data = data.astype(np.float32)  # printed as torch prints bfloat16: its float32 value, 4 decimals
    opts: dict = {"separator": ", ", "prefix": "tensor("}
    if dt.kind in "fV" and data.size:
        finite = data[np.isfinite(data)]
        if finite.size and np.any(finite != np.round(finite)):
            big = np.abs(finite).max()
            if big >= 1e8 or (np.abs(finite[finite != 0]).min() < 1e-4 if np.any(finite != 0) else False):
                opts["formatter"] = {"float_kind": lambda v: f"{v:.4e}"}
            else:
                opts.update(precision=4, floatmode="fixed")
    body = np.array2string(data, threshold=1000, edgeitems=3, **opts)
    extras = []
    default = B.defaults.float_dtype
    if (dt.kind in "fV" and dt != default) or dt.kind not in "fbiV" or (dt.kind == "i" and dt != np.int64) \
            or data.size == 0 and dt != default:
        extras.append(f"dtype=retrograd.{B.dtype_name(dt)}")
    if t._node is not None:
        extras.append(f"grad_fn=<{t._node.rule.node_name}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
