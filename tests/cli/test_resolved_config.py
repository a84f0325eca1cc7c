"""A run folder's resolved config.toml holds no [train]/[schedule] key that has no effect given the others
(issue 13 item 10), reads back to the same config, and old run folders that hold such keys still resume."""
import pytest
from cli_helpers import DIGITS_MLP

from retrograd.train import config as rgconfig
from retrograd.train.config import ConfigError, tomllib


def _resolved(*overrides, schedule=None):
    raw = tomllib.loads(DIGITS_MLP + (schedule or ""))
    cfg = rgconfig.validate(rgconfig.apply_overrides(raw, list(overrides)))
    text = rgconfig.dumps(cfg)
    assert rgconfig.validate(tomllib.loads(text)) == cfg  # what is left out reads back as it was
    return tomllib.loads(text)


def test_label_smoothing_only_with_a_loss_that_takes_it():
    assert _resolved()["train"]["label_smoothing"] == 0.0
    assert _resolved("train.label_smoothing=0.1")["train"]["label_smoothing"] == 0.1
    for loss in ("nll", "mse"):
        assert "label_smoothing" not in _resolved(f"train.loss={loss}")["train"]
    with pytest.raises(ConfigError, match=r"^train.label_smoothing: only loss cross_entropy takes it, not 'mse'; "
                                          r"leave it out$"):
        _resolved("train.loss=mse", "train.label_smoothing=0.1")


def test_monitor_only_with_a_best_checkpoint_or_early_stopping():
    assert _resolved()["train"]["monitor"] == "val_loss"
    assert "monitor" not in _resolved("train.save_best=false")["train"]
    assert _resolved("train.save_best=false", "train.early_stopping=2")["train"]["monitor"] == "val_loss"
    # a value the user chose stays, as written
    assert _resolved("train.save_best=false", "train.monitor=val_accuracy")["train"]["monitor"] == "val_accuracy"


def test_checkpoint_every_n_steps_needs_save_last():
    assert _resolved("train.checkpoint_every_n_steps=5")["train"]["checkpoint_every_n_steps"] == 5
    with pytest.raises(ConfigError, match="^train.checkpoint_every_n_steps: saves checkpoints/last, which "
                                          "train.save_last = false turns off$"):
        _resolved("train.checkpoint_every_n_steps=5", "train.save_last=false")


def test_interval_only_for_a_scheduler_class():
    cls = _resolved(schedule='\n[schedule]\nname = "StepLR"\nstep_size = 1\ninterval = "step"\n')["schedule"]
    assert cls == {"name": "StepLR", "interval": "step", "step_size": 1}
    fn = _resolved(schedule='\n[schedule]\nname = "warmup_cosine"\nwarmup_steps = 5\ntotal_steps = 50\n')
    assert fn["schedule"] == {"name": "warmup_cosine", "warmup_steps": 5, "total_steps": 50}


def test_an_old_run_folder_with_such_keys_still_resumes(write_config, run_cli, tmp_path):
    cfg = write_config(DIGITS_MLP.replace("epochs = 2", 'epochs = 1\nloss = "nll"\nsave_best = false') + '\n[schedule]\nname = "warmup_cosine"\nwarmup_steps = 2\n', "old")
    rc, _, err = run_cli("train", cfg, "--quiet")
    assert rc == 0, err
    run = tmp_path / "runs" / "old"
    written = tomllib.loads((run / "config.toml").read_text())
    assert "label_smoothing" not in written["train"] and "monitor" not in written["train"]
    assert "interval" not in written["schedule"] and written["schedule"]["total_steps"] == 41
    # what older versions wrote: every key, whatever it applied to
    text = (run / "config.toml").read_text().replace('loss = "nll"', 'loss = "nll"\nlabel_smoothing = 0.0\n'
                                                    'monitor = "val_loss"')
    (run / "config.toml").write_text(text.replace("warmup_steps = 2", 'warmup_steps = 2\ninterval = "step"'))
    rc, out, err = run_cli("resume", run, "--epochs", "2", "--quiet")
    assert rc == 0, err
    assert "2 epochs" in out
    assert "label_smoothing" not in (run / "config.toml").read_text()
