"""``Callback``: the base class of the objects the ``Trainer`` calls at fixed points of the loop
(the callbacks themselves are in ``callbacks``; ``GradientFlow`` in ``diagnostics``).

Hooks (override any; all receive the trainer first):

- ``on_fit_start(trainer)`` / ``on_fit_end(trainer)``
- ``on_epoch_start(trainer, epoch, logs)``: ``logs`` has ``resumed_at_batch``, ``num_batches``
- ``on_epoch_end(trainer, epoch, logs)``: ``logs`` is the epoch's row of the history
  (``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``, ``epoch_time``, ``samples_per_sec``)
- ``on_batch_start(trainer, batch_idx, logs)`` / ``on_batch_end(trainer, batch_idx, logs)``:
  ``logs`` has ``loss``, ``batch_size``, ``epoch``, ``step``, ``lr``, ``samples_per_sec``
- ``on_after_backward(trainer, batch_idx)``: gradients of this batch are in ``.grad``
- ``on_before_step(trainer, batch_idx)``: after clipping, just before ``optimizer.step()``
- ``on_interrupt(trainer)``: after Ctrl-C, at the batch (or epoch) boundary where ``fit`` stops
  (``KeyboardInterrupt`` follows); ``ModelCheckpoint`` saves ``last`` here

A callback may read ``trainer.state`` (where training stands) and ``trainer.epochs`` (the epochs
``fit`` was asked for, counting those of a resumed checkpoint).
Setting ``trainer.stop_training = True`` ends ``fit`` after the current batch
(before the optimizer step when set in ``on_after_backward``/``on_before_step``).
A callback with ``state_dict()``/``load_state_dict()`` has its state saved in checkpoints; one with
``flush_logs()`` has it called before each checkpoint is saved (``MetricLogger``: its buffered rows).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Callback"]


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_start(self, trainer: Any) -> None: ...

    def on_fit_end(self, trainer: Any) -> None: ...

    def on_epoch_start(self, trainer: Any, epoch: int, logs: dict) -> None: ...

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None: ...

    def on_batch_start(self, trainer: Any, batch_idx: int, logs: dict) -> None: ...

    def on_batch_end(self, trainer: Any, batch_idx: int, logs: dict) -> None: ...

    def on_after_backward(self, trainer: Any, batch_idx: int) -> None: ...

    def on_before_step(self, trainer: Any, batch_idx: int) -> None: ...

    def on_interrupt(self, trainer: Any) -> None: ...
