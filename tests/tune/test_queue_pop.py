"""Taking a queued trial (a retry of an interrupted one) is atomic: optuna's RDB storage reads a WAITING
trial's state, then writes RUNNING, and SQLite has no row lock, so a worker whose read came before another
worker took the trial, ran it and finished it could set the finished trial back to RUNNING and run it
again: both workers spent a place of their share on one counted trial (a resumed 10-trial study on 2
workers ended with 9 counted, in CI under load)."""
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

import retrograd.tune as tune


def test_a_worker_with_a_stale_read_cannot_take_a_queued_trial_another_one_finished(tmp_path, monkeypatch):
    spec = tune.storage.storage_spec(None, tmp_path)
    a, b = tune.open_storage(spec), tune.open_storage(spec)  # two workers' connections to one SQLite file
    study_a = optuna.create_study(storage=a, study_name="s")
    study_b = optuna.load_study(storage=b, study_name="s")
    study_a.enqueue_trial({"x": 0.5}, user_attrs={"retry_of": 0})
    raced = []

    def before(conn, cursor, statement, *args):  # worker b is about to write RUNNING (it read WAITING) ...
        if statement.lstrip().upper().startswith("UPDATE TRIALS") and not raced:
            raced.append(statement)
            # ... when worker a takes the trial, runs it and finishes it
            t = study_a.ask()
            t.suggest_float("x", 0.0, 1.0)
            study_a.tell(t, 1.0)

    sqlalchemy.event.listen(b.engine, "before_cursor_execute", before)
    try:
        t = study_b.ask()  # the queue is empty by now: a fresh trial, not the finished one again
    finally:
        sqlalchemy.event.remove(b.engine, "before_cursor_execute", before)
    assert len(raced) == 1
    trials = study_a.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.COMPLETE and trials[0].user_attrs == {"retry_of": 0}
    assert t.number == 1 and trials[1].state == TrialState.RUNNING and "retry_of" not in trials[1].user_attrs


def test_taking_a_queued_trial_still_sets_its_start_time(tmp_path):
    storage = tune.open_storage(tune.storage.storage_spec(None, tmp_path))
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({"x": 0.5})
    assert study.trials[0].datetime_start is None
    t = study.ask()
    assert t.number == 0 and study.trials[0].state == TrialState.RUNNING and study.trials[0].datetime_start is not None
    assert not storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)  # taken already
    study.tell(t, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
    assert study.trials[0].state == TrialState.COMPLETE
