"""Trainer: history, evaluation, gradient accumulation, clipping, scheduler intervals."""
import math

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import Trainer, clip_grad_norm_
from retrograd.train.callbacks import Callback, LRMonitor

from train_helpers import mlp


def _subset(ds, n):
    return rg.data.Subset(ds, np.arange(n))


def test_fit_history_keys_and_values(digits):
    model = mlp(0)
    opt = rg.optim.Adam(model.parameters(), lr=1e-2)
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), metrics=("accuracy", "top3_accuracy", "f1"), seed=0)
    train = rg.data.DataLoader(_subset(digits, 1500), batch_size=100, shuffle=True)
    val = rg.data.DataLoader(rg.data.Subset(digits, np.arange(1500, 1797)), batch_size=100)
    h = tr.fit(train, val, epochs=3)
    assert set(h) == {"train_loss", "val_loss", "val_accuracy", "val_top3_accuracy", "val_f1", "lr", "epoch_time",
                      "samples_per_sec"}
    assert all(len(v) == 3 for v in h.values())
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.85 and h["val_top3_accuracy"][-1] >= h["val_accuracy"][-1]
    assert h["lr"] == [1e-2] * 3 and all(t > 0 for t in h["epoch_time"])
    assert tr.state.epoch == 3 and tr.state.global_step == 45 and tr.state.batch_in_epoch == 0
    # evaluate() is what the history reports, and agrees with a direct computation
    ev = tr.evaluate(val)
    assert ev["loss"] == pytest.approx(h["val_loss"][-1]) and ev["accuracy"] == h["val_accuracy"][-1]
    x, y = digits.get_batch(np.arange(1500, 1797))
    with rg.no_grad():
        out = model.eval()(x)
    assert ev["loss"] == pytest.approx(rg.nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert ev["accuracy"] == pytest.approx(float((out.numpy().argmax(1) == y.numpy()).mean()))
    pred = tr.predict(val)
    assert pred.shape == (297, 10)
    np.testing.assert_allclose(pred.numpy(), out.numpy(), rtol=1e-5, atol=1e-6)


def test_train_loss_is_sample_weighted_mean(digits):
    # 10 samples, batches of 4, 4, 2: the epoch loss weighs each sample once
    class Record(Callback):
        def __init__(self):
            self.rows = []

        def on_batch_end(self, trainer, i, logs):
            self.rows.append((logs["loss"], logs["batch_size"]))

    rec = Record()
    model = mlp(0)
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.0), rg.nn.CrossEntropyLoss(), callbacks=[rec])
    h = tr.fit(rg.data.DataLoader(_subset(digits, 10), batch_size=4), epochs=1)
    assert [n for _, n in rec.rows] == [4, 4, 2]
    assert h["train_loss"][0] == pytest.approx(sum(l * n for l, n in rec.rows) / 10)


@pytest.mark.parametrize("n,k", [(32, 4), (40, 3)])
def test_accumulation_equals_larger_batch(digits, n, k):
    """accumulate=k with batches of 8 == batches of 8k (mean loss); the last, partial group
    (40 samples, k=3: groups of 24 and 16) is normalised by its own size."""
    ds = _subset(digits, n)
    a = mlp(0)
    Trainer(a, rg.optim.SGD(a.parameters(), lr=0.5), rg.nn.CrossEntropyLoss(), accumulate=k
            ).fit(rg.data.DataLoader(ds, batch_size=8), epochs=2)
    b = mlp(0)
    Trainer(b, rg.optim.SGD(b.parameters(), lr=0.5), rg.nn.CrossEntropyLoss()
            ).fit(rg.data.DataLoader(ds, batch_size=8 * k), epochs=2)
    c = mlp(0)  # without accumulation the result is clearly different
    Trainer(c, rg.optim.SGD(c.parameters(), lr=0.5), rg.nn.CrossEntropyLoss()
            ).fit(rg.data.DataLoader(ds, batch_size=8), epochs=2)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        np.testing.assert_allclose(pa.detach().numpy(), pb.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
        assert np.abs(pa.detach().numpy() - pc.detach().numpy()).max() > 1e-3


def test_accumulation_step_count(digits):
    model = mlp(0)
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.CrossEntropyLoss(), accumulate=3)
    tr.fit(rg.data.DataLoader(_subset(digits, 70), batch_size=10), epochs=2)  # 7 batches: groups 3, 3, 1
    assert tr.state.global_step == 6


def test_grad_clip_limits_global_norm(digits):
    norms = []

    class Measure(Callback):
        def on_before_step(self, trainer, i):
            norms.append(math.sqrt(sum(float((p.grad.numpy().astype(np.float64) ** 2).sum())
                                       for p in trainer.params)))

    model = mlp(0)
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.CrossEntropyLoss(), grad_clip=0.05,
                 callbacks=[Measure()])
    tr.fit(rg.data.DataLoader(_subset(digits, 100), batch_size=25), epochs=1)
    assert len(norms) == 4 and max(norms) <= 0.05 * (1 + 1e-5)
    assert tr.last_grad_norm > 0.05  # the unclipped norm is reported


