"""Reading a Hugging Face model folder: ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``,
and for sentence-transformers ``modules.json`` and ``1_Pooling/config.json``).

Everything here is plain reading and checking; the models that use it live in
``retrograd.models``. Every defect raises ``PretrainedError`` naming the folder,
the file and what was expected. ``sha256_of`` fingerprints the base weights that
a fine-tuned run folder refers to.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections import OrderedDict
from typing import Any, Iterable, Mapping

import numpy as np

from .serialization import load_safetensors

__all__ = ["PretrainedError", "model_folder", "read_json_file", "read_config", "read_weights",
           "check_state_dict", "sha256_of"]


class PretrainedError(ValueError):
    """A pretrained model folder that cannot be loaded (missing file, bad config, key or shape mismatch)."""


def model_folder(folder: str | os.PathLike, who: str) -> pathlib.Path:
    """``folder`` as a Path, checked to be an existing directory."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{who}: expected a folder path (str or os.PathLike), got {type(folder).__name__}")
    path = pathlib.Path(folder).expanduser()
    if not path.exists():
        raise PretrainedError(f"{who}: model folder {str(path)!r} does not exist (expected a Hugging Face folder "
                              f"with config.json and model.safetensors; nothing is downloaded)")
    if not path.is_dir():
        raise PretrainedError(f"{who}: {str(path)!r} is not a folder (expected a Hugging Face model folder "
                              f"with config.json and model.safetensors)")
    return path


def _file(folder: pathlib.Path, name: str, who: str) -> pathlib.Path:
    path = folder / name
    if not path.is_file():
        raise PretrainedError(f"{who}: {name} not found in {str(folder)!r}")
    return path


def read_json_file(folder: pathlib.Path, name: str, who: str) -> Any:
    """The parsed JSON file ``folder/name``; a missing or malformed file is a PretrainedError."""
    path = _file(folder, name, who)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PretrainedError(f"{who}: {path} is not valid JSON ({e})") from None


def read_config(folder: pathlib.Path, who: str, *, model_types: Iterable[str],
                architectures: Iterable[str]) -> dict:
    """``config.json``, checked to name a supported ``model_type`` and (if listed) ``architectures``."""
    cfg = read_json_file(folder, "config.json", who)
    if not isinstance(cfg, dict):
        raise PretrainedError(f"{who}: {folder / 'config.json'} must hold a JSON object, got {type(cfg).__name__}")
    model_types, architectures = sorted(model_types), sorted(architectures)
    mt = cfg.get("model_type")
    if mt not in model_types:
        raise PretrainedError(f"{who}: unsupported model_type {mt!r} in {folder / 'config.json'} "
                              f"(supported: {', '.join(model_types)})")
    arch = cfg.get("architectures")
    if arch is not None:
        if not isinstance(arch, list) or not all(isinstance(a, str) for a in arch):
            raise PretrainedError(f"{who}: 'architectures' in {folder / 'config.json'} must be a list of names, "
                                  f"got {arch!r}")
        bad = [a for a in arch if a not in architectures]
        if bad:
            raise PretrainedError(f"{who}: unsupported architecture(s) {', '.join(bad)} in "
                                  f"{folder / 'config.json'} (supported: {', '.join(architectures)})")
    return cfg


def read_weights(folder: pathlib.Path, who: str, name: str = "model.safetensors") -> "OrderedDict[str, np.ndarray]":
    """``{name: array}`` from the folder's safetensors file (``pytorch_model.bin`` is refused by name)."""
    path = folder / name
    if not path.is_file():
        other = [p.name for p in folder.glob("*.bin")]
        hint = (f"; found {', '.join(other)}: convert it to safetensors (retrograd reads no pickle)"
                if other else "")
        raise PretrainedError(f"{who}: {name} not found in {str(folder)!r}{hint}")
    return load_safetensors(path)


def check_state_dict(expected: Mapping[str, tuple], given: Mapping[str, np.ndarray], who: str,
                     where: str) -> None:
    """Raise one PretrainedError listing every missing key, unexpected key and shape mismatch."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(given[k].shape)}, model {tuple(expected[k])}"
              for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"missing key(s) {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
                        f" ({len(missing)} in all)")
    if unexpected:
        problems.append(f"unexpected key(s) {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
                        f" ({len(unexpected)} in all)")
    if shapes:
        problems.append(f"shape mismatch(es) {'; '.join(shapes[:8])}{' ...' if len(shapes) > 8 else ''}")
    if problems:
        raise PretrainedError(f"{who}: {where} does not fit the model built from config.json: "
                              + "; ".join(problems))


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
