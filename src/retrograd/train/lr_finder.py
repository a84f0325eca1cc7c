"""``LRFinder``: the learning-rate range test (Smith, "Cyclical Learning Rates for
Training Neural Networks", WACV 2017; popularised by fastai and torch-lr-finder).

Train for a few iterations while the lr grows from ``start_lr`` to ``end_lr``
(exponentially or linearly), record the loss, smoothed by an exponential
moving average, and stop when it diverges. A good lr lies where the smoothed
loss falls fastest (``suggestion()``). The model's parameters and the
optimizer's state are restored afterwards, bit for bit. Each iteration is the
``Trainer``'s training step (``rg.train.step``): the same batch forms, gradient
accumulation and clipping::

    finder = rg.train.LRFinder(model, rg.optim.SGD(model.parameters(), lr=1e-4), nn.CrossEntropyLoss())
    finder.range_test(train_loader, end_lr=10, num_iter=100)
    lr = finder.suggestion()
    finder.plot(path="lr_finder.png")
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any, Callable, Iterable

import numpy as np

from ..optim.optimizer import Optimizer
from ..optim.plotting import _require_matplotlib, plain_log_ticks, plain_number, plain_ticks
from ..tensor import Tensor
from .step import backward_batch, check_max_norm, optimizer_step, unpack_batch

__all__ = ["LRFinder"]


def _snapshot(value: Any) -> Any:
    """A copy that later training cannot change (state dict Tensors are live views)."""
    if isinstance(value, Tensor):
        return Tensor(value._array.copy())
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        out = {k: _snapshot(v) for k, v in value.items()}
        return OrderedDict(out) if isinstance(value, OrderedDict) else out
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - something not copyable (a tensor of another library): keep it
        return value


class LRFinder:
    """The lr range test for ``model`` trained by ``optimizer`` on ``loss_fn(outputs, targets)``.

    ``model``: anything callable on the inputs with ``parameters()``,
    ``state_dict()`` and ``load_state_dict()`` (an ``nn.Module``). ``grad_clip``:
    maximum global gradient norm, as the ``Trainer``'s. After
    ``range_test``: ``history["lr"]`` (the lr of each iteration, first param
    group) and ``history["loss"]`` (the smoothed loss), ``best_loss``.
    """

    def __init__(self, model: Any, optimizer: Optimizer, loss_fn: Callable[[Any, Any], Any], *,
                 grad_clip: float | None = None) -> None:
        for name in ("state_dict", "load_state_dict"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"LRFinder: the model ({type(model).__name__}) has no {name}(); it is needed to "
                                "restore the parameters after the test")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"LRFinder: expected a retrograd Optimizer, got {type(optimizer).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.grad_clip = check_max_norm(grad_clip, "LRFinder")
        self.history: dict[str, list[float]] = {"lr": [], "loss": []}
        self.best_loss: float | None = None
        self.diverged = False

    def reset(self) -> None:
        """Restore the model and optimizer as they were before ``range_test`` (done by it)."""
        self.model.load_state_dict(self._model_state)
        self.optimizer.load_state_dict(self._optim_state)  # keeps an lr schedule (lr=callable) of the groups

    def range_test(self, train_loader: Iterable, start_lr: float | None = None, end_lr: float = 10,
                   num_iter: int = 100, step_mode: str = "exp", smooth_f: float = 0.05, diverge_th: float = 5,
                   accumulation_steps: int = 1) -> dict[str, list[float]]:
        """Run the test; returns ``history``.

        ``train_loader``: an iterable of batches in any form the ``Trainer`` takes
        (``(inputs, targets)``, dicts, ...; arrays or Tensors), restarted when
        exhausted; each iteration takes ``accumulation_steps`` batches (gradients
        and losses averaged) and makes one optimizer step. The lr of
        iteration ``i`` of ``n = num_iter`` is ``start * (end / start) ** (i / (n - 1))``
        (``exp``) or ``start + (end - start) * i / (n - 1)`` (``linear``), per param
        group, ``start`` being ``start_lr`` or the group's lr. The recorded loss is
        ``smooth_f * loss + (1 - smooth_f) * previous`` (``smooth_f = 0``: raw);
        the test stops once it exceeds ``diverge_th * best`` or is not finite.
        """
        if step_mode not in ("exp", "linear"):
            raise ValueError(f"LRFinder.range_test: step_mode must be 'exp' or 'linear', got {step_mode!r}")
        if not 0 <= smooth_f < 1:
            raise ValueError(f"LRFinder.range_test: smooth_f must lie in [0, 1), got {smooth_f}")
        if not isinstance(num_iter, int) or num_iter < 2:
            raise ValueError(f"LRFinder.range_test: num_iter must be an integer >= 2, got {num_iter!r}")
        if not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(f"LRFinder.range_test: accumulation_steps must be a positive integer, got "
                             f"{accumulation_steps!r}")
        if diverge_th <= 1:
            raise ValueError(f"LRFinder.range_test: diverge_th must exceed 1, got {diverge_th}")
        groups = self.optimizer.param_groups
        starts = [float(start_lr) if start_lr is not None else float(g["lr"]) for g in groups]
        ends = list(end_lr) if isinstance(end_lr, (list, tuple)) else [end_lr] * len(groups)
        if len(ends) != len(groups):
            raise ValueError(f"LRFinder.range_test: got {len(ends)} end_lrs for {len(groups)} param groups")
        for s, e in zip(starts, ends):
            if not 0 < s < e:
                raise ValueError(f"LRFinder.range_test: need 0 < start_lr < end_lr, got start_lr={s}, end_lr={e}")

        self._model_state = _snapshot(self.model.state_dict())
        self._optim_state = _snapshot(self.optimizer.state_dict())
        schedules = [g.pop("lr_schedule", None) for g in groups]  # the test sets the lrs itself
        self.history = {"lr": [], "loss": []}
        self.best_loss, self.diverged = None, False
        batches = _Cycle(train_loader)
        self.optimizer.zero_grad()
        try:
            for i in range(num_iter):
                r = i / (num_iter - 1)
                for g, s, e in zip(groups, starts, ends):
                    g["lr"] = s * (e / s) ** r if step_mode == "exp" else s + (e - s) * r
                loss = self._train_batch(batches, accumulation_steps)
                if i > 0 and smooth_f > 0 and math.isfinite(loss):
                    loss = smooth_f * loss + (1 - smooth_f) * self.history["loss"][-1]
                self.history["lr"].append(float(groups[0]["lr"]))
                self.history["loss"].append(loss)
                if not math.isfinite(loss) or (self.best_loss is not None and loss > diverge_th * self.best_loss):
                    self.diverged = True
                    break
                if self.best_loss is None or loss < self.best_loss:
                    self.best_loss = loss
        finally:
            for g, s in zip(groups, schedules):
                if s is not None:
                    g["lr_schedule"] = s
            self.reset()
        return self.history

    def _train_batch(self, batches: "_Cycle", accumulation_steps: int) -> float:
        total = 0.0
        for _ in range(accumulation_steps):
            inputs, target = unpack_batch(batches.next(), "LRFinder.range_test")
            loss, _ = backward_batch(self.model, self.loss_fn, inputs, target, accumulate=accumulation_steps)
            total += loss
        optimizer_step(self.optimizer, max_norm=self.grad_clip)
        return total / accumulation_steps

    # ------------------------------------------------------------------ results
    def _window(self, skip_start: int, skip_end: int) -> tuple[np.ndarray, np.ndarray]:
        if skip_start < 0 or skip_end < 0:
            raise ValueError(f"LRFinder: skip_start and skip_end must be non-negative, got {skip_start}, {skip_end}")
        lrs, losses = self.history["lr"], self.history["loss"]
        end = len(lrs) - skip_end
        return np.asarray(lrs[skip_start:end], dtype=float), np.asarray(losses[skip_start:end], dtype=float)

    def suggestion(self, skip_start: int = 10, skip_end: int = 5) -> float:
        """The lr where the smoothed loss falls fastest: the most negative gradient
        of loss versus iteration, leaving out ``skip_start`` points at the start and
        ``skip_end`` at the end (the noisy warm-up and the divergence)."""
        lrs, losses = self._window(skip_start, skip_end)
        ok = np.isfinite(losses)
        lrs, losses = lrs[ok], losses[ok]
        if len(losses) < 2:
            raise RuntimeError(f"LRFinder.suggestion: {len(losses)} points are left after skipping {skip_start} at "
                               f"the start and {skip_end} at the end of {len(self.history['lr'])}: run range_test "
                               "(longer), or lower skip_start/skip_end")
        return float(lrs[int(np.gradient(losses).argmin())])

    def plot(self, path: str | None = None, ax: Any = None, *, skip_start: int = 10, skip_end: int = 5,
             log_lr: bool = True, suggest: bool = True) -> Any:
        """Smoothed loss versus lr (log axis unless ``log_lr=False``), the suggestion
        marked with a red dot; saved to ``path`` when given. Returns the Axes."""
        _require_matplotlib("LRFinder.plot")
        lrs, losses = self._window(skip_start, skip_end)
        if len(lrs) == 0:
            raise RuntimeError("LRFinder.plot: nothing to plot: run range_test first (or lower skip_start/skip_end)")
        if ax is None:
            if path is not None:
                from matplotlib.figure import Figure
                ax = Figure(figsize=(6, 4)).add_subplot()
            else:
                import matplotlib.pyplot as plt
                _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(lrs, losses, color="C0")
        if log_lr:
            ax.set_xscale("log")
            plain_log_ticks(ax.xaxis)
        else:
            plain_ticks(ax.xaxis)
        plain_ticks(ax.yaxis)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        if suggest and len(lrs) >= 2:
            lr = self.suggestion(skip_start, skip_end)
            i = int(np.flatnonzero(lrs == lr)[0])
            ax.scatter([lr], [losses[i]], s=75, marker="o", color="red", zorder=3,
                       label=f"suggested lr {plain_number(lr)}")
            ax.legend()
        if path is not None:
            ax.figure.savefig(path, bbox_inches="tight")
        return ax


class _Cycle:
    """Batches from an iterable, starting it over when it runs out (a DataLoader reshuffles)."""

    def __init__(self, iterable: Iterable) -> None:
        self.iterable = iterable
        self.it = iter(iterable)

    def next(self) -> Any:
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.iterable)
            try:
                return next(self.it)
            except StopIteration:
                raise ValueError("LRFinder.range_test: the training data yielded no batch") from None
