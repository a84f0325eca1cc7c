"""``rg.train.LRFinder`` on a real problem: a small MLP (built with ``rg.nn``) on
scikit-learn's digits."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import retrograd as rg  # noqa: E402

_X, _Y = load_digits(return_X_y=True)
X = (_X / 16.0).astype(np.float32)
Y = _Y.astype(np.int64)


def batches(bs: int = 64, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.random.default_rng(seed).permutation(len(X))
    return [(X[idx[i:i + bs]], Y[idx[i:i + bs]]) for i in range(0, len(X) - bs + 1, bs)]


def make(opt_name: str = "SGD", **kw):
    rg.manual_seed(0)
    model = rg.nn.Sequential(rg.nn.Linear(64, 32), rg.nn.ReLU(), rg.nn.Linear(32, 10))
    opt = getattr(rg.optim, opt_name)(model.parameters(), **kw)
    return model, opt, rg.nn.CrossEntropyLoss()


def full_loss(model, loss_fn) -> float:
    with rg.no_grad():
        return float(loss_fn(model(rg.tensor(X)), rg.tensor(Y)).item())


def train(model, opt, loss_fn, steps: int) -> None:
    data = batches(seed=1)
    for i in range(steps):
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss_fn(model(rg.tensor(x)), rg.tensor(y)).backward()
        opt.step()


def test_suggestion_is_sensible_and_trains():
    model, opt, loss_fn = make("SGD", lr=1e-4, momentum=0.9)
    finder = rg.train.LRFinder(model, opt, loss_fn)
    hist = finder.range_test(batches(), start_lr=1e-4, end_lr=10, num_iter=100)
    assert len(hist["lr"]) == len(hist["loss"]) == 100 and not finder.diverged
    # exponential steps from 1e-4 to 10
    np.testing.assert_allclose(hist["lr"], 1e-4 * (1e5) ** (np.arange(100) / 99), rtol=1e-12)
    lr = finder.suggestion()
    assert 1e-3 <= lr <= 1.0, lr
    assert finder.best_loss < hist["loss"][0] - 0.3  # the loss did fall during the test
    # the model was restored: training from there at the suggested lr lowers the loss
    assert opt.param_groups[0]["lr"] == 1e-4
    before = full_loss(model, loss_fn)
    for g in opt.param_groups:
        g["lr"] = lr
    train(model, opt, loss_fn, 60)
    after = full_loss(model, loss_fn)
    assert after < 0.5 * before, (before, after)


def test_stops_on_divergence():
    model, opt, loss_fn = make("SGD", lr=1e-4, momentum=0.9)
    finder = rg.train.LRFinder(model, opt, loss_fn)
    hist = finder.range_test(batches(), start_lr=1e-4, end_lr=1e4, num_iter=100, diverge_th=5)
    n = len(hist["lr"])
    assert finder.diverged and n < 100
    last = hist["loss"][-1]
    assert not np.isfinite(last) or last > 5 * finder.best_loss
    assert all(loss <= 5 * finder.best_loss for loss in hist["loss"][:-1])


def test_restores_model_and_optimizer_bit_exactly():
    """A model that ran the test trains on exactly as its twin that did not."""
    twins = [make("Adam", lr=1e-3, weight_decay=1e-4) for _ in range(2)]
    for model, opt, loss_fn in twins:
        train(model, opt, loss_fn, 5)  # non-trivial optimizer state
    (model, opt, loss_fn), (model2, opt2, loss_fn2) = twins
    params_before = [p.detach().numpy().copy() for p in model.parameters()]
    state_before = {k: {n: v.detach().numpy().copy() for n, v in s.items()} for k, s in opt.state_dict()["state"].items()}
    finder = rg.train.LRFinder(model, opt, loss_fn)
    finder.range_test(batches(), end_lr=1.0, num_iter=30, step_mode="linear", accumulation_steps=2)
    assert finder.history["lr"][0] == 1e-3 and finder.history["lr"][-1] == pytest.approx(1.0, rel=1e-12)
    for p, b in zip(model.parameters(), params_before):
        np.testing.assert_array_equal(p.data, b)
    after = opt.state_dict()
    assert after["param_groups"][0]["lr"] == 1e-3
    for k, s in state_before.items():
        for n, v in s.items():
            np.testing.assert_array_equal(after["state"][k][n].data, v)
    train(model, opt, loss_fn, 5)
    train(model2, opt2, loss_fn2, 5)
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_keeps_an_lr_schedule_and_accepts_tensors_and_generators():
    model, opt, loss_fn = make("SGD", lr=rg.optim.schedules.cosine_decay(0.1, 100))
    train(model, opt, loss_fn, 3)
    assert opt.param_groups[0]["schedule_step"] == 3
    data = ((rg.tensor(x), rg.tensor(y)) for x, y in batches())  # a one-shot generator: 28 batches
    finder = rg.train.LRFinder(model, opt, loss_fn)
    hist = finder.range_test(data, start_lr=1e-3, end_lr=1.0, num_iter=20, smooth_f=0.0)
    assert len(hist["lr"]) == 20
    g = opt.param_groups[0]
    assert g["schedule_step"] == 3 and g["lr"] == rg.optim.schedules.cosine_decay(0.1, 100)(3)
    train(model, opt, loss_fn, 1)
    assert g["schedule_step"] == 4


def test_suggestion_on_a_known_curve_and_errors():
    model, opt, loss_fn = make("SGD", lr=0.01)
    finder = rg.train.LRFinder(model, opt, loss_fn)
    with pytest.raises(RuntimeError, match="LRFinder.suggestion: 0 points are left after skipping 10 at the start "
                                           "and 5 at the end of 0: run range_test"):
        finder.suggestion()
    lrs = list(np.logspace(-4, 0, 40))
    losses = [2.0 - np.tanh((np.log10(lr) + 2.0) * 2) for lr in lrs]  # steepest at lr = 1e-2
    finder.history = {"lr": lrs, "loss": losses}
    assert finder.suggestion(skip_start=0, skip_end=0) == pytest.approx(1e-2, rel=0.15)
    with pytest.raises(ValueError, match="LRFinder.range_test: step_mode must be 'exp' or 'linear', got 'log'"):
        finder.range_test(batches(), step_mode="log")
    with pytest.raises(ValueError, match="LRFinder.range_test: need 0 < start_lr < end_lr, got start_lr=20.0, "
                                         "end_lr=10"):
        finder.range_test(batches(), start_lr=20.0)
    with pytest.raises(ValueError, match=r"LRFinder.range_test: a dict batch needs an 'input' or 'x' key, got "
                                         r"\['y'\]"):
        finder.range_test([{"y": Y[:4]}], num_iter=3)
    with pytest.raises(ValueError, match="LRFinder: grad_clip must be a positive max norm, got 0"):
        rg.train.LRFinder(model, opt, loss_fn, grad_clip=0)
    with pytest.raises(TypeError, match=r"LRFinder: the model \(list\) has no state_dict\(\)"):
        rg.train.LRFinder([], opt, loss_fn)


def test_plot_marks_the_suggestion(tmp_path):
    model, opt, loss_fn = make("SGD", lr=1e-4, momentum=0.9)
    finder = rg.train.LRFinder(model, opt, loss_fn)
    finder.range_test(batches(), start_lr=1e-4, end_lr=10, num_iter=60)
    path = tmp_path / "finder.png"
    ax = finder.plot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    xs, ys = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    np.testing.assert_array_equal(xs, finder.history["lr"][10:-5])
    np.testing.assert_array_equal(ys, finder.history["loss"][10:-5])
    (point,) = ax.collections[0].get_offsets()
    assert point[0] == finder.suggestion()
    assert ax.get_xscale() == "log"


class TwoInputs(rg.nn.Module):
    """The digits MLP fed its 64 pixels as two inputs, to test ``(x1, x2, y)`` batches."""

    def __init__(self):
        super().__init__()
        rg.manual_seed(0)
        self.net = rg.nn.Sequential(rg.nn.Linear(64, 32), rg.nn.ReLU(), rg.nn.Linear(32, 10))

    def forward(self, a, b):
        return self.net(rg.cat([a, b], 1))


@pytest.mark.parametrize("form", ["dict", "three", "nested"])
def test_takes_every_batch_form_of_the_trainer(form):
    """The finder runs the Trainer's step: dict and multi-input batches give the
    history that ``(x, y)`` batches give."""
    data = batches()
    model, opt, loss_fn = make("SGD", lr=1e-4, momentum=0.9)
    ref = rg.train.LRFinder(model, opt, loss_fn).range_test(data, end_lr=10, num_iter=30, accumulation_steps=3)
    if form == "dict":
        model2, opt2, _ = make("SGD", lr=1e-4, momentum=0.9)
        data2 = [{"x": x, "label": y} for x, y in data]
    else:
        model2 = TwoInputs()
        opt2 = rg.optim.SGD(model2.parameters(), lr=1e-4, momentum=0.9)
        data2 = [(x[:, :40], x[:, 40:], y) if form == "three" else ((x[:, :40], x[:, 40:]), y) for x, y in data]
    got = rg.train.LRFinder(model2, opt2, loss_fn).range_test(data2, end_lr=10, num_iter=30, accumulation_steps=3)
    assert got["lr"] == ref["lr"]
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-5)


def test_grad_clip_is_the_trainers():
    """An iteration with ``grad_clip`` is a Trainer step with it: the loss the finder
    records after its first step is the Trainer's after one step from the same start."""
    data = batches()[:1]
    after = {}
    for clip in (None, 0.01):
        model, opt, loss_fn = make("SGD", lr=0.5)
        hist = rg.train.LRFinder(model, opt, loss_fn, grad_clip=clip).range_test(data, end_lr=1.0, num_iter=2,
                                                                                 smooth_f=0.0)
        model2, opt2, _ = make("SGD", lr=0.5)
        trainer = rg.train.Trainer(model2, opt2, loss_fn, grad_clip=clip, metrics=())
        trainer.fit(data, epochs=1)
        assert hist["loss"][0] == trainer.history["train_loss"][0]
        assert hist["loss"][1] == pytest.approx(trainer.evaluate(data)["loss"], rel=1e-6)
        after[clip] = hist["loss"][1]
    assert after[0.01] > after[None] + 0.02  # the clipped step is much shorter
