"""Tensor's shape and indexing methods (``reshape``, ``permute``, ``expand``,
``split``, ``__getitem__``, ``gather`` ...) as plain functions, and the shape
helpers (``_as_shape``, ``_norm_dim``) that ``tensor.py`` and its neighbours share.

``Tensor`` binds each function as a method under its own name
(``reshape = tensor_shape.reshape``), so ``t.reshape(2, 3)`` runs the function
below with ``self = t``, at a method's speed. This module sits below
``tensor.py`` and never imports it: it makes Tensors through ``self._apply`` /
``self._wrap`` and tells them apart through ``engine.state.tensor_type``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import backend as B
from . import ops as O
from .engine import NO_GRAD_SLOT, state
from .tensor_convert import _coerce
from .versions import counter

Tensor = Any  # annotations only: the class is tensor.Tensor, which sits above this module


def _as_shape(args: tuple) -> tuple:
    """Accept f(2, 3), f((2, 3)) and f([2, 3])."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    try:
        return tuple(int(a) for a in args)
    except TypeError as e:
        raise TypeError(f"sizes must be ints, got {args!r}") from e


def _norm_dim(d: int, ndim: int, op: str) -> int:
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return d % n


def _norm_dims(dim: Any, ndim: int, op: str) -> tuple | None:
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        dim = (dim,)
    dims = tuple(sorted(_norm_dim(int(d), ndim, op) for d in dim))
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"{op}: dim {tuple(dim)} appears multiple times in the list of dims")
    return dims if ndim else None


# how a view was made, for PyTorch's checks of in-place ops on views (its ``CreationMeta``)
NO_GRAD = "no_grad"   # made while grad mode was off
MULTI = "multi"       # one of several views returned by split, chunk, unbind
_VIEW_LABEL = {"reshape": "View", "permute": "Permute", "expand": "Expand"}


def _view(t: "Tensor", rule: O.Rule, kw: dict) -> "Tensor":
    """An op whose output shares memory with its input: both share one version counter, and the
    output remembers its root base (``_base``) and how it was made (for in-place ops on it)."""
    out = t._apply(rule, (t,), kw)
    ob = out._array.base
    if ob is not None and (ob is t._array or ob is t._array.base):
        out._vc = vc = counter(t)
        if out._node is not None and out._node.out_vc is not None:
            out._node.out_vc = vc
            out._node.out_v = vc[0]
        vi = None if t._array.base is None else getattr(t, "_viewinfo", None)  # a view's array has a base
        kind = None if state.enabled else NO_GRAD
        if vi is None:
            out._viewinfo = (t, kind, (rule, kw))  # (rule, kw): the label, made only for an error message
        else:
            out._viewinfo = (vi[0], kind or vi[1], (rule, kw))
        if kind is not None and t.requires_grad:
            out.requires_grad = True  # as PyTorch: a view made under no_grad still requires grad,
            out._gslot = NO_GRAD_SLOT  # but backward leaves its .grad None
    return out


def view_label(label: Any) -> str:
    """PyTorch's "Output 0 of Select" for a view, from what ``_view`` stored."""
    if isinstance(label, str):
        return label
    rule, kw = label
    if rule is O.INDEX:
        name = "Select" if any(type(i) is int for i in kw["index"]) else "Slice"
    else:
        name = _VIEW_LABEL.get(rule.name, rule.name.capitalize())
    return "Output 0 of " + name


def _multi_output(views: tuple, name: str) -> tuple:
    """Mark the views of split/chunk/unbind as outputs of a multi-view function (PyTorch refuses
    in-place ops on them while grad mode is on)."""
    kind = MULTI if state.enabled else NO_GRAD
    for i, v in enumerate(views):
        vi = getattr(v, "_viewinfo", None)
        if vi is not None:
            v._viewinfo = (vi[0], kind, f"Output {i} of {name}")
    return views


_TORCH_NAMES = {"bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short", "int32": "Int",
                "int64": "Long", "float16": "Half", "float32": "Float", "float64": "Double",
                "bfloat16": "BFloat16"}


