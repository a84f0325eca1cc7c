"""Transfer learning in a training config: start a model from another run's weights, with a new head,
train only its top layers, and unfreeze more of them as training goes on. Four ``[model]`` keys that
every model takes (a model whose signature has one of them, like ``pretrained``'s
``trainable_layers``, takes that one itself)::

    [model]
    name = "cnn"
    init_from = "runs/fashion_cnn"   # a run folder (its best checkpoint, else last), a checkpoint folder
                                     # or a .safetensors file; relative to the config's folder
    init_head = "new"                # "new" (default): the head keeps its fresh initialisation; "keep"
    trainable_layers = 1             # the head and the top 1 layer below it train (-1, the default: all)
    unfreeze_every = 2               # then one more layer every 2 epochs (GradualUnfreezing)

Layers are ``retrograd.models.finetune``'s: a BERT encoder's (embeddings = the lowest), otherwise each
module holding parameters (a normalisation layer counted with the layer before it), the last one the head.
``init_from`` copies every parameter and buffer by name; names missing from the source, or of another
shape, are an error naming them (except the head's with ``init_head = "new"``). The source checkpoint is
verified against its manifest first. ``retrograd resume`` and ``evaluate`` do not read it again (the
run's own checkpoint holds every weight).
"""
from __future__ import annotations

import dataclasses
import inspect
import pathlib
from typing import Any, Callable

from ..io.checkpoint import CheckpointError, resolve_directory, verify_directory
from ..io.serialization import load_safetensors
from ..models.finetune import num_layers, set_trainable_layers, weight_layers
from ..nn import Module
from ..data.bundle import ConfigError
from .finetune import GradualUnfreezing

__all__ = ["TRANSFER_KEYS", "split_transfer_keys", "check_transfer_keys", "model_kwargs", "apply_transfer",
           "init_from", "resolve_source", "unfreezing_callback"]


@dataclasses.dataclass(frozen=True)
class TransferKey:
    type: str
    default: Any
    doc: str


TRANSFER_KEYS: dict[str, TransferKey] = {
    "init_from": TransferKey("str", None, "start from the weights of a run folder (its best checkpoint, else last), "
                                          "a checkpoint folder or a .safetensors file (relative to the config's folder)"),
    "init_head": TransferKey("str", "new", "with init_from: 'new' keeps the head (the last layer) freshly "
                                           "initialised, 'keep' copies it too"),
    "trainable_layers": TransferKey("int", -1, "train only the head and the top N layers below it (-1: all)"),
    "unfreeze_every": TransferKey("int", None, "gradual unfreezing: one more layer trains every N epochs, from "
                                               "trainable_layers on"),
}


def _takes(factory: Callable, key: str) -> bool:
    try:
        return key in inspect.signature(factory.__init__ if isinstance(factory, type) else factory).parameters
    except (TypeError, ValueError):
        return False


def split_transfer_keys(model: dict, factory: Callable) -> tuple[dict, dict]:
    """``(the model's own keys, the transfer keys)`` of a ``[model]`` table (without ``name``): a
    transfer key the factory's signature takes stays the model's."""
    own = {k: v for k, v in model.items() if k not in TRANSFER_KEYS or _takes(factory, k)}
    return own, {k: v for k, v in model.items() if k not in own}


def _int(where: str, v: Any, low: int) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ConfigError(f"{where}: expected an int >= {low}, got {v!r} ({type(v).__name__})")
    return v


def check_transfer_keys(keys: dict, model: dict, base: pathlib.Path | None) -> dict:
    """The transfer keys checked (``ConfigError`` naming the key); ``init_from`` made absolute (relative to
    ``base``, the config's folder; ``apply_transfer`` reads it). ``model``: the model's own keys
    (``pretrained`` takes ``trainable_layers`` and ``lora_r`` itself)."""
    out = dict(keys)
    if "init_from" in out:
        v = out["init_from"]
        if not isinstance(v, str) or not v:
            raise ConfigError(f"model.init_from: expected a path (a run folder, a checkpoint folder or a "
                              f".safetensors file), got {v!r}")
        p = pathlib.Path(v).expanduser()
        p = (base / p) if base is not None and not p.is_absolute() else p.absolute()
        out["init_from"] = str(p)  # read (and checked) when the model is built: resume and evaluate never read it
    if "init_head" in out:
        if out["init_head"] not in ("new", "keep"):
            raise ConfigError(f"model.init_head: expected 'new' or 'keep', got {out['init_head']!r}")
        if "init_from" not in out:
            raise ConfigError("model.init_head: only with model.init_from (the weights to start from)")
    if "trainable_layers" in out:
        out["trainable_layers"] = _int("model.trainable_layers", out["trainable_layers"], -1)
    if "unfreeze_every" in out:
        out["unfreeze_every"] = _int("model.unfreeze_every", out["unfreeze_every"], 1)
        start = out.get("trainable_layers", model.get("trainable_layers", -1))
        if start == -1:
            raise ConfigError("model.unfreeze_every: needs model.trainable_layers >= 0 (the layers that train "
                              "at first; -1, the default, trains them all from the start)")
        if model.get("lora_r"):
            raise ConfigError("model.unfreeze_every: not with LoRA (model.lora_r > 0 trains adapters, not layers)")
    return out


