"""Issue 12, items 17-18: tune workers die with their parent, the trial budget counts RUNNING trials,
and a resume right after killing a whole process group leaves no trial RUNNING or WAITING forever
(Optuna's heartbeat across machines, host/pid/start-time as the fast path, zombies are dead).

Real subprocesses and SIGKILLs on a tiny objective (SleepyMetric): seconds, no training."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

import retrograd.tune as tune
from retrograd.tune import recovery
from tune_helpers import SleepyMetric

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills process groups, reads /proc"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")]

HERE = pathlib.Path(__file__).resolve().parent
SPACE = {"optim.lr": {"log_uniform": [1e-4, 10.0]}}
CFG = {"optim": {"lr": 0.1}}
N = 10

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    import optuna
    import retrograd.tune as tune
    from tune_helpers import SleepyMetric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tune.search({cfg!r}, {space!r}, train_fn=SleepyMetric({delay!r}, {markers!r}), method="random", n_trials={n},
                pruner="none", study_dir={study_dir!r}, workers=2, resume={resume!r}, plots=False)
""")


def _start(tmp_path, markers, *, resume, delay=0.4):
    markers.mkdir(exist_ok=True)
    script = SCRIPT.format(here=str(HERE), cfg=CFG, space=SPACE, delay=delay, markers=str(markers), n=N,
                           study_dir=str(tmp_path / "study"), resume=resume)
    # its own process group, so that the test can kill the whole group as a user's Ctrl-\\ or a job
    # scheduler would, and so that nothing it starts outlives the test
    return subprocess.Popen([sys.executable, "-c", script], start_new_session=True)


def _wait_markers(proc, markers, n, timeout=90):
    deadline = time.time() + timeout
    while len(list(markers.iterdir())) < n:
        assert proc.poll() is None, f"the search exited ({proc.returncode}) early"
        assert time.time() < deadline, f"fewer than {n} trials started in {timeout} s"
        time.sleep(0.05)
    return {int(p.name.split("-")[0]) for p in markers.iterdir()}


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def _study(tmp_path):
    spec = tune.storage.storage_spec(None, tmp_path / "study")
    return optuna.load_study(study_name="study", storage=tune.open_storage(spec))


def _assert_exactly_n_counted(study):
    trials = study.get_trials(deepcopy=False)
    interrupted = recovery.interrupted_numbers(study, trials)
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, \
        [(t.number, t.state.name) for t in trials]
    assert sum(recovery.counted(t, interrupted) for t in trials) == N
    # every interrupted trial with parameters was rerun once with the same parameters
    for n in interrupted:
        retries = [t for t in trials if t.user_attrs.get("retry_of") == n]
        assert len(retries) <= 1
        if trials[n].params:
            assert retries and retries[0].params == trials[n].params


def test_killing_only_the_main_process_kills_its_workers_and_the_budget_holds(tmp_path):
    markers = tmp_path / "m1"
    proc = _start(tmp_path, markers, resume=False)
    try:
        pids = _wait_markers(proc, markers, 5) - {proc.pid}
        assert len(pids) == 2  # the two spawned workers run the trials
        os.kill(proc.pid, signal.SIGKILL)  # the main process only
        proc.wait(30)
        deadline = time.time() + 5
        while any(recovery.process_alive(p) for p in pids):
            assert time.time() < deadline, f"workers {pids} outlived their parent"
            time.sleep(0.05)
    finally:
        _kill_group(proc)
    before = _study(tmp_path).get_trials(deepcopy=False)
    assert any(t.state == TrialState.RUNNING for t in before)  # killed mid-trial
    out = tmp_path / "out.txt"
    (tmp_path / "m2").mkdir()
    with open(out, "w") as f:
        r = tune.search(CFG, SPACE, train_fn=SleepyMetric(0.05, str(tmp_path / "m2")), method="random", n_trials=N,
                        pruner="none", study_dir=tmp_path / "study", workers=2, resume=True, plots=False, out=f)
    _assert_exactly_n_counted(r.study)
    assert "were interrupted; marked FAILED and queued again" in out.read_text()


