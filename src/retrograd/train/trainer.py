"""``Trainer``: the training loop, with callbacks, gradient accumulation,
clipping, schedulers, metrics and exact checkpoint/resume.

One optimizer step per ``accumulate`` batches; each batch's loss is divided by
the number of batches in its accumulation group (``accumulate``, or fewer for
the last group of an epoch), so with a mean loss and equal batches the step
equals one step on the ``accumulate``-times larger batch.

``save_checkpoint``/``load_checkpoint`` capture everything the next batch
depends on (parameters, optimizer and scheduler state, every RNG, the data
loader's position, pending accumulated gradients, the loop counters and the
history), so a run interrupted at any batch and resumed with
``fit(..., resume_from=dir)`` ends with bit-identical parameters.

Ctrl-C during ``fit`` (SIGINT, in the main thread, while Python's default handler is installed)
finishes the current batch, calls the callbacks' ``on_interrupt`` (``ModelCheckpoint`` saves
``last`` there, so ``retrograd resume`` continues from that batch) and then raises
``KeyboardInterrupt``; a second Ctrl-C raises it at once, without a save.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import random as _pyrandom
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .. import random as rg_random
from ..engine import no_grad
from ..optim.scheduling import step_scheduler
from ..tensor import Tensor
from ..tensor_functions import cat
from .callback import Callback
from .metrics import Metric, get_metric
from .step import backward_batch, batch_size, check_max_norm, forward, forward_loss, optimizer_step, unpack_batch

__all__ = ["Trainer", "TrainerState"]


@dataclass
class TrainerState:
    """Where training stands. ``epoch``: epochs completed; ``global_step``:
    optimizer steps taken; ``batch_in_epoch``: batches of the current epoch
    processed. The sums make a resumed epoch report the same ``train_loss``."""

    epoch: int = 0
    global_step: int = 0
    batch_in_epoch: int = 0
    loss_sum: float = 0.0
    samples: int = 0
    train_time: float = 0.0
    epoch_time: float = 0.0

    def reset_epoch(self) -> None:
        self.batch_in_epoch, self.loss_sum, self.samples, self.train_time, self.epoch_time = 0, 0.0, 0, 0.0, 0.0


class Trainer:
    """Fit ``model`` with ``optimizer`` on ``loss_fn(pred, target)``.

    ``scheduler`` steps once per epoch (``scheduler_interval="epoch"``) or per
    optimizer step (``"step"``); a ``ReduceLROnPlateau`` gets the validation loss
    (the training loss without a validation loader, the batch loss per step).
    ``metrics``: names from ``rg.train.metrics`` or callables ``(pred, target) ->
    float``, computed by ``evaluate`` on the validation set. ``grad_clip``:
    maximum global gradient norm. ``accumulate``: batches per optimizer step.
    ``seed`` seeds rg's default generator, NumPy's legacy one and Python's
    ``random``. ``config`` (a JSON-able dict) is saved with every checkpoint. ``sync``: data-parallel
    ranks (``rg.train.rank_data.RankSync``): ``sync.before_batch(trainer)`` before each batch,
    ``sync.train_model(last_of_group)`` the callable a batch's forward runs through (DDP; None: the
    model), ``sync.after_backward(trainer, loss, n)`` after each batch's backward returns the global
    batch's loss and size, ``sync.before_step(trainer)`` averages gradients not yet averaged before
    clipping and the step, ``sync.evaluate(trainer, loader)`` evaluates split over the ranks.

    A batch is ``(input, target)``, ``(input1, ..., target)``, ``((inputs...),
    target)`` or a dict with ``input``/``x`` and ``target``/``y``/``label``
    (``rg.train.step``, which holds the training step the ``LRFinder`` shares).
    """

    def __init__(self, model: Any, optimizer: Any, loss_fn: Callable, *, scheduler: Any = None,
                 scheduler_interval: str = "epoch", metrics: Sequence[Any] = ("accuracy",),
                 callbacks: Sequence[Callback] = (), grad_clip: float | None = None, accumulate: int = 1,
                 run_dir: str | os.PathLike | None = None, seed: int | None = None,
                 config: dict | None = None, sync: Any = None) -> None:
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"Trainer: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
            raise ValueError(f"Trainer: accumulate must be a positive int, got {accumulate!r}")
        check_max_norm(grad_clip, "Trainer")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.metric_specs = tuple(metrics or ())
        for m in self.metric_specs:
            get_metric(m)  # fail early on an unknown name
        self.callbacks: list[Callback] = list(callbacks)
        self.grad_clip = grad_clip
        self.accumulate = accumulate
        self.run_dir = pathlib.Path(run_dir) if run_dir is not None else None
        self.seed = seed
        self.config = dict(config) if config else {}
        self.sync = sync
        self.state = TrainerState()
        self.history: dict[str, list] = {}
        self.stop_training = False
        # why the last fit stopped before its epochs: stop_reason (EarlyStopping, NaNGuard ...) and,
        # when that is a failure (NaNGuard), failure too; both None after a fit that ran every epoch
        self.stop_reason: str | None = None
        self.failure: str | None = None
        self.current_batch: Any = None
        self.last_loss: float | None = None
        self.last_grad_norm: float | None = None
        self.train_loader: Any = None
        self.epochs: int | None = None  # the epochs the current (or last) fit was asked for
        # Ctrl-C: requested (the first press, handled at the next batch boundary), the checkpoint
        # on_interrupt saved (None: none) and why it could not save, when it failed
        self._interrupt_requested = False
        self.interrupt_checkpoint: pathlib.Path | None = None
        self.interrupt_error: str | None = None
        self._pending_loader_state: dict | None = None
        self._pending_generators: dict | None = None
        if seed is not None:
            rg_random.manual_seed(seed)
            np.random.seed(seed % 2**32)
            _pyrandom.seed(seed)

    # ------------------------------------------------------------------ helpers
    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    unpack_batch = staticmethod(unpack_batch)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def params(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    @contextlib.contextmanager
    def _deferred_sigint(self):
        """While training: the first Ctrl-C only asks to stop at the next batch boundary
        (``_check_interrupt``); a second one raises ``KeyboardInterrupt`` at once. Only in the main
        thread and only over Python's default handler (a program's own handler is left alone)."""
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._interrupt_requested:
                raise KeyboardInterrupt
            self._interrupt_requested = True
            print("\ninterrupted: finishing this batch to save a resumable checkpoint "
                  "(press Ctrl-C again to stop at once, without saving)", file=sys.stderr, flush=True)

        self._interrupt_requested = False
        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _check_interrupt(self, boundary: str = "batch") -> None:
        """At a batch or epoch boundary after a Ctrl-C: ``on_interrupt`` (a checkpoint), then
        ``KeyboardInterrupt``. A save that fails is recorded in ``interrupt_error``, not raised.
        Data-parallel (``sync``): only where every rank agrees to stop (``sync.interrupted``)."""
        if self.sync is not None and hasattr(self.sync, "interrupted"):
            if not self.sync.interrupted(self, boundary):
                return
        elif not self._interrupt_requested:
            return
        self._interrupt_requested = False
        try:
            self._call("on_interrupt")
        except Exception as e:  # noqa: BLE001 - the interrupt still ends fit; the CLI says what was lost
            self.interrupt_checkpoint = None
            self.interrupt_error = f"{type(e).__name__}: {e}"
        raise KeyboardInterrupt

    def _step_scheduler(self, metric: float) -> None:
        step_scheduler(self.scheduler, metric)

    # ------------------------------------------------------------------ training
    def _optimizer_step(self) -> None:
        if self.sync is not None:
            self.sync.before_step(self)
        if not optimizer_step(self.optimizer, max_norm=self.grad_clip, before_step=self._before_step):
            return
        self.state.global_step += 1
        self._pending = 0
        if self.scheduler is not None and self.scheduler_interval == "step":
            self._step_scheduler(self.last_loss)

    def _before_step(self, grad_norm: float | None) -> bool:
        if grad_norm is not None:
            self.last_grad_norm = grad_norm
        self._call("on_before_step", self.state.batch_in_epoch)
        return not self.stop_training

    def _train_batch(self, batch: Any, n_batches: int | None) -> dict:
        idx = self.state.batch_in_epoch
        k = self.accumulate
        start = idx // k * k
        group = min(k, n_batches - start) if n_batches else k
        model = self.model
        if self.sync is not None:  # data-parallel: the ranks' forward (DDP), synchronised at a group's last batch
            model = self.sync.train_model(idx + 1 - start == group)
            model = self.model if model is None else model
        value, n = backward_batch(model, self.loss_fn, *self.unpack_batch(batch), accumulate=group)
        self._pending = idx + 1 - start
        if self.sync is not None:
            value, n = self.sync.after_backward(self, value, n)
        self.last_loss = value
        self._call("on_after_backward", idx)
        if self.stop_training:
            return {"loss": value, "batch_size": n}
        if self._pending == group:
            self._optimizer_step()
        return {"loss": value, "batch_size": n}

    def fit(self, train_loader: Any, val_loader: Any = None, epochs: int = 1,
            resume_from: str | os.PathLike | None = None) -> dict:
        """Train until ``epochs`` epochs are complete (counting those of a resumed
        checkpoint) or a callback sets ``stop_training``. Returns the history:
        per-epoch lists ``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``,
        ``epoch_time``, ``samples_per_sec``."""
        self.interrupt_checkpoint = self.interrupt_error = None
        with self._deferred_sigint():
            return self._fit(train_loader, val_loader, epochs, resume_from)

    def _fit(self, train_loader: Any, val_loader: Any, epochs: int, resume_from: Any) -> dict:
        self.train_loader = train_loader
        self.epochs = epochs  # what callbacks see of the run's length (ProgressBar's time left)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self._apply_pending_loader_state()
        self.stop_training = False
        self.stop_reason = self.failure = None
        self._pending = self.state.batch_in_epoch % self.accumulate
        try:
            n_batches = len(train_loader)
        except TypeError:
            n_batches = None
        self._call("on_fit_start")
        while self.state.epoch < epochs and not self.stop_training:
            epoch = self.state.epoch
            self._call("on_epoch_start", epoch, {"resumed_at_batch": self.state.batch_in_epoch,
                                                 "num_batches": n_batches})
            self.model.train()
            t_epoch = time.perf_counter()
            t_mark = t_epoch
            for batch in train_loader:
                idx = self.state.batch_in_epoch
                self.current_batch = batch
                if self.sync is not None:
                    self.sync.before_batch(self)
                self._call("on_batch_start", idx, {"epoch": epoch})
                logs = self._train_batch(batch, n_batches)
                if self.stop_training and self._pending:
                    break  # a callback vetoed this step (NaNGuard): stop before touching parameters
                now = time.perf_counter()
                self.state.train_time += now - t_mark
                self.state.epoch_time += now - t_mark
                t_mark = now
                self.state.batch_in_epoch += 1
                self.state.loss_sum += logs["loss"] * logs["batch_size"]
                self.state.samples += logs["batch_size"]
                logs.update(epoch=epoch, step=self.state.global_step, lr=self.lr(),
                            samples_per_sec=self.state.samples / max(self.state.train_time, 1e-12))
                self._call("on_batch_end", idx, logs)
                self._check_interrupt()
                if self.stop_training:
                    break
            self.current_batch = None
            if self.stop_training:
                break
            if self._pending:  # a last, partial accumulation group (loader without len)
                self._optimizer_step()
            self.state.train_time += time.perf_counter() - t_mark
            logs = self._end_epoch(val_loader, t_mark)
            self._call("on_epoch_end", epoch, logs)
            self._check_interrupt("epoch")
        self._call("on_fit_end")
        return self.history

    def _end_epoch(self, val_loader: Any, t_mark: float) -> dict:
        st = self.state
        train_loss = st.loss_sum / st.samples if st.samples else float("nan")
        logs: dict[str, Any] = {"epoch": st.epoch, "train_loss": train_loss}
        if val_loader is not None:
            for k, v in self.evaluate(val_loader).items():
                logs[f"val_{k}"] = v
        logs["lr"] = self.lr()
        st.epoch_time += time.perf_counter() - t_mark
        logs["epoch_time"] = st.epoch_time
        logs["samples_per_sec"] = st.samples / max(st.train_time, 1e-12)
        logs["step"] = st.global_step
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self._step_scheduler(logs.get("val_loss", train_loss))
        for k, v in logs.items():
            if k not in ("epoch", "step"):
                self.history.setdefault(k, []).append(v)
        st.epoch += 1
        st.reset_epoch()
        return logs

    # ------------------------------------------------------------------ evaluation
    def _metrics(self) -> list[Metric]:
        return [get_metric(m) for m in self.metric_specs]

    def evaluate(self, loader: Any) -> dict:
        """``{"loss": mean loss over samples, "<metric>": value}`` on ``loader``, in eval mode without grad.
        Data-parallel (``sync``): split over the ranks, with one process's numbers."""
        if self.sync is not None and hasattr(self.sync, "evaluate"):
            result = self.sync.evaluate(self, loader)
            if result is not None:
                return result
        metrics = self._metrics()
        for m in metrics:
            m.reset()
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        total, count = 0.0, 0
        try:
            with no_grad():
                for batch in loader:
                    inputs, target = self.unpack_batch(batch)
                    out, loss = forward_loss(self.model, self.loss_fn, inputs, target)
                    n = batch_size(inputs, target)
                    total += float(loss.item()) * n
                    count += n
                    if target is not None:
                        for m in metrics:
                            m.update(out, target)
        finally:
            self.model.train(was_training)
        result = {"loss": total / count if count else float("nan")}
        for m in metrics:
            result[m.name] = m.compute()
        return result

    def predict(self, loader: Any) -> Tensor:
        """The model's outputs on every batch of ``loader``, concatenated along the first axis."""
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        outs = []
        try:
            with no_grad():
                for batch in loader:
                    inputs, _ = self.unpack_batch(batch)
                    outs.append(forward(self.model, inputs))
        finally:
            self.model.train(was_training)
        if not outs:
            raise ValueError("Trainer.predict: the loader yielded no batches")
        return cat(outs, 0)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike, *, extra: dict | None = None) -> pathlib.Path:
        """Write a complete, resumable checkpoint folder atomically (see ``rg.train.checkpoint``)."""
        from .checkpoint import save_training_checkpoint
        return save_training_checkpoint(self, path, extra=extra)

    def load_checkpoint(self, path: str | os.PathLike) -> dict:
        """Restore a checkpoint written by ``save_checkpoint``; returns its metadata.
        The data-loader position is applied to the training loader now, or at the next ``fit``."""
        from .checkpoint import load_training_checkpoint
        meta = load_training_checkpoint(self, path)
        self._apply_pending_loader_state()
        return meta

    def _apply_pending_loader_state(self) -> None:
        from .checkpoint import apply_loader_state
        if self.train_loader is not None and (self._pending_loader_state is not None or
                                              self._pending_generators is not None):
            apply_loader_state(self, self.train_loader)

    def state_summary(self) -> dict:
        return asdict(self.state)
