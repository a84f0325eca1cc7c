"""safetensors files: state dicts that PyTorch, Hugging Face and retrograd all read.

``save_safetensors``/``load_safetensors`` move ``{dotted name: array}`` dicts to and
from a ``.safetensors`` file (metadata ``format: pt``, so ``transformers`` and
``safetensors.torch.load_file`` accept it). ``save``/``load`` (``rg.save``,
``rg.load``) do the same for a Module or a state dict of Tensors, and also for a
nested dict of tensors and plain values (its structure goes into the file's
metadata). ``import_torch_state_dict`` reads weights written by PyTorch
(``safetensors.torch.save_file``/``save_model``, or a ``torch.save`` file when
PyTorch is installed) into NumPy arrays a retrograd model's ``load_state_dict``
accepts, upcasting bfloat16 to float32 and dropping ``module.``/``_orig_mod.``
prefixes that DataParallel and ``torch.compile`` add.
"""
from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

from ..tensor import Tensor, wrap_array
from .tree import flatten, unflatten

__all__ = ["save_safetensors", "load_safetensors", "save", "load", "import_torch_state_dict",
           "SafetensorsFileError"]

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


def save_safetensors(state_dict: Mapping[str, Any], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``{name: Tensor or array}`` to ``path`` as safetensors (names kept as given, dotted)."""
    stn = _safetensors_numpy()
    arrays = OrderedDict()
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise TypeError(f"save_safetensors: keys must be strings, got {k!r}")
        arrays[k] = _as_numpy(k, v)
    meta = {"format": "pt", _ORDER_KEY: json.dumps(list(arrays))}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
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
    """Parse a safetensors file by hand: 8-byte little-endian header length, JSON
    header, then the data. BF16 becomes float32 (exactly: bfloat16 is the top
    half of a float32)."""
    with open(path, "rb") as f:
        blob = f.read()
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
def save(obj: Any, path: str | os.PathLike) -> None:
    """``rg.save``: a Module (its ``state_dict()``), a state dict of Tensors, or a
    nested dict/list of Tensors and plain values, to one safetensors file."""
    if hasattr(obj, "state_dict") and hasattr(obj, "named_parameters"):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and all(isinstance(k, str) for k in obj) and \
            all(isinstance(v, (Tensor, np.ndarray)) for v in obj.values()):
        save_safetensors(obj, path)
        return
    arrays: dict[str, np.ndarray] = {}
    tree = flatten(obj, arrays)
    save_safetensors(arrays, path, metadata={_TREE_KEY: json.dumps(tree)})


def load(path: str | os.PathLike, map_location: Any = None, weights_only: bool = True) -> Any:
    """``rg.load``: what ``rg.save`` wrote; a state dict comes back as ``{name: rg.Tensor}``
    that ``model.load_state_dict`` takes. ``map_location``/``weights_only`` are
    accepted for PyTorch compatibility (CPU only; nothing is unpickled)."""
    arrays = load_safetensors(path)
    meta = _metadata(os.fspath(path))
    if _TREE_KEY in meta:
        return unflatten(json.loads(meta[_TREE_KEY]), {k: v for k, v in arrays.items()})
    return OrderedDict((k, wrap_array(v)) for k, v in arrays.items())


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
