"""safetensors files: state dicts that PyTorch, Hugging Face and retrograd all read.

``save_safetensors``/``load_safetensors`` move ``{dotted name: array}`` dicts to and
from a ``.safetensors`` file (metadata ``format: pt``, so ``transformers`` and
``safetensors.torch.load_file`` accept it). ``save``/``load`` (``rg.save``,
``rg.load``, also ``rg.serialization.save``/``load``) take PyTorch's arguments and
write a state dict, or a nested dict of tensors and plain values (its structure
goes into the file's metadata), to a path or a binary file object; nothing is
ever pickled or unpickled, so a whole Module is refused with a message that says
to save its ``state_dict()``. ``add_safe_globals``/``safe_globals`` exist as in
``torch.serialization`` and have no effect. ``import_torch_state_dict`` reads
weights written by PyTorch (``safetensors.torch.save_file``/``save_model``, or a
``torch.save`` file when PyTorch is installed) into NumPy arrays a retrograd
model's ``load_state_dict`` accepts, upcasting bfloat16 to float32 and dropping
``module.``/``_orig_mod.`` prefixes that DataParallel and ``torch.compile`` add.
Reading goes through ``safetensors_reader``, which checks a file whole before
making any array and needs no third-party package; writing uses ``safetensors``
(the bytes PyTorch writes, BF16 included for ``bfloat16`` arrays).
"""
from __future__ import annotations

import io
import json
import os
from collections import OrderedDict
from typing import Any, BinaryIO, Mapping, Union

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor, wrap_array
from .safetensors_reader import (MAX_HEADER, SafetensorsFileError, bfloat16_dtype, check_header_length,
                                 parse_header, read_safetensors, read_safetensors_path)
from .tree import TreeError, flatten, unflatten

__all__ = ["save_safetensors", "load_safetensors", "save", "load", "import_torch_state_dict",
           "SafetensorsFileError", "add_safe_globals", "get_safe_globals", "clear_safe_globals", "safe_globals",
           "get_unsafe_globals_in_checkpoint"]

_TREE_KEY = "retrograd.tree"
_ORDER_KEY = "retrograd.order"


def _safetensors_numpy():
    try:
        import safetensors.numpy as stn
    except ImportError:  # pragma: no cover - safetensors is a dependency of the train extra
        raise ImportError("retrograd.io needs the 'safetensors' package: pip install 'retrograd[train]' "
                          "or pip install safetensors") from None
    return stn


def _as_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        arr = value._array
    elif isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":  # NumPy has no bfloat16 of its own: the same bits through int16
            bf16 = bfloat16_dtype()
            if bf16 is None:
                raise ImportError(f"save_safetensors: {name!r} is a bfloat16 tensor; saving it needs the "
                                  "'ml_dtypes' package (pip install ml_dtypes)")
            import torch  # loaded already: value is a torch.Tensor
            arr = t.contiguous().view(torch.int16).numpy().view(bf16)
        else:
            arr = t.numpy()
    else:
        raise TypeError(f"save_safetensors: {name!r} is a {type(value).__name__}, expected an rg.Tensor or "
                        "np.ndarray")
    if arr.dtype == object:
        raise TypeError(f"save_safetensors: {name!r} is an object array")
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _prepare(state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None
             ) -> tuple["OrderedDict[str, np.ndarray]", dict]:
    arrays = OrderedDict()
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise TypeError(f"save_safetensors: keys must be strings, got {k!r}")
        arrays[k] = _as_numpy(k, v)
    meta = {"format": "pt", _ORDER_KEY: json.dumps(list(arrays))}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    return arrays, meta


