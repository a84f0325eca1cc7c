"""Issue 13's "Done when": the README's walkthrough, walked as a user would. The test reads the
README's "Walkthrough" section, writes its files, and runs its commands in order with the
`retrograd` command in a fresh process each (a `retrograd` on PATH runs this checkout), in a
temporary folder, each run shortened with `--set` options. The `train` line whose comment says
Ctrl-C gets a real SIGINT once it has logged steps of its second epoch. Every step checks numbers
and files, so a README that no longer works, or a walkthrough that changed, fails here."""
import csv
import importlib.util
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cli_helpers import fruit_table

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
README = ROOT / "README.md"

# the walkthrough's commands, in order; a README that changes them must change this test too
STEPS = ["train", "train", "resume", "predict", "evaluate", "compare", "plot", "tune", "train"]
# (command, config) -> options appended to make the README's run short; the rest runs as written
SHORT = {
    ("train", "examples/fashion_mlp.toml"): ["data.train_samples=512", "data.val_samples=256", "train.epochs=1"],
    ("train", "fruit.toml"): ["data.batch_size=4"],   # more batches per epoch: a Ctrl-C lands mid-epoch
    ("compare", "fruit.toml"): ["train.epochs=1"],
    ("tune", "tune_fruit.toml"): ["train.epochs=2"],
}
FRUITS = 2000  # rows of fruit.csv (cli_helpers.fruit_table)
TUNE_TRIALS = 3


def walkthrough() -> tuple[dict, list[str]]:
    """The README walkthrough's files (a ``toml`` block whose first line is ``# NAME``; a block
    without a language is the sample of fruit.csv, key ``"sample"``) and the lines of its ``bash``
    block (comments kept, continuations joined)."""
    text = README.read_text()
    start = text.index("### Walkthrough")
    end = min(i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if i > 0)
    section = text[start:end]
    files, commands = {}, []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S):
        if not lang:
            files["sample"] = body
        elif lang == "toml":
            first, _, _ = body.partition("\n")
            files[first.lstrip("# ").split(":")[0].strip()] = body
        elif lang == "bash":
            for line in body.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    commands.append(line.strip())
    return files, commands


def _split(line: str) -> tuple[list[str], str]:
    """``(argv, comment)`` of a command line."""
    code, _, comment = line.partition("#")
    return shlex.split(code), comment


