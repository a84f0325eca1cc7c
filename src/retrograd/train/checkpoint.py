"""Training checkpoints: one folder with everything a run needs to continue exactly.

Layout (all written atomically by ``rg.io.atomic_directory``)::

    model.safetensors               model.state_dict() (dotted names; PyTorch reads it)
    optimizer.json (+ .safetensors) optimizer.state_dict(): hyperparameters in JSON, state tensors
    scheduler.json (+ .safetensors) scheduler.state_dict(), when there is a scheduler
    rng.json (+ .safetensors)       rg's default generator, NumPy's legacy and Python's random state,
                                    and every rg.Generator reachable from the training loader
                                    (sampler, transforms)
    loader.json                     the training loader's position (DataLoader.state_dict())
    trainer.json                    epoch, global_step, batch_in_epoch, epoch sums, history,
                                    callback states, metadata
    grads.safetensors               gradients accumulated so far, when saved mid-accumulation
    config.json                     the Trainer's config
    manifest.json                   size and SHA-256 of every file

Loading reads and checks every file before changing anything, so a corrupted
checkpoint raises ``CheckpointError`` naming the file and leaves the trainer as it was.
Only files the manifest lists are read: a ``grads.safetensors`` (or any other
file) dropped into the folder afterwards is ignored, and a manifest that does
not list ``model.safetensors`` is refused.
"""
from __future__ import annotations

import copy
import os
import pathlib
import random as _pyrandom
from typing import Any

import numpy as np

from .. import random as rg_random
from ..io.checkpoint import (CheckpointError, atomic_directory, load_tree, read_json, resolve_directory,
                             save_tree, verify_directory, write_json)
from ..io.serialization import SafetensorsFileError, load_safetensors, save_safetensors
from ..random import Generator
from ..tensor import Tensor, wrap_array

__all__ = ["save_training_checkpoint", "load_training_checkpoint", "find_generators", "apply_loader_state",
           "CheckpointError", "stray_copies", "remove_stray_copies", "tidy_checkpoint"]


