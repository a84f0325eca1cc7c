"""A study's results: the trials table (printed and ``trials.csv``), the best config as a
ready-to-run TOML (``<study>-best.toml``), plots (PNG, ``tune.plots``), and ``show(study_dir)`` to
print and draw them again."""
from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
import re
import shlex
import sys
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from ..io.toml_writer import toml_dumps
from ..train.formatting import plural
from .plots import make_plots
from .recovery import interrupted_numbers
from .space import Param, SearchSpace, parse_space, seed_key, set_dotted
from .storage import open_storage, storage_spec

__all__ = ["TuneResult", "best_config_name", "trial_rows", "format_table", "write_csv", "toml_dumps", "make_plots",
           "report", "show"]


@dataclasses.dataclass
class TuneResult:
    """What a search leaves: the Optuna study, the trials table, the best trial and its config,
    and the files written (``csv``, ``best_config``, ``plots``; ``skipped_plots``: name -> why)."""
    study: optuna.Study
    study_dir: pathlib.Path
    rows: list[dict]
    best_trial: int | None
    best_value: float | None
    best_params: dict | None
    best_config: dict | None
    files: dict
    skipped_plots: dict

    @property
    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["state"]] = out.get(r["state"], 0) + 1
        return out


# ---------------------------------------------------------------------- table
def trial_rows(study: optuna.Study, space: SearchSpace, metric: str) -> list[dict]:
    """One row per trial: number, state, the metric, each parameter, seed, duration in seconds."""
    rows = []
    trials = study.get_trials(deepcopy=False)
    interrupted = interrupted_numbers(study, trials)
    for t in trials:
        params = space.decode(t.params)
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        value = t.value if t.state == TrialState.COMPLETE else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        row[metric] = value
        for name in space.names:
            row[name] = params.get(name)
        row["epochs"] = len(t.intermediate_values)
        row["seed"] = t.user_attrs.get("seed")
        row["duration_s"] = round(t.duration.total_seconds(), 2) if t.duration is not None else None
        note = []
        if t.user_attrs.get("interrupted") or t.number in interrupted:
            note.append("interrupted")
        if t.user_attrs.get("over_budget"):
            note.append("over budget: not run")
        if "retry_of" in t.user_attrs:
            note.append(f"rerun of {t.user_attrs['retry_of']}")
        row["note"] = "; ".join(note)
        rows.append(row)
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no trials)"
    cols = [c for c in rows[0] if c != "note" or any(r.get("note") for r in rows)]
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    cols = list(rows[0]) if rows else ["number", "state"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else json.dumps(r[c]) if isinstance(r.get(c), (list, dict))
                        else r[c] for c in cols])


# ---------------------------------------------------------------------- report
def best_config_name(study_name: str) -> str:
    """The file name of a study's best config, ``<study>-best.toml``: training it makes the run
    folder ``<study>-best`` (a run's default name is its config file's)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", study_name).strip(".") + "-best.toml"


def report(study: optuna.Study, study_dir: pathlib.Path, space: SearchSpace, config: Mapping, *, metric: str,
           direction: str, plots: bool = True, out=None) -> TuneResult:
    """Print the trials table and the best trial; write ``trials.csv``, the best config
    (``best_config_name(study_name)``) and plots."""
    out = out or sys.stdout
    study_dir = pathlib.Path(study_dir)
    rows = trial_rows(study, space, metric)
    files: dict[str, Any] = {}
    write_csv(rows, study_dir / "trials.csv")
    files["csv"] = str(study_dir / "trials.csv")
    print(format_table(rows), file=out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(f"{plural(len(rows), 'trial')}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), file=out)
    best_trial = best_value = best_params = best_config = None
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        best_trial, best_value = best.number, best.value
        best_params = space.decode(best.params)
        best_config = space.apply(config, best_params)
        if best.user_attrs.get("seed") is not None:
            set_dotted(best_config, seed_key(config), best.user_attrs["seed"])
        best_config.pop("search", None)
        header = (f"best trial {best.number} of study {study.study_name!r}: {metric} = {best.value:.6g} "
                  f"({direction})\nparameters: " + ", ".join(f"{k} = {_cell(v)}" for k, v in best_params.items()))
        path = study_dir / best_config_name(study.study_name)
        path.write_text(toml_dumps(best_config, header))
        files["best_config"] = str(path)
        print(f"best: trial {best.number}, {metric} {best.value:.4g} with "
              + ", ".join(f"{k}={_cell(v)}" for k, v in best_params.items()), file=out)
        print(f"best config: {path}\ntrain it (the same {metric} as trial {best.number}): "
              f"retrograd {'rl' if 'rl' in config else 'train'} {shlex.quote(str(path))}", file=out)
    else:
        print("best: none (no trial completed)", file=out)
    skipped: dict = {}
    if plots:
        made, skipped = make_plots(study, study_dir, metric)
        files["plots"] = made
        if made:
            print("plots: " + ", ".join(made.values()), file=out)
        for name, why in skipped.items():
            print(f"plot {name} skipped: {why}", file=out)
    return TuneResult(study, study_dir, rows, best_trial, best_value, best_params, best_config, files, skipped)


def show(study_dir: str | pathlib.Path, *, storage: Any = None, plots: bool = True, out=None) -> TuneResult:
    """Print a finished (or running) study's table again and redraw its plots, from ``study_dir/study.json``.
    ``storage`` overrides the stored URL (needed where the URL had a password, which is not stored)."""
    study_dir = pathlib.Path(study_dir)
    meta_path = study_dir / "study.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"tune: {study_dir} is not a study folder (no study.json)")
    meta = json.loads(meta_path.read_text())
    spec = storage_spec(storage, study_dir) if storage is not None else meta["storage"]
    if spec is None or "***" in str(spec):
        raise ValueError(f"tune: {study_dir}: its storage {spec!r} is not stored in full; pass storage=URL (--storage)")
    study = optuna.load_study(study_name=meta["study_name"], storage=open_storage(spec))
    space = parse_space(meta["space"]) if meta.get("space") else _space_from_trials(study)
    return report(study, study_dir, space, meta.get("config") or {}, metric=meta["metric"],
                  direction=meta["direction"], plots=plots, out=out)


def _space_from_trials(study: optuna.Study) -> SearchSpace:
    names = list(dict.fromkeys(p for t in study.trials for p in t.params))
    return SearchSpace([Param(n, "choice", choices=(None,)) for n in names])
