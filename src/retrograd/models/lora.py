"""LoRA (Hu et al. 2021, arXiv:2106.09685): a frozen ``nn.Linear`` plus a trainable low-rank update,

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T,    A: (r, in), B: (out, r)

``A`` starts as ``nn.Linear``'s weights do (Kaiming-uniform, a = sqrt(5)), ``B`` at zero, so an adapted
model starts equal to its base (as peft does). ``LoRALinear`` subclasses ``nn.Linear`` and keeps the
base ``weight``/``bias`` under their own names, so the base keys of ``state_dict()`` do not change;
the adapter adds ``lora_A`` and ``lora_B``. ``merge()`` folds the update into ``weight`` (inference
at the base's cost, or export), ``unmerge()`` takes it out again.

``apply_lora(model, targets, r=, alpha=, dropout=)`` swaps chosen Linear layers in place;
``save_lora``/``load_lora`` write and read only the adapters (a safetensors file whose metadata
holds r, alpha, dropout and the adapted layers), apart from the base weights.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Iterable

import numpy as np

from .. import nn
from ..io.serialization import _load_with_meta, save_safetensors
from ..nn import functional as F
from ..nn import init as nn_init
from ..tensor import Tensor

__all__ = ["LoRALinear", "apply_lora", "merge_lora", "unmerge_lora", "lora_state_dict", "save_lora",
           "load_lora", "lora_layers"]


class LoRALinear(nn.Linear):
    """``base`` (its own weight and bias Parameters, now frozen) + ``(alpha / r) B A``: ``(*, in) -> (*, out)``."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear: expected an nn.Linear to adapt, got {type(base).__name__}")
        if isinstance(base, LoRALinear):
            raise TypeError("LoRALinear: this layer already has a LoRA adapter")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"LoRALinear: r must be a positive int, got {r!r}")
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
            raise ValueError(f"LoRALinear: alpha must be a positive number, got {alpha!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRALinear: dropout must be in [0, 1), got {dropout!r}")
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        dt = base.weight.dtype
        self.lora_A = nn.Parameter(Tensor(np.empty((r, self.in_features), dtype=dt)))
        self.lora_B = nn.Parameter(Tensor(np.zeros((self.out_features, r), dtype=dt)))
        nn_init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        y = super().forward(input)
        if self.merged:
            return y
        return y + F.linear(F.linear(self.lora_dropout(input), self.lora_A), self.lora_B) * self.scaling

    def _delta(self) -> np.ndarray:
        return (self.lora_B._array @ self.lora_A._array * self.weight.dtype.type(self.scaling)).astype(
            self.weight._array.dtype, copy=False)

    def merge(self) -> None:
        """``weight += (alpha / r) B A`` (in place); forward then skips the adapter."""
        if not self.merged:
            self.weight._array += self._delta()
            self.merged = True

    def unmerge(self) -> None:
        """Undo ``merge`` (equal to the unmerged weight up to float rounding)."""
        if self.merged:
            self.weight._array -= self._delta()
            self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def _matches(name: str, targets: Iterable[str]) -> bool:
    """A target names a layer by its last name component (``"query"``), a dotted suffix
    (``"attention.self.query"``) or a regex on the full name (``re:encoder\\.layer\\.[45]\\..*query``)."""
    for t in targets:
        if t.startswith("re:"):
            if re.fullmatch(t[3:], name):
                return True
        elif name == t or name.endswith("." + t):
            return True
    return False


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{qualified name: LoRALinear}`` of ``model``, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(model: nn.Module, targets: Iterable[str] = ("query", "value"), *, r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0, freeze_base: bool = True, trainable: Iterable[str] = ()) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` whose name matches ``targets`` by a ``LoRALinear``
    (in place) and return the adapted names. ``freeze_base``: every other parameter stops requiring
    grad too, except those whose names start with a prefix in ``trainable`` (a task head)."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"apply_lora: targets must be a non-empty list of layer names, got {targets!r}")
    chosen = [(name, m) for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear) and _matches(name, targets)]
    if not chosen:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"apply_lora: no nn.Linear of {type(model).__name__} matches {targets} (its Linear layers: "
                         f"{', '.join(linears[:12])}{' ...' if len(linears) > 12 else ''})")
    trainable = tuple(trainable)
    if freeze_base:
        for name, p in model.named_parameters():
            p.requires_grad_(bool(trainable) and name.startswith(trainable))
    modules = dict(model.named_modules())
    for name, m in chosen:
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent] if parent else model, attr, LoRALinear(m, r, alpha, dropout))
    return [name for name, _ in chosen]


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter of ``model`` into its base weight."""
    for m in lora_layers(model).values():
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every merged adapter out of its base weight again."""
    for m in lora_layers(model).values():
        m.unmerge()


def lora_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """The adapters only: ``{'<layer>.lora_A': (r, in), '<layer>.lora_B': (out, r)}``."""
    out = {}
    for name, m in lora_layers(model).items():
        out[f"{name}.lora_A"] = m.lora_A._array.copy()
        out[f"{name}.lora_B"] = m.lora_B._array.copy()
    return out


def save_lora(model: nn.Module, path: str | os.PathLike, *, metadata: dict | None = None) -> None:
    """Write the adapters of ``model`` to a safetensors file (no base weight); its ``__metadata__``
    ``lora`` entry records ``{layer: {r, alpha, dropout}}``. Merged adapters are saved as they are
    (A and B do not change on merge)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"save_lora: {type(model).__name__} has no LoRA adapter (apply_lora first)")
    info = {name: {"r": m.r, "alpha": m.alpha,
                   "dropout": m.lora_dropout.p if isinstance(m.lora_dropout, nn.Dropout) else 0.0}
            for name, m in layers.items()}
    meta = {"format": "retrograd-lora", "lora": json.dumps(info)}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    save_safetensors(lora_state_dict(model), path, metadata=meta)


def load_lora(model: nn.Module, path: str | os.PathLike, *, freeze_base: bool = True) -> list[str]:
    """Add the adapters saved by ``save_lora`` to ``model`` (its base weights already loaded): the
    layers named in the file get ``LoRALinear`` adapters of the recorded r/alpha/dropout, then the
    saved A and B. A layer the model lacks, or a shape that does not fit, is a ValueError."""
    arrays, meta = _load_with_meta(path)
    try:
        info = json.loads(meta["lora"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"load_lora: {path} is not a LoRA adapter file written by save_lora (no 'lora' "
                         f"metadata)") from None
    modules = dict(model.named_modules())
    missing = [n for n in info if n not in modules]
    if missing:
        raise ValueError(f"load_lora: {path} adapts layer(s) {', '.join(missing)} that "
                         f"{type(model).__name__} does not have")
    done = []
    for name, cfg in info.items():
        m = modules[name]
        if not isinstance(m, LoRALinear):
            apply_lora(model, [f"re:{re.escape(name)}"], r=int(cfg["r"]), alpha=float(cfg["alpha"]),
                       dropout=float(cfg["dropout"]), freeze_base=False)
            m = dict(model.named_modules())[name]
        for key in ("lora_A", "lora_B"):
            a = arrays.get(f"{name}.{key}")
            p = getattr(m, key)
            if a is None or tuple(a.shape) != tuple(p.shape):
                got = "missing" if a is None else f"shape {tuple(a.shape)}"
                raise ValueError(f"load_lora: {path}: {name}.{key} is {got}, the layer needs {tuple(p.shape)}")
            p._array[...] = a
        done.append(name)
    if freeze_base:
        for pname, p in model.named_parameters():
            if not pname.endswith((".lora_A", ".lora_B")):
                p.requires_grad_(False)
    return done
