"""Reporting a trial's validation metric each epoch, and pruning: ``Reporter`` (what a
``train_fn`` gets) and ``PruningCallback`` (the same for a ``Trainer``)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import optuna

from ..train.callback import Callback

__all__ = ["Reporter", "PruningCallback", "TrialPruned"]

TrialPruned = optuna.TrialPruned


class Reporter:
    """``reporter(epoch, metrics)`` reports ``metrics[metric]`` to the Optuna trial as the value at
    step ``epoch`` and returns True when the pruner says the trial should stop (then ``pruned`` is
    True and ``pruned_at`` is the epoch). The training stops itself (``PruningCallback`` sets
    ``trainer.stop_training``); the objective then ends the trial as PRUNED. A train function with
    its own loop may instead call ``raise_if_pruned()``."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.pruned = False
        self.pruned_at: int | None = None
        self.last: dict = {}
        self.reports = 0

    def __call__(self, epoch: int, metrics: Mapping[str, Any], metric: str | None = None) -> bool:
        key = metric or self.metric
        if key not in metrics:
            have = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float))) or "none"
            raise KeyError(f"tune: metric {key!r} is not among the reported metrics ({have}); "
                           f"does the training evaluate a validation set with this metric?")
        self.last = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        value = float(metrics[key])
        self.reports += 1
        if not math.isfinite(value):  # a diverged run: nothing to compare; let the objective fail it
            return False
        self.trial.report(value, int(epoch))
        if self.trial.should_prune():
            self.pruned, self.pruned_at = True, int(epoch)
        return self.pruned

    def raise_if_pruned(self) -> None:
        if self.pruned:
            raise TrialPruned(f"pruned after epoch {self.pruned_at}")


class PruningCallback(Callback):
    """Trainer callback: at each epoch's end report ``logs[metric]`` through ``reporter`` and stop
    training (``trainer.stop_training = True``) when the trial is pruned."""

    def __init__(self, reporter: Reporter, metric: str | None = None) -> None:
        self.reporter = reporter
        self.metric = metric or reporter.metric

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None:
        if self.reporter(epoch, logs, self.metric):
            trainer.stop_training = True