def test_clip_grad_norm_matches_torch():
    import torch
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,)]]
    ps = [rg.nn.Parameter(rg.zeros(*g.shape)) for g in gs]
    for p, g in zip(ps, gs):
        p.grad = rg.tensor(g.copy())
    tps = [torch.zeros(g.shape, requires_grad=True) for g in gs]
    for p, g in zip(tps, gs):
        p.grad = torch.tensor(g)
    total = clip_grad_norm_(ps, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, 1.0)
    assert clip_grad_norm_ is rg.nn.utils.clip_grad_norm_  # one clip_grad_norm_: a 0-d Tensor, as torch's
    assert float(total) == pytest.approx(float(ttotal), rel=1e-6)
    for p, t in zip(ps, tps):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_grad_clip_steps_as_a_torch_loop(digits, accumulate):
    """Trainer(grad_clip=c, accumulate=k) takes the steps of a PyTorch loop that calls
    ``(loss / k).backward()``, ``torch.nn.utils.clip_grad_norm_(params, c)``, ``step()``, ``zero_grad()``."""
    import torch
    model = mlp(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    with torch.no_grad():
        for t, p in zip(tmodel.parameters(), model.parameters()):
            t.copy_(torch.from_numpy(p.detach().numpy().copy()))
    loader = rg.data.DataLoader(_subset(digits, 120), batch_size=20)  # 6 batches
    norms = []

    class Norm(Callback):
        def on_before_step(self, trainer, i):
            norms.append(trainer.last_grad_norm)

    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), rg.nn.CrossEntropyLoss(),
                 grad_clip=0.05, accumulate=accumulate, callbacks=[Norm()], metrics=())
    tr.fit(loader, epochs=1)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.5, momentum=0.9)
    tnorms = []
    for i, (x, y) in enumerate(loader):
        loss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x.numpy())), torch.from_numpy(y.numpy()))
        (loss / accumulate if accumulate > 1 else loss).backward()
        if (i + 1) % accumulate == 0:
            tnorms.append(float(torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.05)))
            topt.step()
            topt.zero_grad()
    assert isinstance(tr.last_grad_norm, float) and len(norms) == len(tnorms) == 6 // accumulate
    np.testing.assert_allclose(norms, tnorms, rtol=1e-5)
    for p, t in zip(model.parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_scheduler_per_step_and_per_epoch(digits):
    loader = rg.data.DataLoader(_subset(digits, 40), batch_size=10)  # 4 steps per epoch
    for interval, expected in (("step", [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125]),
                               ("epoch", [0.1] * 4 + [0.1] * 4)):
        model = mlp(0)
        opt = rg.optim.SGD(model.parameters(), lr=0.1)
        sched = rg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        mon = LRMonitor()
        tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, scheduler_interval=interval,
                     callbacks=[mon])
        h = tr.fit(loader, epochs=2)
        # the lr logged after each batch is the one the next step uses
        got = [0.1] + mon.lrs[0][:-1]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        if interval == "epoch":
            assert h["lr"] == [0.1, 0.1] and opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_reduce_on_plateau_gets_validation_loss(digits):
    model = mlp(0)
    opt = rg.optim.SGD(model.parameters(), lr=1e-6)  # too small to improve the loss by the 1e-4 threshold
    sched = rg.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched)
    loader = rg.data.DataLoader(_subset(digits, 20), batch_size=10)
    h = tr.fit(loader, loader, epochs=3)
    assert h["lr"] == pytest.approx([1e-6, 1e-6, 5e-7], rel=1e-12)


def test_stop_training_from_callback(digits):
    class StopAt(Callback):
        def on_batch_end(self, trainer, i, logs):
            if trainer.state.global_step == 3:
                trainer.stop_training = True

    model = mlp(0)
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.CrossEntropyLoss(), callbacks=[StopAt()])
    h = tr.fit(rg.data.DataLoader(_subset(digits, 100), batch_size=10), epochs=5)
    assert tr.state.global_step == 3 and tr.state.batch_in_epoch == 3 and h == {}


def test_batch_formats_and_regression_metric():
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((64, 3)).astype(np.float32)
    x2 = rng.standard_normal((64, 2)).astype(np.float32)
    y = (x1.sum(1, keepdims=True) - x2.sum(1, keepdims=True)).astype(np.float32)

    class Two(rg.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = rg.nn.Linear(3, 1)
            self.b = rg.nn.Linear(2, 1)

        def forward(self, u, v):
            return self.a(u) + self.b(v)

    rg.manual_seed(0)
    model = Two()
    tr = Trainer(model, rg.optim.Adam(model.parameters(), lr=0.05), rg.nn.MSELoss(), metrics=("mae",))
    ds = rg.data.TensorDataset(x1, x2, y)
    h = tr.fit(rg.data.DataLoader(ds, batch_size=16), rg.data.DataLoader(ds, batch_size=16), epochs=30)
    assert h["val_mae"][-1] < 0.05
    with rg.no_grad():
        pred = model(rg.tensor(x1), rg.tensor(x2)).numpy()
    assert h["val_mae"][-1] == pytest.approx(float(np.abs(pred - y).mean()), rel=1e-5)
    assert Trainer.unpack_batch({"x": 1, "y": 2}) == ((1,), 2)
    assert Trainer.unpack_batch(((1, 2), 3)) == ((1, 2), 3)


def test_bad_arguments():
    model = mlp(0)
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="scheduler_interval must be 'epoch' or 'step', got 'batch'"):
        Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler_interval="batch")
    with pytest.raises(ValueError, match="accumulate must be a positive int, got 0"):
        Trainer(model, opt, rg.nn.CrossEntropyLoss(), accumulate=0)
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        Trainer(model, opt, rg.nn.CrossEntropyLoss(), metrics=("acuracy",))