def _torch_name(dtype: np.dtype) -> str:
    """PyTorch's name of a dtype in its error messages ("Float", "Long")."""
    name = B.dtype_name(dtype)
    return _TORCH_NAMES.get(name, name)


class UntypedStorage:
    """What ``Tensor.untyped_storage()`` returns: the memory a tensor, its views and its
    ``.data``/``detach()`` aliases share (the root base's array), for identity checks."""

    __slots__ = ("_array",)

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def data_ptr(self) -> int:
        return self._array.__array_interface__["data"][0]

    def nbytes(self) -> int:
        return self._array.nbytes

    size = nbytes

    def __len__(self) -> int:
        return self._array.nbytes

    def __repr__(self) -> str:
        return f"UntypedStorage(nbytes={self._array.nbytes}, data_ptr={hex(self.data_ptr())})"


def untyped_storage(self) -> UntypedStorage:
    """The storage this tensor shares with its base and the base's other views."""
    root = base(self)
    return UntypedStorage((self if root is None else root)._array)


def data_ptr(self) -> int:
    """The address of the tensor's first element (equal for tensors that alias it)."""
    return self._array.__array_interface__["data"][0]


def storage_offset(self) -> int:
    """Where the first element lies in ``untyped_storage()``, in elements."""
    return (data_ptr(self) - untyped_storage(self).data_ptr()) // max(self._array.itemsize, 1)


def _view_dtype(self, dtype: Any) -> "Tensor":
    """``view(dtype)``: the same memory read as another dtype (PyTorch's rules for element sizes).
    Shares storage and version counter; not differentiable, as PyTorch."""
    a = self._array
    dt = B.as_dtype(dtype)
    old, new = a.itemsize, dt.itemsize
    what = f"to view {_torch_name(a.dtype)} as {_torch_name(dt)} (different element sizes)"
    if old != new:
        if a.ndim == 0:
            raise RuntimeError(f"view: self.dim() cannot be 0 {what}")
        strides = _elem_strides(a)
        ratio = new // old if new > old else old // new
        if new > old and a.shape[-1] % ratio:
            raise RuntimeError(f"view: self.size(-1) must be divisible by {ratio} {what}, but got {a.shape[-1]}")
        if strides[-1] != 1:
            raise RuntimeError(f"view: self.stride(-1) must be 1 {what}, but got {strides[-1]}")
        if new > old:
            off = storage_offset(self)
            if off % ratio:
                raise RuntimeError(f"view: self.storage_offset() must be divisible by {ratio} {what}, but got {off}")
            for i, st in enumerate(strides[:-1]):
                if st % ratio:
                    raise RuntimeError(f"view: self.stride({i}) must be divisible by {ratio} {what}, but got {st}")
    out = self._wrap(a.view(dt))
    out._vc = counter(self)
    return out


def base(self) -> "Tensor | None":
    """The tensor this one is a view of (PyTorch's ``_base``: the root, never itself a view), or None."""
    vi = getattr(self, "_viewinfo", None)
    return None if vi is None else vi[0]


def is_view(self) -> bool:
    """Whether this tensor is a view of another (shares its storage and version counter)."""
    return getattr(self, "_viewinfo", None) is not None


