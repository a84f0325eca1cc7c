"""`retrograd tune` end to end on digits (tiny), and its errors."""
import re

import pytest

from retrograd.cli import main

CONFIG = """
[model]
name = "mlp"
sizes = [64, 16, 10]
[data]
name = "digits"
batch_size = 64
[optim]
name = "sgd"
lr = 0.1
[train]
epochs = 1
progress = false
[run]
dir = "{dir}"
[search]
method = "grid"
pruner = "none"
"optim.lr" = {{choice = [0.05, 0.5]}}
"""


def test_tune_command_runs_the_grid_and_shows_it(tmp_path, capsys):
    cfg = tmp_path / "digits_tune.toml"
    cfg.write_text(CONFIG.format(dir=tmp_path / "runs"))
    assert main(["tune", str(cfg)]) == 0
    study = tmp_path / "runs" / "digits_tune-tune"
    out, err = capsys.readouterr()
    assert "2 trials: 2 COMPLETE" in out and (study / "best_config.toml").is_file()
    # after each trial, the study's progress and the time left
    assert [re.sub(r"\d+:\d\d", "T", x) for x in err.splitlines() if x.startswith("tune: ")] == [
        "tune: 1 of 2 trials done; T elapsed, about T left", "tune: 2 of 2 trials done; T elapsed, about T left"]
    assert main(["train", str(study / "best_config.toml"), "--quiet"]) == 0  # the best config is ready to run
    assert main(["tune", "--show", str(study)]) == 0
    assert "2 trials: 2 COMPLETE" in capsys.readouterr().out
    assert main(["tune", str(cfg)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_progress_line():
    from retrograd.tune.study import progress_line
    assert progress_line(3, 10, 3, 30.0) == "tune: 3 of 10 trials done; 0:30 elapsed, about 1:10 left"
    assert progress_line(3, 10, 3, 30.0, workers=2) == "tune: 3 of 10 trials done; 0:30 elapsed, about 0:35 left"
    assert progress_line(1, 1, 1, 4000.0) == "tune: 1 of 1 trial done; 1:06:40 elapsed, about 0:00 left"


@pytest.mark.parametrize("search,message", [
    ('"optim.lr" = {log_uniform = [0, 1]}', "search.optim.lr: log_uniform needs positive bounds"),
    ('"optimizer.lr" = {choice = [0.1]}', "search.optimizer.lr: [optimizer] is not a config section"),
    ('method = "bayes"\n"optim.lr" = {choice = [0.1]}', "method 'bayes' is not one of: tpe, random, grid, cmaes"),
])
def test_tune_command_errors_name_the_key(tmp_path, capsys, search, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.format(dir=tmp_path / "runs").split("[search]")[0] + "[search]\n" + search + "\n")
    assert main(["tune", str(cfg)]) == 2
    assert message in capsys.readouterr().err


def test_a_trial_that_nanguard_stops_is_failed_not_a_result(tmp_path, capsys):
    import optuna
    cfg = tmp_path / "nan_tune.toml"
    cfg.write_text(CONFIG.format(dir=tmp_path / "runs").replace("[0.05, 0.5]", "[0.05, 1e20]"))
    assert main(["tune", str(cfg)]) == 0
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'runs' / 'nan_tune-tune' / 'study.db'}")
    by_lr = {t.params["optim.lr"]: t for t in study.trials}
    assert by_lr[0.05].state == optuna.trial.TrialState.COMPLETE
    assert by_lr[1e20].state == optuna.trial.TrialState.FAIL and "NaN" in by_lr[1e20].user_attrs["failure"]
    assert study.best_trial.params["optim.lr"] == 0.05
