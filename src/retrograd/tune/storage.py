"""Where a study lives: ``storage_spec`` (what the user asked for, as a string any
worker process can open), ``open_storage`` (that string as an Optuna storage)
and ``mask_url`` (a URL without its password, for files and messages)."""
from __future__ import annotations

import datetime
import pathlib
import re
import warnings
from typing import Any

import optuna

__all__ = ["storage_spec", "open_storage", "mask_url"]


def storage_spec(storage: Any, study_dir: pathlib.Path) -> Any:
    """The storage as a string another process can open: ``None`` -> SQLite file in ``study_dir``,
    ``"journal"`` -> Optuna journal file in ``study_dir``, URLs and ``journal:PATH`` pass through."""
    if storage is None or storage == "sqlite":
        return f"sqlite:///{(study_dir / 'study.db').resolve()}"
    if storage == "journal":
        return f"journal:{(study_dir / 'study.journal').resolve()}"
    return storage


def open_storage(spec: Any, heartbeat: tuple[float, float | None] | None = None) -> Any:
    """The storage ``spec`` names; ``heartbeat=(interval, grace_period)`` turns on Optuna's heartbeat
    for RDB storages, with ``recovery.RetryInterrupted`` as the callback for stale trials (the
    journal storage has no heartbeat)."""
    if not isinstance(spec, str):
        return spec  # an optuna storage object
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(spec[len("journal:"):]))
    kw: dict = {}
    if heartbeat is not None:
        from .recovery import stale_callback_kwargs

        kw = {"heartbeat_interval": heartbeat[0], "grace_period": heartbeat[1], **stale_callback_kwargs()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        if spec.startswith("sqlite:"):  # several worker processes write to one file: wait for the lock
            return _RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 120}}, **kw)
        return _RDBStorage(_with_driver(spec), **kw)


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, where taking a queued (WAITING) trial is atomic.

    Optuna reads the trial's state, then writes RUNNING; SQLite has no row lock (its reads take no lock
    either), so a worker whose read came before another worker took the trial could take it too, even
    after the other one had finished it: the finished trial went back to RUNNING and ran again, and
    both workers spent a place of their share on one counted trial (a resumed study ended short)."""

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from optuna.trial import TrialState

        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        with _create_scoped_session(self.scoped_session) as session:
            # one conditional UPDATE: only the worker that finds the trial WAITING takes it
            taken = (session.query(models.TrialModel)
                     .filter(models.TrialModel.trial_id == trial_id, models.TrialModel.state == TrialState.WAITING)
                     .update({models.TrialModel.state: TrialState.RUNNING}, synchronize_session=False))
            if taken:
                models.TrialModel.find_or_raise_by_id(trial_id, session).datetime_start = datetime.datetime.now()
                return True
        self.check_trial_is_updatable(trial_id, self.get_trial(trial_id).state)  # finished: optuna's error
        return False


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 picks psycopg 3 for a bare
    ``postgresql://``; the ``tune`` extra installs psycopg2 (binary wheels everywhere)."""
    m = re.match(r"postgres(?:ql)?://", url)
    if not m:
        return url
    import importlib.util

    driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
    return f"postgresql+{driver}://" + url[m.end():]


def mask_url(spec: Any) -> str:
    """A storage URL without its password (for files and messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(spec))
