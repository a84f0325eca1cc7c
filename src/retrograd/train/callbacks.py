"""Callbacks: objects the ``Trainer`` calls at fixed points of the loop (base class: ``callback.Callback``).

``ProgressBar`` (with ``RunClock``, the time left for the whole run), ``MetricLogger``, ``EarlyStopping``, ``ModelCheckpoint``,
``LRMonitor``, ``NaNGuard``, and ``GradientFlow`` (from ``diagnostics``). The
hooks a callback may override, and when the trainer calls them, are listed in
``callback``.
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import pathlib
import sys
import time
import traceback
from typing import Any

import numpy as np

from ..engine import AnomalyError, detect_anomaly
from ..nn.sync_batchnorm import local_statistics
from .. import random as rg_random
from .callback import Callback
from .diagnostics import GradientFlow
from .formatting import format_duration, format_value
from .logfiles import read_jsonl
from .step import forward_loss

__all__ = ["Callback", "ProgressBar", "RunClock", "MetricLogger", "EarlyStopping", "ModelCheckpoint", "LRMonitor",
           "NaNGuard", "GradientFlow"]



# --------------------------------------------------------------------------- progress
def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class RunClock:
    """Elapsed time of a ``fit`` and an estimate of the time left for all its epochs: the batches
    still to run at the mean time per batch so far, plus one validation pass per epoch still to end
    at the mean time the passes so far took (0 before the first)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.eval_time = 0.0
        self.evals = 0
        self.batches = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self, epochs: int | None, epoch: int, batch_in_epoch: int, n_batches: int | None) -> float | None:
        """Seconds left with ``batch_in_epoch`` batches of epoch ``epoch`` (0-based) done, or None when
        unknown (no batch timed yet, or no epoch count or batch count)."""
        if epochs is not None and epoch >= epochs:
            return 0.0
        if epochs is None or not n_batches or not self.batches:
            return None
        per_batch = max(self.elapsed() - self.eval_time, 0.0) / self.batches
        batches_left = max(n_batches - batch_in_epoch, 0) + n_batches * max(epochs - epoch - 1, 0)
        evals_left = max(epochs - epoch, 0)
        return batches_left * per_batch + evals_left * (self.eval_time / self.evals if self.evals else 0.0)