def find_generators(root: Any, max_depth: int = 6) -> dict[str, Generator]:
    """Every ``rg.Generator`` reachable from ``root`` through attributes, lists and
    dicts, by dotted path (``dataset.transform.transforms.0.generator``); the
    default generator is left out (it is saved on its own)."""
    out: dict[str, Generator] = {}
    seen: set[int] = set()

    def walk(obj: Any, path: str, depth: int) -> None:
        if depth > max_depth or id(obj) in seen:
            return
        if isinstance(obj, (str, bytes, int, float, bool, type(None), np.ndarray, Tensor, np.generic)):
            return
        seen.add(id(obj))
        if isinstance(obj, Generator):
            if obj is not rg_random.default_generator:
                out[path] = obj
            return
        sub = (lambda k: f"{path}.{k}" if path else str(k))
        if isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj[:64]):
                walk(v, sub(i), depth + 1)
        elif isinstance(obj, dict):
            for k, v in list(obj.items())[:64]:
                if isinstance(k, str):
                    walk(v, sub(k), depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(getattr(obj, "__func__", None)):
            for k, v in vars(obj).items():
                walk(v, sub(k), depth + 1)

    walk(root, "", 0)
    return out


def _rng_state(trainer: Any) -> dict:
    gens = find_generators(trainer.train_loader) if trainer.train_loader is not None else {}
    return {"retrograd": rg_random.default_generator.get_state(),
            "numpy": np.random.get_state(),
            "python": _pyrandom.getstate(),
            "generators": {k: g.get_state() for k, g in gens.items()}}


def _callback_key(i: int, cb: Any) -> str:
    return f"{i}:{type(cb).__name__}"


def save_training_checkpoint(trainer: Any, path: str | os.PathLike, *, extra: dict | None = None) -> pathlib.Path:
    path = pathlib.Path(path)
    for cb in trainer.callbacks:  # logs that buffer (MetricLogger) reach the disk first: a resume finds their rows
        flush = getattr(cb, "flush_logs", None)
        if flush is not None:
            flush()
    with atomic_directory(path) as tmp:
        save_safetensors(trainer.model.state_dict(), tmp / "model.safetensors")
        save_tree(tmp, "optimizer", trainer.optimizer.state_dict())
        if trainer.scheduler is not None:
            save_tree(tmp, "scheduler", trainer.scheduler.state_dict())
        save_tree(tmp, "rng", _rng_state(trainer))
        if trainer.train_loader is not None and hasattr(trainer.train_loader, "state_dict"):
            save_tree(tmp, "loader", trainer.train_loader.state_dict())
        pending = getattr(trainer, "_pending", 0)
        if pending:
            grads = {}
            for i, p in enumerate(trainer.params):
                if p.grad is not None:
                    grads[str(i)] = p.grad._array
            save_safetensors(grads, tmp / "grads.safetensors")
        callbacks = {}
        for i, cb in enumerate(trainer.callbacks):
            sd = cb.state_dict() if hasattr(cb, "state_dict") else None
            if sd:
                callbacks[_callback_key(i, cb)] = sd
        save_tree(tmp, "trainer", {"state": trainer.state_summary(), "history": trainer.history,
                                   "pending_batches": pending, "accumulate": trainer.accumulate,
                                   "callbacks": callbacks, "meta": extra or {}})
        write_json(tmp / "config.json", trainer.config)
    remove_stray_copies(path)
    return path


# ---------------------------------------------------------------------- leftovers of interrupted saves
def stray_copies(path: str | os.PathLike) -> list[pathlib.Path]:
    """The copies an interrupted save of checkpoint ``path`` can leave next to it: ``.<name>.tmp-*``
    (a new checkpoint not yet renamed into place) and ``.<name>.old-*`` (the previous one, moved
    aside and not yet deleted; see ``rg.io.checkpoint.atomic_directory``)."""
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}.tmp-*")) + sorted(path.parent.glob(f".{path.name}.old-*"))


def _verifies(folder: pathlib.Path) -> bool:
    try:
        verify_directory(folder)
    except (CheckpointError, OSError):
        return False
    return True


def remove_stray_copies(path: str | os.PathLike) -> list[pathlib.Path]:
    """Delete the leftovers of interrupted saves of ``path`` (``stray_copies``), only when ``path``
    itself is a complete checkpoint that verifies against its manifest: the only good copy is never
    removed. Returns what was deleted."""
    import shutil

    path = pathlib.Path(path)
    strays = stray_copies(path)
    if not strays or not path.is_dir() or not _verifies(path):
        return []
    for s in strays:
        if s.is_dir() and not s.is_symlink():
            shutil.rmtree(s, ignore_errors=True)
        else:
            s.unlink(missing_ok=True)
    return strays


def tidy_checkpoint(path: str | os.PathLike) -> pathlib.Path | None:
    """Repair checkpoint ``path`` after a crash, at the start of a run: when ``path`` is missing
    because a save was killed between its two renames, the previous checkpoint it moved aside
    (the newest ``.<name>.old-*`` that verifies) is renamed back to ``path``; then the stray copies
    are removed (``remove_stray_copies``). Returns ``path`` when it now holds a checkpoint, else None."""
    path = pathlib.Path(path)
    if not path.exists():
        olds = [p for p in stray_copies(path) if ".old-" in p.name and p.is_dir() and _verifies(p)]
        if olds:
            os.rename(max(olds, key=lambda p: p.stat().st_mtime), path)
    remove_stray_copies(path)
    return path if path.is_dir() else None


def _load_st(path: pathlib.Path) -> dict:
    try:
        return load_safetensors(path)
    except SafetensorsFileError as e:
        raise CheckpointError(str(e)) from e


