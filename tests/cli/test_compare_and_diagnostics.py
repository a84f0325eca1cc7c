"""`retrograd compare` (same init, seed and batch order for every optimizer; one plot, one table)
and the GradientFlow verdicts on the two vanishing-gradient examples."""
import copy
import json

import numpy as np
from cli_helpers import EXAMPLES, summary

from retrograd.data.presets import build_data
from retrograd.train import recipe
from retrograd.train import config as rgconfig


def test_compare_writes_plot_and_table(write_config, run_cli, tmp_path):
    rc, out, err = run_cli("compare", write_config(), "--optimizers", "sgd,momentum,adam", "--lr", "sgd=0.1",
                           "--set", "train.epochs=2", "--quiet")
    assert rc == 0, err
    d = tmp_path / "runs" / "c-compare"
    assert (d / "comparison.png").stat().st_size > 10_000
    table = (d / "comparison.md").read_text().splitlines()
    assert table[0] == ("| optimizer | lr | train_loss | val_loss | val_accuracy | test_loss | test_accuracy "
                        "| wall_time_s | step_ms |")
    assert [r.split("|")[1].strip() for r in table[2:5]] == ["sgd", "momentum", "adam"]
    # then what each time column measures
    assert table[5] == "" and [x.split(":")[0] for x in table[6:]] == ["wall_time_s", "step_ms"]
    assert "\n".join(table) in out
    rows = {r["optimizer"]: r for r in json.loads((d / "comparison.json").read_text())["rows"]}
    assert rows["sgd"]["lr"] == 0.1 and rows["momentum"]["lr"] == 0.01 and rows["adam"]["lr"] == 0.003
    assert all(r["wall_time_s"] > 0 and r["step_ms"] > 0 for r in rows.values())
    # Adam (lr 3e-3) beats plain SGD over 2 epochs of digits; all learn something
    assert rows["adam"]["test_accuracy"] > rows["sgd"]["test_accuracy"] > 0.3
    histories = json.loads((d / "comparison.json").read_text())["histories"]
    assert all(len(h["train_loss"]) == 2 for h in histories.values())
    # each optimizer's run is logged in its own folder
    assert (d / "sgd" / "metrics.jsonl").is_file() and (d / "adam" / "config.toml").is_file()


def test_compare_uses_the_same_init_and_batch_order(write_config):
    base = rgconfig.validate(rgconfig.load_config(write_config()))
    data = build_data(base["data"], base["train"]["seed"])
    setups = []
    for name in ("sgd", "adamw"):
        cfg = copy.deepcopy(base)
        cfg["optim"] = {"name": name, "lr": 0.01}
        setups.append(recipe.prepare(cfg, data))
    a, b = setups
    assert type(a.optimizer).__name__ == "SGD" and type(b.optimizer).__name__ == "AdamW"
    for (ka, pa), (kb, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and np.array_equal(np.asarray(pa), np.asarray(pb))
    for (xa, ya), (xb, yb) in zip(a.train_loader, b.train_loader):
        assert np.array_equal(ya.numpy(), yb.numpy()) and np.array_equal(xa.numpy(), xb.numpy())


def test_compare_names_a_missing_optimizer_before_training(write_config, run_cli, tmp_path):
    rc, out, err = run_cli("compare", write_config(), "--optimizers", "sgd,adam,adamm")
    assert rc == 2
    assert ("retrograd compare: error: --optimizers: 'adamm' is not an optimizer in rg.optim; available: sgd, "
            "momentum, nesterov, adam, adamw") in err
    assert not (tmp_path / "runs").exists()


def _flow(run_cli, tmp_path, example):
    rc, out, err = run_cli("train", EXAMPLES / f"{example}.toml", "--quiet",
                           "--set", f'run.dir="{tmp_path.as_posix()}"', "--set", "train.epochs=1",
                           "--set", "data.train_samples=512", "--set", "data.val_samples=128",
                           "--set", "train.gradient_flow=1", "--set", "train.save_best=false")
    assert rc == 0, err
    run = tmp_path / example
    assert (run / "gradient_flow.txt").is_file() and (run / "gradient_flow.png").is_file()
    # the closing summary lists the findings one a line (it printed a raw Python list)
    verdicts = summary(run)["gradient_flow"]
    lines = out.splitlines()
    head = f"  gradient flow: {len(verdicts)} findings" if len(verdicts) > 1 else \
        "  gradient flow: 1 finding" if verdicts else "  gradient flow: no problems found"
    at = lines.index(f"{head} (report: {run / 'gradient_flow.txt'})")
    assert lines[at + 1:] == [f"    - {v}" for v in verdicts]
    return verdicts, (run / "gradient_flow.txt").read_text()


def test_gradient_flow_flags_the_deep_sigmoid_net_and_not_relu_bn(run_cli, tmp_path):
    verdicts, report = _flow(run_cli, tmp_path, "vanishing_gradients_sigmoid")
    vanishing = [v for v in verdicts if "vanishing" in v]
    assert len(vanishing) == 1 and vanishing[0].startswith("layer 1 (net.1) gradient is ")
    ratio = float(vanishing[0].split("gradient is ")[1].split()[0])
    assert ratio < 1e-5                                   # measured ~6e-8 for 9 sigmoid layers
    assert "10 net.19" in report and "verdicts:\n  - layer 1 (net.1)" in report
    verdicts, report = _flow(run_cli, tmp_path, "vanishing_gradients_relu_bn")
    assert not [v for v in verdicts if "vanishing" in v or "exploding" in v], verdicts
    assert "verdicts: none (gradients flow evenly)" in report
