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
"""
from __future__ import annotations

import io
import json
import os
import struct
from collections import OrderedDict
from typing import Any, BinaryIO, Mapping, Union

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor, wrap_array
from .tree import flatten, unflatten

__all__ = ["save_safetensors", "load_safetensors", "save", "load", "import_torch_state_dict",
           "SafetensorsFileError", "add_safe_globals", "get_safe_globals", "clear_safe_globals", "safe_globals",
           "get_unsafe_globals_in_checkpoint"]

_TREE_KEY = "retrograd.tree"
_ORDER_KEY = "retrograd.order"


class SafetensorsFileError(ValueError):
    """A file that is not a readable safetensors file (missing, truncated, corrupted)."""


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
        arr = value.detach().cpu().numpy()
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


def _metadata(path: str) -> dict:
    from safetensors import safe_open
    with safe_open(path, framework="np") as f:
        return f.metadata() or {}


def load_safetensors(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """``{name: np.ndarray}`` from a safetensors file, in the order it was saved when known.

    Raises ``SafetensorsFileError`` naming the file when it is missing, truncated or corrupted."""
    stn = _safetensors_numpy()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SafetensorsFileError(f"{path}: no such safetensors file")
    try:
        arrays = stn.load_file(path)
        meta = _metadata(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        if "BF16" in str(e) or "bfloat16" in str(e).lower():
            return _read_raw(path)[0]
        raise SafetensorsFileError(f"{path}: not a readable safetensors file (truncated or corrupted?): {e}") \
            from e
    order = _order(meta, arrays)
    return OrderedDict((k, arrays[k]) for k in order)


def _order(meta: dict, arrays: dict) -> list:
    try:
        order = json.loads(meta.get(_ORDER_KEY, "[]"))
    except ValueError:
        order = []
    if sorted(order) != sorted(arrays):
        order = list(arrays)
    return order


# --------------------------------------------------------------------------- raw reader (bfloat16 and friends)
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
           "BOOL": np.bool_}


def _read_raw(path: str) -> tuple["OrderedDict[str, np.ndarray]", dict]:
    with open(path, "rb") as f:
        return _parse_raw(f.read(), path)


def _parse_raw(blob: bytes, path: str) -> tuple["OrderedDict[str, np.ndarray]", dict]:
    """Parse safetensors bytes (read from ``path``) by hand: 8-byte little-endian header
    length, JSON header, then the data. BF16 becomes float32 (exactly: bfloat16 is the
    top half of a float32)."""
    if len(blob) < 8:
        raise SafetensorsFileError(f"{path}: truncated safetensors file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise SafetensorsFileError(f"{path}: truncated safetensors file (header of {n} bytes, file of {len(blob)})")
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        raise SafetensorsFileError(f"{path}: corrupted safetensors header: {e}") from e
    meta = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + n:]
    out = OrderedDict()
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        if e > len(data):
            raise SafetensorsFileError(f"{path}: truncated: tensor {name!r} ends at byte {e} of {len(data)}")
        shape = tuple(info["shape"])
        dt = info["dtype"]
        if dt == "BF16":
            u16 = np.frombuffer(data[b:e], dtype="<u2")
            arr = (u16.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        elif dt in _DTYPES:
            arr = np.frombuffer(data[b:e], dtype=np.dtype(_DTYPES[dt]).newbyteorder("<")).reshape(shape).copy()
        else:
            raise SafetensorsFileError(f"{path}: tensor {name!r} has dtype {dt}, which NumPy cannot hold")
        out[name] = arr
    order = _order(meta, out)
    return OrderedDict((k, out[k]) for k in order), meta


# --------------------------------------------------------------------------- rg.save / rg.load
FileLike = Union[str, os.PathLike, BinaryIO]

# a real safetensors header is JSON of a few KB to a few MB; a larger "length" means another format
_MAX_HEADER = 100_000_000


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


def _decode(arrays: "OrderedDict[str, np.ndarray]", meta: dict) -> Any:
    if _TREE_KEY in meta:
        return unflatten(json.loads(meta[_TREE_KEY]), dict(arrays))
    return OrderedDict((k, wrap_array(v)) for k, v in arrays.items())


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
    chunks, left = [], n
    while left > 0:
        b = f.read(left)
        if not b:
            raise SafetensorsFileError(f"{name}: truncated safetensors data: expected {n} bytes here, the "
                                       f"stream ended after {n - left}")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def _check_header_length(head: bytes, name: str) -> int:
    (n,) = struct.unpack("<Q", head)
    if n <= _MAX_HEADER:
        return n
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise SafetensorsFileError(
            f"{name}: this is a torch.save file (a pickle), which rg.load does not read: retrograd never "
            "unpickles. Import PyTorch weights with retrograd.io.import_torch_state_dict(path) (PyTorch "
            "installed), or re-save them with safetensors.torch.save_file")
    raise SafetensorsFileError(f"{name}: not a safetensors file (its first 8 bytes give a header of {n} bytes)")


def _read_stream(f: Any, name: str) -> tuple["OrderedDict[str, np.ndarray]", dict]:
    """One safetensors object from a binary stream, reading exactly its bytes (not to the end)."""
    head = _read_exactly(f, 8, name)
    header_bytes = _read_exactly(f, _check_header_length(head, name), name)
    try:
        header = json.loads(header_bytes)
        end = max((info["data_offsets"][1] for k, info in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise SafetensorsFileError(f"{name}: corrupted safetensors header: {e!r}") from e
    blob = head + header_bytes + _read_exactly(f, int(end), name)
    try:
        arrays = _safetensors_numpy().load(blob)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        if "BF16" not in str(e) and "bfloat16" not in str(e).lower():
            raise SafetensorsFileError(f"{name}: not a readable safetensors file (corrupted?): {e}") from e
        arrays, _ = _parse_raw(blob, name)
    meta = header.get("__metadata__") or {}
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
        with open(path, "rb") as fh:  # FileNotFoundError / IsADirectoryError as torch.load raises them
            head = fh.read(8)
        if len(head) == 8:
            _check_header_length(head, path)
        arrays = load_safetensors(path)
        return _decode(arrays, _metadata(path))
    _check_file_object(f, "rg.load", "read", "rb")
    arrays, meta = _read_stream(f, str(getattr(f, "name", type(f).__name__)))
    return _decode(arrays, meta)


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
    in ``strip_prefixes`` shared by every key are removed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"import_torch_state_dict: {path}: no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    looks_safetensors = path.endswith(".safetensors") or (len(head) == 8 and
                                                          struct.unpack("<Q", head)[0] < 100_000_000 and
                                                          not head.startswith(b"PK"))
    if looks_safetensors:
        sd, _ = _read_raw(path)
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
