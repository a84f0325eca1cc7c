"""``rg.optim.lr_scheduler`` against ``torch.optim.lr_scheduler``: the same optimizer
setup in both libraries (two param groups with different lrs), 1,000 scheduler
steps, and every step's ``get_last_lr()``, the groups' lrs and their momentum or
``betas`` must be equal, float for float."""
from __future__ import annotations

import copy
import math
import pickle
import warnings

import numpy as np
import pytest
import torch

import retrograd as rg
from optim_helpers import NAMES, Net, assert_close, initial_weights

STEPS = 1000
LRS = (0.1, 0.05)


def build(lib, opt_name: str, opt_kw: dict, sched, lrs=LRS):
    """An optimizer of ``lib`` over one zero parameter per lr, and ``sched(lib, opt)``."""
    params = [lib.zeros(2, requires_grad=True) for _ in lrs]
    opt = getattr(lib.optim, opt_name)([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], **opt_kw)
    return opt, sched(lib, opt)


def observe(opt, sched) -> tuple:
    groups = opt.param_groups
    mom = [(tuple(g["betas"]) if "betas" in g else g.get("momentum")) for g in groups]
    return list(sched.get_last_lr()), [g["lr"] for g in groups], mom


def compare(opt_name: str, opt_kw: dict, sched, steps: int = STEPS, hook=None, step_args=None) -> int:
    """Step both libraries ``steps`` times; assert equality at every step. Returns
    how many distinct lrs were seen (to show the schedule did something)."""
    t_opt, t_s = build(torch, opt_name, opt_kw, sched)
    r_opt, r_s = build(rg, opt_name, opt_kw, sched)
    assert observe(r_opt, r_s) == observe(t_opt, t_s), "after construction"
    seen = set()
    for i in range(steps):
        t_opt.step()
        r_opt.step()
        if hook is not None:
            hook(i, t_opt)
            hook(i, r_opt)
        args = () if step_args is None else step_args(i)
        t_s.step(*args)
        r_s.step(*args)
        want, got = observe(t_opt, t_s), observe(r_opt, r_s)
        assert got == want, f"step {i}: torch {want}, retrograd {got}"
        seen.add(got[1][0])
    return len(seen)


def lam(lib):
    return lib.optim.lr_scheduler


