"""Crash safety of a study: workers that die with their parent, which RUNNING trials are alive,
interrupted trials failed and queued again, and the trial budget.

Liveness of a RUNNING trial is decided in this order:

1. Optuna's heartbeat (RDB storages: SQLite, PostgreSQL): every running trial's process records a
   heartbeat every ``heartbeat_interval`` seconds; a trial whose last one is older than
   ``grace_period`` is stale, on any machine, and Optuna fails it and calls ``RetryInterrupted``.
2. A fast path on this machine: the trial's worker (user attr ``worker``: host, pid and the
   process's start time) is checked directly, so a resume right after a crash does not wait out
   the grace period. A pid that is gone, a zombie, or reused by a later process is dead.
3. A trial of another machine is alive while its heartbeat is fresh. Without a heartbeat (the
   journal storage has none) it cannot be checked and is taken as interrupted: resume a journal
   study shared across machines only when none of its workers runs.

The budget: ``n_trials`` counts finished trials that were not interrupted, plus the trials that
hold a place in it: RUNNING ones (in any live process) and queued retries of interrupted ones.
"""
from __future__ import annotations

import copy
import ctypes
import os
import signal
import socket
import sys
import threading
import time
import warnings
from typing import Any, Collection

import optuna
from optuna.trial import TrialState

__all__ = ["counted", "interrupted_numbers", "holds_slot", "slots_used", "RetryInterrupted", "recover_interrupted", "worker_identity",
           "process_alive", "die_with_parent", "heartbeat_enabled"]

PR_SET_PDEATHSIG = 1
_STUDY_KEY = "tune:interrupted:"
# Optuna 4.9 renamed RetryFailedTrialCallback (and the storage's failed_trial_callback)
_RetryBase = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback


# ---------------------------------------------------------------------- the budget
def interrupted_numbers(study: optuna.Study, trials: list) -> set[int]:
    """Numbers of the trials interrupted by a crash: marked before they were failed (the fast path),
    rerun by a retry (``retry_of``), or named in the study's user attrs (a stale trial that Optuna
    failed before the callback ran, when a finished trial's attributes can no longer be set)."""
    failed = {t.number for t in trials if t.state == TrialState.FAIL}
    out = {t.number for t in trials if t.user_attrs.get("interrupted")}
    out |= failed & {t.user_attrs["retry_of"] for t in trials if isinstance(t.user_attrs.get("retry_of"), int)}
    out |= failed & {int(k.rsplit(":", 1)[1]) for k in study.user_attrs if k.startswith(_STUDY_KEY)}
    return out


def counted(t: optuna.trial.FrozenTrial, interrupted: Collection[int] = ()) -> bool:
    """A finished trial that counts toward ``n_trials``: not one interrupted by a crash (and queued
    again; see ``interrupted_numbers``), nor one stopped at its start because the budget was full."""
    return (t.state.is_finished() and not t.user_attrs.get("interrupted", False) and t.number not in interrupted
            and not t.user_attrs.get("over_budget", False))


def is_retry(t: optuna.trial.FrozenTrial) -> bool:
    return "retry_of" in t.user_attrs


def holds_slot(t: optuna.trial.FrozenTrial, interrupted: Collection[int] = ()) -> bool:
    """Counted, RUNNING, or a queued retry (which takes the place of the trial it reruns)."""
    return counted(t, interrupted) or t.state == TrialState.RUNNING or (t.state == TrialState.WAITING and is_retry(t))


def slots_used(trials: list, interrupted: Collection[int] = ()) -> int:
    return sum(holds_slot(t, interrupted) for t in trials)


def over_budget(trials: list, number: int, n_trials: int, interrupted: Collection[int] = ()) -> bool:
    """Whether the fresh trial ``number``, just started, is one too many: the slots held by the other
    trials plus the fresh RUNNING ones numbered up to it exceed ``n_trials``. Ties between workers
    starting at once go to the lower number, so the budget is never overrun and always filled."""
    used = 0
    for t in trials:
        if t.state == TrialState.RUNNING and not is_retry(t):
            used += t.number <= number
        else:
            used += holds_slot(t, interrupted)
    return used > n_trials


# ---------------------------------------------------------------------- processes
def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a Linux process from /proc, or None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except FileNotFoundError:
        return ("X", "")  # gone
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], fields[19]  # field 3 (state) and field 22 (start time in clock ticks)


