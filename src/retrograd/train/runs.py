"""Run folders: where a run built by the recipe writes, how it is read back, and its summary.

A run folder holds ``config.toml`` (the resolved config, so ``resume`` and ``evaluate`` rebuild
exactly the same run), the metrics log, ``checkpoints/{best,last}``, plots and ``summary.json``.
"""
from __future__ import annotations

import json
import math
import pathlib
import sys
import warnings
from typing import Any

import numpy as np

from ..io.checkpoint import CheckpointError, resolve_directory
from .config import ConfigError, load_config, validate
from .formatting import format_value, plural
from .model_code import check_model_code
from .recipe import Setup

__all__ = ["new_run_dir", "finished_run", "read_run_config", "checkpoint_dir", "final_metrics", "prefixed_metrics", "finish_run",
           "summary_text", "jsonable", "run_outcome",
           "check_schedule_length"]


def new_run_dir(cfg: dict, config_path: str, *, command: str | None = None) -> pathlib.Path:
    """A new folder ``run.dir/<run.name or the config's name>`` (``-2``, ``-3``, ... when one with files
    exists, unless ``run.overwrite``); ``cfg["run"]["name"]`` is set to its name. With a ``command``,
    a folder other than the one asked for is said loudly, in one line on stderr."""
    r = cfg["run"]
    name = r["name"] or pathlib.Path(config_path).stem
    base = pathlib.Path(r["dir"]) / name
    path, k = base, 1
    if not r["overwrite"]:
        while path.exists() and any(path.iterdir()):
            k += 1
            path = base.with_name(f"{name}-{k}")
    if command is not None and path != base:
        print(f"retrograd {command}: note: {base} already holds a run, so this one writes to {path} "
              f"(to choose: --set run.name=NAME, or --set run.overwrite=true to reuse {base})", file=sys.stderr)
    path.mkdir(parents=True, exist_ok=True)
    r["name"] = path.name
    return path


def finished_run(run_dir: pathlib.Path, checkpoint: pathlib.Path, epochs: int, more_epochs: bool) -> str | None:
    """Why the run whose last checkpoint is ``checkpoint`` has nothing left to do at ``epochs`` epochs
    (``resume`` then changes nothing), or None. Finished: its ``summary.json`` was written for that
    checkpoint (a run killed before its summary is not finished: resume writes it), and the checkpoint
    is at the end of the last epoch or (unless ``more_epochs``, an explicit ``resume --epochs``) a
    callback such as EarlyStopping stopped the run exactly there."""
    try:
        state = json.loads((checkpoint / "trainer.json").read_text())["state"]
        done, batch, step = int(state["epoch"]), int(state["batch_in_epoch"]), state["global_step"]
        s = json.loads((run_dir / "summary.json").read_text())
        status, at = s["status"], s.get("stopped_at")
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not finished, or resume's loading says what is wrong
    if status == "completed" and s.get("epochs") == done and done >= epochs and batch == 0:
        return f"complete: {done} of {plural(epochs, 'epoch')} trained"
    if not more_epochs and status == "stopped" and isinstance(at, dict) and \
            (at.get("epoch"), at.get("batch"), at.get("step")) == (done, batch, step):
        return f"finished: stopped after {done} of {plural(epochs, 'epoch')} ({s.get('reason')})"
    return None


def read_run_config(run_dir: pathlib.Path, *, trust_model_code: bool = False, command: str = "",
                    data_files: bool = True) -> dict:
    """The validated resolved config of a run folder. A model file it names (``m.py:MLP``) is
    checked by ``model_code.check_model_code`` before validation imports it. ``data_files=False``:
    the run's own data (``data.path``) need not be there (``config.validate``)."""
    path = run_dir / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.toml)")
    raw = load_config(path)
    check_model_code(run_dir, raw, trust_model_code=trust_model_code, command=command)
    return validate(raw, config_path=path, data_files=data_files)


