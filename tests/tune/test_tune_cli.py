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
    best = study / "digits_tune-best.toml"  # named after the study; training it makes runs/digits_tune-best
    assert "2 trials: 2 COMPLETE" in out and best.is_file() and not (study / "best_config.toml").exists()
    assert f"best config: {best}\ntrain it (the same val_accuracy as trial " in out
    assert f"retrograd train {best}\n" in out
    # after each trial, the study's progress and the time left
    assert [re.sub(r"\d+:\d\d", "T", x) for x in err.splitlines() if x.startswith("tune: ")] == [
        "tune: 1 of 2 trials done; T elapsed, about T left", "tune: 2 of 2 trials done; T elapsed, about T left"]
    assert main(["train", str(best), "--quiet"]) == 0  # the best config is ready to run
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


def test_training_the_best_config_gives_its_trial_s_val_metric_bitwise(tmp_path, capsys):
    """A trial trains on the base config's data split (data.seed) with its own train.seed; the best config
    pins both, so `retrograd train` on it repeats the trial exactly: the same val_accuracy and val_loss,
    bit for bit. Augmentation (its generator restarts in every trial) and a TPE-chosen batch size make
    the trials differ from the base run in every way the trainer can."""
    import json

    import optuna

    cfg = tmp_path / "exact.toml"
    cfg.write_text(CONFIG.format(dir=tmp_path / "runs").replace('method = "grid"', 'method = "random"\nn_trials = 3')
                   .replace('"optim.lr" = {{choice = [0.05, 0.5]}}'.replace("{{", "{").replace("}}", "}"),
                            '"optim.lr" = {log_uniform = [0.01, 0.5]}\n"data.batch_size" = {choice = [32, 64]}')
                   .replace("[data]", "[data]\nimages = true\naugment = true\nval_fraction = 0.2")
                   .replace('name = "mlp"\nsizes = [64, 16, 10]', 'name = "cnn"\nchannels = [4]\nhidden = [16]')
                   .replace("epochs = 1", "epochs = 2"))
    assert main(["tune", str(cfg)]) == 0
    capsys.readouterr()
    study_dir = tmp_path / "runs" / "exact-tune"
    study = optuna.load_study(study_name="exact", storage=f"sqlite:///{study_dir / 'study.db'}")
    best = study.best_trial
    assert {t.user_attrs["seed"] for t in study.trials} != {0}  # the trials' train.seed is not the data's
    assert main(["train", str(study_dir / "exact-best.toml"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "runs" / "exact-best" / "summary.json").read_text())
    final = summary["final"]
    assert final["val_accuracy"] == best.value == best.user_attrs["metrics"]["val_accuracy"]
    assert final["val_loss"] == best.user_attrs["metrics"]["val_loss"]


def test_tune_train_fn_gives_every_trial_a_fresh_augmentation_generator(tmp_path):
    """The data set is loaded once for all trials; its augmentation generator restarts in each, so the
    same trial config gives the same numbers whether it runs first or after others."""
    import optuna

    from retrograd import tune
    from retrograd.train.config import load_config

    cfg = tmp_path / "aug.toml"
    cfg.write_text(CONFIG.format(dir=tmp_path / "runs").split("[search]")[0]
                   .replace("[data]", "[data]\nimages = true\naugment = true\nseed = 3")
                   .replace('name = "mlp"\nsizes = [64, 16, 10]', 'name = "cnn"\nchannels = [4]\nhidden = [16]'))
    fn = tune.TuneTrainFn(str(cfg), data_seed=0)
    runs = [fn(load_config(cfg), tune.Reporter(optuna.trial.FixedTrial({}), "val_accuracy")) for _ in range(2)]
    assert runs[0]["val_loss"] == runs[1]["val_loss"] and runs[0]["train_loss"] == runs[1]["train_loss"]
