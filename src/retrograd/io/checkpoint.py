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

The manifest is not trusted either: an entry must be a plain relative path
inside the folder (no ``..``, no absolute path, no symlink anywhere on the way,
a regular file), so nothing outside the folder is opened, hashed or described
(its size never appears in a message); the size is checked before the hash and
no more than the recorded size is ever read; a malformed manifest raises
``CheckpointError``. Loaders read only files the manifest lists
(``load_tree(..., files=manifest["files"])``, ``listed``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import tempfile
import uuid
import warnings
from typing import Any, Iterator

import numpy as np

from .serialization import SafetensorsFileError, load_safetensors, save_safetensors
from .tree import TreeError, flatten, unflatten

__all__ = ["CheckpointError", "atomic_directory", "verify_directory", "resolve_directory", "save_tree",
           "load_tree", "write_json", "read_json", "listed", "MANIFEST"]

MANIFEST = "manifest.json"
# JSON files of a checkpoint (manifest, trainer state, config) are KBs to a few MB; a larger one is not ours
_MAX_JSON_BYTES = 256 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def _sha256(path: pathlib.Path, limit: int | None = None) -> str:
    """SHA-256 of the file; with ``limit``, of at most ``limit + 1`` bytes (a file that grew shows as changed)."""
    h = hashlib.sha256()
    left = None if limit is None else limit + 1
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
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


def _entry_path(root: pathlib.Path, name: Any, mpath: pathlib.Path) -> pathlib.Path:
    """``root / name`` for a manifest entry that stays inside ``root`` and is a regular file reached
    without following a symlink; anything else raises before the file is opened or measured."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise CheckpointError(f"{mpath}: corrupted checkpoint manifest: file name {name!r} is not a plain "
                              "relative path")
    parts = pathlib.PurePosixPath(name).parts
    if pathlib.PurePosixPath(name).is_absolute() or pathlib.PureWindowsPath(name).drive or \
            any(p in ("..", ".") for p in name.split("/")) or not parts:
        raise CheckpointError(f"{mpath}: refused manifest entry {name!r}: it points outside the checkpoint "
                              f"folder (only plain relative paths inside {root} are read)")
    f = root
    for i, part in enumerate(parts):
        f = f / part
        try:
            st = os.lstat(f)
        except FileNotFoundError:
            raise CheckpointError(f"{root / name}: missing from checkpoint {root}") from None
        except OSError as e:
            raise CheckpointError(f"{root / name}: cannot be read: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise CheckpointError(f"{mpath}: refused manifest entry {name!r}: {f} is a symbolic link (a "
                                  "checkpoint's files must lie inside its folder)")
        last = i == len(parts) - 1
        if last and not stat.S_ISREG(st.st_mode) or not last and not stat.S_ISDIR(st.st_mode):
            raise CheckpointError(f"{mpath}: refused manifest entry {name!r}: {f} is not a regular file")
    return f


def _read_manifest(path: pathlib.Path) -> dict:
    mpath = path / MANIFEST
    try:
        st = os.lstat(mpath)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        what = "missing" if st is None else "not a regular file"
        raise CheckpointError(f"{mpath}: {what}: {path} is not a complete retrograd checkpoint")
    manifest = read_json(mpath)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise CheckpointError(f"{mpath}: corrupted checkpoint manifest: expected an object with a 'files' table "
                              "of {name: {bytes, sha256}}")
    for name, info in files.items():
        ok = isinstance(info, dict) and isinstance(info.get("bytes"), int) and \
            not isinstance(info.get("bytes"), bool) and info["bytes"] >= 0 and \
            isinstance(info.get("sha256"), str) and _SHA256.fullmatch(info["sha256"]) is not None
        if not ok:
            raise CheckpointError(f"{mpath}: corrupted checkpoint manifest: the entry for {name!r} must be "
                                  f"{{\"bytes\": <size>, \"sha256\": <64 hex digits>}}, got {str(info)[:120]}")
    return manifest


def verify_directory(path: str | os.PathLike) -> dict:
    """Check every file of a checkpoint against its manifest; returns the manifest.

    Entries that would leave the folder (``..``, absolute paths, symlinks) or
    are not regular files are refused; a file's size is compared before it is
    hashed, and no more than that size is read."""
    path = pathlib.Path(path)
    mpath = path / MANIFEST
    manifest = _read_manifest(path)
    files = manifest["files"]
    for name in files:
        _entry_path(path, name, mpath)  # every entry is checked before any file is read
    for name, info in files.items():
        f = path / name
        size = os.lstat(f).st_size
        if size != info["bytes"]:
            raise CheckpointError(f"{f}: truncated or corrupted: {size} bytes, the manifest records "
                                  f"{info['bytes']}")
        if _sha256(f, limit=info["bytes"]) != info["sha256"]:
            raise CheckpointError(f"{f}: corrupted: its SHA-256 does not match the manifest")
    return manifest


def listed(manifest: dict, name: str) -> bool:
    """Whether the (verified) manifest lists ``name``: loaders read nothing else."""
    return name in manifest["files"]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(path: pathlib.Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_json_default))


def read_json(path: pathlib.Path) -> Any:
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > _MAX_JSON_BYTES:
                raise CheckpointError(f"{path}: over {_MAX_JSON_BYTES >> 20} MiB, not a checkpoint's JSON file")
            raw = fh.read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read: {e.strerror}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError, nesting too deep
        raise CheckpointError(f"{path}: corrupted JSON: {type(e).__name__}: {e}") from None


def save_tree(folder: pathlib.Path, name: str, obj: Any) -> None:
    """``obj`` as ``folder/name.json`` plus ``folder/name.safetensors`` for its arrays (if any)."""
    arrays: dict[str, np.ndarray] = {}
    tree = flatten(obj, arrays)
    write_json(folder / f"{name}.json", tree)
    if arrays:
        save_safetensors(arrays, folder / f"{name}.safetensors")


def load_tree(folder: pathlib.Path, name: str, files: Any = None) -> Any:
    """What ``save_tree(folder, name, obj)`` wrote. With ``files`` (a verified manifest's ``files``
    table) only listed files are read: an unlisted ``name.json`` is missing, an unlisted
    ``name.safetensors`` is ignored."""
    js, st = folder / f"{name}.json", folder / f"{name}.safetensors"
    if files is not None and js.name not in files:
        raise CheckpointError(f"{js}: not listed in the checkpoint's manifest (only listed files are read)")
    tree = read_json(js)
    arrays: dict = {}
    if (st.name in files) if files is not None else st.exists():
        try:
            arrays = dict(load_safetensors(st))
        except SafetensorsFileError as e:
            raise CheckpointError(str(e)) from e
    try:
        return unflatten(tree, arrays)
    except TreeError as e:
        raise CheckpointError(f"{js}: {e} (is {st} missing?)") from e