def save_safetensors(state_dict: Mapping[str, Any], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``{name: Tensor or array}`` to ``path`` as safetensors (names kept as given, dotted)."""
    stn = _safetensors_numpy()
    arrays, meta = _prepare(state_dict, metadata)
    stn.save_file(dict(arrays), os.fspath(path), metadata=meta)


def _load_with_meta(path: str | os.PathLike, *, bf16_as_float32: bool = False
                    ) -> tuple["OrderedDict[str, np.ndarray]", dict]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SafetensorsFileError(f"{path}: no such safetensors file")
    arrays, meta = read_safetensors_path(path, bf16_as_float32=bf16_as_float32)
    return OrderedDict((k, arrays[k]) for k in _order(meta, arrays)), meta


def load_safetensors(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """``{name: np.ndarray}`` from a safetensors file, in the order it was saved when known.

    The file is checked whole before any array is made (see ``safetensors_reader``);
    BF16 tensors come back as ``bfloat16`` arrays (ml_dtypes). Raises
    ``SafetensorsFileError`` naming the file (and the tensor) when it is missing,
    truncated or corrupted."""
    return _load_with_meta(path)[0]


def _order(meta: dict, arrays: dict) -> list:
    """The saved order (metadata written by ``save_safetensors``) when it names exactly these arrays."""
    try:
        order = json.loads(meta.get(_ORDER_KEY, "[]"))
    except (ValueError, RecursionError):
        return list(arrays)
    if not isinstance(order, list) or not all(isinstance(k, str) for k in order) or \
            len(order) != len(arrays) or set(order) != set(arrays):
        return list(arrays)
    return order


# --------------------------------------------------------------------------- rg.save / rg.load
FileLike = Union[str, os.PathLike, BinaryIO]


def _is_path(f: Any) -> bool:
    return isinstance(f, (str, os.PathLike))


def _check_file_object(f: Any, op: str, method: str, mode: str) -> None:
    if isinstance(f, io.TextIOBase):
        raise TypeError(f"{op}: {getattr(f, 'name', f)!r} is open in text mode; open it in binary mode: "
                        f"open(path, {mode!r})")
    if not callable(getattr(f, method, None)):
        raise TypeError(f"{op}: f must be a path (str or os.PathLike) or a binary file object with {method}(), "
                        f"got {type(f).__name__}")


def _encode(obj: Any) -> tuple[dict, dict | None]:
    """Arrays and metadata for ``obj``. A state dict (an OrderedDict of Tensors that need no grad,
    what ``state_dict()`` returns) is stored as it is; anything else with its structure as JSON."""
    if isinstance(obj, Module):
        raise TypeError(
            f"rg.save: got a whole model ({type(obj).__name__}); retrograd stores tensors and plain data as "
            "safetensors and never pickles Python objects, so it cannot store a model's class and code. Save "
            "its weights with rg.save(model.state_dict(), f) and load them into a model built the same way "
            "with model.load_state_dict(rg.load(f)), as PyTorch recommends (torch.load refuses whole models "
            "by default since 2.6)")
    if isinstance(obj, OrderedDict) and obj and all(isinstance(k, str) for k in obj) and \
            all(type(v) is Tensor and not v.requires_grad for v in obj.values()):
        return dict(obj), None
    arrays: dict[str, np.ndarray] = {}
    try:
        tree = flatten(obj, arrays)
    except TypeError as e:
        raise TypeError(f"rg.save: {e}") from None
    return arrays, {_TREE_KEY: json.dumps(tree)}


def _decode(arrays: "OrderedDict[str, np.ndarray]", meta: dict, name: str) -> Any:
    if _TREE_KEY not in meta:
        return OrderedDict((k, wrap_array(v)) for k, v in arrays.items())
    try:
        tree = json.loads(meta[_TREE_KEY])
    except (ValueError, RecursionError) as e:
        raise SafetensorsFileError(f"{name}: corrupted {_TREE_KEY} metadata: {type(e).__name__}: {e}") from None
    try:
        return unflatten(tree, dict(arrays))
    except TreeError as e:
        raise SafetensorsFileError(f"{name}: corrupted {_TREE_KEY} metadata: {e}") from None


def save(obj: Any, f: FileLike, pickle_module: Any = None, pickle_protocol: int | None = None,
         _use_new_zipfile_serialization: bool = True, _disable_byteorder_record: bool = False) -> None:
    """``rg.save`` (``torch.save``): ``obj`` to ``f`` (a path or a binary file object) as safetensors.

    ``obj`` is a state dict (``model.state_dict()``, ``optimizer.state_dict()``) or
    any nesting of dicts (``OrderedDict`` too), lists and tuples whose leaves are
    Tensors (their dtype, ``requires_grad`` and ``Parameter`` class kept),
    ``np.ndarray``s, NumPy scalars, numbers, strings, None: a checkpoint like
    ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}``
    comes back from ``rg.load`` exactly. A whole Module, or any other Python
    object, raises ``TypeError``: retrograd never pickles, so save
    ``model.state_dict()`` and load it with ``model.load_state_dict(rg.load(f))``.
    The arrays are named by their dotted place in ``obj`` (a state dict's own keys),
    so ``safetensors.torch.load_file`` reads the file as PyTorch tensors.
    ``pickle_module``, ``pickle_protocol`` and the private flags are accepted as
    ``torch.save`` takes them and change nothing, since nothing is pickled.
    """
    arrays, meta = _encode(obj)
    if _is_path(f):
        save_safetensors(arrays, f, metadata=meta)
        return
    _check_file_object(f, "rg.save", "write", "wb")
    arrays, meta = _prepare(arrays, meta)
    f.write(_safetensors_numpy().save(dict(arrays), metadata=meta))


def _read_exactly(f: Any, n: int, name: str) -> bytes:
    """``n`` bytes of ``f``, read in chunks: a stream that only claims to be long costs what it holds."""
    chunks, left = [], n
    while left > 0:
        b = f.read(min(left, 1 << 20))
        if not b:
            raise SafetensorsFileError(f"{name}: truncated safetensors data: expected {n} bytes here, the "
                                       f"stream ended after {n - left}")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def _read_stream(f: Any, name: str) -> tuple["OrderedDict[str, np.ndarray]", dict]:
    """One safetensors object from a binary stream, reading exactly its bytes (not to the end)."""
    head = _read_exactly(f, 8, name)
    header_bytes = _read_exactly(f, check_header_length(head, name), name)
    entries, _ = parse_header(header_bytes, None, name)
    data = _read_exactly(f, entries[-1].end if entries else 0, name)
    blob = io.BytesIO(head + header_bytes + data)
    arrays, meta = read_safetensors(blob, len(blob.getbuffer()), name)
    return OrderedDict((k, arrays[k]) for k in _order(meta, arrays)), meta


def _check_map_location(map_location: Any) -> None:
    if map_location is None:
        return
    if isinstance(map_location, dict):  # {saved location: new location}
        for v in map_location.values():
            _check_device(v, map_location)
        return
    if callable(map_location) and not isinstance(getattr(map_location, "type", None), str):
        return  # torch's storage-remapping function: every tensor is on the CPU already
    _check_device(map_location, map_location)


def _check_device(d: Any, given: Any) -> None:
    if isinstance(d, str):
        kind = d.split(":")[0].strip()
    elif isinstance(d, int) and not isinstance(d, bool):
        kind = f"cuda:{d}"  # an int means a CUDA device index in torch.load
    elif isinstance(getattr(d, "type", None), str):  # rg.device, torch.device
        kind = d.type
    else:
        raise TypeError(f"rg.load: map_location must be None, 'cpu', a device, a dict of locations or a "
                        f"function, got {type(d).__name__}")
    if kind != "cpu":
        raise RuntimeError(f"rg.load: map_location={given!r} asks for device {kind!r}, but retrograd runs on "
                           "the CPU only; pass map_location='cpu' or leave it out")


def load(f: FileLike, map_location: Any = None, pickle_module: Any = None, *, weights_only: bool | None = None,
         mmap: bool | None = None) -> Any:
    """``rg.load`` (``torch.load``): what ``rg.save`` wrote to ``f`` (a path or a binary file object).

    A state dict comes back as an ``OrderedDict`` of Tensors that
    ``model.load_state_dict`` takes; anything else as it was saved. Nothing is
    ever unpickled, so ``weights_only`` (``True``, ``False`` or ``None``) gives
    the same result either way: the file can only hold tensors and plain data.
    ``map_location`` may be None, ``"cpu"``, a CPU device, a dict mapping saved
    locations to ``"cpu"`` or a function (not called: every tensor is on the CPU
    already); asking for any other device raises ``RuntimeError``. A
    ``torch.save`` file raises ``SafetensorsFileError`` that points to
    ``retrograd.io.import_torch_state_dict``.
    """
    _check_map_location(map_location)
    for name, v in (("weights_only", weights_only), ("mmap", mmap)):
        if v is not None and not isinstance(v, bool):
            raise TypeError(f"rg.load: {name} must be True, False or None, got {v!r}")
    if _is_path(f):
        path = os.fspath(f)
        with open(path, "rb"):  # FileNotFoundError / IsADirectoryError as torch.load raises them
            pass
        arrays, meta = _load_with_meta(path)
        return _decode(arrays, meta, path)
    _check_file_object(f, "rg.load", "read", "rb")
    name = str(getattr(f, "name", type(f).__name__))
    arrays, meta = _read_stream(f, name)
    return _decode(arrays, meta, name)


# --------------------------------------------------------------------------- torch.serialization's allow-list
_safe_globals: set = set()


def _checked_globals(safe_globals: Any, op: str) -> set:
    if not isinstance(safe_globals, (list, tuple, set)):
        raise TypeError(f"{op}: expected a list of classes/functions (or (class, 'module.Name') pairs), got "
                        f"{type(safe_globals).__name__}")
    for g in safe_globals:
        ok = callable(g) or (isinstance(g, tuple) and len(g) == 2 and callable(g[0]) and isinstance(g[1], str))
        if not ok:
            raise TypeError(f"{op}: expected a class, a function or a (class, 'module.Name') pair, got {g!r}")
    return set(safe_globals)


def add_safe_globals(safe_globals: list) -> None:
    """``torch.serialization.add_safe_globals``: accepted so PyTorch code runs, with no effect on
    loading: ``rg.load`` never unpickles, so there is nothing to allow. ``get_safe_globals`` lists them."""
    global _safe_globals
    _safe_globals = _safe_globals | _checked_globals(safe_globals, "add_safe_globals")


def get_safe_globals() -> list:
    """The globals given to ``add_safe_globals`` (they have no effect; see there)."""
    return list(_safe_globals)


def clear_safe_globals() -> None:
    global _safe_globals
    _safe_globals = set()


class safe_globals:
    """``with rg.serialization.safe_globals([...]):`` as in PyTorch; no effect on loading
    (``rg.load`` never unpickles), the globals are listed by ``get_safe_globals`` inside the block."""

    def __init__(self, safe_globals: list) -> None:
        self.safe_globals = _checked_globals(safe_globals, "safe_globals")

    def __enter__(self) -> None:
        global _safe_globals
        _safe_globals = _safe_globals | self.safe_globals

    def __exit__(self, *exc: Any) -> None:
        global _safe_globals
        _safe_globals = _safe_globals - self.safe_globals


def get_unsafe_globals_in_checkpoint(f: FileLike) -> list:
    """``[]``: a file ``rg.save`` wrote holds no pickled globals (it is read to check it is one)."""
    load(f)
    return []


# --------------------------------------------------------------------------- PyTorch weights
_PREFIXES = ("module.", "_orig_mod.")


def import_torch_state_dict(path: str | os.PathLike, *, strip_prefixes: tuple = _PREFIXES
                            ) -> "OrderedDict[str, np.ndarray]":
    """Weights saved by PyTorch as ``{name: np.ndarray}`` for ``model.load_state_dict``.

    ``path``: a ``.safetensors`` file (read without PyTorch; bfloat16 becomes
    float32) or a ``torch.save`` file (``.pt``/``.pth``/``.bin``, read with
    ``torch.load(weights_only=True)``, so PyTorch must be installed). Prefixes
    in ``strip_prefixes`` shared by every key are removed. A safetensors file is
    checked whole first: duplicate keys, overlapping or gapped data offsets,
    negative shapes, non-string metadata, offsets past the end and a dtype,
    shape and byte length that disagree raise ``SafetensorsFileError`` naming
    the tensor and what was wrong.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"import_torch_state_dict: {path}: no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    looks_safetensors = path.endswith(".safetensors") or (len(head) == 8 and
                                                          int.from_bytes(head, "little") <= MAX_HEADER and
                                                          not head.startswith(b"PK"))
    if looks_safetensors:
        sd = _load_with_meta(path, bf16_as_float32=True)[0]
    else:
        try:
            import torch
        except ImportError:
            raise ImportError(f"import_torch_state_dict: {path} is not a safetensors file; reading a torch.save "
                              "file needs PyTorch installed (or re-save it with safetensors.torch.save_file)") \
                from None
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise SafetensorsFileError(f"import_torch_state_dict: {path} holds a {type(obj).__name__}, expected a "
                                       "state dict ({name: tensor})")
        sd = OrderedDict()
        for k, v in obj.items():
            if not hasattr(v, "detach"):
                continue
            t = v.detach().cpu()
            if t.dtype == torch.bfloat16:
                t = t.float()
            sd[k] = t.numpy().copy()
    for p in strip_prefixes:
        if sd and all(k.startswith(p) for k in sd):
            sd = OrderedDict((k[len(p):], v) for k, v in sd.items())
    return sd
