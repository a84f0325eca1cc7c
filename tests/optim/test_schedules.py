"""``rg.optim.schedules``: closed-form values, the equivalent torch scheduler
sequences, and schedules as the ``lr`` of an optimizer (exact resume)."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

import retrograd as rg
from optim_helpers import Net, assert_close, initial_weights, snapshot

S = rg.optim.schedules
N = 1000


def torch_lrs(make, steps: int = N, lr: float = 0.1) -> list[float]:
    """The lr of steps 0 .. steps-1 under the torch scheduler ``make(opt)``."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def values(schedule, steps: int = N) -> list[float]:
    return [schedule(t) for t in range(steps)]


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ----------------------------------------------------------------------------- closed forms
def test_closed_form_values():
    assert values(S.constant(0.3), 3) == [0.3, 0.3, 0.3]
    assert values(S.linear(1.0, 3.0, 4), 6) == [1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    assert values(S.linear_warmup(0.8, 4), 6) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.8], abs=1e-15)
    assert values(S.linear_warmup(0.8, 0), 2) == [0.8, 0.8]
    c = S.cosine_decay(1.0, 4, final_lr=0.2)
    assert c(0) == 1.0 and c(4) == c(10) == pytest.approx(0.2, abs=1e-15)
    assert c(2) == pytest.approx(0.6, abs=1e-15)
    assert c(1) == pytest.approx(0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-15)
    e = S.exponential_decay(2.0, 0.5, transition_steps=2)
    assert [e(t) for t in (0, 1, 2, 4)] == [2.0, 2.0 * 0.5 ** 0.5, 1.0, 0.5]
    es = S.exponential_decay(2.0, 0.5, transition_steps=2, staircase=True)
    assert values(es, 5) == [2.0, 2.0, 1.0, 1.0, 0.5]
    assert S.exponential_decay(1.0, 0.5, final_lr=0.1)(10) == 0.1
    assert S.exponential_decay(1.0, 2.0, final_lr=8.0)(10) == 8.0
    assert values(S.step_decay(1.0, step_size=2, gamma=0.5), 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert values(S.step_decay(1.0, milestones=[3, 1, 3], gamma=0.5), 5) == [1.0, 0.5, 0.5, 0.125, 0.125]
    p = S.polynomial_decay(1.0, 4, final_lr=0.2, power=2.0)
    assert [p(t) for t in (0, 2, 4, 9)] == [1.0, 0.8 * 0.25 + 0.2, 0.2, 0.2]
    r = S.cosine_restarts(1.0, 2, T_mult=2)
    # periods 2, 4, 8: restarts at steps 2 and 6
    assert [r(t) for t in (0, 2, 6)] == [1.0, 1.0, 1.0]
    assert r(1) == pytest.approx(0.5, abs=1e-15) and r(4) == pytest.approx(0.5, abs=1e-15)
    y = S.cyclic(0.1, 0.5, 2, mode="triangular2")
    assert [y(t) for t in range(9)] == pytest.approx([0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3, 0.2, 0.1], abs=1e-15)


def test_onecycle_closed_form():
    lin = S.linear_onecycle(1.0, 11, pct_start=0.5, div_factor=10.0, final_div_factor=100.0)
    # up from 0.1 towards 1.0 at step 4.5, down to 0.001 at step 10: the peak steps are 4 and 5
    assert lin(0) == pytest.approx(0.1, abs=1e-15)
    assert lin(4) == pytest.approx(0.1 + 0.9 * 4 / 4.5, rel=1e-15)
    assert lin(5) == pytest.approx(1.0 + (0.001 - 1.0) * 0.5 / 5.5, rel=1e-15)
    assert lin(10) == lin(50) == pytest.approx(0.001, abs=1e-15)
    cos3 = S.cosine_onecycle(1.0, 100, three_phase=True)
    v = values(cos3, 100)
    assert v[0] == pytest.approx(0.04) and v[29] == pytest.approx(1.0) and v[58] == pytest.approx(0.04)
    assert v[99] == pytest.approx(0.04 / 1e4)


def test_join_schedules():
    j = S.join_schedules([S.constant(1.0), S.linear(0.0, 1.0, 10), S.constant(0.5)], [3, 8])
    assert values(j, 10) == [1.0, 1.0, 1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5]
    with pytest.raises(ValueError, match="join_schedules: expected one more schedule than boundaries, got 2 "
                                         "schedules and 2 boundaries"):
        S.join_schedules([S.constant(1.0)] * 2, [1, 2])
    with pytest.raises(ValueError, match=r"join_schedules: boundaries must be non-decreasing, got \[5, 2\]"):
        S.join_schedules([S.constant(1.0)] * 3, [5, 2])
    with pytest.raises(TypeError, match=r"join_schedules: schedules\[1\] is float, not a callable step -> lr"):
        S.join_schedules([S.constant(1.0), 0.5], [5])


def test_argument_errors():
    with pytest.raises(ValueError, match="cosine_decay: decay_steps must be a positive integer, got 0"):
        S.cosine_decay(1.0, 0)
    with pytest.raises(ValueError, match=r"warmup_cosine: total_steps \(10\) must exceed warmup_steps \(10\)"):
        S.warmup_cosine(1.0, 10, 10)
    with pytest.raises(ValueError, match="step_decay: give exactly one of step_size and milestones"):
        S.step_decay(1.0)
    with pytest.raises(ValueError, match="exponential_decay: decay_rate must be positive, got 0"):
        S.exponential_decay(1.0, 0)
    with pytest.raises(ValueError, match="cyclic: mode must be 'triangular', 'triangular2' or 'exp_range', got 'x'"):
        S.cyclic(0.1, 1.0, mode="x")
    with pytest.raises(ValueError, match=r"cosine_onecycle: pct_start must lie in \[0, 1\], got 1.5"):
        S.cosine_onecycle(1.0, 10, pct_start=1.5)


def test_schedules_are_pure_and_named():
    s = S.warmup_cosine(1e-3, 100, 1000, final_lr=1e-5)
    assert values(s) == values(s)
    assert s.__name__ == "warmup_cosine" and "warmup_steps=100" in s.__doc__
    assert isinstance(s(3), float)


# ----------------------------------------------------------------------------- against torch
L = torch.optim.lr_scheduler

EXACT = {  # schedule and torch scheduler computing the same floats (closed forms in torch)
    "cosine_onecycle": (S.cosine_onecycle(0.1, N), lambda o: L.OneCycleLR(o, 0.1, total_steps=N, cycle_momentum=False)),
    "linear_onecycle-three_phase": (
        S.linear_onecycle(0.3, N, pct_start=0.2, div_factor=10.0, final_div_factor=50.0, three_phase=True),
        lambda o: L.OneCycleLR(o, 0.3, total_steps=N, pct_start=0.2, anneal_strategy="linear", div_factor=10.0,
                               final_div_factor=50.0, three_phase=True, cycle_momentum=False)),
    "cyclic-triangular2": (S.cyclic(0.01, 0.1, 37, 80, mode="triangular2"),
                           lambda o: L.CyclicLR(o, 0.01, 0.1, 37, 80, mode="triangular2", cycle_momentum=False)),
    "cyclic-exp_range": (S.cyclic(0.01, 0.1, 50, mode="exp_range", gamma=0.999),
                         lambda o: L.CyclicLR(o, 0.01, 0.1, 50, mode="exp_range", gamma=0.999)),
    "cosine_restarts": (S.cosine_restarts(0.1, 10, T_mult=2, final_lr=1e-3),
                        lambda o: L.CosineAnnealingWarmRestarts(o, 10, T_mult=2, eta_min=1e-3)),
    "lambda-of-schedule": (S.polynomial_decay(0.1, 700, power=3.0),
                           lambda o: L.LambdaLR(o, lambda t: (1.0 - min(700, t) / 700) ** 3.0)),
}

# schedule and chainable torch scheduler: equal up to rounding (torch updates recursively)
CLOSE = {
    "linear_warmup": (S.linear_warmup(0.1, 200, start_lr=0.001),
                      lambda o: L.LinearLR(o, start_factor=0.01, total_iters=200)),
    "cosine_decay": (S.cosine_decay(0.1, N, final_lr=1e-4), lambda o: L.CosineAnnealingLR(o, N, eta_min=1e-4)),
    "warmup_cosine": (S.warmup_cosine(0.1, 100, N, start_lr=0.01, final_lr=1e-4),
                      lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.1, total_iters=100),
                                                   L.CosineAnnealingLR(o, N - 100, eta_min=1e-4)], [100])),
    "exponential_decay": (S.exponential_decay(0.1, 0.997), lambda o: L.ExponentialLR(o, 0.997)),
    "step_decay": (S.step_decay(0.1, step_size=90, gamma=0.7), lambda o: L.StepLR(o, 90, gamma=0.7)),
    "step_decay-milestones": (S.step_decay(0.1, milestones=[100, 400, 400, 800], gamma=0.5),
                              lambda o: L.MultiStepLR(o, [100, 400, 400, 800], gamma=0.5)),
    "polynomial_decay": (S.polynomial_decay(0.1, 800, power=2.0), lambda o: L.PolynomialLR(o, 800, power=2.0)),
    "join_schedules": (S.join_schedules([S.constant(0.1 / 3), S.exponential_decay(0.1, 0.99)], [5]),
                       lambda o: L.SequentialLR(o, [L.ConstantLR(o), L.ExponentialLR(o, 0.99)], [5])),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_equals_torch_scheduler_exactly(name):
    schedule, make = EXACT[name]
    assert values(schedule) == torch_lrs(make)


