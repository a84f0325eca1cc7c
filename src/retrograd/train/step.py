"""One training step, shared by the ``Trainer`` and the ``LRFinder``: how a batch
is read, the forward pass and loss, the backward pass scaled for gradient
accumulation, gradient clipping and the optimizer step.

A batch is ``(input, target)``, ``(input1, ..., target)``, ``((inputs...),
target)``, a dict with ``input``/``inputs``/``x``/``input_ids`` and
``target``/``targets``/``y``/``label``/``labels``, or a bare input (no
target: the loss is ``loss_fn(output)``). NumPy arrays in it become Tensors.

An optimizer step over ``k`` batches is ``backward_batch(..., accumulate=k)`` on
each batch's ``unpack_batch``, then ``optimizer_step``: with a mean loss and
equal batches it equals one step on the ``k``-times larger batch, and it is what
a PyTorch loop that calls ``(loss / k).backward()``,
``torch.nn.utils.clip_grad_norm_``, ``step()`` and ``zero_grad()`` does.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..nn.utils import clip_grad_norm_
from ..tensor import Tensor

__all__ = ["unpack_batch", "batch_size", "forward", "forward_loss", "backward_batch", "optimizer_step",
           "check_max_norm"]

_INPUT_KEYS = ("input", "inputs", "x", "input_ids")
_TARGET_KEYS = ("target", "targets", "y", "label", "labels")


def _is_seq(x: Any) -> bool:
    return isinstance(x, (tuple, list))


def unpack_batch(batch: Any, who: str = "Trainer") -> tuple[tuple, Any]:
    """``(inputs tuple, target or None)`` from a batch (see the module docstring);
    ``who`` names the caller in errors."""
    if isinstance(batch, dict):
        x = next((batch[k] for k in _INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in _TARGET_KEYS if k in batch), None)
        if x is None:
            raise ValueError(f"{who}: a dict batch needs an 'input' or 'x' key, got {sorted(batch)}")
        return (x,), y
    if _is_seq(batch):
        if len(batch) == 1:
            return (batch[0],), None
        x, y = (batch[0], batch[1]) if len(batch) == 2 else (tuple(batch[:-1]), batch[-1])
        return (tuple(x) if _is_seq(x) else (x,)), y
    return (batch,), None


def batch_size(inputs: tuple, target: Any) -> int:
    """The number of samples: the first dimension of the target (else of the first input), 1 for a scalar."""
    ref = target if target is not None else inputs[0]
    shape = getattr(ref, "shape", None)
    return int(shape[0]) if shape else 1


def _tensor(x: Any) -> Any:
    return Tensor(x) if isinstance(x, np.ndarray) else x


def forward(model: Callable, inputs: tuple) -> Any:
    """``model(*inputs)``, NumPy arrays made Tensors."""
    return model(*(_tensor(x) for x in inputs))


def forward_loss(model: Callable, loss_fn: Callable, inputs: tuple, target: Any) -> tuple[Any, Any]:
    """``(output, loss)``: ``model(*inputs)`` and ``loss_fn(output, target)`` (``loss_fn(output)`` without a target)."""
    out = forward(model, inputs)
    loss = loss_fn(out, _tensor(target)) if target is not None else loss_fn(out)
    return out, loss


def backward_batch(model: Callable, loss_fn: Callable, inputs: tuple, target: Any, *,
                   accumulate: int = 1) -> tuple[float, int]:
    """Forward one batch (``unpack_batch``'s ``inputs, target``) and backpropagate
    its loss divided by ``accumulate`` (the number of batches whose gradients add
    up to this optimizer step), so the accumulated gradient is that of the mean
    loss. Returns ``(loss, batch size)``, the loss unscaled, as a float."""
    _, loss = forward_loss(model, loss_fn, inputs, target)
    scaled = loss * (1.0 / accumulate) if accumulate > 1 else loss
    scaled.backward()
    return float(loss.item()), batch_size(inputs, target)


def check_max_norm(max_norm: float | None, who: str) -> float | None:
    """``max_norm`` (a ``grad_clip``) when it is None or positive; a ValueError naming ``who`` otherwise."""
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"{who}: grad_clip must be a positive max norm, got {max_norm!r}")
    return max_norm


def optimizer_step(optimizer: Any, *, max_norm: float | None = None,
                   before_step: Callable[[float | None], bool] | None = None) -> bool:
    """Clip the gradients of ``optimizer``'s parameters to a total 2-norm of
    ``max_norm`` (``rg.nn.utils.clip_grad_norm_``; none when None), then
    ``optimizer.step()`` and ``optimizer.zero_grad()``. ``before_step(norm)``,
    called after clipping with the norm before clipping (a float, None without
    clipping), may return False to skip the step; returns whether it stepped."""
    norm = None
    if max_norm is not None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        norm = float(clip_grad_norm_(params, max_norm))
    if before_step is not None and not before_step(norm):
        return False
    optimizer.step()
    optimizer.zero_grad()
    return True