def test_killing_the_group_and_resuming_at_once_twice(tmp_path):
    markers = tmp_path / "m1"
    proc = _start(tmp_path, markers, resume=False)
    try:
        _wait_markers(proc, markers, 5)
    finally:
        _kill_group(proc)
    running = [t.number for t in _study(tmp_path).trials if t.state == TrialState.RUNNING]
    assert running  # left RUNNING by the kill
    # resume at once, and kill that resume's whole group as soon as it has started a trial
    markers2 = tmp_path / "m2"
    proc = _start(tmp_path, markers2, resume=True, delay=5.0)
    try:
        _wait_markers(proc, markers2, 1)
    finally:
        _kill_group(proc)
    study = _study(tmp_path)
    assert all(study.trials[n].state == TrialState.FAIL for n in running)  # the first resume recovered them
    # the second resume, at once: nothing stays RUNNING or WAITING, exactly N trials count
    (tmp_path / "m3").mkdir()
    r = tune.search(CFG, SPACE, train_fn=SleepyMetric(0.05, str(tmp_path / "m3")), method="random", n_trials=N,
                    pruner="none", study_dir=tmp_path / "study", workers=2, resume=True, plots=False)
    _assert_exactly_n_counted(r.study)


def _running_trial(study, worker):
    t = study.ask()
    t.suggest_float("optim.lr", 1e-4, 10.0, log=True)
    t.set_user_attr("worker", worker)
    return t.number