def model_kwargs(model: dict, factory: Callable) -> tuple[dict, dict]:
    """``(the factory's keyword arguments, the transfer keys)`` of a resolved ``[model]`` table."""
    own, keys = split_transfer_keys({k: v for k, v in model.items() if k != "name"}, factory)
    return own, keys


def resolve_source(path: str | pathlib.Path) -> pathlib.Path:
    """The ``model.safetensors`` (or the ``.safetensors`` file) ``init_from`` names: a run folder gives
    its ``checkpoints/best`` (else ``last``), a checkpoint folder its own; a checkpoint is verified
    against its manifest (sizes and SHA-256)."""
    p = pathlib.Path(path)
    if p.is_file():
        if p.suffix != ".safetensors":
            raise ConfigError(f"model.init_from: {p} is a file but not a .safetensors file")
        return p
    if not p.is_dir():
        raise ConfigError(f"model.init_from: {str(p)!r} not found")
    folder = p
    if not (p / "model.safetensors").exists() and not (p / "manifest.json").exists():
        ck = p / "checkpoints"
        picked = next((ck / n for n in ("best", "last") if (ck / n).exists() or any(ck.glob(f".{n}.old-*"))),
                      None)
        if picked is None:
            raise ConfigError(f"model.init_from: {p} is neither a run folder with checkpoints/best or "
                              f"checkpoints/last, nor a checkpoint folder, nor a .safetensors file")
        folder = picked
    try:
        folder = resolve_directory(folder)
        files = verify_directory(folder).get("files", {})
    except CheckpointError as e:
        raise ConfigError(f"model.init_from: {e}") from None
    if "model.safetensors" not in files:
        raise ConfigError(f"model.init_from: {folder}: its manifest lists no model.safetensors")
    return folder / "model.safetensors"


def _shape(a: Any) -> tuple:
    return tuple(getattr(a, "shape", ()))


def init_from(model: Module, source: str | pathlib.Path, *, head: str = "new") -> dict:
    """Copy the weights of ``source`` (see ``resolve_source``) into ``model`` by name. ``head="new"``: the
    head's parameters (``weight_layers``' last layer) keep their values. Returns ``{"source", "copied",
    "kept"}`` (names). Raises ``ConfigError`` naming the keys the source lacks or has in another shape."""
    if head not in ("new", "keep"):
        raise ValueError(f"init_from: head must be 'new' or 'keep', got {head!r}")
    path = resolve_source(source)
    try:
        arrays = load_safetensors(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.init_from: {path}: cannot read it ({e})") from None
    own = model.state_dict()
    kept = set(weight_layers(model)[-1]) if head == "new" and weight_layers(model) else set()
    wanted = [k for k in own if k not in kept]
    missing = [k for k in wanted if k not in arrays]
    shapes = [f"{k} {_shape(arrays[k])} (the model's: {_shape(own[k])})" for k in wanted
              if k in arrays and _shape(arrays[k]) != _shape(own[k])]
    if missing or shapes:
        parts = ([f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"] if missing else []) + \
                ([f"another shape: {'; '.join(shapes[:8])}"] if shapes else [])
        hint = "" if head == "new" else " (init_head = 'new' leaves the head out)"
        raise ConfigError(f"model.init_from: {path} does not fit {type(model).__name__}: {'; '.join(parts)}{hint}")
    model.load_state_dict({k: (arrays[k] if k in arrays and k not in kept else v) for k, v in own.items()})
    return {"source": str(path), "copied": wanted, "kept": sorted(kept)}


def apply_transfer(model: Module, keys: dict, *, init_weights: bool = True) -> dict | None:
    """Apply checked transfer keys to a freshly built ``model``: ``init_from`` (when ``init_weights``),
    then ``trainable_layers`` (when the model does not take it itself); ``unfreeze_every`` makes a
    ``pretrained`` model's optimizer groups hold its frozen layers. Returns ``init_from``'s report."""
    report = None
    if init_weights and keys.get("init_from"):
        report = init_from(model, keys["init_from"], head=keys.get("init_head", "new"))
    k = keys.get("trainable_layers", -1)
    if k >= 0:
        total = num_layers(model)
        if k > total:
            raise ConfigError(f"model.trainable_layers: {type(model).__name__} has {total} layers below its head; "
                              f"expected -1 (all) or 0-{total}, got {k}")
        set_trainable_layers(model, k)
    if keys.get("unfreeze_every") and hasattr(model, "optimize_frozen"):
        model.optimize_frozen = True
    return report


def unfreezing_callback(model_table: dict, factory: Callable) -> GradualUnfreezing | None:
    """The ``GradualUnfreezing`` that ``unfreeze_every`` asks for (None without it)."""
    _, keys = model_kwargs(model_table, factory)
    every = keys.get("unfreeze_every")
    if not every:
        return None
    start = keys.get("trainable_layers", model_table.get("trainable_layers", -1))
    return GradualUnfreezing(every_n_epochs=every, start=start)
