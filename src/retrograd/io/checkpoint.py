"""Checkpoint folders written atomically and checked when read.

``atomic_directory(path)`` yields a fresh temporary folder next to ``path``;
when the ``with`` block succeeds it writes ``manifest.json`` (size and SHA-256
of every file), fsyncs every file and the folder, then renames the folder over
``path`` (the previous one is moved aside first and deleted only once the new
one is in place). If anything fails the temporary folder is removed and the
previous checkpoint is left exactly as it was. ``verify_directory`` checks a
folder against its manifest and raises ``CheckpointError`` naming the first
missing, truncated or corrupted file. ``save_tree``/``load_tree`` store a
nested state (optimizer, scheduler, RNG ...) as ``name.json`` plus
``name.safetensors`` for its arrays.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import uuid
import warnings
from typing import Any, Iterator

import numpy as np

from .serialization import SafetensorsFileError, load_safetensors, save_safetensors
from .tree import flatten, unflatten

__all__ = ["CheckpointError", "atomic_directory", "verify_directory", "resolve_directory", "save_tree",
           "load_tree", "write_json", "read_json", "MANIFEST"]

MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read: missing, truncated or corrupted (the message names the file)."""


def _fsync_file(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Write a folder atomically: ``with atomic_directory(p) as tmp: <write files in tmp>``."""
    path = pathlib.Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    old: pathlib.Path | None = None
    try:
        yield tmp
        manifest = {"format": "retrograd-checkpoint", "version": 1,
                    "files": {str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                              for p in _files(tmp)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for p in _files(tmp) + [tmp / MANIFEST]:
            _fsync_file(p)
        for d in sorted({p.parent for p in _files(tmp)}, key=lambda d: -len(d.parts)):
            _fsync_dir(d)
        if path.exists():
            old = parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            os.rename(old, path)  # put the previous checkpoint back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resolve_directory(path: str | os.PathLike) -> pathlib.Path:
    """``path``, or the previous checkpoint moved aside by an interrupted save when ``path`` is missing."""
    path = pathlib.Path(path)
    if path.is_dir():
        return path
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime) \
        if path.parent.is_dir() else []
    if olds:
        warnings.warn(f"checkpoint {path} is missing; using {olds[-1]}, left by an interrupted save",
                      RuntimeWarning, stacklevel=3)
        return olds[-1]
    raise CheckpointError(f"{path}: no such checkpoint folder")


def verify_directory(path: str | os.PathLike) -> dict:
    """Check every file of a checkpoint against its manifest; returns the manifest."""
    path = pathlib.Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"{mpath}: missing: {path} is not a complete retrograd checkpoint")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{mpath}: corrupted checkpoint manifest: {e}") from e
    for name, info in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from checkpoint {path}")
        size = f.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(f"{f}: truncated or corrupted: {size} bytes, the manifest records "
                                  f"{info['bytes']}")
        if _sha256(f) != info["sha256"]:
            raise CheckpointError(f"{f}: corrupted: its SHA-256 does not match the manifest")
    return manifest


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(path: pathlib.Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_json_default))


def read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from checkpoint") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupted JSON: {e}") from e


def save_tree(folder: pathlib.Path, name: str, obj: Any) -> None:
    """``obj`` as ``folder/name.json`` plus ``folder/name.safetensors`` for its arrays (if any)."""
    arrays: dict[str, np.ndarray] = {}
    tree = flatten(obj, arrays)
    write_json(folder / f"{name}.json", tree)
    if arrays:
        save_safetensors(arrays, folder / f"{name}.safetensors")


def load_tree(folder: pathlib.Path, name: str) -> Any:
    tree = read_json(folder / f"{name}.json")
    st = folder / f"{name}.safetensors"
    arrays: dict = {}
    if st.exists():
        try:
            arrays = dict(load_safetensors(st))
        except SafetensorsFileError as e:
            raise CheckpointError(str(e)) from e
    try:
        return unflatten(tree, arrays)
    except KeyError as e:
        raise CheckpointError(f"{folder / (name + '.json')}: {e.args[0]} (is {st} missing?)") from e