def load_training_checkpoint(trainer: Any, path: str | os.PathLike) -> dict:
    folder = resolve_directory(path)
    files = verify_directory(folder)["files"]
    for required in ("model.safetensors", "config.json"):
        if required not in files:
            raise CheckpointError(f"{folder / required}: not listed in the checkpoint's manifest (only listed "
                                  "files are read)")
    # read everything first: nothing changes unless all of it is readable; only listed files are read
    model_sd = _load_st(folder / "model.safetensors")
    opt_sd = load_tree(folder, "optimizer", files)
    sched_sd = load_tree(folder, "scheduler", files) if "scheduler.json" in files else None
    rng = load_tree(folder, "rng", files)
    loader_sd = load_tree(folder, "loader", files) if "loader.json" in files else None
    tr = load_tree(folder, "trainer", files)
    grads = _load_st(folder / "grads.safetensors") if "grads.safetensors" in files else None
    config = read_json(folder / "config.json")
    if trainer.scheduler is not None and sched_sd is None:
        raise CheckpointError(f"{folder}: the checkpoint has no scheduler.json but the trainer has a scheduler")
    _check_trainer_state(tr, folder / "trainer.json", trainer)
    if tr["pending_batches"] and tr["accumulate"] != trainer.accumulate:
        raise CheckpointError(f"{folder}: saved in the middle of an accumulation group of {tr['accumulate']} "
                              f"batches; resume with accumulate={tr['accumulate']}, not {trainer.accumulate}")
    _check_grads(grads, trainer.params, folder / "grads.safetensors")
    if not isinstance(rng, dict) or not all(k in rng for k in ("retrograd", "numpy", "python")):
        raise CheckpointError(f"{folder / 'rng.json'}: expected the states 'retrograd', 'numpy' and 'python'")
    # applying can still fail on a checkpoint whose manifest agrees with hostile contents: then the
    # trainer is put back as it was and the checkpoint named
    saved = _snapshot(trainer)
    try:
        try:
            trainer.model.load_state_dict(model_sd)
        except RuntimeError as e:
            raise CheckpointError(f"{folder / 'model.safetensors'}: does not fit the model: {e}") from e
        _apply(trainer, opt_sd, sched_sd, rng, tr, grads)
    except CheckpointError:
        _restore(trainer, saved)
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError) as e:
        _restore(trainer, saved)
        raise CheckpointError(f"{folder}: does not fit this trainer (its optimizer, scheduler, RNG or callback "
                              f"state is not what save_checkpoint writes for it): {type(e).__name__}: {e}") from e
    trainer._pending_loader_state = loader_sd
    trainer._pending_generators = rng.get("generators", {})
    trainer.config = {**config, **trainer.config} if isinstance(config, dict) else trainer.config
    meta = tr.get("meta")
    return {"path": str(folder), "config": config, **(meta if isinstance(meta, dict) else {})}


def _check_trainer_state(tr: Any, where: pathlib.Path, trainer: Any) -> None:
    fields = trainer.state_summary()
    if not isinstance(tr, dict) or not isinstance(tr.get("state"), dict) or not isinstance(tr.get("history"), dict):
        raise CheckpointError(f"{where}: expected an object with 'state' and 'history' tables, as save_checkpoint "
                              "writes")
    for k, v in tr["state"].items():
        if k not in fields:
            raise CheckpointError(f"{where}: unknown trainer state {k!r} (known: {', '.join(fields)})")
        want = float if isinstance(fields[k], float) else int
        if isinstance(v, bool) or not isinstance(v, (int, float) if want is float else int) or v < 0:
            raise CheckpointError(f"{where}: trainer state {k}={v!r}, expected a non-negative {want.__name__}")
    if not all(isinstance(v, list) for v in tr["history"].values()):
        raise CheckpointError(f"{where}: history must map names to lists")
    tr.setdefault("pending_batches", 0)
    tr.setdefault("accumulate", 1)
    for k in ("pending_batches", "accumulate"):
        if isinstance(tr[k], bool) or not isinstance(tr[k], int) or tr[k] < 0:
            raise CheckpointError(f"{where}: {k}={tr[k]!r}, expected a non-negative int")
    if not isinstance(tr.get("callbacks", {}), dict):
        raise CheckpointError(f"{where}: callbacks must be an object")