CASES = {
    "LambdaLR": ("SGD", {}, lambda lib, o: lam(lib).LambdaLR(o, lambda e: 1.0 / (1.0 + 0.01 * e))),
    "LambdaLR-per-group": ("SGD", {}, lambda lib, o: lam(lib).LambdaLR(
        o, [lambda e: 0.99 ** e, lambda e: 1.0 + math.sin(e / 50.0)])),
    "MultiplicativeLR": ("SGD", {}, lambda lib, o: lam(lib).MultiplicativeLR(o, lambda e: 0.995)),
    "MultiplicativeLR-varying": ("SGD", {}, lambda lib, o: lam(lib).MultiplicativeLR(
        o, lambda e: 1.01 if e % 7 else 0.9)),
    "StepLR": ("SGD", {"momentum": 0.9}, lambda lib, o: lam(lib).StepLR(o, step_size=30)),
    "StepLR-gamma": ("Adam", {}, lambda lib, o: lam(lib).StepLR(o, step_size=97, gamma=0.7)),
    "MultiStepLR": ("SGD", {}, lambda lib, o: lam(lib).MultiStepLR(o, milestones=[100, 300, 700], gamma=0.5)),
    "MultiStepLR-repeated": ("SGD", {}, lambda lib, o: lam(lib).MultiStepLR(o, milestones=[500, 200, 200])),
    "ConstantLR": ("SGD", {}, lambda lib, o: lam(lib).ConstantLR(o)),
    "ConstantLR-long": ("SGD", {}, lambda lib, o: lam(lib).ConstantLR(o, factor=0.25, total_iters=400)),
    "LinearLR": ("SGD", {}, lambda lib, o: lam(lib).LinearLR(o, start_factor=0.1, total_iters=200)),
    "LinearLR-decay": ("SGD", {}, lambda lib, o: lam(lib).LinearLR(o, start_factor=1.0, end_factor=0.05,
                                                                     total_iters=900)),
    "ExponentialLR": ("SGD", {}, lambda lib, o: lam(lib).ExponentialLR(o, gamma=0.995)),
    "PolynomialLR": ("SGD", {}, lambda lib, o: lam(lib).PolynomialLR(o, total_iters=600, power=2.0)),
    "PolynomialLR-linear": ("SGD", {}, lambda lib, o: lam(lib).PolynomialLR(o, total_iters=1000)),
    "CosineAnnealingLR": ("SGD", {}, lambda lib, o: lam(lib).CosineAnnealingLR(o, T_max=1000)),
    "CosineAnnealingLR-periodic": ("SGD", {}, lambda lib, o: lam(lib).CosineAnnealingLR(o, T_max=90,
                                                                                          eta_min=1e-3)),
    "CosineAnnealingWarmRestarts": ("SGD", {}, lambda lib, o: lam(lib).CosineAnnealingWarmRestarts(o, T_0=50)),
    "CosineAnnealingWarmRestarts-mult": ("SGD", {}, lambda lib, o: lam(lib).CosineAnnealingWarmRestarts(
        o, T_0=10, T_mult=2, eta_min=1e-3)),
    "CyclicLR-triangular": ("SGD", {"momentum": 0.9}, lambda lib, o: lam(lib).CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=100)),
    "CyclicLR-triangular2-asym": ("SGD", {"momentum": 0.9}, lambda lib, o: lam(lib).CyclicLR(
        o, base_lr=[0.01, 0.02], max_lr=[0.1, 0.3], step_size_up=37, step_size_down=80, mode="triangular2",
        base_momentum=[0.8, 0.85], max_momentum=0.95)),
    "CyclicLR-exp_range-adam": ("Adam", {}, lambda lib, o: lam(lib).CyclicLR(
        o, base_lr=0.001, max_lr=0.01, step_size_up=50, mode="exp_range", gamma=0.998)),
    "CyclicLR-scale_fn-iterations": ("AdamW", {}, lambda lib, o: lam(lib).CyclicLR(
        o, base_lr=0.001, max_lr=0.01, step_size_up=25, scale_fn=lambda x: 1.0 / (1.0 + x / 300.0),
        scale_mode="iterations")),
    "CyclicLR-scale_fn-cycle-no-momentum": ("SGD", {}, lambda lib, o: lam(lib).CyclicLR(
        o, base_lr=0.001, max_lr=0.01, step_size_up=60, scale_fn=lambda x: 0.8 ** x, cycle_momentum=False)),
    "OneCycleLR": ("SGD", {"momentum": 0.9}, lambda lib, o: lam(lib).OneCycleLR(o, max_lr=0.1, total_steps=STEPS)),
    "OneCycleLR-linear-adam": ("Adam", {}, lambda lib, o: lam(lib).OneCycleLR(
        o, max_lr=[0.01, 0.02], total_steps=STEPS, anneal_strategy="linear", pct_start=0.25)),
    "OneCycleLR-three_phase": ("SGD", {"momentum": 0.9, "nesterov": True}, lambda lib, o: lam(lib).OneCycleLR(
        o, max_lr=0.5, epochs=10, steps_per_epoch=100, three_phase=True, div_factor=10.0, final_div_factor=100.0,
        base_momentum=0.8, max_momentum=[0.9, 0.99])),
    "OneCycleLR-no-momentum": ("RMSprop", {}, lambda lib, o: lam(lib).OneCycleLR(
        o, max_lr=0.01, total_steps=STEPS, cycle_momentum=False)),
    "SequentialLR-warmup-cosine": ("SGD", {}, lambda lib, o: lam(lib).SequentialLR(
        o, [lam(lib).LinearLR(o, start_factor=0.01, total_iters=50), lam(lib).CosineAnnealingLR(o, T_max=950)],
        milestones=[50])),
    "SequentialLR-three": ("SGD", {}, lambda lib, o: lam(lib).SequentialLR(
        o, [lam(lib).ConstantLR(o, factor=0.5, total_iters=20), lam(lib).ExponentialLR(o, gamma=0.99),
            lam(lib).StepLR(o, step_size=100, gamma=0.3)], milestones=[10, 300])),
    "SequentialLR-restarts-poly": ("Adam", {}, lambda lib, o: lam(lib).SequentialLR(
        o, [lam(lib).CosineAnnealingWarmRestarts(o, T_0=40), lam(lib).PolynomialLR(o, total_iters=400)],
        milestones=[200])),
    "ChainedScheduler": ("SGD", {}, lambda lib, o: lam(lib).ChainedScheduler(
        [lam(lib).ConstantLR(o, factor=0.1, total_iters=4), lam(lib).ExponentialLR(o, gamma=0.999)])),
    "ChainedScheduler-cosine-step": ("SGD", {}, lambda lib, o: lam(lib).ChainedScheduler(
        [lam(lib).CosineAnnealingLR(o, T_max=200), lam(lib).MultiStepLR(o, milestones=[250, 600], gamma=0.5)],
        optimizer=o)),
    "ChainedScheduler-of-SequentialLR": ("SGD", {}, lambda lib, o: lam(lib).ChainedScheduler([
        lam(lib).SequentialLR(o, [lam(lib).LinearLR(o, start_factor=0.1, total_iters=10),
                                  lam(lib).ExponentialLR(o, gamma=0.998)], milestones=[10]),
        lam(lib).StepLR(o, step_size=250, gamma=0.5)])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_every_step(name):
    opt_name, opt_kw, sched = CASES[name]
    n = compare(opt_name, opt_kw, sched)
    assert n > 1, f"{name}: the lr never changed"


def test_cosine_annealing_follows_an_lr_changed_from_outside():
    def halve_then_bump(i, opt):
        if i in (123, 500):
            for g in opt.param_groups:
                g["lr"] *= 0.5
        if i == 700:
            opt.param_groups[0]["lr"] = 0.3

    sched = CASES["CosineAnnealingLR-periodic"][2]
    assert compare("SGD", {}, sched, hook=halve_then_bump) > 100


@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_warm_restarts_with_fractional_epochs(T_mult):
    # step(epoch) with the epoch advanced by a fraction per batch, as SGDR is meant to be used
    sched = lambda lib, o: lam(lib).CosineAnnealingWarmRestarts(o, T_0=5, T_mult=T_mult, eta_min=1e-4)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert compare("SGD", {}, sched, steps=600, step_args=lambda i: (i / 7,)) > 100


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR-repeated", "ConstantLR-long", "LinearLR",
                                  "ExponentialLR", "PolynomialLR", "CosineAnnealingLR-periodic"])