def _infer_shape(shape: tuple, n: int) -> tuple:
    if shape.count(-1) > 1:
        raise ValueError("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or n % known:
            raise ValueError("bad shape")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if math.prod(shape) != n or any(s < 0 for s in shape):
        raise ValueError("bad shape")
    return shape


def _index_array(index: Any, op: str) -> np.ndarray:
    idx = index._array if isinstance(index, state.tensor_type) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor (int64), got {B.dtype_name(idx.dtype)}")
    return idx


def _convert_index(index: Any, shape: tuple) -> tuple[Any, bool]:
    """Turn a PyTorch index into a NumPy one; check bounds with a clear error."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    advanced = False
    dim = 0
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis
                 and not (isinstance(i, (state.tensor_type, np.ndarray)) and getattr(i, "dtype", None) == np.bool_))
    n_real += sum(getattr(i, "ndim", 0) for i in index
                  if isinstance(i, (state.tensor_type, np.ndarray)) and i.dtype == np.bool_)
    if n_real > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
    for i in index:
        if isinstance(i, state.tensor_type):
            i = i._array
        if i is None:
            out.append(None)
            continue
        if i is Ellipsis:
            out.append(i)
            dim = len(shape) - (n_real - dim)
            continue
        if isinstance(i, bool):
            out.append(i)
            advanced = True
            continue
        if isinstance(i, (int, np.integer)):
            n = shape[dim]
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
            out.append(int(i))
            dim += 1
            continue
        if isinstance(i, slice):
            out.append(i)
            dim += 1
            continue
        arr = np.asarray(i)
        if arr.dtype == np.bool_:
            if arr.shape != shape[dim:dim + arr.ndim]:
                raise IndexError(f"the shape of the mask {arr.shape} at index {dim} does not match the shape "
                                 f"of the indexed tensor {shape[dim:dim + arr.ndim]}")
            out.append(arr)
            advanced = True
            dim += arr.ndim
            continue
        if arr.dtype.kind not in "iu":
            raise IndexError(f"tensors used as indices must be long, int, bool or byte tensors, got "
                             f"{arr.dtype}")
        n = shape[dim]
        if arr.size and (arr.max() >= n or arr.min() < -n):
            bad = arr.max() if arr.max() >= n else arr.min()
            raise IndexError(f"index {int(bad)} is out of bounds for dimension {dim} with size {n}")
        out.append(arr)
        advanced = True
        dim += 1
    return tuple(out), advanced


# ====================================================================== shape
def reshape(self, *shape: Any) -> "Tensor":
    shape = _as_shape(shape)
    if shape == self.shape:
        return self
    try:
        out_shape = _infer_shape(shape, self.numel())
    except ValueError as e:
        raise RuntimeError(f"reshape: shape {list(shape)} is invalid for input of size "
                           f"{self.numel()}") from e
    return _view(self, O.RESHAPE, {"shape": out_shape})


def view(self, *shape: Any) -> "Tensor":
    """``reshape`` that never copies: as PyTorch, raises where the new shape cannot be laid
    over the input's strides (e.g. flattening a transposed tensor); ``reshape`` copies there.
    ``view(dtype)`` reads the same memory as another dtype."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
        return _view_dtype(self, shape[0])
    shape = _as_shape(shape)
    if shape == self.shape:
        return self
    a = self._array
    try:
        out_shape = _infer_shape(shape, a.size)
    except ValueError as e:
        raise RuntimeError(f"view: shape {list(shape)} is invalid for input of size {a.size}") from e
    if not a.flags.c_contiguous and view_strides(a, out_shape) is None:
        raise RuntimeError(f"view: view size is not compatible with input tensor's size and stride (at least "
                           f"one dimension spans across two contiguous subspaces): shape {tuple(a.shape)} with "
                           f"strides {_elem_strides(a)} cannot be viewed as {out_shape}. Use .reshape(...) instead.")
    return _view(self, O.RESHAPE, {"shape": out_shape})


def _elem_strides(a: np.ndarray) -> tuple:
    return tuple(s // a.itemsize for s in a.strides)


def view_strides(a: np.ndarray, shape: tuple) -> tuple | None:
    """The strides (in elements) of ``a`` viewed as ``shape`` without a copy, or None where
    no such view exists: PyTorch's ``computeStride`` on the array's strides. Dimensions of
    the input are grouped into chunks that are contiguous with each other; each chunk must
    be split into whole dimensions of the new shape."""
    old, stride = a.shape, _elem_strides(a)
    if not old:
        return (1,) * len(shape)
    if a.size == 0:
        if tuple(old) == tuple(shape):
            return stride
        out, acc = [0] * len(shape), 1
        for d in range(len(shape) - 1, -1, -1):
            out[d] = acc
            acc *= max(shape[d], 1)
        return tuple(out)
    out = [0] * len(shape)
    view_d = len(shape) - 1
    base = stride[-1]
    tensor_numel = view_numel = 1
    for d in range(len(old) - 1, -1, -1):
        tensor_numel *= old[d]
        if d == 0 or (old[d - 1] != 1 and stride[d - 1] != tensor_numel * base):
            while view_d >= 0 and (view_numel < tensor_numel or shape[view_d] == 1):
                out[view_d] = view_numel * base
                view_numel *= shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                base = stride[d - 1]
                tensor_numel = view_numel = 1
    if view_d != -1:
        return None
    return tuple(out)


def view_as(self, other: "Tensor") -> "Tensor":
    return self.view(other.shape)


def reshape_as(self, other: "Tensor") -> "Tensor":
    return self.reshape(other.shape)


def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
    if self.ndim == 0:
        return self.reshape(1)
    s = _norm_dim(start_dim, self.ndim, "flatten")
    e = _norm_dim(end_dim, self.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten: start_dim cannot come after end_dim")
    shp = self.shape
    return self.reshape(shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


def unflatten(self, dim: int, sizes: Sequence[int]) -> "Tensor":
    d = _norm_dim(dim, self.ndim, "unflatten")
    sizes = tuple(sizes)
    n = self.shape[d]
    inner = _infer_shape(sizes, n) if -1 in sizes else sizes
    if math.prod(inner) != n:
        raise RuntimeError(f"unflatten: provided sizes {list(sizes)} don't multiply up to the size of "
                           f"dim {dim} ({n}) in the input tensor")
    return self.reshape(self.shape[:d] + inner + self.shape[d + 1:])


def permute(self, *dims: Any) -> "Tensor":
    dims = _as_shape(dims)
    if len(dims) != self.ndim:
        raise RuntimeError(f"permute: number of dims don't match in permute: input has {self.ndim} "
                           f"dims, got {len(dims)}")
    dims = tuple(_norm_dim(d, self.ndim, "permute") for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"permute: repeated dim in {dims}")
    if dims == tuple(range(self.ndim)):
        return self
    return _view(self, O.PERMUTE, {"dims": dims})


def transpose(self, dim0: int, dim1: int) -> "Tensor":
    if self.ndim == 0:
        return self
    d0 = _norm_dim(dim0, self.ndim, "transpose")
    d1 = _norm_dim(dim1, self.ndim, "transpose")
    dims = list(range(self.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return self.permute(*dims)


def t(self) -> "Tensor":
    if self.ndim > 2:
        raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
    return self.T


def movedim(self, source: int, destination: int) -> "Tensor":
    s = _norm_dim(source, self.ndim, "movedim")
    d = _norm_dim(destination, self.ndim, "movedim")
    order = [i for i in range(self.ndim) if i != s]
    order.insert(d, s)
    return self.permute(*order)


def squeeze(self, dim: Any = None) -> "Tensor":
    if dim is None:
        shape = tuple(s for s in self.shape if s != 1)
    else:
        dims = _norm_dims(dim, self.ndim, "squeeze") or ()
        shape = tuple(s for i, s in enumerate(self.shape) if not (i in dims and s == 1))
    return self.reshape(shape)


def unsqueeze(self, dim: int) -> "Tensor":
    d = _norm_dim(dim, self.ndim + 1, "unsqueeze")
    return self.reshape(self.shape[:d] + (1,) + self.shape[d:])


def expand(self, *sizes: Any) -> "Tensor":
    sizes = _as_shape(sizes)
    if len(sizes) < self.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({self.ndim})")
    lead = len(sizes) - self.ndim
    shape = []
    for i, s in enumerate(sizes):
        if i >= lead:
            cur = self.shape[i - lead]
            if s == -1:
                s = cur
            elif cur != 1 and cur != s:
                raise RuntimeError(f"expand: the expanded size of the tensor ({s}) must match the "
                                   f"existing size ({cur}) at non-singleton dimension {i}. Target "
                                   f"sizes: {list(sizes)}. Tensor sizes: {list(self.shape)}")
        elif s < 0:
            raise RuntimeError(f"expand: the expanded size {s} is not allowed in a leading, "
                               "non-existing dimension")
        shape.append(s)
    shape = tuple(shape)
    if shape == self.shape:
        return self
    return _view(self, O.EXPAND, {"shape": shape})


def expand_as(self, other: "Tensor") -> "Tensor":
    return self.expand(other.shape)


def broadcast_to(self, shape: Sequence[int]) -> "Tensor":
    return self.expand(tuple(shape))


def repeat(self, *sizes: Any) -> "Tensor":
    reps = _as_shape(sizes)
    if len(reps) < self.ndim:
        raise RuntimeError("repeat: number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    x = self.reshape((1,) * (len(reps) - self.ndim) + self.shape)
    return self._apply(O.TILE, (x,), {"reps": reps})


def tile(self, *dims: Any) -> "Tensor":
    reps = _as_shape(dims)
    if len(reps) < self.ndim:
        reps = (1,) * (self.ndim - len(reps)) + reps
    return self.repeat(reps)


def flip(self, *dims: Any) -> "Tensor":
    dims = _as_shape(dims)
    d = _norm_dims(dims, self.ndim, "flip")
    return self._apply(O.FLIP, (self,), {"dims": d})


def fliplr(self) -> "Tensor":
    return self.flip(1)


def flipud(self) -> "Tensor":
    return self.flip(0)


def roll(self, shifts: Any, dims: Any = None) -> "Tensor":
    if dims is None:
        flat = self.flatten()
        return self._apply(O.ROLL, (flat,), {"shifts": int(shifts), "dims": 0}).reshape(self.shape)
    if isinstance(shifts, (int, np.integer)):
        shifts = (int(shifts),)
        dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    shifts, dims = tuple(shifts), tuple(dims) if not isinstance(dims, int) else (dims,)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: shifts and dimensions must align. shifts: {len(shifts)}, dims: "
                           f"{len(dims)}")
    dims = tuple(_norm_dim(d, self.ndim, "roll") for d in dims)
    return self._apply(O.ROLL, (self,), {"shifts": shifts, "dims": dims})


def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple:
    d = _norm_dim(dim, self.ndim, "split")
    n = self.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        s = int(split_size_or_sections)
        if s <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {s}")
        sizes = [s] * (n // s) + ([n % s] if n % s else [])
        if n == 0:
            sizes = [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise RuntimeError(f"split: split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got split_sizes={sizes}")
    out = []
    start = 0
    for s in sizes:
        idx = (slice(None),) * d + (slice(start, start + s),)
        out.append(self[idx])
        start += s
    return _multi_output(tuple(out), "Split")


def chunk(self, chunks: int, dim: int = 0) -> tuple:
    if chunks <= 0:
        raise RuntimeError(f"chunk: number of chunks must be greater than 0, got {chunks}")
    d = _norm_dim(dim, self.ndim, "chunk")
    n = self.shape[d]
    size = -(-n // chunks) if n else 1
    return self.split(max(size, 1), d)


def tensor_split(self, sections: int, dim: int = 0) -> tuple:
    d = _norm_dim(dim, self.ndim, "tensor_split")
    n = self.shape[d]
    q, r = divmod(n, sections)
    return self.split([q + 1] * r + [q] * (sections - r), d)


def unbind(self, dim: int = 0) -> tuple:
    d = _norm_dim(dim, self.ndim, "unbind")
    return _multi_output(tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d])), "Unbind")


def tril(self, diagonal: int = 0) -> "Tensor":
    if self.ndim < 2:
        raise RuntimeError(f"tril: input tensor must have at least 2 dimensions, got {self.ndim}")
    return self._apply(O.TRI, (self,), {"k": diagonal, "lower": True})


def triu(self, diagonal: int = 0) -> "Tensor":
    if self.ndim < 2:
        raise RuntimeError(f"triu: input tensor must have at least 2 dimensions, got {self.ndim}")
    return self._apply(O.TRI, (self,), {"k": diagonal, "lower": False})


# ====================================================================== indexing
def getitem(self, index: Any) -> "Tensor":
    idx, advanced = _convert_index(index, self.shape)
    if advanced:
        return self._apply(O.INDEX, (self,), {"index": idx, "advanced": True})
    if not any(i is Ellipsis for i in idx):
        idx = idx + (Ellipsis,)  # a full integer index then gives a 0-d view, not a NumPy scalar copy
    return _view(self, O.INDEX, {"index": idx, "advanced": False})


def gather(self, dim: int, index: "Tensor") -> "Tensor":
    d = _norm_dim(dim, self.ndim, "gather")
    idx = _index_array(index, "gather")
    if idx.ndim != self.ndim:
        raise RuntimeError(f"gather: index tensor must have the same number of dimensions as input "
                           f"tensor ({idx.ndim} != {self.ndim})")
    for i, (si, sx) in enumerate(zip(idx.shape, self.shape)):
        if i != d and si > sx:
            raise RuntimeError(f"gather: size of index {tuple(idx.shape)} does not match input "
                               f"{tuple(self.shape)} at dimension {i} (expected <= {sx})")
    n = self.shape[d]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"gather: index {int(idx.max() if idx.max() >= n else idx.min())} is out of "
                         f"bounds for dimension {d} with size {n}")
    idx = idx % n if n else idx
    if any(si != sx for i, (si, sx) in enumerate(zip(idx.shape, self.shape)) if i != d):
        # torch reads only the index's extent of the input (along dim d the index reaches anywhere:
        # no slice there, so a (N, 1) index into (N, C), as nll_loss's, takes no full-size copy)
        x = self[tuple(slice(0, s) if i != d else slice(None) for i, s in enumerate(idx.shape))]
    else:
        x = self
    return self._apply(O.TAKE_ALONG, (x,), {"index": idx, "dim": d})


def take_along_dim(self, indices: "Tensor", dim: int | None = None) -> "Tensor":
    if dim is None:
        T = state.tensor_type
        return self.flatten().gather(0, (indices if isinstance(indices, T) else T(indices)).flatten())
    idx = _index_array(indices, "take_along_dim")
    d = _norm_dim(dim, self.ndim, "take_along_dim")
    shape = list(np.broadcast_shapes(
        tuple(s for i, s in enumerate(self.shape) if i != d),
        tuple(s for i, s in enumerate(idx.shape) if i != d)))
    xs, is_ = list(shape), list(shape)
    xs.insert(d, self.shape[d])
    is_.insert(d, idx.shape[d])
    return self.expand(xs).gather(d, self._wrap(np.broadcast_to(idx, is_)))


def index_select(self, dim: int, index: "Tensor") -> "Tensor":
    d = _norm_dim(dim, self.ndim, "index_select")
    idx = _index_array(index, "index_select")
    if idx.ndim > 1:
        raise IndexError(f"index_select: index must be 0- or 1-D, got {idx.ndim}-D")
    return self[(slice(None),) * d + (idx.reshape(-1),)]


def scatter_add(self, dim: int, index: "Tensor", src: "Tensor") -> "Tensor":
    d = _norm_dim(dim, self.ndim, "scatter_add")
    idx = _index_array(index, "scatter_add")
    if idx.ndim != self.ndim:
        raise RuntimeError(f"scatter_add: index must have the same number of dimensions as self "
                           f"({idx.ndim} != {self.ndim})")
    n = self.shape[d]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"scatter_add: index {int(idx.max())} is out of bounds for dimension {d} "
                         f"with size {n}")
    a, b = _coerce(self, src, "scatter_add")
    return self._apply(O.SCATTER_ADD, (a, b), {"index": idx % n if n else idx, "dim": d})
