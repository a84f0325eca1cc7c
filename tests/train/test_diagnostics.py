"""GradientFlow diagnostics and the run plots."""
import json

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import GradientFlow, Trainer
from retrograd.train.callbacks import MetricLogger
from retrograd.train import plots

from train_helpers import mlp

PNG = b"\x89PNG\r\n\x1a\n"


def _deep_sigmoid(depth=8, width=32, gain=0.5):
    rg.manual_seed(0)
    layers, n_in = [], 64
    for _ in range(depth - 1):
        lin = rg.nn.Linear(n_in, width)
        rg.nn.init.normal_(lin.weight, std=gain / np.sqrt(n_in))
        layers += [lin, rg.nn.Sigmoid()]
        n_in = width
    return rg.nn.Sequential(*layers, rg.nn.Linear(n_in, 10))


def _fit(model, ds, gf, epochs=1, lr=0.1):
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=lr), rg.nn.CrossEntropyLoss(), callbacks=[gf])
    tr.fit(rg.data.DataLoader(rg.data.Subset(ds, np.arange(400)), batch_size=50), epochs=epochs)
    return tr


def test_vanishing_gradients_in_deep_sigmoid_net(digits, tmp_path):
    gf = GradientFlow(every_n_steps=2, run_dir=tmp_path)
    _fit(_deep_sigmoid(), digits, gf)
    assert len(gf.records) == 4 and [r["step"] for r in gf.records] == [0, 2, 4, 6]
    assert gf.layers == [str(i) for i in range(0, 15, 2)]
    g = [gf.records[-1]["layers"][n]["grad_norm"] for n in gf.layers]
    assert g[0] / g[-1] < 1e-3  # each sigmoid layer shrinks the gradient by >= 4x
    v = gf.verdicts()
    assert any(x.startswith("layer 1 (0) gradient is") and "of layer 8's (14): vanishing; consider "
               "ReLU/He init/BatchNorm/residuals" in x for x in v), v
    rep = gf.report()
    assert "grad norm" in rep and "update/w" in rep and "vanishing" in rep
    assert (tmp_path / "gradient_flow.png").read_bytes()[:8] == PNG
    recs = [json.loads(x) for x in (tmp_path / "gradient_flow.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and "vanishing" in (tmp_path / "gradient_flow.txt").read_text()


def test_healthy_relu_net_has_no_flow_verdicts(digits):
    gf = GradientFlow(every_n_steps=1)
    _fit(mlp(0), digits, gf, lr=0.05)
    assert gf.verdicts() == []
    rec = gf.records[-1]["layers"]
    assert set(rec) == {"0", "2"}
    assert 1e-5 < rec["0"]["update_ratio"] < 1e-1
    # the ReLU after layer 0 is measured: a fraction in [0, 1)
    assert 0.0 <= rec["0"]["dead_fraction"] < 0.5
    assert np.isfinite(rec["2"]["act_std"]) and rec["2"]["act_std"] > 0
    # update ratio is exactly ||w_after - w_before|| / ||w_before||
    assert "verdicts: none" in gf.report()


def test_dead_relu_and_exploding_verdicts(digits):
    model = mlp(0)
    with rg.no_grad():
        model[0].bias.fill_(-100.0)  # every unit of the first ReLU is off
    gf = GradientFlow(every_n_steps=1)
    _fit(model, digits, gf)
    assert gf.records[-1]["layers"]["0"]["dead_fraction"] == 1.0
    v = gf.verdicts()
    assert any("layer 1 (0): 100% of its units are dead" in x for x in v), v
    assert any("layer 1 (0) gets no gradient at all" in x for x in v), v

    rg.manual_seed(0)
    big = rg.nn.Sequential(rg.nn.Linear(64, 64), rg.nn.Linear(64, 64), rg.nn.Linear(64, 10))
    with rg.no_grad():
        big[1].weight.mul_(1e4)
        big[2].weight.mul_(1e4)
    gf = GradientFlow(every_n_steps=1)
    _fit(big, digits, gf, lr=1e-12)
    v = gf.verdicts()
    assert any(x.startswith("layer 1 (0) gradient is") and "exploding" in x for x in v), v


class _FunctionalReLU(rg.nn.Module):
    """An MLP whose ReLU is a call in forward, not a module GradientFlow can see."""

    def __init__(self) -> None:
        super().__init__()
        rg.manual_seed(0)
        self.fc1, self.fc2 = rg.nn.Linear(64, 32), rg.nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(rg.nn.functional.relu(self.fc1(x)))


def test_dead_units_measured_from_gradients_without_relu_modules(digits):
    model = _FunctionalReLU()
    with rg.no_grad():
        model.fc1.bias[:8] = -100.0  # a quarter of the units never fire
    # the units whose ReLU input is <= 0 for every sample of the last batch (with lr ~ 0 the
    # weights stay put): at least the quarter switched off, plus any that are off by chance
    x_last = rg.tensor(np.stack([digits[i][0].numpy() for i in range(350, 400)]))
    with rg.no_grad():
        expected = float((model.fc1(x_last).numpy() <= 0).all(axis=0).mean())
    assert expected >= 0.25
    gf = GradientFlow(every_n_steps=1)
    _fit(model, digits, gf, lr=1e-9)
    rec = gf.records[-1]["layers"]
    assert rec["fc1"]["dead_fraction"] == expected
    assert rec["fc2"]["dead_fraction"] == 0.0  # the logits always get a gradient
    # a sigmoid net's units are never dead: its gradients are small, not zero
    gf = GradientFlow(every_n_steps=2)
    _fit(_deep_sigmoid(), digits, gf)
    assert all(d["dead_fraction"] == 0.0 for d in gf.records[-1]["layers"].values())
    assert not any("dead" in x for x in gf.verdicts())


def test_update_ratio_value(digits):
    rg.manual_seed(0)
    model = rg.nn.Sequential(rg.nn.Linear(64, 10, bias=False))
    w0 = model[0].weight.detach().numpy().astype(np.float64)
    gf = GradientFlow(every_n_steps=100)
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.CrossEntropyLoss(), callbacks=[gf])
    tr.fit(rg.data.DataLoader(rg.data.Subset(digits, np.arange(50)), batch_size=50), epochs=1)
    w1 = model[0].weight.detach().numpy().astype(np.float64)
    rec = gf.records[0]["layers"]["0"]
    assert rec["weight_norm"] == pytest.approx(np.linalg.norm(w0), rel=1e-6)
    assert rec["update_ratio"] == pytest.approx(np.linalg.norm(w1 - w0) / np.linalg.norm(w0), rel=1e-5)
    assert rec["grad_norm"] == pytest.approx(np.linalg.norm(w1 - w0) / 0.1, rel=1e-4)  # SGD: update = lr * grad


def test_plot_run_and_comparison(digits, tmp_path):
    model = mlp(0)
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    sched = rg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train = rg.data.DataLoader(rg.data.Subset(digits, np.arange(200)), batch_size=50)
    val = rg.data.DataLoader(rg.data.Subset(digits, np.arange(1500, 1600)), batch_size=50)
    h = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, callbacks=[MetricLogger(tmp_path)]
                ).fit(train, val, epochs=2)
    out = plots.plot_run(tmp_path)
    assert out == tmp_path / "run.png" and out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000
    cmp = plots.plot_comparison({"a": h, "b": {k: [x * 2 for x in v] for k, v in h.items()}}, tmp_path / "c.png")
    assert cmp.read_bytes()[:8] == PNG
    with pytest.raises(FileNotFoundError, match="metrics.jsonl not found"):
        plots.plot_run(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no histories"):
        plots.plot_comparison({}, tmp_path / "d.png")
