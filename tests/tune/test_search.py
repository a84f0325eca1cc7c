"""rg.tune.search on a cheap real problem (an MLP on digits, 1-3 epochs): grid, random, TPE,
pruning, workers, resume after SIGKILL, results files, the Optuna objective helper."""
import copy
import csv
import itertools
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pytest

import retrograd.tune as tune

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from tune_helpers import BASE_CONFIG, train_digits

HERE = pathlib.Path(__file__).resolve().parent
LR_SPACE = {"optim.lr": {"log_uniform": [1e-4, 10.0]}}


def _params(study):
    return [t.params for t in study.trials]


def test_grid_search_visits_exactly_the_grid(tmp_path, capsys):
    space = {"optim.lr": {"choice": [0.1, 0.5]}, "model.hidden": {"int": [8, 24], "step": 8}}
    r = tune.search(BASE_CONFIG, space, train_fn=train_digits, method="grid", metric="val_accuracy",
                    pruner="none", study_dir=tmp_path, plots=True)
    expected = [{"optim.lr": lr, "model.hidden": h} for lr, h in itertools.product([0.1, 0.5], [8, 16, 24])]
    assert sorted(map(str, _params(r.study))) == sorted(map(str, expected))
    assert [t.number for t in r.study.trials] == list(range(6))
    assert r.states == {"COMPLETE": 6}
    assert sorted(t.system_attrs["grid_id"] for t in r.study.trials) == list(range(6))  # GridSampler's points
    # results: table printed, CSV, best config, plots
    out = capsys.readouterr().out
    assert "number  state     val_accuracy  optim.lr  model.hidden" in out
    assert "6 trials: 6 COMPLETE" in out
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert [int(x["number"]) for x in rows] == list(range(6))
    assert {float(x["optim.lr"]) for x in rows} == {0.1, 0.5}
    best = max(r.study.trials, key=lambda t: t.value)
    assert r.best_trial == best.number and r.best_value == pytest.approx(best.value)
    cfg = tomllib.loads((tmp_path / "study-best.toml").read_text())  # named after the study
    assert cfg["optim"]["lr"] == best.params["optim.lr"] and cfg["model"]["hidden"] == best.params["model.hidden"]
    assert cfg["train"]["seed"] == tune.trial_seed(0, best.number)
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "slice"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
    # the best config reproduces the best trial's value
    assert train_digits(cfg, tune.Reporter(optuna.trial.FixedTrial({}), "val_accuracy"))["val_accuracy"] == \
        pytest.approx(best.value)
    # show() prints the same table again and redraws the plots
    (tmp_path / "slice.png").unlink()
    shown = tune.show(tmp_path)
    assert shown.rows == r.rows and (tmp_path / "slice.png").is_file()
    assert "6 trials: 6 COMPLETE" in capsys.readouterr().out


def test_conditional_grid_visits_exactly_the_tree(tmp_path):
    space = {"optim.name": {"choice": ["sgd", "adam"]}, "optim.lr": {"choice": [0.01, 0.3]},
             "optim.momentum": {"uniform": [0.0, 0.99], "grid": [0.0, 0.9], "when": {"optim.name": "sgd"}}}
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["train"]["epochs"] = 1
    r = tune.search(cfg, space, train_fn=train_digits, method="grid", pruner="none", study_dir=tmp_path, plots=False)
    got = sorted(map(str, _params(r.study)))
    want = sorted(map(str, tune.parse_space(space).grid_points(cfg)))
    assert len(got) == 6 and len(set(got)) == 6 and got == sorted(
        str({k: v for k, v in p.items()}) for p in _params(r.study))
    assert sorted(str(dict(sorted(p.items()))) for p in _params(r.study)) == \
        sorted(str(dict(sorted(p.items()))) for p in tune.parse_space(space).grid_points(cfg))
    assert len(want) == 6
    assert all("optim.momentum" not in p for p in _params(r.study) if p["optim.name"] == "adam")


