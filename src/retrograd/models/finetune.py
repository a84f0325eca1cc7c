"""Fine-tuning a pretrained ``BertModel`` the way practitioners do: task heads, freezing and unfreezing
layer by layer, parameter groups with layer-wise learning-rate decay, and a checkpoint of only what
changed (plus the base folder and its SHA-256).

Layers are counted bottom to top: 0 = embeddings, ``i + 1`` = ``encoder.layer.i``, ``n + 1`` = pooler
(``n = num_hidden_layers``); a task head sits above all of them. A model without a ``BertModel`` inside
(an ``MLP``, a ``CNN``) has the layers ``weight_layers`` finds: each module that holds parameters, in
order, a normalisation layer counted with the layer before it; its last one is the head.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterable

import numpy as np

from .. import nn
from ..io.pretrained import PretrainedError, sha256_of
from ..io.serialization import _load_with_meta, save_safetensors
from ..tensor import Tensor
from .bert import BertModel
from .lora import apply_lora, lora_layers
from .sentence import SentenceEncoder

__all__ = ["SequenceClassifier", "SequenceRegressor", "find_bert", "layer_of", "weight_layers", "num_layers",
           "set_trainable_layers", "freeze", "unfreeze", "layerwise_lr_groups", "save_finetuned", "load_finetuned"]

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")


def find_bert(model: nn.Module) -> tuple[str, BertModel]:
    """``(prefix, BertModel)``: the first BertModel inside ``model`` (prefix ``""`` for the model itself)."""
    found = _bert_inside(model)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no BertModel inside")
    return found


def _bert_inside(model: nn.Module) -> tuple[str, BertModel] | None:
    for name, m in model.named_modules():
        if isinstance(m, BertModel):
            return (name + "." if name else ""), m
    return None


def _is_norm(m: nn.Module) -> bool:
    return "Norm" in type(m).__name__  # BatchNorm2d, LayerNorm, GroupNorm, RMSNorm, SyncBatchNorm, ...


def weight_layers(model: nn.Module) -> list[list[str]]:
    """The layers of a model without a ``BertModel``, bottom to top: for each module that holds
    parameters itself (a ``Conv2d``, a ``Linear``, ...), in registration order, the names of its
    parameters; a normalisation layer (``BatchNorm*``, ``LayerNorm``, ``GroupNorm``, ...) joins the layer
    before it. The last layer is the head (``MLP``/``CNN``: the final ``Linear``)."""
    layers: list[list[str]] = []
    for mname, m in model.named_modules():
        own = [f"{mname}.{p}" if mname else p for p, _ in m.named_parameters(recurse=False)]
        if not own:
            continue
        if _is_norm(m) and layers:
            layers[-1] += own
        else:
            layers.append(own)
    return layers


def num_layers(model: nn.Module) -> int:
    """How many layers ``set_trainable_layers`` counts: ``num_hidden_layers + 1`` (embeddings included)
    for a model with a ``BertModel``, else the ``weight_layers`` below the head."""
    found = _bert_inside(model)
    if found is not None:
        return found[1].config.num_hidden_layers + 1
    return max(len(weight_layers(model)) - 1, 0)


def layer_of(model: nn.Module, name: str) -> int | None:
    """The layer (0 embeddings ... n + 1 pooler) of parameter ``name`` of ``model``; None outside the encoder."""
    prefix, bert = find_bert(model)
    if not name.startswith(prefix):
        return None
    return bert.layer_index(name[len(prefix):])


def freeze(module: nn.Module) -> nn.Module:
    """Every parameter of ``module`` stops requiring grad (the optimizer then leaves it alone)."""
    return module.requires_grad_(False)


def unfreeze(module: nn.Module) -> nn.Module:
    return module.requires_grad_(True)


def set_trainable_layers(model: nn.Module, k: int) -> list[int]:
    """Train only the top ``k`` encoder layers (the pooler counts with the top block; ``k = n + 1``
    includes the embeddings, ``k = 0`` freezes the whole encoder). Parameters outside the encoder
    (a head) and LoRA adapters are left trainable. Returns the trainable layer indices.

    A model without a ``BertModel`` (``weight_layers``): the head and the top ``k`` layers below it
    train, ``k`` in ``[0, num_layers(model)]``; the indices count from 0 at the bottom layer."""
    if _bert_inside(model) is None:
        return _set_trainable_plain(model, k)
    prefix, bert = find_bert(model)
    n = bert.config.num_hidden_layers
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n + 1:
        raise ValueError(f"set_trainable_layers: k must be an int in [0, {n + 1}] (layers of the encoder, "
                         f"embeddings included), got {k!r}")
    lowest = n + 1 - k  # layers >= lowest train; the pooler (n + 1) trains with layer n
    for name, p in model.named_parameters():
        idx = layer_of(model, name)
        if idx is None or name.endswith((".lora_A", ".lora_B")):
            p.requires_grad_(True)
        else:
            p.requires_grad_(k > 0 and (idx >= lowest or idx == n + 1))
    return [i for i in range(n + 2) if k > 0 and (i >= lowest or i == n + 1)]


def _set_trainable_plain(model: nn.Module, k: int) -> list[int]:
    layers = weight_layers(model)
    n = len(layers) - 1  # below the head
    if n < 0:
        raise ValueError(f"set_trainable_layers: {type(model).__name__} has no parameters")
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        raise ValueError(f"set_trainable_layers: k must be an int in [0, {n}] ({type(model).__name__} has {n} "
                         f"layer{'s' if n != 1 else ''} with parameters below its head), got {k!r}")
    params = dict(model.named_parameters())
    trainable = set(range(n - k, n + 1))
    for i, names in enumerate(layers):
        for name in names:
            params[name].requires_grad_(i in trainable)
    return sorted(trainable)


def layerwise_lr_groups(model: nn.Module, lr: float, decay: float = 1.0, *, weight_decay: float = 0.0,
                        no_decay: Iterable[str] = NO_DECAY, include_frozen: bool = False) -> list[dict]:
    """Parameter groups for any optimizer: the head (and the pooler) at ``lr``, encoder layer ``i`` at
    ``lr * decay ** (n + 1 - i)`` (so the top block gets ``lr * decay``, the embeddings
    ``lr * decay ** (n + 1)``), ``weight_decay`` except on names ending in ``no_decay`` (biases and
    LayerNorm). Frozen parameters are left out unless ``include_frozen`` (a schedule that unfreezes
    them later needs them in the optimizer; without a gradient they are not updated)."""
    if not lr > 0:
        raise ValueError(f"layerwise_lr_groups: lr must be > 0, got {lr!r}")
    if not 0 < decay <= 1:
        raise ValueError(f"layerwise_lr_groups: decay must be in (0, 1], got {decay!r}")
    _, bert = find_bert(model)
    n = bert.config.num_hidden_layers
    no_decay = tuple(no_decay)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not (p.requires_grad or include_frozen):
            continue
        idx = layer_of(model, name)
        depth = 0 if idx is None or idx == n + 1 else n + 1 - idx
        wd = 0.0 if name.endswith(no_decay) else weight_decay
        g = groups.setdefault((depth, wd), {"params": [], "param_names": [], "lr": lr * decay ** depth,
                                            "weight_decay": wd})
        g["params"].append(p)
        g["param_names"].append(name)
    if not groups:
        raise ValueError("layerwise_lr_groups: no trainable parameter (everything is frozen)")
    return [groups[k] for k in sorted(groups)]


class _SequenceHead(nn.Module):
    def __init__(self, encoder: BertModel | SentenceEncoder, num_outputs: int, *, pooling: str = "mean",
                 dropout: float = 0.1) -> None:
        super().__init__()
        who = type(self).__name__
        if not isinstance(encoder, (BertModel, SentenceEncoder)):
            raise TypeError(f"{who}: encoder must be a BertModel or a SentenceEncoder, got {type(encoder).__name__}")
        if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs <= 0:
            raise ValueError(f"{who}: the number of outputs must be a positive int, got {num_outputs!r}")
        if isinstance(encoder, BertModel):
            if pooling not in ("mean", "cls", "pooler"):
                raise ValueError(f"{who}: pooling must be 'mean', 'cls' or 'pooler', got {pooling!r}")
            if pooling == "pooler" and encoder.pooler is None:
                raise ValueError(f"{who}: pooling='pooler' but the BertModel has no pooler")
            dim = encoder.config.hidden_size
        else:
            pooling, dim = "encoder", encoder.dim
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_outputs)
        bert = encoder if isinstance(encoder, BertModel) else encoder.bert
        self.pad_token_id = bert.config.pad_token_id

    def features(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Tensor:
        """The pooled sentence vector ``(B, dim)`` the head reads. Without ``attention_mask`` the mask is
        ``input_ids != pad_token_id``; trailing columns of padding only are cut off first."""
        ids = input_ids._array if isinstance(input_ids, Tensor) else np.asarray(input_ids)
        mask = (ids != self.pad_token_id) if attention_mask is None else (
            attention_mask._array if isinstance(attention_mask, Tensor) else np.asarray(attention_mask))
        used = np.flatnonzero(mask.any(axis=0))
        t = int(used[-1]) + 1 if used.size else 1
        ids, mask = ids[:, :t].astype(np.int64), mask[:, :t].astype(np.int64)
        tt = None
        if token_type_ids is not None:
            tt = (token_type_ids._array if isinstance(token_type_ids, Tensor) else np.asarray(token_type_ids))[:, :t]
        if self.pooling == "encoder":
            return self.encoder(ids, mask, tt)
        out = self.encoder(ids, mask, tt)
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        m = Tensor(mask[..., None].astype(np.float32))
        return (out.last_hidden_state * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Tensor:
        return self.head(self.dropout(self.features(input_ids, attention_mask, token_type_ids)))


class SequenceClassifier(_SequenceHead):
    """Encoder -> pooled vector -> dropout -> ``nn.Linear`` -> logits ``(B, num_labels)`` (for
    ``cross_entropy``). ``pooling`` (BertModel only): ``'mean'`` over real tokens, ``'cls'`` or the
    ``'pooler'`` output; a SentenceEncoder pools as its folder says."""

    def __init__(self, encoder: BertModel | SentenceEncoder, num_labels: int, *, pooling: str = "mean",
                 dropout: float = 0.1) -> None:
        super().__init__(encoder, num_labels, pooling=pooling, dropout=dropout)
        self.num_labels = num_labels


class SequenceRegressor(_SequenceHead):
    """Encoder -> pooled vector -> dropout -> ``nn.Linear`` -> ``(B,)`` (one output) or
    ``(B, num_outputs)``, for ``mse_loss``/``l1_loss``."""

    def __init__(self, encoder: BertModel | SentenceEncoder, num_outputs: int = 1, *, pooling: str = "mean",
                 dropout: float = 0.1) -> None:
        super().__init__(encoder, num_outputs, pooling=pooling, dropout=dropout)
        self.num_outputs = num_outputs

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Tensor:
        y = super().forward(input_ids, attention_mask, token_type_ids)
        return y.squeeze(-1) if self.num_outputs == 1 else y


# ---------------------------------------------------------------------- checkpoints of what changed
DELTA_FILE = "finetuned.safetensors"
BASE_FILE = "base.json"


def _base_arrays(model: nn.Module, base_folder: pathlib.Path) -> dict[str, np.ndarray]:
    prefix, _ = find_bert(model)
    ref = BertModel.from_pretrained(base_folder)
    return {prefix + k: v._array for k, v in ref.state_dict().items()}


def save_finetuned(model: nn.Module, folder: str | os.PathLike, base_folder: str | os.PathLike) -> dict:
    """Write to ``folder`` only what fine-tuning changed from the pretrained ``base_folder``: every
    parameter that is not in the base or differs from it (heads, LoRA adapters, the trained layers) in
    ``finetuned.safetensors``, and ``base.json`` with the base folder's absolute path, the SHA-256 of
    its ``model.safetensors`` and the LoRA configuration. Returns what ``base.json`` holds."""
    base_folder = pathlib.Path(base_folder).resolve()
    tdir = base_folder
    if (base_folder / "modules.json").is_file() and not (base_folder / "model.safetensors").is_file():
        raise PretrainedError(f"save_finetuned: {base_folder}: a sentence-transformers folder whose transformer "
                              f"is in a sub-folder is not supported")
    base = _base_arrays(model, tdir)
    sd = model.state_dict()
    changed = {k: v._array for k, v in sd.items() if k not in base or v._array.shape != base[k].shape
               or not np.array_equal(v._array, base[k])}
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(changed, folder / DELTA_FILE)
    info = {"base_folder": str(base_folder), "base_sha256": sha256_of(tdir / "model.safetensors"),
            "changed": len(changed), "of": len(sd),
            "lora": {name: {"r": m.r, "alpha": m.alpha, "merged": m.merged} for name, m in lora_layers(model).items()}}
    (folder / BASE_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


def load_finetuned(model: nn.Module, folder: str | os.PathLike, *, check_sha256: bool = True) -> nn.Module:
    """Load into ``model`` (built as for fine-tuning, with its base weights from the folder
    ``base.json`` names) the changed weights that ``save_finetuned`` wrote: LoRA layers are added as
    recorded, then every saved array replaces the model's. ``check_sha256``: refuse a base
    ``model.safetensors`` whose SHA-256 differs from the one recorded."""
    folder = pathlib.Path(folder)
    if not (folder / BASE_FILE).is_file():
        raise PretrainedError(f"load_finetuned: {folder}: no {BASE_FILE} (not a folder written by save_finetuned)")
    info = json.loads((folder / BASE_FILE).read_text())
    if check_sha256:
        got = sha256_of(pathlib.Path(info["base_folder"]) / "model.safetensors")
        if got != info["base_sha256"]:
            raise PretrainedError(f"load_finetuned: the base weights {info['base_folder']}/model.safetensors "
                                  f"changed: SHA-256 {got[:16]}..., the fine-tuned run recorded "
                                  f"{info['base_sha256'][:16]}...")
    for name, cfg in info.get("lora", {}).items():
        apply_lora(model, [name], r=int(cfg["r"]), alpha=float(cfg["alpha"]), freeze_base=False)
    arrays, _ = _load_with_meta(folder / DELTA_FILE)
    sd = model.state_dict()
    bad = [k for k in arrays if k not in sd or tuple(sd[k].shape) != tuple(arrays[k].shape)]
    if bad:
        raise PretrainedError(f"load_finetuned: {folder / DELTA_FILE}: key(s) {', '.join(bad[:8])} do not fit "
                              f"{type(model).__name__}")
    for k, a in arrays.items():
        sd[k]._array[...] = a
    for name, cfg in info.get("lora", {}).items():
        if cfg.get("merged"):
            dict(model.named_modules())[name].merged = True
    return model