def test_zombie_and_reused_pids_are_dead(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for: stays a zombie
    deadline = time.time() + 30
    while recovery._proc_stat(zombie.pid)[0] != "Z":
        assert time.time() < deadline
        time.sleep(0.02)
    try:
        os.kill(zombie.pid, 0)  # the old test: a zombie passes it
        assert not recovery.process_alive(zombie.pid)
        me = recovery.worker_identity()
        assert recovery.process_alive(me["pid"], me["start"])
        assert not recovery.process_alive(me["pid"], str(int(me["start"]) - 1))  # the pid reused since
        study_dir = tmp_path / "study"
        tune.search(CFG, SPACE, train_fn=SleepyMetric(0, str(tmp_path)), method="random", n_trials=2, pruner="none",
                    study_dir=study_dir, plots=False)
        study = _study(tmp_path)
        host = socket.gethostname()
        z = _running_trial(study, {"host": host, "pid": zombie.pid})
        reused = _running_trial(study, {"host": host, "pid": os.getpid(), "start": "1"})  # not this process
        r = tune.search(CFG, SPACE, train_fn=SleepyMetric(0, str(tmp_path)), method="random", n_trials=4,
                        pruner="none", study_dir=study_dir, resume=True, plots=False)
    finally:
        zombie.wait(30)
    trials = r.study.trials
    assert trials[z].state == TrialState.FAIL and trials[z].user_attrs["interrupted"]
    assert trials[reused].state == TrialState.FAIL and trials[reused].user_attrs["interrupted"]
    _assert_n(r.study, 4)


def _assert_n(study, n):
    trials = study.get_trials(deepcopy=False)
    interrupted = recovery.interrupted_numbers(study, trials)
    assert sum(recovery.counted(t, interrupted) for t in trials) == n
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_heartbeat_fails_stale_trials_of_other_machines_and_retries_them(tmp_path):
    study_dir = tmp_path / "study"
    kw = dict(method="random", pruner="none", study_dir=study_dir, plots=False, heartbeat_interval=1, grace_period=2)
    tune.search(CFG, SPACE, train_fn=SleepyMetric(0, str(tmp_path)), n_trials=2, **kw)
    storage = tune.open_storage(tune.storage.storage_spec(None, study_dir), heartbeat=(1, 2))
    study = optuna.load_study(study_name="study", storage=storage)
    stale = _running_trial(study, {"host": "elsewhere", "pid": 1})
    fresh = _running_trial(study, {"host": "elsewhere", "pid": 2})
    storage.record_heartbeat(study.trials[stale]._trial_id)
    storage.record_heartbeat(study.trials[fresh]._trial_id)
    stop, fresh_id = threading.Event(), study.trials[fresh]._trial_id

    def other_machine_alive():  # keeps the fresh trial's heartbeat fresh, as its live process would
        while not stop.wait(0.3):
            storage.record_heartbeat(fresh_id)

    beat = threading.Thread(target=other_machine_alive)
    beat.start()
    try:
        time.sleep(3.2)  # the stale one is past the grace period (SQLite's clock has whole seconds)
        r = tune.search(CFG, SPACE, train_fn=SleepyMetric(0, str(tmp_path)), n_trials=5, resume=True, **kw)
    finally:
        stop.set()
        beat.join(30)
    trials = r.study.trials
    interrupted = recovery.interrupted_numbers(r.study, trials)
    assert trials[stale].state == TrialState.FAIL and stale in interrupted  # failed by Optuna's heartbeat check
    retry = [t for t in trials if t.user_attrs.get("retry_of") == stale]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == trials[stale].params
    assert trials[fresh].state == TrialState.RUNNING  # its machine is alive: left alone, holding a slot
    assert sum(recovery.counted(t, interrupted) for t in trials) == 4
    assert [t.number for t in trials if t.state == TrialState.WAITING] == []


def test_a_leftover_retry_beyond_the_budget_does_not_wait_forever(tmp_path):
    study_dir = tmp_path / "study"
    tune.search(CFG, SPACE, train_fn=SleepyMetric(0, str(tmp_path)), method="random", n_trials=3, pruner="none",
                study_dir=study_dir, plots=False)
    study = _study(tmp_path)
    study.enqueue_trial({"optim.lr": 0.2}, user_attrs={"retry_of": 0})  # as an older version could leave
    r = tune.search(CFG, SPACE, train_fn=SleepyMetric(0, str(tmp_path)), method="random", n_trials=3,
                    pruner="none", study_dir=study_dir, resume=True, plots=False)
    trials = r.study.trials
    assert trials[3].state == TrialState.FAIL and trials[3].user_attrs["over_budget"]
    assert not [t for t in trials if t.state == TrialState.WAITING]


def test_over_budget_ties_go_to_the_lower_trial_number():
    study = optuna.create_study()
    for _ in range(2):
        study.tell(study.ask(), 1.0)
    a, b = study.ask(), study.ask()  # two workers start at once; one slot left of 3
    trials = study.get_trials(deepcopy=False)
    assert not recovery.over_budget(trials, a.number, 3) and recovery.over_budget(trials, b.number, 3)
    assert not recovery.over_budget(trials, b.number, 4)


def test_a_lost_race_for_a_queued_retry_does_not_spend_a_place_of_the_share(tmp_path, monkeypatch):
    # two workers can pop the same queued retry (SQLite has no row lock); the loser's tell fails with
    # optuna's "Cannot tell a COMPLETE trial" and its run counts for nothing, so the worker must still
    # run its whole share: it once ended the study one trial short (a resume on 2 workers, in CI)
    import io

    real, calls = optuna.Study.optimize, []

    def optimize(self, *args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 2:  # the second run is the duplicate that lost the race: nothing recorded
            raise ValueError("Cannot tell a COMPLETE trial.")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "optimize", optimize)
    (tmp_path / "m").mkdir()
    out = io.StringIO()
    r = tune.search(CFG, SPACE, train_fn=SleepyMetric(0.0, str(tmp_path / "m")), method="random", n_trials=4,
                    pruner="none", study_dir=tmp_path / "study", workers=1, plots=False, out=out)
    trials = r.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4 and len(calls) == 5
    assert sum(recovery.counted(t) for t in trials) == 4
