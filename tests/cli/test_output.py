"""What a user sees while training (issue 13 item 11): the model summary at the start, plain lines
off a terminal with the time left for the whole run, the closing summary's lines, and the step
time that `compare` measures on the same work."""
import fcntl
import json
import os
import pathlib
import pty
import re
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

import retrograd as rg
from retrograd import cli
from retrograd.train.runs import summary_text
from retrograd.train.step_timing import TimedRun, interleaved_step_times

from cli_helpers import DIGITS_MLP

SRC = pathlib.Path(rg.__file__).resolve().parents[1]
SUMMARY = ["Layer (type)       Output shape  Param #",
           "========================================",
           "MLP                [32, 10]           --",
           "└─Sequential: net  [32, 10]           --",
           "  ├─Flatten: 0     [32, 64]           --",
           "  ├─Linear: 1      [32, 64]        4,160",
           "  ├─ReLU: 2        [32, 64]           --",
           "  └─Linear: 3      [32, 10]          650",
           "========================================",
           "Total params: 4,810 (19.24 KB)",
           "Trainable params: 4,810",
           "Non-trainable params: 0",
           "Input shape: [32, 64]"]
TIME = r"\d+:\d\d"
EPOCH = (r"epoch {e}/3: train_loss=[0-9.]+ val_loss=[0-9.]+ val_accuracy=[0-9.]+ lr=0\.003 \| step {s}, [0-9,]+ "
         r"samples/s, [0-9.]+ s \| run {t} elapsed")


def test_a_log_off_a_terminal_has_one_line_per_epoch(write_config, tmp_path):
    # the compare log of issue 13 reached 219 KB of tqdm frames
    cfg = write_config(DIGITS_MLP.replace("progress = false", "progress = true").replace("epochs = 2", "epochs = 3"))
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "retrograd", "train", str(cfg)], stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=300)
    text = log.read_text()
    assert p.returncode == 0, text
    assert "\r" not in text and len(text) < 2500
    lines = text.splitlines()
    run = tmp_path / "runs" / "c"
    assert lines[0] == f"run folder: {run}"
    assert lines[1:14] == SUMMARY and (run / "model_summary.txt").read_text().splitlines() == SUMMARY
    for e, line in enumerate(lines[14:17], 1):
        tail = f", {TIME} left" if e < 3 else ""
        assert re.fullmatch(EPOCH.format(e=e, s=41 * e, t=TIME) + tail, line), line
    assert re.fullmatch(rf"run {run}: mlp on digits with adam, 4,810 parameters, 3 epochs in [0-9.]+ s "
                        r"\([0-9,]+ samples/s\)", lines[17])
    assert [x.split(":")[0] for x in lines[18:]] == ["  final", "  test"]


def test_on_a_terminal_a_bar_shows_the_time_left_for_the_run(write_config, tmp_path):
    cfg = write_config(DIGITS_MLP.replace("progress = false", "progress = true"))
    leader, follower = pty.openpty()  # stderr is a terminal: tqdm draws its bar there
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # 160 columns wide
    with open(tmp_path / "out.txt", "w") as out:
        p = subprocess.Popen([sys.executable, "-m", "retrograd", "train", str(cfg)], stdout=out, stderr=follower,
                             env={**os.environ, "PYTHONPATH": str(SRC)})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert p.wait(timeout=300) == 0
    bar = b"".join(chunks).decode()
    assert "\r" in bar and "epoch 1/2:" in bar and "41/41" in bar and "run left=" in bar
    assert re.search(r"epoch 1/2: train_loss=\S+ .* \| run \d+:\d\d elapsed, \d+:\d\d left", bar)


def test_quiet_prints_neither_the_summary_nor_progress(write_config, run_cli, tmp_path):
    cfg = write_config(DIGITS_MLP.replace("progress = false", "progress = true").replace("epochs = 2", "epochs = 1"))
    rc, out, err = run_cli("train", cfg, "--quiet")
    run = tmp_path / "runs" / "c"
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"run folder: {run}" and lines[1].startswith(f"run {run}: mlp on digits with adam, 4,810 "
                                                                    f"parameters, 1 epoch in ")
    assert len(lines) == 4 and (run / "model_summary.txt").read_text().splitlines() == SUMMARY
    # resume shows the summary again (and its epochs count the run's, not the process's)
    rc, out, err = run_cli("resume", run, "--epochs", "2")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1:14] == SUMMARY
    assert [x.split(":")[0] for x in err.splitlines()] == ["epoch 2/2"]


def test_the_summary_changes_nothing_about_the_training(write_config, run_cli, tmp_path):
    from retrograd.train import config as rgconfig
    from retrograd.train import recipe
    cfg = write_config(DIGITS_MLP.replace("epochs = 2", "epochs = 1"))
    rc, out, err = run_cli("train", cfg)
    assert rc == 0 and "Layer (type)" in out
    setup = recipe.prepare(rgconfig.validate(rgconfig.load_config(cfg)))  # the same run, without a summary
    history = recipe.make_trainer(setup, None, quiet=True).fit(setup.train_loader, setup.val_loader, epochs=1)
    final = json.loads((tmp_path / "runs" / "c" / "summary.json").read_text())["final"]
    assert final == {k: history[k][-1] for k in ("train_loss", "val_loss", "val_accuracy")}