def _check_grads(grads: Any, params: list, where: pathlib.Path) -> None:
    for k, g in (grads or {}).items():
        i = int(k) if k.isdecimal() and len(k) < 10 else -1
        if not 0 <= i < len(params):
            raise CheckpointError(f"{where}: gradient {k!r} names no parameter (the model has {len(params)})")
        if g.shape != params[i].shape:
            raise CheckpointError(f"{where}: gradient {k!r} has shape {g.shape}, parameter {i} has "
                                  f"{tuple(params[i].shape)}")


def _snapshot(trainer: Any) -> dict:
    return {"model": {k: v._array.copy() for k, v in trainer.model.state_dict().items()},
            "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
            "scheduler": copy.deepcopy(trainer.scheduler.state_dict()) if trainer.scheduler is not None else None,
            "rng": (rg_random.default_generator.get_state(), np.random.get_state(), _pyrandom.getstate()),
            "state": trainer.state_summary(), "history": copy.deepcopy(trainer.history),
            "pending": getattr(trainer, "_pending", 0), "grads": [p.grad for p in trainer.params],
            "opt_called": getattr(trainer.optimizer, "_opt_called", None),
            "callbacks": [copy.deepcopy(cb.state_dict()) if hasattr(cb, "state_dict") else None
                          for cb in trainer.callbacks]}


def _restore(trainer: Any, saved: dict) -> None:
    trainer.model.load_state_dict({k: wrap_array(v) for k, v in saved["model"].items()})
    trainer.optimizer.load_state_dict(saved["optimizer"])
    if saved["scheduler"] is not None:
        trainer.scheduler.load_state_dict(saved["scheduler"])
    rg_random.default_generator.set_state(saved["rng"][0])
    np.random.set_state(saved["rng"][1])
    _pyrandom.setstate(saved["rng"][2])
    for k, v in saved["state"].items():
        setattr(trainer.state, k, v)
    trainer.history, trainer._pending = saved["history"], saved["pending"]
    for p, g in zip(trainer.params, saved["grads"]):
        p.grad = g
    if saved["opt_called"] is not None:
        trainer.optimizer._opt_called = saved["opt_called"]
    for cb, sd in zip(trainer.callbacks, saved["callbacks"]):
        if sd is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(sd)


def _apply(trainer: Any, opt_sd: Any, sched_sd: Any, rng: dict, tr: dict, grads: Any) -> None:
    trainer.optimizer.load_state_dict(opt_sd)
    if tr["state"].get("global_step", 0) > 0:
        trainer.optimizer._opt_called = True  # it has stepped (in the saved run): schedulers need not warn
    if trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(sched_sd)
    rg_random.default_generator.set_state(rng["retrograd"])
    np.random.set_state(rng["numpy"])
    _pyrandom.setstate(_tuplify(rng["python"]))
    saved_cbs = tr.get("callbacks", {})
    for i, cb in enumerate(trainer.callbacks):
        key = _callback_key(i, cb)
        if key in saved_cbs and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(saved_cbs[key])
    for k, v in tr["state"].items():
        setattr(trainer.state, k, v)
    trainer.history = {k: list(v) for k, v in tr["history"].items()}
    trainer._pending = tr["pending_batches"]
    params = trainer.params
    for p in params:
        p.grad = None
    for k, g in (grads or {}).items():
        params[int(k)].grad = wrap_array(np.array(g, dtype=params[int(k)]._array.dtype))


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def apply_loader_state(trainer: Any, loader: Any) -> None:
    """Put the training loader (and the generators reachable from it) where the checkpoint left them."""
    gens = trainer._pending_generators
    if gens:
        found = find_generators(loader)
        for k, state in gens.items():
            if k in found:
                found[k].set_state(state)
    if trainer._pending_loader_state is not None and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(trainer._pending_loader_state)
    trainer._pending_loader_state = None
    trainer._pending_generators = None