class ProgressBar(Callback):
    """What a user watches during ``fit``. On a terminal: a tqdm bar per epoch (step, running loss,
    samples/s, the epoch's ETA and ``run``, the time left for the whole run). Off a terminal (output
    redirected to a log file or a pipe; ``plain=True``), or without tqdm: no bar frames, only plain
    lines: one at the end of each epoch, and within a long epoch one at each tenth of it that comes
    at least ``every_s`` seconds after the previous line (for a loader without ``len``: a line every
    ``every_s`` seconds). Every epoch ends with a line of its
    metrics, its time and the run's elapsed time and time left. ``disable``: print nothing.
    Output goes to ``file`` (default: stderr)."""

    def __init__(self, *, file: Any = None, leave: bool = True, disable: bool = False, plain: bool | None = None,
                 every_s: float = 30.0) -> None:
        self.file = file
        self.leave = leave
        self.disable = disable
        self.plain = plain
        self.every_s = float(every_s)
        self._bar = None
        self._clock: RunClock | None = None
        self._epochs: int | None = None
        self._n_batches: int | None = None

    @property
    def out(self) -> Any:
        return self.file or sys.stderr

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def on_fit_start(self, trainer: Any) -> None:
        self._clock = RunClock()
        self._epochs = getattr(trainer, "epochs", None)

    def _epoch_name(self, epoch: int) -> str:
        return f"epoch {epoch + 1}" + (f"/{self._epochs}" if self._epochs else "")

    def _left(self, epoch: int, done: int) -> float | None:
        return self._clock.remaining(self._epochs, epoch, done, self._n_batches) if self._clock else None

    def _run_text(self, epoch: int, done: int) -> str:
        left = None if self._epochs is not None and epoch >= self._epochs else self._left(epoch, done)
        return f"run {format_duration(self._clock.elapsed())} elapsed" + \
            (f", {format_duration(left)} left" if left is not None else "")

    def on_epoch_start(self, trainer: Any, epoch: int, logs: dict) -> None:
        if self._clock is None:  # called without on_fit_start (a hand-driven loop)
            self.on_fit_start(trainer)
        self._loss_sum, self._n = 0.0, 0
        self._n_batches = logs.get("num_batches")
        self._last_line = time.perf_counter()
        self._last_batch_end: float | None = None
        self._bar = None
        if self.disable or self.plain or (self.plain is None and not _isatty(self.out)):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=self._n_batches, initial=logs.get("resumed_at_batch", 0),
                         desc=self._epoch_name(epoch), file=self.out, leave=self.leave,
                         dynamic_ncols=True, unit="batch")

    def on_batch_end(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        self._loss_sum += logs["loss"] * logs["batch_size"]
        self._n += logs["batch_size"]
        self._last_batch_end = time.perf_counter()
        if self._clock is not None:
            self._clock.batches += 1
        if self.disable:
            return
        loss = self._loss_sum / self._n
        if self._bar is not None:
            left = self._left(logs["epoch"], batch_idx + 1)
            post = {"step": logs["step"], "loss": f"{loss:.4f}", "samples/s": f"{logs['samples_per_sec']:.0f}"}
            if left is not None:
                post["run left"] = format_duration(left)
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
            return
        n, done = self._n_batches, batch_idx + 1
        now = time.perf_counter()
        if n and done < n and done * 10 // n > batch_idx * 10 // n and now - self._last_line >= self.every_s:
            self._last_line = now
            self._print(f"{self._epoch_name(logs['epoch'])}: {done * 100 // n}% ({done}/{n} batches) loss "
                        f"{loss:.4f}, {logs['samples_per_sec']:,.0f} samples/s | {self._run_text(logs['epoch'], done)}")
        elif not n and now - self._last_line >= self.every_s:
            self._last_line = now
            self._print(f"{self._epoch_name(logs['epoch'])}: batch {done}, loss {loss:.4f}, "
                        f"{logs['samples_per_sec']:,.0f} samples/s | {self._run_text(logs['epoch'], done)}")

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None:
        if self._clock is not None and getattr(self, "_last_batch_end", None) is not None:
            self._clock.eval_time += time.perf_counter() - self._last_batch_end
            self._clock.evals += 1
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.disable:
            return
        skip = ("epoch", "step", "samples_per_sec", "epoch_time")
        self._print(f"{self._epoch_name(epoch)}: "
                    + " ".join(f"{k}={format_value(v)}" for k, v in logs.items() if k not in skip)
                    + f" | step {logs.get('step')}, {logs.get('samples_per_sec', 0):,.0f} samples/s, "
                    f"{logs.get('epoch_time', 0):.2f} s | {self._run_text(epoch + 1, 0)}")

    def on_fit_end(self, trainer: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --------------------------------------------------------------------------- logging
class MetricLogger(Callback):
    """Logs every ``log_every_n_steps`` batches and every epoch to ``run_dir``:
    ``metrics.jsonl`` (one JSON object a line, ``"kind": "step"|"epoch"``),
    ``metrics.csv`` (the same rows, columns the union of their keys) and
    TensorBoard event files under ``run_dir/tb`` (tags ``train/loss``,
    ``train/lr``, ``epoch/<name>``), so ``tensorboard --logdir run_dir/tb`` works.

    ``metrics.jsonl`` reaches the disk (a flush: one system call) at most ``flush_every_s`` seconds
    after a step's row (at the first row logged after that), with every epoch's row, before every
    checkpoint is saved (``flush_logs``, which checkpoints call: a resumed run finds every row up to
    its checkpoint), on Ctrl-C and at the end of ``fit``: a flush per batch cost ~30 us of the
    ~13 ms batches of ``examples/fashion_cnn.toml``."""

    def __init__(self, run_dir: str | os.PathLike, *, log_every_n_steps: int = 1, tensorboard: bool = True,
                 flush_every_s: float = 1.0) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.tensorboard = tensorboard
        self.flush_every_s = float(flush_every_s)
        self.rows: list[dict] = []
        self._writer = None
        self._jsonl = None
        self._flushed = 0.0  # time.monotonic() of the last flush

    @property
    def jsonl_path(self) -> pathlib.Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def csv_path(self) -> pathlib.Path:
        return self.run_dir / "metrics.csv"

    def on_fit_start(self, trainer: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path.with_suffix(".jsonl.tmp").unlink(missing_ok=True)  # left by a crash in _rewrite_jsonl
        self.csv_path.with_suffix(".csv.tmp").unlink(missing_ok=True)
        if self.jsonl_path.exists() and not self.rows:  # a resumed run: keep what was logged
            self.rows = read_jsonl(self.jsonl_path, keys=("kind", "epoch"))
            # drop rows logged after the checkpoint we resumed from
            st = trainer.state
            self.rows = [r for r in self.rows
                         if (r["kind"] == "epoch" and r["epoch"] < st.epoch) or
                         (r["kind"] == "step" and (r["epoch"] < st.epoch or
                                                   (r["epoch"] == st.epoch and r.get("batch", -1) < st.batch_in_epoch)))]
            self._rewrite_jsonl()
        self._jsonl = open(self.jsonl_path, "a")
        if self.tensorboard:
            from .tensorboard import EventWriter
            self._writer = EventWriter(self.run_dir / "tb")

    def _rewrite_jsonl(self) -> None:
        tmp = self.jsonl_path.with_suffix(".jsonl.tmp")
        with open(tmp, "w") as f:
            for r in self.rows:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.jsonl_path)

    def _log(self, row: dict, flush: bool = False) -> None:
        row = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in row.items()}
        self.rows.append(row)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(row) + "\n")
            now = time.monotonic()
            if flush or now - self._flushed >= self.flush_every_s:
                self._jsonl.flush()
                self._flushed = now

    def flush_logs(self) -> None:
        """Write what ``metrics.jsonl`` holds in its buffer to the file (checkpoints call this before saving)."""
        if self._jsonl is not None:
            self._jsonl.flush()
            self._flushed = time.monotonic()

    def on_interrupt(self, trainer: Any) -> None:
        self.flush_logs()

    def on_batch_end(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        step = trainer.state.global_step
        if (batch_idx + 1) % self.log_every_n_steps:
            return
        row = {"kind": "step", "epoch": logs["epoch"], "batch": batch_idx, "step": step, "loss": logs["loss"],
               "lr": logs["lr"], "samples_per_sec": logs["samples_per_sec"], "time": time.time()}
        for k, v in logs.items():
            if k.startswith("lr_") or k == "grad_norm":
                row[k] = v
        self._log(row)
        if self._writer is not None:
            self._writer.add_scalars({"train/loss": logs["loss"], "train/lr": logs["lr"]}, step)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None:
        row = {"kind": "epoch", **{k: v for k, v in logs.items()}, "epoch": epoch, "time": time.time()}
        self._log(row, flush=True)
        if self._writer is not None:
            self._writer.add_scalars({f"epoch/{k}": v for k, v in logs.items() if k not in ("epoch", "step")},
                                     epoch + 1)
            self._writer.flush()
        self.write_csv()

    def write_csv(self) -> None:
        cols: list[str] = []
        for r in self.rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(self.rows)
        tmp = self.csv_path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.csv_path)

    def on_fit_end(self, trainer: Any) -> None:
        self.write_csv()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class LRMonitor(Callback):
    """Records the learning rate of every param group at every step (``self.lrs``:
    one list per group) and adds ``lr_<i>`` to the batch logs when there are several groups."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.steps: list[int] = []

    def on_batch_end(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        groups = trainer.optimizer.param_groups
        if not self.lrs:
            self.lrs = [[] for _ in groups]
        for i, g in enumerate(groups):
            self.lrs[i].append(float(g["lr"]))
            if len(groups) > 1:
                logs[f"lr_{i}"] = float(g["lr"])
        self.steps.append(trainer.state.global_step)

    def state_dict(self) -> dict:
        return {"lrs": self.lrs, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.lrs = [list(x) for x in state["lrs"]]
        self.steps = list(state["steps"])


# --------------------------------------------------------------------------- early stopping / checkpoints
def _better(mode: str, value: float, best: float | None, min_delta: float) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _check_mode(mode: str, who: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` (a key of the epoch logs, e.g. ``val_loss``) has not
    improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, mode: str = "min", min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.patience = int(patience)
        self.mode = _check_mode(mode, "EarlyStopping")
        self.min_delta = abs(float(min_delta))
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None:
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitor {self.monitor!r} is not among the epoch logs "
                           f"{sorted(logs)} (no validation loader?)")
        value = float(logs[self.monitor])
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.stop_reason = (f"early stopping: {self.monitor} did not improve for {self.patience} "
                                       f"epoch{'s' if self.patience != 1 else ''}")
                self.stopped_epoch = epoch

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait, self.stopped_epoch = state["best"], state["wait"], state["stopped_epoch"]


class ModelCheckpoint(Callback):
    """Save resumable checkpoints under ``run_dir/checkpoints``: ``last`` every
    ``every_n_epochs`` epochs (and every ``every_n_steps`` optimizer steps when
    given), ``best`` whenever ``monitor`` improves (``mode``: min or max), and ``last`` where
    Ctrl-C stopped ``fit`` (``on_interrupt``; recorded in ``trainer.interrupt_checkpoint``)."""

    def __init__(self, run_dir: str | os.PathLike, monitor: str = "val_loss", mode: str = "min", *,
                 save_best: bool = True, save_last: bool = True, every_n_epochs: int = 1,
                 every_n_steps: int | None = None) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.monitor = monitor
        self.mode = _check_mode(mode, "ModelCheckpoint")
        self.save_best = save_best
        self.save_last = save_last
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.every_n_steps = every_n_steps
        self.best: float | None = None
        self.best_epoch: int | None = None

    @property
    def best_dir(self) -> pathlib.Path:
        return self.run_dir / "checkpoints" / "best"

    @property
    def last_dir(self) -> pathlib.Path:
        return self.run_dir / "checkpoints" / "last"

    def on_fit_start(self, trainer: Any) -> None:
        from .checkpoint import tidy_checkpoint
        for d in (self.best_dir, self.last_dir):  # leftovers of a save killed in an earlier run
            tidy_checkpoint(d)

    def on_batch_end(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        if self.every_n_steps and self.save_last and trainer._pending == 0 and \
                trainer.state.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.last_dir, extra={"monitor": self.monitor, "reason": "step"})

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict) -> None:
        value = logs.get(self.monitor)
        if self.save_best and value is not None and _better(self.mode, float(value), self.best, 0.0):
            self.best, self.best_epoch = float(value), epoch
            trainer.save_checkpoint(self.best_dir, extra={"monitor": self.monitor, "value": self.best,
                                                          "epoch": epoch})
        if self.save_last and (epoch + 1) % self.every_n_epochs == 0:
            trainer.save_checkpoint(self.last_dir, extra={"monitor": self.monitor, "value": value,
                                                          "epoch": epoch})

    def on_interrupt(self, trainer: Any) -> None:
        if self.save_last:
            trainer.interrupt_checkpoint = trainer.save_checkpoint(
                self.last_dir, extra={"monitor": self.monitor, "reason": "interrupt"})

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


# --------------------------------------------------------------------------- NaN guard
class NaNGuard(Callback):
    """Stop at the first non-finite loss or gradient, before the optimizer step,
    and explain it: the batch is re-run under ``rg.detect_anomaly()`` (same
    parameters, same RNG state) to name the first op that produced NaN/inf.
    The report is ``self.report`` and, with ``run_dir``, ``run_dir/nan_report.txt``."""

    def __init__(self, run_dir: str | os.PathLike | None = None) -> None:
        self.run_dir = pathlib.Path(run_dir) if run_dir is not None else None
        self.report: str | None = None
        self.triggered = False
        self._rng: dict | None = None

    def on_batch_start(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        self._rng = rg_random.default_generator.get_state()

    def on_after_backward(self, trainer: Any, batch_idx: int) -> None:
        loss = trainer.last_loss
        bad = []
        if loss is None or not math.isfinite(loss):
            bad.append(f"loss is {loss}")
        names = None  # looked up only when a gradient is bad
        for p in trainer.params:
            if p.grad is not None and not np.isfinite(p.grad._array).all():
                g = p.grad._array
                kind = "nan" if np.isnan(g).any() else "inf"
                names = _param_names(trainer) if names is None else names
                bad.append(f"gradient of {names.get(id(p), '<param>')} {tuple(g.shape)} has {kind}")
        if not bad:
            return
        self.triggered = True
        trainer.stop_training = True
        st = trainer.state
        located = self._locate(trainer)
        # data-parallel: the averaged gradients (and the global loss) are the same on every rank, so
        # every rank stops here; each re-ran its own part, and rank 0 reports which ones found the op
        group = getattr(getattr(trainer, "sync", None), "group", None)
        where = ""
        if group is not None and group.size > 1:
            found = group.allgather(located, "NaNGuard's re-run of each rank's part of the batch")
            culprits = [r for r, t in enumerate(found) if t.startswith(_FOUND)]
            where = (f" on {'rank' if len(culprits) == 1 else 'ranks'} {', '.join(map(str, culprits))} of "
                     f"{group.size}" if culprits else f" (averaged over {group.size} ranks)")
            located = "\n".join(f"rank {r}: {t}" for r, t in enumerate(found))
        trainer.stop_reason = trainer.failure = (
            f"NaNGuard: non-finite values{where} at epoch {st.epoch}, batch {batch_idx} "
            f"(optimizer step {st.global_step}): {bad[0]}")
        lines = [f"NaNGuard: non-finite values{where} at epoch {st.epoch}, batch {batch_idx} "
                 f"(optimizer step {st.global_step}); training stopped before the step.",
                 *("  - " + b for b in bad[:20])]
        if len(bad) > 20:
            lines.append(f"  ... and {len(bad) - 20} more")
        lines.append(located)
        self.report = "\n".join(lines)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "nan_report.txt").write_text(self.report + "\n")
        if group is None or group.rank == 0:
            print(self.report, file=sys.stderr)

    def _locate(self, trainer: Any) -> str:
        batch = trainer.current_batch
        if batch is None:
            return "First op producing NaN/inf: unknown (no batch to re-run)."
        saved = rg_random.default_generator.get_state()
        grads = {id(p): p.grad for p in trainer.params}
        if self._rng is not None:
            rg_random.default_generator.set_state(self._rng)
        try:  # this rank's part alone (SyncBatchNorm without collectives: the other ranks do not re-run in step)
            with detect_anomaly(), np.errstate(all="ignore"), local_statistics():
                _, loss = forward_loss(trainer.model, trainer.loss_fn, *trainer.unpack_batch(batch))
                for p in trainer.params:
                    p.grad = None
                loss.backward()
        except AnomalyError as e:
            return _FOUND + " (re-run under rg.detect_anomaly()):\n  " + str(e).replace("\n", "\n  ")
        except Exception as e:  # noqa: BLE001 - report, don't mask the NaN
            return (f"Re-running the batch under rg.detect_anomaly() failed: {type(e).__name__}: {e}\n"
                    + "".join(traceback.format_exception_only(type(e), e)))
        finally:
            rg_random.default_generator.set_state(saved)
            for p in trainer.params:
                p.grad = grads[id(p)]
        return ("Re-running the batch under rg.detect_anomaly() produced no NaN/inf: the non-finite values "
                "come from outside the recorded graph (the data, or parameters already non-finite).")


_FOUND = "First op producing NaN/inf"


def _param_names(trainer: Any) -> dict[int, str]:
    try:
        return {id(p): n for n, p in trainer.model.named_parameters()}
    except AttributeError:
        return {}