@pytest.fixture(scope="module")
def lr_scan():
    """Validation accuracy over a log grid of the whole lr range: the known landscape."""
    lrs = np.logspace(-4, 1, 11)
    accs = []
    for lr in lrs:
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg["optim"]["lr"] = float(lr)
        accs.append(train_digits(cfg, tune.Reporter(optuna.trial.FixedTrial({}), "val_accuracy"))["val_accuracy"])
    accs = np.array(accs)
    good = lrs[accs >= accs.max() - 0.1]
    return accs, (good.min() / 2, good.max() * 2)


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_random_and_tpe_find_the_good_lr_region(tmp_path, lr_scan, method):
    accs, (lo, hi) = lr_scan
    assert accs.max() > 0.75 and np.quantile(accs, 0.1) < 0.1  # the landscape has a clear optimum region
    r = tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, method=method, n_trials=12, pruner="none",
                    study_dir=tmp_path, seed=1, plots=False)
    assert len(r.study.trials) == 12 and r.states == {"COMPLETE": 12}
    assert r.best_value >= np.quantile(accs, 0.9) - 0.05 > np.quantile(accs, 0.1) + 0.5
    assert lo <= r.best_params["optim.lr"] <= hi
    # each trial trained with its own seed derived from the study seed and its number
    assert [t.user_attrs["seed"] for t in r.study.trials] == [tune.trial_seed(1, n) for n in range(12)]
    assert len({t.user_attrs["seed"] for t in r.study.trials}) == 12


def test_same_seed_same_study(tmp_path):
    runs = [tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, method="random", n_trials=3, pruner="none",
                        study_dir=tmp_path / str(i), seed=5, plots=False) for i in range(2)]
    assert _params(runs[0].study) == _params(runs[1].study)
    assert [t.value for t in runs[0].study.trials] == [t.value for t in runs[1].study.trials]


def test_median_pruner_stops_bad_trials(tmp_path):
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["train"]["epochs"] = 3
    space = {"optim.lr": {"log_uniform": [1e-4, 3.0]}}  # mostly hopeless, sometimes good
    r = tune.search(cfg, space, train_fn=train_digits, method="random", n_trials=14, pruner="median",
                    study_dir=tmp_path, seed=0, plots=False)
    pruned = [t for t in r.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in r.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(pruned) >= 3, r.states
    assert all(len(t.intermediate_values) < 3 for t in pruned)  # training stopped before the last epoch
    assert all(len(t.intermediate_values) == 3 for t in complete)
    assert all(t.number >= 5 for t in pruned)  # MedianPruner's 5 startup trials are never pruned
    assert max(t.value for t in complete) > 0.7


def test_objective_helper_for_optuna_users():
    seen = []

    def train_fn(cfg, reporter):
        seen.append(cfg)
        return train_digits(cfg, reporter)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(tune.objective(BASE_CONFIG, LR_SPACE, train_fn, "val_accuracy", "maximize", seed=3), n_trials=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert [c["optim"]["lr"] for c in seen] == [t.params["optim.lr"] for t in study.trials]
    assert [c["train"]["seed"] for c in seen] == [tune.trial_seed(3, n) for n in range(3)]
    assert BASE_CONFIG["optim"]["lr"] == 0.05  # the base config is never modified
    assert [t.value for t in study.trials] == [t.user_attrs["metrics"]["val_accuracy"] for t in study.trials]
    wrong = optuna.create_study(direction="minimize")
    with pytest.raises(ValueError, match="the objective maximizes 'val_accuracy' but study .* is set to minimize"):
        wrong.optimize(tune.objective(BASE_CONFIG, LR_SPACE, train_fn), n_trials=1)
    with pytest.raises(KeyError, match="train_fn returned no 'val_acc' .returned or reported: .*val_accuracy"):
        optuna.create_study(direction="maximize").optimize(
            tune.objective(BASE_CONFIG, LR_SPACE, train_fn, "val_acc"), n_trials=1)


def test_existing_study_needs_resume_and_resume_needs_a_study(tmp_path):
    tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, method="random", n_trials=1, study_dir=tmp_path,
                plots=False)
    with pytest.raises(ValueError, match="study 'study' already exists in sqlite:///.*study.db; resume it"):
        tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, n_trials=1, study_dir=tmp_path)
    with pytest.raises(ValueError, match="nothing to resume: no study 'other'"):
        tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, n_trials=1, study_dir=tmp_path,
                    study_name="other", resume=True)
    # resuming a finished study to a larger total runs only the missing trials
    r = tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, method="random", n_trials=3, study_dir=tmp_path,
                    resume=True, plots=False)
    assert [t.number for t in r.study.trials] == [0, 1, 2]
    with pytest.raises(ValueError, match="give n_trials or timeout"):
        tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, study_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="method 'bayes' is not one of: tpe, random, grid, cmaes"):
        tune.search(BASE_CONFIG, LR_SPACE, train_fn=train_digits, method="bayes", n_trials=1, study_dir=tmp_path)


