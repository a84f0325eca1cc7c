"""Step time measured on the same work: ``retrograd compare``'s ``step_ms``.

A run's wall time says how long it took on a machine whose load changed while the runs went one
after another; it does not compare the optimizers. ``interleaved_step_times`` times one training
step (forward, backward, clipping, optimizer step: ``rg.train.step``) of each run on the same
batches, the runs taking turns round by round (the order rotating, so none always goes first), and
gives each run's median: a change of load hits every run alike, and a spike is outvoted.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Sequence

from .step import backward_batch, optimizer_step, unpack_batch

__all__ = ["TimedRun", "interleaved_step_times"]


@dataclasses.dataclass
class TimedRun:
    """What one training step needs: the model (trained further by the timing), its optimizer,
    the loss and the gradient clipping of its run."""
    model: Any
    optimizer: Any
    loss_fn: Callable
    grad_clip: float | None = None


def _step(run: TimedRun, batch: Any) -> float:
    t0 = time.perf_counter()
    backward_batch(run.model, run.loss_fn, *unpack_batch(batch))
    optimizer_step(run.optimizer, max_norm=run.grad_clip)
    return time.perf_counter() - t0


def interleaved_step_times(runs: dict[str, TimedRun], batches: Sequence, *, rounds: int = 20,
                           warmup: int = 1) -> dict[str, float]:
    """``{name: median seconds of one training step}``: ``warmup`` untimed rounds, then ``rounds``
    timed ones; in round ``r`` every run takes one step on ``batches[r % len(batches)]``, starting
    with run ``r % len(runs)``. The models are put in train mode and keep the steps' updates."""
    if rounds < 1:
        raise ValueError(f"interleaved_step_times: rounds must be >= 1, got {rounds!r}")
    if not batches:
        raise ValueError("interleaved_step_times: no batches to time")
    names = list(runs)
    for run in runs.values():
        run.model.train()
        run.optimizer.zero_grad()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        batch = batches[r % len(batches)]
        for i in range(len(names)):
            n = names[(r + i) % len(names)]
            t = _step(runs[n], batch)
            if r >= warmup:
                times[n].append(t)
    return {n: statistics.median(ts) for n, ts in times.items()}