def checkpoint_dir(run_dir: pathlib.Path, which: str) -> pathlib.Path:
    """``run_dir/checkpoints/<which>`` (``"best"`` or ``"last"``), through the library's recovery path
    (``rg.io.checkpoint.resolve_directory``): when a save was interrupted between its two renames,
    the previous checkpoint it moved aside (``.<which>.old-*``) is used, with a note on stderr."""
    path = run_dir / "checkpoints" / which
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = resolve_directory(path)
        except CheckpointError:
            have = sorted(p.name for p in (run_dir / "checkpoints").iterdir()) \
                if (run_dir / "checkpoints").is_dir() else []
            raise ConfigError(f"{run_dir}: no checkpoint {which!r} (found: {', '.join(have) or 'none'})") from None
    for w in caught:
        print(f"retrograd: {w.message}", file=sys.stderr)
    return found


_LENGTH_ARGS = ("total_steps", "steps", "decay_steps", "T_max", "total_iters")


def check_schedule_length(setup: Setup, epochs: int, command: str, planned: int | None = None) -> list[str]:
    """Whether the run's schedule covers ``epochs`` (``resume --epochs``): ``OneCycleLR`` cannot step
    past its ``total_steps`` (torch's raises "Tried to step ... times"), so a longer run is refused
    with a ``ConfigError`` saying what to do; other schedules whose length covered the ``planned``
    epochs but not ``epochs`` go on past their end (the lr stays at its final value;
    ``CosineAnnealingLR`` climbs again, as torch's), which the returned notes say."""
    from ..optim.lr_scheduler import OneCycleLR

    s = setup.cfg.get("schedule")
    if not s:
        return []
    per_epoch = max(1, math.ceil(len(setup.train_loader) / setup.cfg["train"]["accumulate"]))
    step_wise = setup.interval == "step"
    needed = per_epoch * epochs if step_wise else epochs
    unit = "optimizer steps" if step_wise else "epochs"
    if isinstance(setup.scheduler, OneCycleLR) and needed > setup.scheduler.total_steps:
        total = setup.scheduler.total_steps
        fits = total // per_epoch if step_wise else total
        raise ConfigError(
            f"{command} --epochs {epochs}: the run's schedule {s['name']} ends after total_steps={total} {unit} "
            f"({plural(fits, 'epoch')}) and cannot step past its end; {plural(epochs, 'epoch')} need {needed}. Resume with --epochs "
            f"{fits} or fewer, or train a new run with a one-cycle schedule as long as the run: retrograd train "
            f"CONFIG --set train.epochs={epochs} (a fresh config's total_steps follows train.epochs; in this "
            f"run's config.toml it is fixed: add --set schedule.total_steps={needed})")
    notes = []
    before = (per_epoch * planned if step_wise else planned) if planned is not None else 0
    for k in _LENGTH_ARGS:
        if isinstance(s.get(k), int) and before <= s[k] < needed:
            what = ("its lr climbs back up (a cosine period, as torch's CosineAnnealingLR)"
                    if s["name"].lower() == "cosineannealinglr" else "the lr stays at the schedule's final value")
            notes.append(f"{command} --epochs {epochs}: schedule {s['name']} was sized for {k}={s[k]} {unit}; "
                         f"this run needs {needed}, and past the end {what}")
    return notes


def final_metrics(history: dict) -> dict:
    """The last value of each metric of a ``Trainer.fit`` history (not lr or timings)."""
    return {k: v[-1] for k, v in history.items() if isinstance(v, list) and v and
            isinstance(v[-1], (int, float)) and k not in ("lr", "epoch_time", "samples_per_sec")}