@pytest.mark.parametrize("name", list(CLOSE))
def test_matches_torch_scheduler(name):
    schedule, make = CLOSE[name]
    want = torch_lrs(make)
    assert rel_err(values(schedule), want) < 1e-12
    assert len(set(want)) > 2


# ----------------------------------------------------------------------------- as an optimizer's lr
@pytest.mark.parametrize("opt_name,kw", [("SGD", {"momentum": 0.9}), ("Adam", {}), ("AdamW", {"weight_decay": 0.1}),
                                         ("RMSprop", {})])
def test_schedule_as_lr_matches_torch_with_lr_set_each_step(opt_name, kw):
    schedule = S.warmup_cosine(0.05, 5, 30, start_lr=0.005, final_lr=1e-4)
    w = initial_weights("float64")
    r_net, t_net = Net(rg, w), Net(torch, w)
    r_opt = getattr(rg.optim, opt_name)(r_net.params, lr=schedule, **kw)
    t_opt = getattr(torch.optim, opt_name)(t_net.params, lr=schedule(0), foreach=False, **kw)
    assert r_opt.param_groups[0]["lr"] == schedule(0) and r_opt.param_groups[0]["schedule_step"] == 0
    for i in range(40):
        t_opt.param_groups[0]["lr"] = schedule(i)
        for net, opt in ((r_net, r_opt), (t_net, t_opt)):
            opt.zero_grad()
            net.loss(i).backward()
            opt.step()
        # after a step the group shows the lr of the next one
        assert r_opt.param_groups[0]["lr"] == schedule(i + 1)
    assert r_opt.param_groups[0]["schedule_step"] == 40
    assert_close(r_net.values(), t_net.values(), "float64")