def worker_identity() -> dict:
    """What a trial records about the process running it (user attr ``worker``)."""
    stat = _proc_stat(os.getpid())
    return {"host": socket.gethostname(), "pid": os.getpid(), **({"start": stat[1]} if stat else {})}


def process_alive(pid: Any, start: Any = None) -> bool:
    """Whether ``pid`` is a live process on this machine (a zombie is dead, and so is a later
    process that reused the pid when its start time differs from ``start``)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in ("Z", "X", "x") and (start is None or started == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def die_with_parent(parent: int, poll: float = 0.5) -> None:
    """Make this (worker) process die with ``parent``: a parent-death signal on Linux (prctl), and on
    every system a watchdog thread that kills the process when its parent pid changes (the parent
    died and the process was re-parented)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if os.getppid() != parent:  # the parent died before the signal was set up
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="tune-parent-watchdog", daemon=True).start()


# ---------------------------------------------------------------------- interrupted trials
class RetryInterrupted(_RetryBase):
    """Optuna's callback for stale trials (``RetryHeartbeatStaleTrialCallback``), also used by the
    fast path: records the failed trial as interrupted (so it does not count) and queues its
    parameters again with user attr ``retry_of`` (so the retry takes its place in the budget). A
    trial interrupted more than ``max_retry`` times is not queued again; a fresh one takes its place."""

    def __init__(self, max_retry: int | None = 3) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental (Optuna < 4.9: deprecated name)
            super().__init__(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # the trial is FAILED already, its own attributes frozen: the study records it
        study.set_user_attr(f"{_STUDY_KEY}{trial.number}", True)
        if not trial.params:  # killed before it suggested anything: nothing to rerun
            return
        retry = copy.deepcopy(trial)
        retry.user_attrs = {"retry_of": trial.number}
        super().__call__(study, retry)


def stale_callback_kwargs() -> dict:
    """The RDBStorage argument that sets the callback for stale trials, by Optuna version."""
    import inspect

    name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in
            inspect.signature(optuna.storages.RDBStorage.__init__).parameters else "failed_trial_callback")
    return {name: RetryInterrupted()}


def heartbeat_enabled(storage: Any) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def recover_interrupted(study: optuna.Study, out=None) -> list[int]:
    """Fail the trials left RUNNING by dead processes and queue them again (``RetryInterrupted``);
    returns their numbers. Trials of live processes are left alone (see the module's docstring for
    how liveness is decided)."""
    out = out or sys.stdout
    storage = study._storage
    before = interrupted_numbers(study, study.get_trials(deepcopy=False))
    heartbeat = heartbeat_enabled(storage)
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # calls the storage's RetryInterrupted
    host, me = socket.gethostname(), os.getpid()
    callback = RetryInterrupted()
    live = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.user_attrs.get("worker")
        w = w if isinstance(w, dict) else {}
        if w.get("host") == host:
            alive = w.get("pid") != me and process_alive(w.get("pid"), w.get("start"))
        else:  # another machine's: alive while its heartbeat is fresh; unknowable without one
            alive = heartbeat and bool(w)
        if alive:
            live.append(t)
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished (or another resume failed it) meanwhile
        callback(study, copy.deepcopy(storage.get_trial(t._trial_id)))
    if live:
        pids = ", ".join(f"{t.user_attrs['worker'].get('pid')}@{t.user_attrs['worker'].get('host')}" for t in live)
        print(f"tune: trials {', '.join(str(t.number) for t in live)} are running in live processes ({pids}); "
              "left alone, and counted in the budget", file=out)
    stale = sorted(interrupted_numbers(study, study.get_trials(deepcopy=False)) - before)
    if stale:
        print(f"tune: trials {', '.join(map(str, stale))} were interrupted; marked FAILED and queued again with "
              "the same parameters", file=out)
    return stale


def cancel_surplus_retries(study: optuna.Study, n_trials: int | None) -> list[int]:
    """Queued retries beyond the budget (left by an older version that overran it) would wait
    forever: fail them, marked ``over_budget``. Returns their numbers."""
    if n_trials is None:
        return []
    trials = study.get_trials(deepcopy=False)
    surplus = slots_used(trials, interrupted_numbers(study, trials)) - n_trials
    out = []
    for t in reversed([t for t in trials if t.state == TrialState.WAITING and is_retry(t)]):
        if surplus <= 0:
            break
        # a WAITING trial cannot be failed directly: take it (atomically), then fail it
        try:
            study._storage.set_trial_user_attr(t._trial_id, "over_budget", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue
        out.append(t.number)
        surplus -= 1
    return out