def test_summary_text_lines():
    s = {"run_dir": "runs/x", "model": "mlp", "data": "digits", "optimizer": "sgd", "parameters": 1,
         "epochs": 1, "epochs_requested": 1, "time_s": 2.0, "samples_per_sec": 1000.0, "final": {"train_loss": 0.5},
         "test": {}, "gradient_flow": []}
    assert summary_text(s).splitlines() == [
        "run runs/x: mlp on digits with sgd, 1 parameter, 1 epoch in 2.0 s (1,000 samples/s)",
        "  final: train_loss 0.5000",
        "  gradient flow: no problems found"]
    s.update(status="stopped", epochs=0, epochs_requested=1, reason="early stopping",
             gradient_flow=["layer 1 (net.0) gradient is 6.0e-08 of layer 10's (net.18): vanishing",
                            "layer 2 (net.2): 80% of its units are dead"])
    assert summary_text(s).splitlines()[1:] == [
        "  STOPPED after 0 of 1 epoch: early stopping",
        "  final: train_loss 0.5000",
        "  gradient flow: 2 findings",
        "    - layer 1 (net.0) gradient is 6.0e-08 of layer 10's (net.18): vanishing",
        "    - layer 2 (net.2): 80% of its units are dead"]


def test_compare_reports_wall_time_and_interleaved_step_time(write_config, run_cli, tmp_path, monkeypatch):
    rc, out, err = run_cli("compare", write_config(), "--optimizers", "sgd,adam", "--set", "train.epochs=1",
                           "--timed-steps", "3")
    assert rc == 0, err
    d = tmp_path / "runs" / "c-compare"
    data = json.loads((d / "comparison.json").read_text())
    assert all(r["wall_time_s"] > 0 and r["step_ms"] > 0 for r in data["rows"])
    assert set(data["columns"]) == {"wall_time_s", "step_ms"}
    legend = [f"{k}: {v}" for k, v in data["columns"].items()]
    assert legend[1] == ("step_ms: median time of one training step (forward, backward, optimizer step) after "
                         "training, on the same 5 batches for every optimizer, the optimizers taking turns (3 rounds)")
    assert "\n".join(legend) in out and (d / "comparison.md").read_text().endswith("\n".join(legend) + "\n")
    assert out.splitlines()[:13] == SUMMARY and (d / "model_summary.txt").is_file()
    # each optimizer's header says where the comparison stands
    heads = [x for x in out.splitlines() if x.startswith("== ")]
    assert heads[0] == "== sgd (lr 0.05), 1 of 2"
    assert re.fullmatch(rf"== adam \(lr 0.003\), 2 of 2 \| compare {TIME} elapsed, about {TIME} left", heads[1])
    rc, out, err = run_cli("compare", write_config(), "--optimizers", "sgd", "--set", "train.epochs=1",
                           "--timed-steps", "0", "--quiet", "--set", "run.name=nostep")
    rows = json.loads((tmp_path / "runs" / "nostep-compare" / "comparison.json").read_text())["rows"]
    assert rc == 0 and "step_ms" not in rows[0] and "step_ms" not in out and "Layer (type)" not in out
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "interleaved_step_times", boom)  # a failed timing loses none of the results
    rc, out, err = run_cli("compare", write_config(), "--optimizers", "sgd", "--set", "train.epochs=1",
                           "--quiet", "--set", "run.name=boom")
    data = json.loads((tmp_path / "runs" / "boom-compare" / "comparison.json").read_text())
    assert rc == 0 and "step_ms" not in data["rows"][0] and data["rows"][0]["test_accuracy"] > 0
    assert data["columns"]["step_ms"] == "not measured: RuntimeError: boom" and \
        "step_ms: not measured: RuntimeError: boom" in out


def test_interleaved_step_times_take_turns_on_the_same_batches():
    calls = []

    class Probe(rg.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.lin = name, rg.nn.Linear(2, 1)

        def forward(self, x):
            calls.append((self.name, float(x.numpy()[0, 0])))
            return self.lin(x)

    runs = {n: TimedRun(m, rg.optim.SGD(m.parameters(), lr=0.1), rg.nn.MSELoss())
            for n, m in ((n, Probe(n)) for n in "abc")}
    batches = [(rg.tensor(np.full((4, 2), float(k), np.float32)), rg.zeros(4, 1)) for k in range(2)]
    times = interleaved_step_times(runs, batches, rounds=3, warmup=1)
    assert list(times) == ["a", "b", "c"] and all(t > 0 for t in times.values())
    assert calls == [("a", 0.0), ("b", 0.0), ("c", 0.0), ("b", 1.0), ("c", 1.0), ("a", 1.0),
                     ("c", 0.0), ("a", 0.0), ("b", 0.0), ("a", 1.0), ("b", 1.0), ("c", 1.0)]
    with pytest.raises(ValueError, match="interleaved_step_times: rounds must be >= 1, got 0"):
        interleaved_step_times(runs, batches, rounds=0)