def test_step_with_epoch_uses_the_closed_form(name):
    opt_name, opt_kw, sched = CASES[name]
    epochs = [3, 17, 17, 250, 101, 999, 40, 0, 600]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare(opt_name, opt_kw, sched, steps=len(epochs), step_args=lambda i: (epochs[i],))


def test_onecycle_past_total_steps_raises_like_torch():
    for lib in (torch, rg):
        opt, s = build(lib, "SGD", {"momentum": 0.9}, lambda lib, o: lam(lib).OneCycleLR(o, 0.1, total_steps=10))
        for _ in range(10):
            opt.step()
            s.step()
        with pytest.raises(ValueError, match="Tried to step 11 times. The specified number of total steps is 10"):
            s.step()


# ----------------------------------------------------------------------------- ReduceLROnPlateau
def metric_sequence(n: int = STEPS, seed: int = 0) -> list[float]:
    """A validation loss: falling, with noise, flattening out, with a few jumps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    loss = 1.0 / (1.0 + t / 40.0) + 0.02 * rng.standard_normal(n)
    loss[rng.integers(0, n, 15)] += 0.3
    return loss.tolist()


@pytest.mark.parametrize("kw", [
    {},
    {"patience": 3, "factor": 0.5},
    {"patience": 5, "factor": 0.3, "cooldown": 4, "min_lr": 1e-4},
    {"patience": 2, "threshold": 0.05, "threshold_mode": "abs", "min_lr": [1e-3, 1e-5]},
    {"mode": "max", "patience": 4, "factor": 0.7},
    {"mode": "max", "threshold_mode": "abs", "threshold": 1e-3, "patience": 1, "eps": 1e-3},
])
def test_reduce_on_plateau_matches_torch(kw):
    metrics = metric_sequence()
    if kw.get("mode") == "max":
        metrics = [-m for m in metrics]
    sched = lambda lib, o: lam(lib).ReduceLROnPlateau(o, **kw)  # noqa: E731
    t_opt, t_s = build(torch, "SGD", {"momentum": 0.9}, sched)
    r_opt, r_s = build(rg, "SGD", {"momentum": 0.9}, sched)
    for i, m in enumerate(metrics):
        t_s.step(m)
        r_s.step(rg.tensor(np.array(m)) if i % 2 else m)  # a 0-d Tensor works as in torch
        assert observe(r_opt, r_s) == observe(t_opt, t_s), f"step {i}"
        assert (r_s.best, r_s.num_bad_epochs, r_s.cooldown_counter, r_s.last_epoch) == \
               (t_s.best, t_s.num_bad_epochs, t_s.cooldown_counter, t_s.last_epoch)
    assert r_opt.param_groups[0]["lr"] < LRS[0], "the lr was never reduced"


def test_reduce_on_plateau_validation_messages():
    opt, _ = build(rg, "SGD", {}, lambda lib, o: None)
    S = rg.optim.lr_scheduler.ReduceLROnPlateau
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        S(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        S(opt, mode="avg")
    with pytest.raises(ValueError, match="threshold mode pct is unknown!"):
        S(opt, threshold_mode="pct")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 3"):
        S(opt, min_lr=[0, 0, 0])


# ----------------------------------------------------------------------------- SequentialLR + plateau
def test_sequential_with_plateau_stage_forwards_the_metric():
    """Warmup for 5 epochs, then ReduceLROnPlateau: from the milestone on, the lrs
    are those of a torch ReduceLROnPlateau started at the initial lrs and fed the
    same metrics."""
    metrics = metric_sequence(300, seed=1)
    r_opt, r_s = build(rg, "SGD", {}, lambda lib, o: lam(lib).SequentialLR(
        o, [lam(lib).LinearLR(o, start_factor=0.1, total_iters=5),
            lam(lib).ReduceLROnPlateau(o, patience=3, factor=0.5)], milestones=[5]))
    t_opt, t_warm = build(torch, "SGD", {}, lambda lib, o: lam(lib).LinearLR(o, start_factor=0.1, total_iters=5))
    p_opt, p_s = build(torch, "SGD", {}, lambda lib, o: lam(lib).ReduceLROnPlateau(o, patience=3, factor=0.5))
    assert r_s.get_last_lr() == t_warm.get_last_lr() == [0.1 * 0.1, 0.05 * 0.1]
    for i, m in enumerate(metrics):
        r_opt.step()
        r_s.step(m)
        if i < 4:  # epochs 1..4: warmup
            t_opt.step()
            t_warm.step()
            assert r_s.get_last_lr() == t_warm.get_last_lr(), f"step {i}"
        else:  # epoch 5 on: the plateau stage, from the initial lrs
            p_s.step(m)
            assert r_s.get_last_lr() == p_s.get_last_lr() == [g["lr"] for g in r_opt.param_groups], f"step {i}"
    assert r_opt.param_groups[0]["lr"] < 0.1 / 4, "the plateau stage never reduced the lr"


def test_sequential_plateau_stage_needs_the_metric():
    opt, s = build(rg, "SGD", {}, lambda lib, o: lam(lib).SequentialLR(
        o, [lam(lib).ConstantLR(o, total_iters=2), lam(lib).ReduceLROnPlateau(o)], milestones=[2]))
    opt.step()
    s.step()  # still in ConstantLR: no metric needed
    with pytest.raises(ValueError, match=r"SequentialLR.step: the active scheduler is ReduceLROnPlateau, which "
                                         r"needs the metric: call step\(metrics\)"):
        s.step()


def test_chained_scheduler_with_plateau():
    metrics = metric_sequence(200, seed=2)
    r_opt, r_s = build(rg, "SGD", {}, lambda lib, o: lam(lib).ChainedScheduler(
        [lam(lib).ExponentialLR(o, gamma=0.999), lam(lib).ReduceLROnPlateau(o, patience=2)]))
    # the same composition by hand in torch: the exponential step, then the plateau step
    t_opt, t_exp = build(torch, "SGD", {}, lambda lib, o: lam(lib).ExponentialLR(o, gamma=0.999))
    t_plat = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, patience=2)
    for i, m in enumerate(metrics):
        r_opt.step()
        t_opt.step()
        r_s.step(m)
        t_exp.step()
        t_plat.step(m)
        assert r_s.get_last_lr() == [g["lr"] for g in t_opt.param_groups], f"step {i}"
    assert r_opt.param_groups[0]["lr"] < 0.1 * 0.999 ** 200 / 5


# ----------------------------------------------------------------------------- state dicts
def opt_snapshot(opt) -> dict:
    sd = opt.state_dict()
    return {"state": {k: {n: v.detach().numpy().copy() for n, v in s.items()} for k, s in sd["state"].items()},
            "param_groups": copy.deepcopy(sd["param_groups"])}


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip_mid_schedule(name):
    """Save optimizer and scheduler at step 400, load both into fresh ones, run to
    1,000: every lr equals the uninterrupted run (and torch's)."""
    opt_name, opt_kw, sched = CASES[name]
    t_opt, t_s = build(torch, opt_name, opt_kw, sched)
    r_opt, r_s = build(rg, opt_name, opt_kw, sched)
    for _ in range(400):
        for o, s in ((t_opt, t_s), (r_opt, r_s)):
            o.step()
            s.step()
    o_sd, s_sd = opt_snapshot(r_opt), r_s.state_dict()
    s_sd = pickle.loads(pickle.dumps(s_sd))  # plain data: lambdas and the optimizer are left out
    assert "optimizer" not in s_sd
    n_opt, n_s = build(rg, opt_name, opt_kw, sched)
    n_opt.load_state_dict(o_sd)
    n_s.load_state_dict(s_sd)
    assert observe(n_opt, n_s) == observe(t_opt, t_s)
    for i in range(400, STEPS):
        t_opt.step()
        n_opt.step()
        t_s.step()
        n_s.step()
        assert observe(n_opt, n_s) == observe(t_opt, t_s), f"step {i}"


def test_plateau_state_dict_round_trip():
    metrics = metric_sequence(400, seed=3)
    mk = lambda lib, o: lam(lib).ReduceLROnPlateau(o, patience=3, cooldown=2, factor=0.5)  # noqa: E731
    t_opt, t_s = build(torch, "SGD", {}, mk)
    r_opt, r_s = build(rg, "SGD", {}, mk)
    for m in metrics[:150]:
        t_s.step(m)
        r_s.step(m)
    n_opt, n_s = build(rg, "SGD", {}, mk)
    n_opt.load_state_dict(opt_snapshot(r_opt))
    n_s.load_state_dict(pickle.loads(pickle.dumps(r_s.state_dict())))
    for i, m in enumerate(metrics[150:]):
        t_s.step(m)
        n_s.step(m)
        assert observe(n_opt, n_s) == observe(t_opt, t_s), f"step {150 + i}"


def test_lambda_state_dict_saves_callable_objects():
    class Decay:
        def __init__(self):
            self.rate = 0.9

        def __call__(self, e):
            return self.rate ** e

    opt, s = build(rg, "SGD", {}, lambda lib, o: lam(lib).LambdaLR(o, Decay()))
    s.lr_lambdas[0].rate = 0.5
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [{"rate": 0.5}, {"rate": 0.5}]
    opt2, s2 = build(rg, "SGD", {}, lambda lib, o: lam(lib).LambdaLR(o, [Decay(), lambda e: 1.0]))
    sd["lr_lambdas"][1] = None
    s2.load_state_dict(sd)
    assert s2.lr_lambdas[0].rate == 0.5


def test_resume_with_last_epoch_needs_initial_lr():
    opt, _ = build(rg, "SGD", {}, lambda lib, o: None)
    with pytest.raises(KeyError, match=r"param 'initial_lr' is not specified in param_groups\[0\]"):
        rg.optim.lr_scheduler.StepLR(opt, step_size=3, last_epoch=5)
    # with initial_lr present (a loaded optimizer state), the closed-form position is resumed
    for lib in (torch, rg):
        o, _ = build(lib, "SGD", {}, lambda lib, o: None)
        for g in o.param_groups:
            g["initial_lr"] = g["lr"]
        s = lib.optim.lr_scheduler.StepLR(o, step_size=3, last_epoch=5)
        o.step()
        s.step()
        if lib is torch:
            want = s.get_last_lr()
    assert s.get_last_lr() == want


# ----------------------------------------------------------------------------- warnings and errors
def test_warns_when_scheduler_steps_before_optimizer():
    opt, s = build(rg, "SGD", {}, lambda lib, o: lam(lib).StepLR(o, 2))
    with pytest.warns(UserWarning, match=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"):
        s.step()
    opt2, s2 = build(rg, "SGD", {}, lambda lib, o: lam(lib).StepLR(o, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt2.step()
        s2.step()
    assert opt2._opt_called is True


def test_get_lr_outside_step_warns_and_verbose_is_deprecated():
    opt, s = build(rg, "SGD", {}, lambda lib, o: lam(lib).ExponentialLR(o, 0.5))
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        s.get_lr()
    with pytest.warns(UserWarning, match="The verbose parameter is deprecated"):
        rg.optim.lr_scheduler.StepLR(opt, 3, verbose=True)


def test_step_epoch_is_deprecated():
    opt, s = build(rg, "SGD", {}, lambda lib, o: lam(lib).StepLR(o, 3))
    opt.step()
    with pytest.warns(UserWarning, match="The epoch parameter in `scheduler.step\\(\\)` was not necessary"):
        s.step(7)
    assert s.get_last_lr() == [0.1 * 0.1 ** 2, 0.05 * 0.1 ** 2]


def test_constructor_errors_match_torch():
    S = rg.optim.lr_scheduler
    cases = [
        (lambda lib, o: lib.optim.lr_scheduler.ConstantLR(o, factor=1.5),
         ValueError, "Constant multiplicative factor expected to be between 0 and 1."),
        (lambda lib, o: lib.optim.lr_scheduler.LinearLR(o, start_factor=0),
         ValueError, "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."),
        (lambda lib, o: lib.optim.lr_scheduler.LinearLR(o, end_factor=1.5),
         ValueError, "Ending multiplicative factor expected to be between 0 and 1."),
        (lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=0),
         ValueError, "Expected positive integer T_0, but got 0"),
        (lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0),
         ValueError, "Expected integer T_mult >= 1, but got 0"),
        (lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(o, 0.1),
         ValueError, r"You must define either total_steps OR \(epochs AND steps_per_epoch\)"),
        (lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=10, pct_start=1),
         ValueError, "Expected float between 0 and 1 pct_start, but got 1"),
        (lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=10, anneal_strategy="exp"),
         ValueError, "anneal_strategy must be one of 'cos' or 'linear', instead got exp"),
        (lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(o, [0.1, 0.2, 0.3], total_steps=10),
         ValueError, "max_lr must have the same length as optimizer.param_groups. max_lr has 3 values, "
                     "param_groups has 2."),
        (lambda lib, o: lib.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1, mode="square"),
         ValueError, "mode is invalid and scale_fn is None"),
        (lambda lib, o: lib.optim.lr_scheduler.LambdaLR(o, [lambda e: 1.0]),
         ValueError, "Expected 2 lr_lambdas, but got 1"),
        (lambda lib, o: lib.optim.lr_scheduler.SequentialLR(o, [lib.optim.lr_scheduler.StepLR(o, 2)], [3]),
         ValueError, "Sequential Schedulers expects number of schedulers provided to be one more than the number "
                     "of milestone points, but got number of schedulers 1 and the number of milestones to be "
                     "equal to 1"),
    ]
    for make, exc, msg in cases:
        for lib in (torch, rg):
            with pytest.raises(exc, match=msg):
                build(lib, "SGD", {}, make)
    for lib in (torch, rg):
        with pytest.raises(ValueError, match="optimizer must support momentum or beta1 with `cycle_momentum` "
                                             "option enabled"):
            build(lib, "Adagrad", {}, lambda lib, o: lib.optim.lr_scheduler.CyclicLR(o, 0.01, 0.1))
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        S.StepLR([], 3)
    o1, s1 = build(rg, "SGD", {}, lambda lib, o: lam(lib).StepLR(o, 3))
    o2, s2 = build(rg, "SGD", {}, lambda lib, o: lam(lib).StepLR(o, 3))
    with pytest.raises(ValueError, match="ChainedScheduler expects all schedulers to belong to the same optimizer"):
        S.ChainedScheduler([s1, s2])


