"""Every example in examples/ runs after the documented install, in a short form (issue 13, "Done when"):
each config (examples/**/*.toml) through `retrograd train` (or `retrograd tune` where it has a [search]
table) with `--set` overrides that shrink it to one epoch of a few hundred samples, and each example
script with its own options; each must finish with a finite loss. The full runs are the README's.

The GradientFlow verdicts of the two vanishing-gradient configs are checked in test_compare_and_diagnostics.py;
here they only have to run."""
import csv
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
from cli_helpers import EXAMPLES, summary

import retrograd as rg
from retrograd.train.config import tomllib

CONFIGS = sorted(EXAMPLES.rglob("*.toml"))
SCRIPTS = sorted(EXAMPLES.rglob("*.py"))
SHORT = ["train.epochs=1", "data.train_samples=256", "data.val_samples=128", "train.progress=false"]
# what one config needs besides SHORT to run in a few steps
EXTRA = {"shakespeare_gpt.toml": ["schedule.warmup_steps=2"]}


def _sets(path: pathlib.Path, run_dir: pathlib.Path) -> list[str]:
    out = []
    for s in [*SHORT, *EXTRA.get(path.name, []), f'run.dir="{run_dir.as_posix()}"']:
        out += ["--set", s]
    return out


def test_the_lists_cover_examples():
    names = {p.relative_to(EXAMPLES).as_posix() for p in CONFIGS + SCRIPTS}
    assert {"fashion_mlp.toml", "fashion_cnn.toml", "shakespeare_gpt.toml", "tune_fashion_mlp.toml",
            "tune_fashion_mlp/tune_fashion_mlp-best.toml", "vanishing_gradients_sigmoid.toml",
            "vanishing_gradients_relu_bn.toml", "sweep_batch_lr.py", "train_mlp.py"} <= names
    assert set(EXTRA) | set(RL_EXTRA) <= {p.name for p in CONFIGS}
    assert {"rl_cartpole_ppo.toml", "rl_cartpole_dqn.toml", "rl_acrobot.toml", "rl_pendulum_ppo.toml",
            "rl_tune_cartpole.toml"} <= names


def _kind(path: pathlib.Path) -> str:
    """"rl" (a `retrograd rl` config: it has [rl]), "search" (a [search] table: `retrograd tune`) or "train"."""
    cfg = tomllib.loads(path.read_text())
    return "search" if "search" in cfg else "rl" if "rl" in cfg else "train"


# RL examples (`retrograd rl`): one iteration, one evaluation episode; what one needs besides
RL_SHORT = ["rl.total_steps=1", "rl.eval_episodes=1", "rl.progress=false"]
RL_EXTRA = {"rl_pendulum_ppo.toml": ["algorithm.update_epochs=1"], "rl_acrobot.toml": ["algorithm.update_epochs=1"]}


@pytest.mark.parametrize("path", [p for p in CONFIGS if _kind(p) == "rl"], ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_example_rl_config_trains(path, run_cli, tmp_path):
    sets = [x for s in [*RL_SHORT, *RL_EXTRA.get(path.name, []), f'run.dir="{tmp_path.as_posix()}"'] for x in ("--set", s)]
    rc, out, err = run_cli("rl", path, "--quiet", *sets)
    assert rc == 0, err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    s = summary(run)
    assert s["status"] == "completed" and s["iterations"] == 1 and math.isfinite(s["eval"]["mean"])
    assert (run / "checkpoints" / "last" / "manifest.json").is_file() and (run / "returns.png").is_file()


@pytest.mark.parametrize("path", [p for p in CONFIGS if _kind(p) == "train"],
                         ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_example_config_trains(path, run_cli, tmp_path):
    rc, out, err = run_cli("train", path, "--quiet", *_sets(path, tmp_path))
    assert rc == 0, err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    s = summary(run)
    assert s["status"] == "completed" and s["epochs"] == 1
    assert math.isfinite(s["final"]["train_loss"]) and math.isfinite(s["final"]["val_loss"])
    assert (run / "checkpoints" / "last" / "manifest.json").is_file()


@pytest.mark.parametrize("path", [p for p in CONFIGS if _kind(p) == "search"],
                         ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_example_search_config_tunes(path, run_cli, tmp_path):
    rl = "rl" in tomllib.loads(path.read_text())  # an RL search: RL_SHORT instead of SHORT
    sets = [x for s in [*RL_SHORT, f'run.dir="{tmp_path.as_posix()}"'] for x in ("--set", s)] if rl else \
        _sets(path, tmp_path)
    rc, out, err = run_cli("tune", path, "--n-trials", "2", *sets)
    assert rc == 0, err
    (study,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with open(study / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    metric = tomllib.loads(path.read_text())["search"]["metric"]
    values = [float(r[metric]) for r in rows if r["state"] == "COMPLETE"]
    assert values and all(math.isfinite(v) for v in values), rows
    assert (study / f"{path.stem}-best.toml").is_file()


def test_sweep_batch_lr_script(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(rg.__file__).resolve().parents[1])}
    config = EXAMPLES / "fashion_mlp.toml"
    p = subprocess.run([sys.executable, str(EXAMPLES / "sweep_batch_lr.py"), str(config), "--batch-sizes", "64,128",
                        "--lrs", "1e-3", *_sets(config, tmp_path)], capture_output=True, text=True, timeout=600,
                       env=env)
    assert p.returncode == 0, p.stderr
    rows = json.loads((tmp_path / "fashion_mlp-sweep" / "sweep.json").read_text())
    assert [(r["batch_size"], r["lr"]) for r in rows] == [(64, 1e-3), (128, 1e-3)]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    assert (tmp_path / "fashion_mlp-sweep" / "sweep.png").is_file()


def test_train_mlp_script(capsys):
    spec = importlib.util.spec_from_file_location("example_train_mlp", EXAMPLES / "train_mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(epochs=1)
    out = capsys.readouterr().out
    loss = float(out.split("train loss ")[1].split()[0])
    assert math.isfinite(loss) and 0.5 < acc <= 1.0, out