def prefixed_metrics(metrics: dict, prefix: str) -> dict:
    """``Trainer.evaluate`` results renamed for a split: ``val_accuracy`` -> ``test_accuracy``."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, np.floating)):
            k2 = k[4:] if k.startswith("val_") else k
            out[f"{prefix}_{k2}" if not k2.startswith(prefix + "_") else k2] = float(v)
    return out


def _gradient_flow(trainer) -> Any:
    for c in getattr(trainer, "callbacks", ()):
        if type(c).__name__ == "GradientFlow":
            return c
    return None


def finish_run(setup: Setup, trainer, history: dict, run_dir: pathlib.Path, elapsed: float,
               test: dict | None = None) -> dict:
    """After ``fit``: test metrics, plots and ``summary.json`` in ``run_dir``; prints the summary.
    ``test``: the test metrics when already evaluated (by every data-parallel rank together)."""
    if test is None:
        test = {}
    if not test and setup.test_loader is not None:
        test = prefixed_metrics(trainer.evaluate(setup.test_loader), "test")
    times = history.get("epoch_time", [])
    sps = history.get("samples_per_sec", [])
    summary = {
        "run_dir": str(run_dir),
        "model": setup.cfg["model"]["name"], "data": setup.cfg["data"]["name"] or setup.cfg["data"]["path"],
        "optimizer": setup.cfg["optim"]["name"],
        "parameters": int(sum(p.numel() for p in setup.model.parameters())),
        **run_outcome(trainer, setup.cfg["train"]["epochs"]),
        "time_s": round(elapsed, 3),
        "train_time_s": round(float(sum(times)), 3) if times else None,
        "samples_per_sec": round(float(np.mean(sps)), 1) if sps else None,
        "final": final_metrics(history), "test": test,
    }
    flow = _gradient_flow(trainer)
    if flow is not None:
        try:
            summary["gradient_flow"] = jsonable(flow.verdicts())
        except Exception as e:  # noqa: BLE001 - the summary must still be written
            summary["gradient_flow"] = f"unavailable: {e}"
    plots = []
    try:
        from . import plots as tplots

        made = tplots.plot_run(str(run_dir))
        plots = [str(p) for p in (made if isinstance(made, (list, tuple)) else [made]) if p]
    except ImportError as e:
        print(f"(no plots: {e})")
    summary["plots"] = plots
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(summary_text(summary))
    return summary


def run_outcome(trainer, epochs: int) -> dict:
    """How a ``fit`` ended, for ``summary.json`` and for scripts: ``status`` ("completed", "stopped"
    by a callback such as EarlyStopping, or "failed": NaNGuard stopped it), ``reason`` (None when
    completed), ``epochs`` (complete epochs actually run, resumed ones included), ``epochs_requested``
    and, when not completed, ``stopped_at`` (epoch, batch of that epoch, optimizer step; 0-based)."""
    st = trainer.state
    failure = getattr(trainer, "failure", None)
    reason = failure or getattr(trainer, "stop_reason", None)
    status = "failed" if failure else "completed" if st.epoch >= epochs else "stopped"
    if status == "stopped" and reason is None:
        reason = "a callback set stop_training"
    out = {"status": status, "reason": reason, "epochs": len(trainer.history.get("train_loss", [])),
           "epochs_requested": epochs}
    if status != "completed":
        out["stopped_at"] = {"epoch": st.epoch, "batch": st.batch_in_epoch, "step": st.global_step}
    return out


def jsonable(v: Any) -> Any:
    """``v`` with NumPy scalars made Python numbers and anything else JSON cannot hold made a string."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def summary_text(s: dict) -> str:
    """The lines ``retrograd train`` prints for a ``finish_run`` summary."""
    lines = [f"run {s['run_dir']}: {s['model']} on {s['data']} with {s['optimizer']}, "
             f"{plural(s['parameters'], 'parameter')}, {plural(s['epochs'], 'epoch')} in {s['time_s']:.1f} s"
             + (f" ({s['samples_per_sec']:,.0f} samples/s)" if s.get("samples_per_sec") else "")]
    if s.get("status", "completed") != "completed":
        lines.append(f"  {s['status'].upper()} after {s['epochs']} of {plural(s.get('epochs_requested'), 'epoch')}: "
                     f"{s.get('reason')}")
    if s["final"]:
        lines.append("  final: " + "  ".join(f"{k} {format_value(v, fixed=True)}" for k, v in s["final"].items()))
    if s["test"]:
        lines.append("  test:  " + "  ".join(f"{k} {format_value(v, fixed=True)}" for k, v in s["test"].items()))
    flow = s.get("gradient_flow")
    if isinstance(flow, list):
        report = pathlib.Path(s["run_dir"]) / "gradient_flow.txt"
        where = f" (report: {report})" if report.is_file() else ""
        if not flow:
            lines.append(f"  gradient flow: no problems found{where}")
        else:
            lines.append(f"  gradient flow: {plural(len(flow), 'finding')}{where}")
            lines += [f"    - {v}" for v in flow]
    elif isinstance(flow, str):
        lines.append(f"  gradient flow: {flow}")
    return "\n".join(lines)