def test_refuses_an_optimizer_whose_lr_is_a_schedule():
    opt = rg.optim.SGD([rg.zeros(2, requires_grad=True)], lr=rg.optim.schedules.constant(0.1))
    with pytest.raises(ValueError, match=r"param_groups\[0\] already has an lr schedule \(the optimizer was given "
                                         r"lr=callable\): use either a schedule as lr or a scheduler, not both"):
        rg.optim.lr_scheduler.StepLR(opt, 3)


def test_training_with_a_scheduler_matches_torch():
    """A real run: SGD with momentum under OneCycleLR (momentum cycled) on the
    shared test MLP; parameters equal torch's after 60 steps."""
    w = initial_weights("float64")
    out = {}
    for lib in (torch, rg):
        net = Net(lib, w)
        opt = lib.optim.SGD(net.params, lr=0.1, momentum=0.9, nesterov=True)
        s = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=60, three_phase=True)
        for i in range(60):
            opt.zero_grad()
            net.loss(i).backward()
            opt.step()
            s.step()
        out[lib.__name__] = net.values()
    assert len(out["torch"]) == len(NAMES)
    assert_close(out["retrograd"], out["torch"], "float64")


@pytest.mark.parametrize("name", list(CASES))
def test_loads_a_torch_scheduler_state_dict(name):
    """A checkpoint of torch's optimizer and scheduler at step 300 resumes in retrograd."""
    from optim_helpers import state_to_numpy

    opt_name, opt_kw, sched = CASES[name]
    t_opt, t_s = build(torch, opt_name, opt_kw, sched)
    for _ in range(300):
        t_opt.step()
        t_s.step()
    r_opt, r_s = build(rg, opt_name, opt_kw, sched)
    r_opt.load_state_dict(state_to_numpy(t_opt.state_dict()))
    r_s.load_state_dict(copy.deepcopy(t_s.state_dict()))
    for i in range(300, 600):
        t_opt.step()
        r_opt.step()
        t_s.step()
        r_s.step()
        assert observe(r_opt, r_s) == observe(t_opt, t_s), f"step {i}"