def test_cmaes_runs(tmp_path):
    space = {"optim.lr": {"log_uniform": [1e-2, 3.0]}, "model.hidden": {"int": [8, 32]}}
    r = tune.search(BASE_CONFIG, space, train_fn=train_digits, method="cmaes", n_trials=4, pruner="none",
                    study_dir=tmp_path, plots=False)
    assert r.states == {"COMPLETE": 4}
    assert all(8 <= t.params["model.hidden"] <= 32 and 1e-2 <= t.params["optim.lr"] <= 3.0 for t in r.study.trials)


@pytest.mark.parametrize("storage,method", [(None, "random"), ("journal", "grid")])
def test_two_workers_share_one_study(tmp_path, storage, method):
    space = LR_SPACE if method == "random" else {"optim.lr": {"choice": [0.1, 0.3, 1.0]},
                                                  "model.hidden": {"choice": [8, 16]}}
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["train"]["epochs"] = 1
    r = tune.search(cfg, space, train_fn=train_digits, method=method, n_trials=6, pruner="none", storage=storage,
                    study_dir=tmp_path, workers=2, plots=False)
    trials = r.study.trials
    assert [t.number for t in trials] == list(range(6)) and r.states == {"COMPLETE": 6}
    assert len({str(sorted(t.params.items())) for t in trials}) == 6  # distinct trials
    assert (tmp_path / ("study.db" if storage is None else "study.journal")).is_file()
    # both processes ran trials: their trials overlap in time
    starts = sorted(t.datetime_start for t in trials)
    ends = sorted(t.datetime_complete for t in trials)
    assert any(s < e for s, e in zip(starts[1:], ends[:-1]))
    if method == "grid":
        assert sorted(str(sorted(t.params.items())) for t in trials) == sorted(
            str(sorted({"optim.lr": lr, "model.hidden": h}.items())) for lr in [0.1, 0.3, 1.0] for h in [8, 16])


RESUME_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    import copy, optuna
    import retrograd.tune as tune
    from tune_helpers import BASE_CONFIG, HangOnCall
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["train"]["epochs"] = 1
    tune.search(cfg, {space!r}, train_fn=HangOnCall(4, {marker!r}), method="random", n_trials=6, pruner="none",
                storage={storage!r}, study_dir={study_dir!r}, plots=False)
