"""``PretrainedTask``: the model a ``retrograd train`` config builds from a pretrained folder,

    [model]
    name = "pretrained"
    path = "/path/to/all-MiniLM-L6-v2"     # a BERT folder or a sentence-transformers folder
    trainable_layers = 2                   # train the top 2 layers (-1: all; 0: the head only)
    lora_r = 8                             # LoRA adapters instead (lora_alpha, lora_dropout, lora_targets)
    layer_lr_decay = 0.9                   # layer-wise learning-rate decay of the optimizer's groups

on token ids ``(B, T)`` (0 = padding; e.g. a .npz of ``SentenceEncoder.tokenize`` ids with
``standardize = false``). ``num_labels`` and ``task`` come from the data. Its ``state_dict`` holds
only what training can change (the head, LoRA adapters, unfrozen layers) plus ``base_sha256``, the
SHA-256 of the base ``model.safetensors``: a run folder's checkpoints do not copy the frozen base
weights, and loading them into a model built on a base with other weights fails, naming both hashes.
"""
from __future__ import annotations

import pathlib
from collections import OrderedDict
from typing import Any

import numpy as np

from ..io.pretrained import PretrainedError, model_folder, sha256_of
from ..tensor import Tensor
from .bert import BertModel
from .finetune import _SequenceHead, layerwise_lr_groups, set_trainable_layers
from .lora import apply_lora
from .sentence import SentenceEncoder

__all__ = ["PretrainedTask"]


class PretrainedTask(_SequenceHead):
    """A pretrained encoder + a linear head for classification (logits ``(B, num_labels)``) or
    regression (``(B,)``, or ``(B, num_labels)`` for several targets), frozen as configured."""

    def __init__(self, path: str, num_labels: int = 2, task: str = "classification", pooling: str = "mean",
                 dropout: float = 0.1, trainable_layers: int = -1, lora_r: int = 0, lora_alpha: float = 16.0,
                 lora_dropout: float = 0.0, lora_targets: list | None = None, layer_lr_decay: float = 1.0) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if not 0 < layer_lr_decay <= 1:
            raise ValueError(f"layer_lr_decay must be in (0, 1], got {layer_lr_decay!r}")
        if not isinstance(lora_r, int) or lora_r < 0:
            raise ValueError(f"lora_r must be an int >= 0 (0: no LoRA), got {lora_r!r}")
        folder = model_folder(path, "model.path")
        if (folder / "modules.json").is_file():
            encoder: BertModel | SentenceEncoder = SentenceEncoder.from_pretrained(folder)
            weights = pathlib.Path(encoder.bert_folder)
        else:
            encoder, weights = BertModel.from_pretrained(folder), folder
        super().__init__(encoder, num_labels, pooling=pooling, dropout=dropout)
        self.task, self.num_labels, self.layer_lr_decay = task, num_labels, float(layer_lr_decay)
        self.base_path = str(folder.resolve())
        digest = sha256_of(weights / "model.safetensors")
        self.register_buffer("base_sha256", Tensor(np.frombuffer(bytes.fromhex(digest), dtype=np.uint8).copy()))
        if lora_r > 0:
            apply_lora(self, lora_targets or ["query", "value"], r=lora_r, alpha=lora_alpha, dropout=lora_dropout,
                       trainable=("head.",))
        elif trainable_layers >= 0:
            set_trainable_layers(self, trainable_layers)
        # the frozen base weights: rebuilt from path, never written to a checkpoint (a parameter that
        # trains once, e.g. unfrozen by GradualUnfreezing, leaves this set for good: _still_frozen)
        self._frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        # True: the optimizer's groups hold the frozen parameters too, for a schedule that unfreezes them
        # later (``[model] unfreeze_every``); without a gradient the optimizer leaves them alone
        self.optimize_frozen = False

    def _still_frozen(self) -> set:
        self._frozen -= {n for n, p in self.named_parameters() if p.requires_grad}
        return self._frozen

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Tensor:
        y = super().forward(input_ids, attention_mask, token_type_ids)
        return y.squeeze(-1) if self.task == "regression" and self.num_labels == 1 else y

    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        full = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if args or destination is not None:
            return full
        frozen = self._still_frozen()
        return OrderedDict((k, v) for k, v in full.items() if k not in frozen)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load a checkpoint of this model: the frozen base weights are taken from ``path``; its
        ``base_sha256`` must be the base's."""
        sd = dict(state_dict)
        got = sd.get("base_sha256")
        if got is not None:
            got_hex = bytes(np.asarray(got._array if isinstance(got, Tensor) else got, dtype=np.uint8)).hex()
            own = bytes(self.base_sha256._array).hex()
            if got_hex != own:
                raise PretrainedError(f"PretrainedTask: the checkpoint was trained on base weights with SHA-256 "
                                      f"{got_hex[:16]}..., but {self.base_path} has {own[:16]}... (the base "
                                      f"model.safetensors changed)")
        current = super().state_dict()
        for k in self._still_frozen():
            sd.setdefault(k, current[k])
        return super().load_state_dict(sd, strict=strict, assign=assign)

    def optimizer_param_groups(self, lr: float) -> list[dict] | None:
        """Layer-wise LR decay groups of the trainable parameters (None without decay: plain parameters)."""
        if self.layer_lr_decay == 1.0:
            return None
        return layerwise_lr_groups(self, lr, self.layer_lr_decay, include_frozen=self.optimize_frozen)
