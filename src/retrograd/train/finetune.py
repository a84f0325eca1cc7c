"""``GradualUnfreezing``: a callback that trains a pretrained encoder's top layers first and unfreezes
one more layer every ``every_n_epochs`` epochs (ULMFiT's gradual unfreezing, Howard & Ruder 2018).
Layers are those of ``retrograd.models.finetune.set_trainable_layers``: a BERT encoder's (embeddings
included), or the layers with parameters below the head of any other model (an MLP, a CNN).
In a config: ``[model] trainable_layers = K`` (the layers that train at first) and ``unfreeze_every = N``.

Build the optimizer on every parameter (``layerwise_lr_groups(..., include_frozen=True)`` or
``model.parameters()``): a frozen parameter gets no gradient, so the optimizer leaves it alone until
the callback unfreezes it. The trainable set depends only on the epoch, so a resumed run continues
with the same layers.
"""
from __future__ import annotations

from typing import Any

from ..models.finetune import num_layers, set_trainable_layers
from .callback import Callback

__all__ = ["GradualUnfreezing"]


class GradualUnfreezing(Callback):
    """At the start of epoch ``e`` (0-based) train the top ``start + e // every_n_epochs`` layers
    (capped at all of them, a BERT's embeddings included, or at ``max_layers``); the head always trains."""

    def __init__(self, every_n_epochs: int = 1, start: int = 0, max_layers: int | None = None) -> None:
        for name, v, low in (("every_n_epochs", every_n_epochs, 1), ("start", start, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"GradualUnfreezing: {name} must be an int >= {low}, got {v!r}")
        if max_layers is not None and (not isinstance(max_layers, int) or isinstance(max_layers, bool)
                                       or max_layers < 0):
            raise ValueError(f"GradualUnfreezing: max_layers must be an int >= 0 or None, got {max_layers!r}")
        self.every_n_epochs, self.start, self.max_layers = every_n_epochs, start, max_layers
        self.trainable: list[int] = []

    def layers_at(self, epoch: int, total: int) -> int:
        """How many layers train in ``epoch`` of a model with ``total`` (``finetune.num_layers``)."""
        cap = total if self.max_layers is None else min(self.max_layers, total)
        return min(self.start + epoch // self.every_n_epochs, cap)

    def on_epoch_start(self, trainer: Any, epoch: int, logs: dict) -> None:
        model = trainer.model
        self.trainable = set_trainable_layers(model, self.layers_at(epoch, num_layers(model)))