def test_schedule_state_dict_resume_is_exact():
    schedule = S.cosine_onecycle(0.1, 30)
    w = initial_weights("float64")

    def run(steps, net=None, opt=None, start=0):
        net = net or Net(rg, w)
        opt = opt or rg.optim.Adam(net.params, lr=schedule)
        for i in range(start, start + steps):
            opt.zero_grad()
            net.loss(i).backward()
            opt.step()
        return net, opt

    full_net, full_opt = run(20)
    half_net, half_opt = run(10)
    sd = snapshot(half_opt.state_dict())
    assert sd["param_groups"][0]["schedule_step"] == 10
    assert "lr_schedule" not in sd["param_groups"][0]  # code is not state
    pickle.dumps(sd)
    net2 = Net(rg, w)
    for p, v in zip(net2.params, half_net.values()):
        p.data[...] = v
    opt2 = rg.optim.Adam(net2.params, lr=schedule)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["schedule_step"] == 10 and opt2.param_groups[0]["lr"] == schedule(10)
    run(10, net2, opt2, start=10)
    for a, b in zip(net2.values(), full_net.values()):
        np.testing.assert_array_equal(a, b)
    assert opt2.param_groups[0]["lr"] == full_opt.param_groups[0]["lr"] == schedule(20)


def test_schedule_per_group_and_validation():
    a, b = rg.zeros(2, requires_grad=True), rg.zeros(2, requires_grad=True)
    opt = rg.optim.SGD([{"params": [a], "lr": S.linear_warmup(1.0, 4)}, {"params": [b], "lr": 0.5}])
    for _ in range(2):
        a.grad, b.grad = rg.ones(2), rg.ones(2)
        opt.step()
    # a: lr 0 then 0.25; b: a constant 0.5
    np.testing.assert_allclose(a.data, [-0.25, -0.25])
    np.testing.assert_allclose(b.data, [-1.0, -1.0])
    assert "schedule_step" not in opt.param_groups[1]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        rg.optim.Adam([rg.zeros(2, requires_grad=True)], lr=lambda step: -1.0)