""")


@pytest.mark.parametrize("storage", [None, "journal"])
def test_resume_after_sigkill_loses_nothing(tmp_path, storage):
    marker = tmp_path / "hanging"
    study_dir = tmp_path / "study"
    script = RESUME_SCRIPT.format(here=str(HERE), space=LR_SPACE, marker=str(marker), storage=storage,
                                  study_dir=str(study_dir))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, f"the search exited ({proc.returncode}) before trial 3 started"
            assert time.time() < deadline, "trial 3 never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    spec = tune.storage.storage_spec(storage, study_dir)
    before = optuna.load_study(study_name="study", storage=tune.open_storage(spec)).trials
    assert [t.state.name for t in before] == ["COMPLETE"] * 3 + ["RUNNING"]
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["train"]["epochs"] = 1
    r = tune.search(cfg, LR_SPACE, train_fn=train_digits, method="random", n_trials=6, pruner="none",
                    storage=storage, study_dir=study_dir, resume=True, plots=False)
    after = r.study.trials
    # the three completed trials are kept as they were
    for a, b in zip(before[:3], after[:3]):
        assert (a.number, a.params, a.value, a.state) == (b.number, b.params, b.value, b.state)
    # the interrupted one is FAILED, marked, and rerun once with the same parameters
    assert after[3].state.name == "FAIL" and after[3].user_attrs["interrupted"] is True
    rerun = [t for t in after if t.user_attrs.get("retry_of") == 3]
    assert len(rerun) == 1 and rerun[0].params == before[3].params and rerun[0].state.name == "COMPLETE"
    # the total is right: 6 counted trials, all complete, no parameters run twice except the rerun
    assert sum(tune.study.counted(t) for t in after) == 6 and len(after) == 7
    assert [t.state.name for t in after if t.number != 3] == ["COMPLETE"] * 6
    assert len({t.params["optim.lr"] for t in after}) == 6
    assert "interrupted; rerun of" not in "".join(r["note"] for r in r.rows)
    assert [row["note"] for row in r.rows if row["note"]] == ["interrupted", "rerun of 3"]


def _fixed_metric(cfg, reporter):
    return {"val_accuracy": 1.0 / (1.0 + abs(cfg["optim"]["lr"] - 0.1))}


def test_resume_leaves_trials_of_live_local_processes_alone(tmp_path, capsys):
    """A second search resuming the study must not take over the trials another live process
    on this machine is running; trials of dead processes are recovered as after a crash."""
    import socket

    study_dir = tmp_path / "study"
    tune.search(BASE_CONFIG, LR_SPACE, train_fn=_fixed_metric, method="random", n_trials=2, pruner="none",
                study_dir=study_dir, plots=False)
    storage = tune.open_storage(tune.storage.storage_spec(None, study_dir))
    study = optuna.load_study(study_name="study", storage=storage)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    try:
        running = {}
        for who, pid in (("live", sleeper.pid), ("dead", dead.pid)):
            t = study.ask()
            t.suggest_float("optim.lr", 1e-4, 10.0, log=True)
            t.set_user_attr("worker", {"host": socket.gethostname(), "pid": pid})
            running[who] = t.number
        capsys.readouterr()
        r = tune.search(BASE_CONFIG, LR_SPACE, train_fn=_fixed_metric, method="random", n_trials=4,
                        pruner="none", study_dir=study_dir, resume=True, plots=False)
    finally:
        sleeper.kill()
        sleeper.wait(30)
    printed = capsys.readouterr().out
    trials = {t.number: t for t in r.study.trials}
    assert trials[running["live"]].state.name == "RUNNING" and "interrupted" not in trials[running["live"]].user_attrs
    assert f"trials {running['live']} are running in live processes ({sleeper.pid}@{socket.gethostname()}); left " \
           "alone, and counted in the budget" in printed
    assert trials[running["dead"]].state.name == "FAIL" and trials[running["dead"]].user_attrs["interrupted"]
    assert [t.number for t in r.study.trials if t.user_attrs.get("retry_of") is not None] != []
    assert all(t.user_attrs.get("retry_of") == running["dead"] for t in r.study.trials if "retry_of" in t.user_attrs)
    # the live trial holds its place in the budget of 4 (issue 12, item 17): 3 counted + 1 running
    assert sum(tune.study.counted(t) for t in r.study.trials) == 3
