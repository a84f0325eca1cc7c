"""The documented range of every number a training config may hold, and the rule for run names.

``retrograd.train.config`` checks types; this module checks values against their range with a
message that names the key, the value and what was expected. Ranges of the fixed keys sit in
``config.SCHEMA``; those of the keyword arguments that ``[optim]``, ``[schedule]`` and a built-in
``[model]`` pass on are looked up here by argument name (``KWARG_RANGES``), since the same name
means the same thing across rg.optim's classes and schedules. What this table does not cover,
the optimizer or scheduler checks itself when it is built (``recipe.build_optimizer`` turns its
error into a ``ConfigError`` naming the section).

Hand-written rather than a schema library (pydantic, msgspec): half of a config is checked against
signatures known only at run time (the optimizer, schedule or model it names), its messages are
one line in the house format (``section.key: ...``), and ``retrograd train`` needs no dependency
for it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any

from ..data.presets import ConfigError

__all__ = ["Range", "F32_MAX", "KWARG_RANGES", "check_range", "check_kwarg_ranges", "check_run_name", "check_finite"]

F32_MAX = float.fromhex("0x1.fffffep+127")  # largest float32: a larger lr or clip norm overflows float32 weights


@dataclasses.dataclass(frozen=True)
class Range:
    """``lo <= v <= hi`` (``<`` where open); ``None`` is unbounded."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def __str__(self) -> str:
        def num(x: float) -> str:
            return "3.4e38 (float32's largest)" if x == F32_MAX else (f"{x:g}" if isinstance(x, float) else str(x))
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        return f"{'<' if self.hi_open else '<='} {num(self.hi)}"


POSITIVE = Range(1)  # a count: an int >= 1
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
FRACTION_OPEN = Range(0, 1, hi_open=True)  # [0, 1)
LR = Range(0, F32_MAX)
POSITIVE_REAL = Range(0, lo_open=True)

# keyword arguments by section and name (a list value is checked element by element)
KWARG_RANGES: dict[str, dict[str, Range]] = {
    "optim": {
        "lr": LR, "momentum": NON_NEGATIVE, "dampening": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
        "eps": NON_NEGATIVE, "betas": FRACTION_OPEN, "rho": NON_NEGATIVE, "alpha": NON_NEGATIVE,
        "lr_decay": NON_NEGATIVE, "initial_accumulator_value": NON_NEGATIVE, "momentum_decay": NON_NEGATIVE,
        "warmup_steps": NON_NEGATIVE, "lambd": NON_NEGATIVE, "t0": NON_NEGATIVE,
    },
    "schedule": {
        "step_size": POSITIVE, "milestones": NON_NEGATIVE, "gamma": POSITIVE_REAL,
        "T_max": POSITIVE, "T_0": POSITIVE, "T_mult": POSITIVE, "eta_min": LR,
        "lr": LR, "base_lr": LR, "max_lr": LR, "peak_lr": LR, "start_lr": LR, "end_lr": LR, "init_lr": LR,
        "final_lr": LR, "min_lr": LR,
        "warmup_steps": NON_NEGATIVE, "total_steps": POSITIVE, "decay_steps": POSITIVE, "steps": POSITIVE,
        "transition_steps": POSITIVE, "step_size_up": POSITIVE, "step_size_down": POSITIVE,
        "epochs": POSITIVE, "steps_per_epoch": POSITIVE, "total_iters": NON_NEGATIVE,
        "pct_start": FRACTION, "patience": NON_NEGATIVE, "cooldown": NON_NEGATIVE,
        "div_factor": POSITIVE_REAL, "final_div_factor": POSITIVE_REAL, "decay_rate": POSITIVE_REAL,
        "power": NON_NEGATIVE, "threshold": NON_NEGATIVE, "base_momentum": NON_NEGATIVE,
        "max_momentum": NON_NEGATIVE,
    },
    "model": {  # built-in models only: a user's model may mean something else by these names
        "sizes": POSITIVE, "channels": POSITIVE, "hidden": POSITIVE, "in_channels": POSITIVE,
        "num_classes": POSITIVE, "kernel_size": POSITIVE, "input_size": POSITIVE, "padding": NON_NEGATIVE,
        "dropout": FRACTION, "vocab_size": POSITIVE, "block_size": POSITIVE, "n_layer": POSITIVE,
        "n_head": POSITIVE, "d_model": POSITIVE,
    },
}


def check_range(where: str, value: Any, rng: Range | None) -> None:
    """Raise ``ConfigError`` naming ``where`` unless ``value`` (a number, or a list of them) is in ``rng``."""
    if rng is None or value is None or isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_range(f"{where}[{i}]", v, rng)
        return
    if isinstance(value, (int, float)) and value not in rng:
        raise ConfigError(f"{where}: must be {rng}, got {value!r}")


def check_kwarg_ranges(section: str, kwargs: dict, table: str | None = None) -> None:
    """Check the keyword arguments of ``[section]`` against ``KWARG_RANGES[table or section]``."""
    ranges = KWARG_RANGES[table or section]
    for k, v in kwargs.items():
        check_range(f"{section}.{k}", v, ranges.get(k))


def check_run_name(name: str | None, run_dir: str, what: str = "run.name") -> None:
    """A run name is one folder name inside ``run.dir``: no path separator, not ``.``/``..``, and its
    resolved path's parent is ``run.dir``'s (so a symlink cannot lead out either)."""
    if name is None:
        return
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    bad = sorted(c for c in seps if c in name)
    if not name.strip() or name in (".", "..") or bad or "\0" in name:
        why = (f"contains {' and '.join(map(repr, bad))}" if bad else
               "contains a NUL character" if "\0" in name else "is empty" if not name.strip() else f"is {name!r}")
        raise ConfigError(f"{what}: {name!r} {why}; expected one folder name inside run.dir "
                          "(no path separators, not '.' or '..')")
    base = pathlib.Path(run_dir).expanduser()
    if (base / name).resolve().parent != base.resolve():
        raise ConfigError(f"{what}: {name!r} resolves to {(base / name).resolve()}, outside run.dir "
                          f"{str(base.resolve())!r}; expected a folder inside run.dir")


def check_finite(where: str, value: float) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return value