@pytest.fixture
def shell(tmp_path):
    """``shell(line, extra=[])`` runs a README line in tmp_path with bash, `retrograd` being this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "retrograd"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m retrograd "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(SRC),
           "MPLBACKEND": "Agg"}
    env.pop("COLUMNS", None)

    def command(line: str) -> str:
        """The README line with the options that shorten its run (no progress bars: output is not a terminal)."""
        argv, _ = _split(line)
        if argv[:1] != ["retrograd"]:
            return line
        extra = [f"--set {shlex.quote(s)}" for s in SHORT.get(tuple(argv[1:3]), [])]
        if argv[1] == "tune":
            extra.append(f"--n-trials {TUNE_TRIALS}")
        if argv[1] in ("train", "resume", "compare"):
            extra.append("--quiet")
        return " ".join([line.partition("#")[0].strip(), *extra])

    def run(line: str, *, interrupt_in_epoch: int | None = None, run_dir: pathlib.Path | None = None):
        cmd = command(line)
        if interrupt_in_epoch is None:
            p = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
            return p.returncode, p.stdout, p.stderr
        # Ctrl-C: SIGINT to the process group, as a terminal sends it, once the run has logged a step
        # of epoch `interrupt_in_epoch` (0-based)
        p = subprocess.Popen(["bash", "-c", "exec " + cmd], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        log, read = run_dir / "metrics.jsonl", 0
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            rows = _jsonl(log, read) if log.is_file() else []
            read += len(rows)
            if any(r.get("kind") == "step" and r["epoch"] >= interrupt_in_epoch for r in rows):
                os.killpg(p.pid, signal.SIGINT)
                break
            time.sleep(0.01)
        try:
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
        return p.returncode, out, err

    return run


def _jsonl(path: pathlib.Path, skip: int = 0) -> list[dict]:
    """The complete lines of a metrics.jsonl after the first ``skip``."""
    rows = []
    for line in path.read_text().splitlines(keepends=True)[skip:]:
        if not line.endswith("\n"):
            break  # a line being written
        rows.append(json.loads(line))
    return rows


def _summary(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _write_own_data(tmp_path: pathlib.Path) -> list[str]:
    """The walkthrough's data files, fruit.csv and new_fruit.csv; returns new_fruit.csv's fruits."""
    (tmp_path / "fruit.csv").write_text(fruit_table(FRUITS))
    new = fruit_table(40, seed=1)
    (tmp_path / "new_fruit.csv").write_text(new)
    return [line.rsplit(",", 1)[1] for line in new.splitlines()[1:]]


def test_the_readme_walkthrough(shell, tmp_path):
    import retrograd as rg

    try:
        rg.data.fashion_mnist("test")  # the quickstart's data: a Debian package, which .ci/run installs
    except rg.data.DataNotInstalledError as e:
        pytest.skip(f"the quickstart's Fashion-MNIST is not installed, so the walkthrough cannot start: {e}")
    files, commands = walkthrough()
    assert [_split(c)[0][1] for c in commands if c.startswith("retrograd ")] == STEPS, commands
    sample = files.pop("sample").splitlines()  # the README's look at fruit.csv: the columns the test writes
    assert sample[0] == fruit_table(1).splitlines()[0] and {r.rsplit(",", 1)[1] for r in sample[1:]} == \
        {"apple", "banana", "cherry"}, sample
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "fashion_mlp.toml").write_text((ROOT / "examples" / "fashion_mlp.toml").read_text())
    truth = _write_own_data(tmp_path)
    runs = tmp_path / "runs"
    lines = iter(commands)

    # 1. the quickstart's run
    rc, out, err = shell(next(lines))
    quick = runs / "fashion_mlp"
    assert rc == 0 and "run folder: runs/fashion_mlp" in out, err
    s = _summary(quick)
    assert s["status"] == "completed" and s["epochs"] == 1 and 0.3 < s["test"]["test_accuracy"] <= 1, s

    # 2. own data, Ctrl-C in the second epoch: a checkpoint where it stopped, and the command to continue
    line = next(lines)
    assert "Ctrl-C" in _split(line)[1], line
    mine = runs / "fruit"
    rc, out, err = shell(line, interrupt_in_epoch=1, run_dir=mine)
    assert rc == 130 and "saved a checkpoint there; continue with: retrograd resume runs/fruit" in err, (out, err)
    state = json.loads((mine / "checkpoints" / "last" / "trainer.json").read_text())["state"]
    epochs = _toml(mine / "config.toml")["train"]["epochs"]
    assert 1 <= state["epoch"] < epochs and state["batch_in_epoch"] > 0, state   # mid-epoch, not at its end
    assert not (mine / "summary.json").exists()

    # 3. resume: ends at the configured epoch count, with one log line per epoch
    rc, out, err = shell(next(lines))
    assert rc == 0 and "resuming runs/fruit from" in out, err
    s = _summary(mine)
    assert s["status"] == "completed" and s["epochs"] == epochs >= 2, s
    assert [r["epoch"] for r in _jsonl(mine / "metrics.jsonl") if r["kind"] == "epoch"] == list(range(epochs))

    # 4. predict: one row per input, probabilities that sum to 1, the predicted class their argmax
    rc, out, err = shell(next(lines))
    pred = mine / "predictions_new_fruit.csv"
    assert rc == 0 and str(pred.relative_to(tmp_path)) in out, err
    with open(pred, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    assert header == ["id", "predicted", "prob_apple", "prob_banana", "prob_cherry"] and len(rows) == len(truth)
    probs = np.array([[float(v) for v in r[2:]] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert [r[1] for r in rows] == [["apple", "banana", "cherry"][i] for i in probs.argmax(axis=1)]
    assert np.mean([r[1] == t for r, t in zip(rows, truth)]) >= 0.8, rows

    # 5. evaluate: the best checkpoint's validation loss is the best epoch's, as logged in training
    rc, out, err = shell(next(lines))
    assert rc == 0, err
    ev = json.loads((mine / "evaluate_best.json").read_text())
    val_losses = [r["val_loss"] for r in _jsonl(mine / "metrics.jsonl") if r["kind"] == "epoch"]
    assert ev["val_loss"] == pytest.approx(min(val_losses), rel=1e-6) and 0 <= ev["test_accuracy"] <= 1, ev

    # 6. compare: one row per optimizer, a plot
    rc, out, err = shell(next(lines))
    cmp_dir = runs / "fruit-compare"
    assert rc == 0, err
    table = json.loads((cmp_dir / "comparison.json").read_text())
    assert [r["optimizer"] for r in table["rows"]] == ["sgd", "adam"]
    assert all(0 <= r["val_accuracy"] <= 1 for r in table["rows"]) and _png(cmp_dir / "comparison.png")

    # 7. plot
    rc, out, err = shell(next(lines))
    assert rc == 0 and out.split() == ["runs/fruit/run.png"], (out, err)
    assert _png(mine / "run.png")

    # 8. tune (Optuna: in the test extra, so in CI)
    line = next(lines)
    while not line.startswith("retrograd "):  # shell lines before it (cat ... > tune_fruit.toml)
        rc, _, err = shell(line)
        assert rc == 0, err
        line = next(lines)
    if importlib.util.find_spec("optuna") is None:
        pytest.skip("optuna is not installed: the walkthrough's tune and retrain steps were not walked "
                    "(pip install -e '.[tune]')")
    rc, out, err = shell(line)
    study = runs / "tune_fruit-tune"
    assert rc == 0, err
    with open(study / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == TUNE_TRIALS and all(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(done, key=lambda t: float(t["val_accuracy"]))
    assert f"best: trial {best['number']}, val_accuracy" in out

    # 9. retrain the best config: the best trial's hyperparameters
    rc, out, err = shell(next(lines))
    assert rc == 0, err
    retrained = tmp_path / re.search(r"run folder: (\S+)", out).group(1)
    cfg = _toml(retrained / "config.toml")
    assert cfg["optim"]["lr"] == pytest.approx(float(best["optim.lr"]), rel=1e-12)
    assert cfg["data"]["batch_size"] == int(best["data.batch_size"])
    s = _summary(retrained)
    assert s["status"] == "completed" and s["epochs"] == int(best["epochs"]), s
    # the best config repeats its trial exactly (the same data split, data.seed, and the trial's train.seed)
    assert s["final"]["val_accuracy"] == float(best["val_accuracy"]), (s["final"], best)
    assert next(lines, None) is None


def _toml(path: pathlib.Path) -> dict:
    from retrograd.train.config import load_config

    return load_config(path)


def _png(path: pathlib.Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
