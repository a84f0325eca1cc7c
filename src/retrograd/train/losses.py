"""Losses by name, for a config's ``[train] loss``: ``LOSSES`` is the one table that config
validation and the recipe read, so a loss added here is available to the ``retrograd``
command, to ``rg.tune`` and to Python alike."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..nn import functional as F
from ..tensor import Tensor

__all__ = ["NamedLoss", "LOSSES", "SequenceAwareLoss", "make_loss"]


@dataclasses.dataclass(frozen=True)
class NamedLoss:
    """A loss function ``fn(outputs, targets)``; ``class_targets``: it takes class ids (the others
    compare outputs with one-hot targets when given class ids); ``label_smoothing``: it takes
    ``train.label_smoothing``."""
    fn: Callable[..., Tensor]
    class_targets: bool = False
    label_smoothing: bool = False


LOSSES: dict[str, NamedLoss] = {
    "cross_entropy": NamedLoss(F.cross_entropy, class_targets=True, label_smoothing=True),
    "nll": NamedLoss(F.nll_loss, class_targets=True),
    "mse": NamedLoss(F.mse_loss),
    "l1": NamedLoss(F.l1_loss),
    "smooth_l1": NamedLoss(F.smooth_l1_loss),
    "huber": NamedLoss(F.huber_loss),
    "bce_with_logits": NamedLoss(F.binary_cross_entropy_with_logits),
}


class SequenceAwareLoss:
    """``loss(outputs, targets)`` by name; logits ``(B, T, C)`` with targets ``(B, T)`` are flattened
    to ``(B*T, C)``; regression-style losses compare outputs with one-hot class targets."""

    def __init__(self, name: str, label_smoothing: float = 0.0) -> None:
        self.name, self.label_smoothing = name, label_smoothing

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        if out.ndim > 2 and y.ndim == out.ndim - 1:
            out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        loss = LOSSES[self.name]
        if loss.label_smoothing:
            return loss.fn(out, y, label_smoothing=self.label_smoothing)
        if not loss.class_targets and y.ndim == 1 and out.ndim == 2 and y.dtype not in (out.dtype,):
            y = Tensor(np.eye(out.shape[-1], dtype=np.float32)[np.asarray(y.numpy(), dtype=np.int64)])  # one-hot
        return loss.fn(out, y)

    def __repr__(self) -> str:
        return f"SequenceAwareLoss({self.name!r})"


def make_loss(train: dict) -> SequenceAwareLoss:
    """The loss of a validated ``[train]`` table (``loss``, ``label_smoothing``)."""
    return SequenceAwareLoss(train["loss"], train["label_smoothing"])
