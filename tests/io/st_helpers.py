"""Hand-made safetensors bytes and small checkpoint folders for the hardening and fuzz tests."""
import hashlib
import json
import pathlib
import struct

import numpy as np

import retrograd as rg
from retrograd.train import Trainer


def st_bytes(header, data: bytes = b"") -> bytes:
    """A safetensors file: ``header`` (a dict, or raw JSON bytes/str) then ``data``."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header)) + header + data


def entry(dtype: str, shape, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


def two_tensors() -> tuple[dict, bytes]:
    """A valid header with two F32 tensors, ``a`` (2, 3) then ``b`` (4,), and its data."""
    data = np.arange(6, dtype="<f4").tobytes() + np.arange(4, dtype="<f4").tobytes()
    return {"a": entry("F32", (2, 3), 0, 24), "b": entry("F32", (4,), 24, 40)}, data


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_manifest(folder: pathlib.Path, files: dict | None = None, raw: str | None = None) -> None:
    """Replace the manifest's ``files`` table (or the whole manifest with ``raw``)."""
    m = folder / "manifest.json"
    if raw is not None:
        m.write_text(raw)
        return
    man = json.loads(m.read_text())
    man["files"] = files
    m.write_text(json.dumps(man))


def rehash(folder: pathlib.Path) -> None:
    """Make the manifest agree with the files now in the folder (an attacker who can write it)."""
    man = json.loads((folder / "manifest.json").read_text())
    man["files"] = {n: {"bytes": (folder / n).stat().st_size, "sha256": sha256(folder / n)}
                    for n in man["files"] if (folder / n).is_file()}
    (folder / "manifest.json").write_text(json.dumps(man))


def small_trainer(seed: int = 0) -> Trainer:
    rg.manual_seed(seed)
    model = rg.nn.Sequential(rg.nn.Linear(3, 4), rg.nn.Tanh(), rg.nn.Linear(4, 2))
    opt = rg.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model, opt, rg.nn.MSELoss())


def trained_checkpoint(folder: pathlib.Path, *, pending: bool = False) -> Trainer:
    """A real training checkpoint after one optimizer step (mid-accumulation, with grads, if ``pending``)."""
    tr = small_trainer()
    x, y = rg.randn(5, 3), rg.randn(5, 2)
    loss = tr.loss_fn(tr.model(x), y)
    loss.backward()
    tr.optimizer.step()
    if pending:
        tr.loss_fn(tr.model(x), y).backward()
        tr._pending = 1
    else:
        tr.optimizer.zero_grad()
    tr.save_checkpoint(folder)
    return tr
