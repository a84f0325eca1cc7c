"""``search``: a hyperparameter study on Optuna (samplers, pruners, storage), with local worker
processes, crash-safe storage and resume; ``objective``: the same trial logic as an Optuna
objective for users who drive ``optuna.Study.optimize`` themselves."""
from __future__ import annotations

import copy
import json
import math
import multiprocessing
import os
import pathlib
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from ..train.formatting import format_duration, plural
from .pruning import Reporter, TrialPruned
from .recovery import (cancel_surplus_retries, counted, die_with_parent, interrupted_numbers, is_retry, over_budget,
                       recover_interrupted, slots_used, worker_identity)
from .results import report
from .space import SearchSpace, TuneError, parse_space, seed_key, set_dotted
from .storage import mask_url, open_storage, storage_spec

__all__ = ["search", "objective", "trial_seed", "counted", "recover_interrupted", "METHODS", "PRUNERS"]

METHODS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
TrainFn = Callable[[dict, Reporter], Mapping[str, Any] | None]


def trial_seed(seed: int, number: int) -> int:
    """The training seed of trial ``number`` of a study seeded with ``seed`` (a 31-bit int)."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(number)]).generate_state(1)[0] % 2**31)


# ---------------------------------------------------------------------- the objective
def objective(config: Mapping, space: Mapping | SearchSpace, train_fn: TrainFn, metric: str = "val_accuracy",
              direction: str = "maximize", *, seed: int = 0, grid: bool = False) -> Callable[[Any], float]:
    """An Optuna objective: ``study.optimize(rg.tune.objective(cfg, space, train_fn))``.

    Each trial suggests the parameters of ``space``, sets them into a deep copy of ``config``
    (with ``train.seed``, an RL config's ``rl.seed``, derived from ``seed`` and the trial number), calls
    ``train_fn(trial_config, reporter)`` and returns ``result[metric]`` (or the last reported value
    when ``train_fn`` returns None). A trial whose reporter was told to prune ends PRUNED.
    ``grid=True`` suggests each parameter from its grid values (for GridSampler/BruteForceSampler)."""
    space = parse_space(space)
    space.check_config(config)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"tune: direction must be 'maximize' or 'minimize', got {direction!r}")
    config = copy.deepcopy(dict(config))

    def run(trial: Any) -> float:
        study = getattr(trial, "study", None)
        if study is not None and study.direction.name.lower() != direction:
            raise ValueError(f"tune: the objective {direction}s {metric!r} but study {study.study_name!r} "
                             f"is set to {study.direction.name.lower()}")
        # who runs it: a resume on this machine leaves trials of live processes alone
        trial.set_user_attr("worker", worker_identity())
        _, cfg = space.suggest(trial, config, grid=grid)
        s = trial_seed(seed, trial.number)
        set_dotted(cfg, seed_key(config), s)
        trial.set_user_attr("seed", s)
        reporter = Reporter(trial, metric)
        result = train_fn(cfg, reporter)
        final = dict(reporter.last)
        if result is not None:
            if not isinstance(result, Mapping):
                raise TypeError(f"tune: train_fn must return a dict of final metrics (or None), got "
                                f"{type(result).__name__}")
            final.update({k: float(v) for k, v in result.items() if isinstance(v, (int, float, np.floating))
                          and not isinstance(v, bool)})
        trial.set_user_attr("metrics", {k: (v if math.isfinite(v) else str(v)) for k, v in final.items()})
        reporter.raise_if_pruned()
        if metric not in final:
            raise KeyError(f"tune: train_fn returned no {metric!r} (returned or reported: "
                           f"{', '.join(final) or 'nothing'}) and never reported it")
        return float(final[metric])

    return run


# ---------------------------------------------------------------------- samplers and pruners
def make_sampler(method: str, space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "grid":
        if space.conditional:  # GridSampler takes a product; a tree of conditional choices needs brute force
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.BruteForceSampler(seed=seed)
        return optuna.samplers.GridSampler(space.grid_search_space(), seed=seed)
    if method == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ImportError("tune: method 'cmaes' needs the cmaes package: pip install 'retrograd[tune]'") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise TuneError(f"tune: method {method!r} is not one of: {', '.join(METHODS)}")


def make_pruner(pruner: str) -> optuna.pruners.BasePruner:
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if pruner == "none" or pruner is None:
        return optuna.pruners.NopPruner()
    raise TuneError(f"tune: pruner {pruner!r} is not one of: {', '.join(PRUNERS)}")


def _sampler_seed(seed: int, worker: int, n_existing: int) -> int:
    if worker == 0 and n_existing == 0:
        return int(seed)
    # other workers (and a resumed study) must not replay the first worker's sequence
    return int(np.random.SeedSequence([int(seed) % 2**32, 1 + worker, n_existing]).generate_state(1)[0])


# ---------------------------------------------------------------------- bookkeeping
def _enqueue_grid(study: optuna.Study, space: SearchSpace, config: Mapping) -> int:
    """Queue every grid point no trial has taken yet (with several workers GridSampler may hand two of
    them the same point; popping queued trials is atomic)."""
    taken = []
    trials = study.get_trials(deepcopy=False)
    interrupted = interrupted_numbers(study, trials)
    for t in trials:
        if counted(t, interrupted) or t.state in (TrialState.RUNNING, TrialState.WAITING):
            taken.append(t.system_attrs.get("fixed_params", t.params))
    n = 0
    for point in space.grid_points(config):
        enc = {k: space[k].encode(v) for k, v in point.items()}
        if enc not in taken:
            study.enqueue_trial(enc)
            taken.append(enc)
            n += 1
    return n


# ---------------------------------------------------------------------- workers
def _optimize(job: dict, worker: int, share: int | None = None) -> None:
    """One worker: load the study and run trials, one at a time: its ``share`` of the trials to run,
    while the budget has room and the time allows; then any retry still queued (it holds the place of
    the trial it reruns, one that a process of the study found dead meanwhile)."""
    space = parse_space(job["space"])
    storage = open_storage(job["storage"], heartbeat=job["heartbeat"])
    n_existing = len(optuna.load_study(study_name=job["study_name"], storage=storage).trials)
    sampler = make_sampler(job["method"], space, _sampler_seed(job["seed"], worker, n_existing))
    study = optuna.load_study(study_name=job["study_name"], storage=storage, sampler=sampler,
                              pruner=make_pruner(job["pruner"]))
    fn = objective(job["config"], space, job["train_fn"], job["metric"], job["direction"], seed=job["seed"],
                   grid=job["method"] == "grid")
    n_trials = job["n_trials"]

    def budgeted(trial: Any) -> float:
        # the check before optimize() can race with another worker's: this one, made once the trial
        # exists, cannot (the lower trial number wins)
        if n_trials is not None and "retry_of" not in trial.user_attrs:
            trials = study.get_trials(deepcopy=False)
            if not over_budget(trials, trial.number, n_trials, interrupted_numbers(study, trials)):
                return fn(trial)
            trial.set_user_attr("over_budget", True)
            raise TrialPruned(f"tune: trial {trial.number} is over the budget of {plural(n_trials, 'trial')}; not run")
        return fn(trial)

    deadline = None if job["timeout"] is None else time.monotonic() + job["timeout"]
    ran, start = 0, time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while deadline is None or time.monotonic() < deadline:
            trials = study.get_trials(deepcopy=False)
            waiting_retry = any(t.state == TrialState.WAITING and is_retry(t) for t in trials)
            if not waiting_retry and ((share is not None and ran >= share) or (
                    n_trials is not None and slots_used(trials, interrupted_numbers(study, trials)) >= n_trials)):
                break
            try:
                study.optimize(budgeted, n_trials=1, catch=tuple(job["catch"]))
            except ValueError as e:  # optuna's "Cannot tell a COMPLETE trial."
                if not str(e).startswith("Cannot tell a "):
                    raise
                # SQLite has no row lock: two workers can take the same queued retry at once (optuna's
                # pop of a WAITING trial reads, then writes); the first result was recorded, this
                # duplicate run of the same parameters is dropped
                print(f"tune: {e} Another worker ran the same queued trial at the same time; its result "
                      "counts once", file=sys.stderr, flush=True)
                continue  # not one of this worker's share: the budget check above decides whether to go on
            ran += 1
            if n_trials is not None:
                trials = study.get_trials(deepcopy=False)
                done = sum(counted(t, interrupted_numbers(study, trials)) for t in trials)
                print(progress_line(done, n_trials, ran, time.monotonic() - start, job.get("workers", 1)),
                      file=sys.stderr, flush=True)
            if study._stop_flag:  # a sampler (GridSampler, its grid done) stopped the study
                break


def progress_line(done: int, n_trials: int, ran: int, elapsed: float, workers: int = 1) -> str:
    """The line a worker prints after each trial: the study's finished trials of ``n_trials``, this
    worker's elapsed time and the time left at its mean time per trial (``ran`` trials in ``elapsed``
    seconds), the trials left shared among ``workers``."""
    left = max(n_trials - done, 0) * elapsed / max(ran, 1) / max(workers, 1)
    return (f"tune: {done} of {plural(n_trials, 'trial')} done; {format_duration(elapsed)} elapsed, "
            f"about {format_duration(left)} left")


def _worker_main(job: dict, worker: int, share: int | None, parent: int) -> None:
    die_with_parent(parent)
    _optimize(job, worker, share)


def _split(n: int | None, workers: int) -> list[int | None]:
    if n is None:
        return [None] * workers
    return [n // workers + (1 if i < n % workers else 0) for i in range(workers)]


# ---------------------------------------------------------------------- search
def search(config: Mapping, space: Mapping | SearchSpace, *, train_fn: TrainFn, method: str = "tpe",
           n_trials: int | None = None, timeout: float | None = None, metric: str = "val_accuracy",
           direction: str = "maximize", pruner: str = "median", storage: Any = None,
           study_dir: str | pathlib.Path | None = None, study_name: str | None = None, seed: int = 0,
           workers: int = 1, resume: bool = False, catch: Sequence[type] = (), plots: bool = True,
           heartbeat_interval: float | None = 10.0, grace_period: float | None = 60.0, out=None):
    """Search ``space`` around ``config`` with ``train_fn(trial_config, reporter) -> final metrics``.

    ``n_trials`` counts the study's finished trials (COMPLETE, PRUNED, FAIL; a trial interrupted by a
    crash counts once, when it is rerun) and the ones RUNNING in live processes, across resumes and
    workers: a resumed study runs only the missing ones, and a study ends with exactly ``n_trials``
    counted trials. A grid search runs the whole grid by default. ``storage``: None (SQLite file
    ``study_dir/study.db``), ``"journal"`` (Optuna journal file ``study_dir/study.journal``) or a URL
    (``postgresql://user:pw@host/db``). ``workers``: local processes sharing the study (``train_fn``
    must then be picklable: a module-level function or an instance of a module-level class).
    ``resume=True`` continues an existing study: trials left RUNNING by a killed process are marked
    FAILED and queued again with the same parameters (trials of live processes are left alone; see
    ``recover_interrupted``). Worker processes die with the process that started them. With an RDB
    storage (SQLite, PostgreSQL) each running trial records Optuna's heartbeat every
    ``heartbeat_interval`` seconds; one silent for ``grace_period`` seconds (a dead process on any
    machine) is failed and queued again by whichever process of the study looks next
    (``heartbeat_interval=None``: no heartbeat; the journal storage has none). Returns a ``TuneResult`` and writes the trials
    table (``trials.csv``), the best config (``<study_name>-best.toml``), ``study.json`` and plots into ``study_dir``."""
    out = out or sys.stdout

    if method not in METHODS:
        raise TuneError(f"tune: method {method!r} is not one of: {', '.join(METHODS)}")
    if pruner not in PRUNERS:
        raise TuneError(f"tune: pruner {pruner!r} is not one of: {', '.join(PRUNERS)}")
    if direction not in ("maximize", "minimize"):
        raise TuneError(f"tune: direction must be 'maximize' or 'minimize', got {direction!r}")
    if not isinstance(workers, int) or workers < 1:
        raise TuneError(f"tune: workers must be a positive int, got {workers!r}")
    if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 1):
        raise TuneError(f"tune: n_trials must be a positive int, got {n_trials!r}")
    parsed = parse_space(space)
    parsed.check_config(config)
    grid_size = None
    if method == "grid":
        grid_size = len(parsed.grid_points(config))
        n_trials = grid_size if n_trials is None else min(n_trials, grid_size)
    elif n_trials is None and timeout is None:
        raise TuneError("tune: give n_trials or timeout (or both)")
    study_name = study_name or "study"
    study_dir = pathlib.Path(study_dir if study_dir is not None else pathlib.Path("studies") / study_name)
    study_dir.mkdir(parents=True, exist_ok=True)
    spec = storage_spec(storage, study_dir)
    heartbeat = None if heartbeat_interval is None else (heartbeat_interval, grace_period)
    store = open_storage(spec, heartbeat=heartbeat)
    exists = study_name in [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if exists and not resume:
        raise TuneError(f"tune: study {study_name!r} already exists in {mask_url(spec)}; resume it with "
                         f"resume=True (--resume), or choose another study name or folder")
    if resume and not exists:
        raise TuneError(f"tune: nothing to resume: no study {study_name!r} in {mask_url(spec)}")
    # created once, here, before any worker starts: Optuna's schema and study creation race otherwise
    study = optuna.create_study(storage=store, study_name=study_name, direction=direction, load_if_exists=resume)
    if study.direction.name.lower() != direction:
        raise TuneError(f"tune: study {study_name!r} was created to {study.direction.name.lower()}, "
                         f"not {direction}")
    raw_space = space if not isinstance(space, SearchSpace) else None
    meta = {"study_name": study_name, "storage": mask_url(spec) if isinstance(spec, str) else None,
            "method": method, "metric": metric, "direction": direction, "pruner": pruner, "seed": seed,
            "space": raw_space, "config": config}
    (study_dir / "study.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if resume:
        recover_interrupted(study, out=out)
        cancelled = cancel_surplus_retries(study, n_trials)
        if cancelled:
            print(f"tune: queued retries {', '.join(map(str, cancelled))} are beyond the budget of "
                  f"{plural(n_trials, 'trial')}; not run", file=out)
    trials = study.get_trials(deepcopy=False)
    interrupted = interrupted_numbers(study, trials)
    done = sum(counted(t, interrupted) for t in trials)
    remaining = None if n_trials is None else max(0, n_trials - slots_used(trials, interrupted) +
                                                  sum(t.state == TrialState.WAITING for t in trials
                                                      if "retry_of" in t.user_attrs))
    print(f"tune: study {study_name!r} ({method}, {pruner} pruner) in {mask_url(spec) if isinstance(spec, str) else spec}"
          f"; {plural(done, 'trial')} done" + (f", {remaining} to run" if remaining is not None else "")
          + (f" (grid of {grid_size})" if grid_size else "") + (f" on {workers} workers" if workers > 1 else ""),
          file=out)
    job = {"config": copy.deepcopy(dict(config)), "space": parsed, "train_fn": train_fn, "method": method,
           "metric": metric, "direction": direction, "pruner": pruner, "seed": seed, "timeout": timeout,
           "storage": spec, "study_name": study_name, "catch": tuple(catch), "n_trials": n_trials,
           "heartbeat": heartbeat, "workers": workers}
    if remaining != 0:
        if workers == 1:
            _optimize(job, 0, remaining)
        else:
            if method == "grid":
                _enqueue_grid(study, parsed, config)
            ctx = multiprocessing.get_context("spawn")
            # each worker runs its share (no two race for the last place in the budget); the budget
            # check inside each trial keeps the total exact where they still do (retries found later)
            procs = [ctx.Process(target=_worker_main, args=(job, i, n, os.getpid()), name=f"tune-worker-{i}")
                     for i, n in enumerate(_split(remaining, workers)) if n is None or n > 0]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            bad = [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode != 0]
            if bad:
                recover_interrupted(study, out=out)  # their trials are queued again for a resume
                raise RuntimeError(f"tune: worker processes failed: {', '.join(bad)}; see their messages above")
    study = optuna.load_study(study_name=study_name, storage=store)
    return report(study, study_dir, parsed, config, metric=metric, direction=direction, plots=plots, out=out)