# ----------------------------------------------------------------------------- plotting
def test_plot_schedule_writes_png_with_the_schedule(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    schedule = S.warmup_cosine(1e-3, 50, 400, final_lr=1e-5)
    path = tmp_path / "schedule.png"
    ax = rg.optim.plot_schedule(schedule, 400, path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = ax.lines[0]
    assert list(line.get_xdata()) == list(range(400))
    assert list(line.get_ydata()) == values(schedule, 400)
    assert ax.get_title() == "warmup_cosine" and not hasattr(ax, "momentum_ax")


def test_plot_scheduler_factory_with_cycled_momentum(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def factory():
        opt = rg.optim.Adam([rg.zeros(1, requires_grad=True)], lr=0.01)
        return rg.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=200)

    ax = Figure().add_subplot()
    out = rg.optim.plot_schedule(factory, 200, ax=ax, path=str(tmp_path / "onecycle.png"))
    assert out is ax and (tmp_path / "onecycle.png").stat().st_size > 1000
    # the same sequence as torch's OneCycleLR, lr and beta1
    t_opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    t_s = torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=0.01, total_steps=200)
    lrs, betas = [], []
    for _ in range(200):
        lrs.append(t_opt.param_groups[0]["lr"])
        betas.append(t_opt.param_groups[0]["betas"][0])
        t_opt.step()
        t_s.step()
    assert list(ax.lines[0].get_ydata()) == lrs
    assert list(ax.momentum_ax.lines[0].get_ydata()) == betas


def test_plot_schedule_errors(monkeypatch):
    import sys

    opt = rg.optim.SGD([rg.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match=r"plot_schedule: pass a factory that builds the scheduler"):
        rg.optim.plot_schedule(rg.optim.lr_scheduler.StepLR(opt, 3), 10, path="unused.png")
    with pytest.raises(TypeError, match="ReduceLROnPlateau follows a metric measured in training"):
        rg.optim.plot_schedule(lambda: rg.optim.lr_scheduler.ReduceLROnPlateau(opt), 10, path="unused.png")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    with pytest.raises(ImportError, match=r"plot_schedule needs matplotlib, which is not installed: "
                                          r"pip install retrograd\[plot\]"):
        rg.optim.plot_schedule(S.constant(0.1), 10)
