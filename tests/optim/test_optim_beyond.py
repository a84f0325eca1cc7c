"""Optimizers beyond ``torch.optim``: Lion, Lookahead, LAMB, LARS (and the
averaging utilities of ``swa_utils``).

Each optimizer is checked step by step against its paper's equations written
out here independently in plain NumPy, per parameter: the same gradients (from
retrograd, at retrograd's current parameters) go to both, and the parameters
agree to 1e-12 in float64 over 20 steps. The network is ``optim_helpers``' MLP,
with the extra bias ``c`` that has no gradient on odd steps (skipped, its step
count falls behind). Then: a real small problem (digits) whose loss falls, a
state-dict round trip mid-run that continues bit-identically, bad
hyperparameters.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import retrograd as rg
from optim_helpers import NAMES, Net, default_dtype, initial_weights, snapshot

STEPS = 20


# --------------------------------------------------------------------------- NumPy references
class RefLion:
    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        self.lr, self.b1, self.b2, self.wd, self.maximize = lr, *betas, weight_decay, maximize
        self.m = {}

    def step(self, ps, gs):
        for i, (p, g) in enumerate(zip(ps, gs)):
            if g is None:
                continue
            g = -g if self.maximize else g
            m = self.m.setdefault(i, np.zeros_like(p))
            c = self.b1 * m + (1 - self.b1) * g
            p *= 1 - self.lr * self.wd
            p -= self.lr * np.sign(c)
            self.m[i] = self.b2 * m + (1 - self.b2) * g


class RefLAMB:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=True,
                 trust_clip=None, maximize=False):
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.bc, self.clip, self.maximize = bias_correction, trust_clip, maximize
        self.st = {}

    def step(self, ps, gs):
        for i, (p, g) in enumerate(zip(ps, gs)):
            if g is None:
                continue
            g = -g if self.maximize else g
            t, m, v = self.st.get(i, (0, np.zeros_like(p), np.zeros_like(p)))
            t += 1
            m = self.b1 * m + (1 - self.b1) * g
            v = self.b2 * v + (1 - self.b2) * g * g
            mh, vh = (m / (1 - self.b1 ** t), v / (1 - self.b2 ** t)) if self.bc else (m, v)
            r = mh / (np.sqrt(vh) + self.eps) + self.wd * p
            wn, rn = np.linalg.norm(p), np.linalg.norm(r)
            q = wn / rn if wn > 0 and rn > 0 else 1.0
            if self.clip is not None:
                q = min(q, self.clip)
            p -= self.lr * q * r
            self.st[i] = (t, m, v)


class RefLARS:
    def __init__(self, lr, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, eps=1e-8, nesterov=False,
                 exclude_1d=True, maximize=False):
        self.lr, self.mu, self.wd, self.eta, self.eps = lr, momentum, weight_decay, trust_coefficient, eps
        self.nesterov, self.exclude_1d, self.maximize = nesterov, exclude_1d, maximize
        self.buf = {}

    def step(self, ps, gs):
        for i, (p, g) in enumerate(zip(ps, gs)):
            if g is None:
                continue
            g = -g if self.maximize else g
            if p.ndim > 1 or not self.exclude_1d:
                wn, gn = np.linalg.norm(p), np.linalg.norm(g)
                q = self.eta * wn / (gn + self.wd * wn + self.eps) if wn > 0 and gn > 0 else 1.0
                d = q * (g + self.wd * p)
            else:
                d = g
            if self.mu != 0:
                b = d.copy() if i not in self.buf else self.mu * self.buf[i] + d
                self.buf[i] = b
                d = d + self.mu * b if self.nesterov else b
            p -= self.lr * d


def grads_of(net, step):
    for p in net.params:
        p.grad = None
    net.loss(step).backward()
    return [None if p.grad is None else p.grad.detach().numpy().copy() for p in net.params]


def run_vs_reference(opt, ref, net, steps=STEPS, start=0, ref_params=None):
    ref_params = [p.detach().numpy().copy() for p in net.params] if ref_params is None else ref_params
    for i in range(start, start + steps):
        gs = grads_of(net, i)
        opt.step()
        ref.step(ref_params, gs)
        for name, a, b in zip(NAMES, net.params, ref_params):
            np.testing.assert_allclose(a.data, b, rtol=0, atol=1e-12, err_msg=f"step {i}, parameter {name}")
    return ref_params


OPT_CASES = [
    ("Lion", RefLion, dict(lr=1e-3)),
    ("Lion", RefLion, dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5)),
    ("Lion", RefLion, dict(lr=1e-3, weight_decay=0.1, maximize=True)),
    ("LAMB", RefLAMB, dict(lr=1e-2)),
    ("LAMB", RefLAMB, dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99))),
    ("LAMB", RefLAMB, dict(lr=1e-2, weight_decay=0.01, bias_correction=False, trust_clip=0.5)),
    ("LAMB", RefLAMB, dict(lr=1e-2, maximize=True, eps=1e-8)),
    ("LARS", RefLARS, dict(lr=1.0)),
    ("LARS", RefLARS, dict(lr=2.0, weight_decay=1e-2, trust_coefficient=0.01, nesterov=True)),
    ("LARS", RefLARS, dict(lr=0.5, momentum=0.0, exclude_1d=False, weight_decay=0.1)),
    ("LARS", RefLARS, dict(lr=1.0, maximize=True, momentum=0.5)),
]


@pytest.mark.parametrize("name,ref_cls,kw", OPT_CASES,
                         ids=[f"{n}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for n, _, kw in OPT_CASES])
def test_matches_paper_equations(name, ref_cls, kw):
    w = initial_weights("float64")
    with default_dtype("float64"):
        sign = -1.0 if kw.get("maximize") else 1.0
        net = Net(rg, w, use_c=True)
        base = net.loss
        net.loss = lambda step: base(step, sign)
        opt = getattr(rg.optim, name)(net.params, **kw)
        ref_params = run_vs_reference(opt, ref_cls(**kw), net)
    moved = max(np.abs(p - w[k]).max() for p, k in zip(ref_params, NAMES))
    assert moved > 1e-3


@pytest.mark.parametrize("name,kw", [("Lion", dict(lr=1e-3, weight_decay=0.1)), ("LAMB", dict(lr=1e-2)),
                                     ("LARS", dict(lr=1.0, weight_decay=1e-3))])
def test_param_groups_and_float32(name, kw):
    """Two groups with different lrs; float32 keeps its dtype and tracks the float64 reference."""
    ref_cls = {"Lion": RefLion, "LAMB": RefLAMB, "LARS": RefLARS}[name]
    w = initial_weights("float32")
    net = Net(rg, w, use_c=True)
    opt = getattr(rg.optim, name)([{"params": net.params[:2]}, {"params": net.params[2:], "lr": kw["lr"] / 2}],
                                  **kw)
    refs = [ref_cls(**kw), ref_cls(**{**kw, "lr": kw["lr"] / 2})]
    rp = [p.detach().numpy().astype(np.float64) for p in net.params]
    for i in range(STEPS):
        gs = [None if g is None else g.astype(np.float64) for g in grads_of(net, i)]
        opt.step()
        refs[0].step(rp[:2], gs[:2])
        refs[1].step(rp[2:], gs[2:])
    for a, b in zip(net.params, rp):
        assert a.data.dtype == np.float32
        # Lion's sign() flips on near-zero momenta under rounding: compare loosely there
        np.testing.assert_allclose(a.data, b, atol=1e-4 if name != "Lion" else 2e-3)


# --------------------------------------------------------------------------- Lookahead
class RefLookahead:
    def __init__(self, inner, k, alpha, params):
        self.inner, self.k, self.alpha, self.t = inner, k, alpha, 0
        self.slow = [p.copy() for p in params]

    def step(self, ps, gs):
        self.inner.step(ps, gs)
        self.t += 1
        if self.t % self.k == 0:
            for s, p in zip(self.slow, ps):
                s += self.alpha * (p - s)
                p[...] = s


class RefSGD:
    def __init__(self, lr, momentum=0.0):
        self.lr, self.mu, self.buf = lr, momentum, {}

    def step(self, ps, gs):
        for i, (p, g) in enumerate(zip(ps, gs)):
            if g is None:
                continue
            if self.mu:
                g = self.buf[i] = g.copy() if i not in self.buf else self.mu * self.buf[i] + g
            p -= self.lr * g


class RefAdam:
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, (self.b1, self.b2), self.eps, self.st = lr, betas, eps, {}

    def step(self, ps, gs):
        for i, (p, g) in enumerate(zip(ps, gs)):
            if g is None:
                continue
            t, m, v = self.st.get(i, (0, np.zeros_like(p), np.zeros_like(p)))
            t += 1
            m = self.b1 * m + (1 - self.b1) * g
            v = self.b2 * v + (1 - self.b2) * g * g
            p -= self.lr / (1 - self.b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - self.b2 ** t) + self.eps)
            self.st[i] = (t, m, v)


@pytest.mark.parametrize("inner,k,alpha", [("SGD", 5, 0.5), ("SGD", 3, 0.8), ("Adam", 4, 0.5)])
def test_lookahead_matches_equations(inner, k, alpha):
    w = initial_weights("float64")
    with default_dtype("float64"):
        net = Net(rg, w, use_c=True)
        if inner == "SGD":
            opt = rg.optim.Lookahead(rg.optim.SGD(net.params, lr=0.1, momentum=0.9), k=k, alpha=alpha)
            ref_inner = RefSGD(0.1, 0.9)
        else:
            opt = rg.optim.Lookahead(rg.optim.Adam(net.params, lr=0.01), k=k, alpha=alpha)
            ref_inner = RefAdam(0.01)
        rp = [p.detach().numpy().copy() for p in net.params]
        run_vs_reference(opt, RefLookahead(ref_inner, k, alpha, rp), net, ref_params=rp)


def test_lookahead_proxies_and_scheduler():
    w = initial_weights("float64")
    net = Net(rg, w)
    inner = rg.optim.SGD(net.params, lr=0.1)
    opt = rg.optim.Lookahead(inner)
    assert opt.param_groups is inner.param_groups and opt.state is inner.state
    sched = rg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for i in range(3):
        opt.zero_grad()
        net.loss(i).backward()
        opt.step()
        sched.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)
    opt.zero_grad()
    assert all(p.grad is None for p in net.params)
    with pytest.raises(TypeError, match="Lookahead"):
        rg.optim.Lookahead([net.params[0]])
    with pytest.raises(ValueError, match="k"):
        rg.optim.Lookahead(inner, k=0)
    with pytest.raises(ValueError, match="alpha"):
        rg.optim.Lookahead(inner, alpha=1.5)


# --------------------------------------------------------------------------- state dict round trips
def _make(name, params):
    if name == "Lookahead-Adam":
        return rg.optim.Lookahead(rg.optim.Adam(params, lr=0.01), k=3)
    if name == "Lookahead-SGD":
        return rg.optim.Lookahead(rg.optim.SGD(params, lr=0.1, momentum=0.9), k=4, alpha=0.6)
    kw = {"Lion": dict(lr=1e-3, weight_decay=0.1), "LAMB": dict(lr=1e-2, weight_decay=0.01),
          "LARS": dict(lr=1.0, weight_decay=1e-3)}[name]
    return getattr(rg.optim, name)(params, **kw)


def _train(net, opt, start, steps):
    for i in range(start, start + steps):
        opt.zero_grad()
        net.loss(i).backward()
        opt.step()


def _deep(sd):
    out = snapshot(sd)
    if "lookahead" in sd:
        la = sd["lookahead"]
        out["lookahead"] = {**la, "slow_weights": {k: v.copy() for k, v in la["slow_weights"].items()}}
    return out


@pytest.mark.parametrize("name", ["Lion", "LAMB", "LARS", "Lookahead-SGD", "Lookahead-Adam"])
def test_state_dict_round_trip_is_bit_identical(name):
    w = initial_weights("float64")
    with default_dtype("float64"):
        a = Net(rg, w, use_c=True)
        opt_a = _make(name, a.params)
        _train(a, opt_a, 0, 7)
        sd = _deep(opt_a.state_dict())
        b = Net(rg, w, use_c=True)
        for pb, pa in zip(b.params, a.params):
            pb.data[...] = pa.data
        opt_b = _make(name, b.params)
        opt_b.load_state_dict(sd)
        _train(a, opt_a, 7, 10)
        _train(b, opt_b, 7, 10)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa.data, pb.data)


# --------------------------------------------------------------------------- real problem
_X, _Y = load_digits(return_X_y=True)
DX, DY = (_X / 16.0).astype(np.float32), _Y.astype(np.int64)


def _digits_loss(model):
    with rg.no_grad():
        return float(rg.nn.CrossEntropyLoss()(model(rg.tensor(DX)), rg.tensor(DY)).item())


def digits_run(make_opt, steps=60, bs=64):
    rg.manual_seed(0)
    model = rg.nn.Sequential(rg.nn.Linear(64, 32), rg.nn.ReLU(), rg.nn.Linear(32, 10))
    opt = make_opt(model.parameters())
    loss_fn = rg.nn.CrossEntropyLoss()
    idx = np.random.default_rng(1).permutation(len(DX))
    before = _digits_loss(model)
    for i in range(steps):
        j = idx[(i * bs) % (len(DX) - bs):][:bs]
        opt.zero_grad()
        loss_fn(model(rg.tensor(DX[j])), rg.tensor(DY[j])).backward()
        opt.step()
    return before, _digits_loss(model), model, opt


@pytest.mark.parametrize("make_opt", [
    lambda ps: rg.optim.Lion(ps, lr=3e-3, weight_decay=0.01),
    lambda ps: rg.optim.LAMB(ps, lr=2e-2, weight_decay=0.01),
    lambda ps: rg.optim.LARS(ps, lr=2.0, weight_decay=1e-4, trust_coefficient=0.02),
    lambda ps: rg.optim.Lookahead(rg.optim.SGD(ps, lr=0.2, momentum=0.9)),
    lambda ps: rg.optim.Lookahead(rg.optim.Adam(ps, lr=1e-2), k=6, alpha=0.5),
], ids=["Lion", "LAMB", "LARS", "Lookahead-SGD", "Lookahead-Adam"])
def test_digits_loss_decreases(make_opt):
    before, after, _, _ = digits_run(make_opt)
    assert after < 0.5 * before, (before, after)


# --------------------------------------------------------------------------- bad hyperparameters
@pytest.mark.parametrize("name,kw,match", [
    ("Lion", dict(lr=-1.0), "learning rate"),
    ("Lion", dict(betas=(0.9, 1.5)), "beta"),
    ("Lion", dict(betas=(0.9,)), "pair"),
    ("Lion", dict(weight_decay=-0.1), "weight_decay"),
    ("LAMB", dict(lr=float("nan")), "learning rate"),
    ("LAMB", dict(betas=(1.0, 0.9)), "beta"),
    ("LAMB", dict(eps=-1.0), "epsilon"),
    ("LAMB", dict(trust_clip=0.0), "trust_clip"),
    ("LARS", dict(lr=0.1, trust_coefficient=0.0), "trust_coefficient"),
    ("LARS", dict(lr=0.1, momentum=-0.5), "momentum"),
    ("LARS", dict(lr=0.1, momentum=0.0, nesterov=True), "Nesterov"),
    ("LARS", dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
])
def test_bad_hyperparameters(name, kw, match):
    p = rg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=match):
        getattr(rg.optim, name)([p], **kw)


def test_lars_requires_lr():
    with pytest.raises(ValueError, match="lr"):
        rg.optim.LARS([rg.tensor(np.ones(3), requires_grad=True)])


# --------------------------------------------------------------------------- swa_utils vs torch
def _twin_models(seed=0):
    import torch
    torch.manual_seed(seed)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    tm = tm.double()
    rm = rg.nn.Sequential(rg.nn.Linear(4, 8), rg.nn.BatchNorm1d(8), rg.nn.ReLU(), rg.nn.Linear(8, 3))
    rm = rm.double()
    for (rn, rp), (tn, tp) in zip(rm.named_parameters(), tm.named_parameters()):
        assert rn == tn and tuple(rp.shape) == tuple(tp.shape)
        rp.data[...] = tp.detach().numpy()
    return rm, tm


def _train_twins(rm, tm, rng, steps=3):
    """The same SGD steps on both models (in train mode: BatchNorm stats move too)."""
    import torch
    ro = rg.optim.SGD(rm.parameters(), lr=0.1)
    to = torch.optim.SGD(tm.parameters(), lr=0.1)
    for _ in range(steps):
        x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
        ro.zero_grad()
        ((rm(rg.tensor(x)) - rg.tensor(y)) ** 2).mean().backward()
        ro.step()
        to.zero_grad()
        ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
        to.step()


@pytest.mark.parametrize("mode", ["swa", "ema-multi", "ema-single", "swa-single", "swa-buffers", "ema-buffers"])
def test_averaged_model_matches_torch(mode):
    import torch
    from torch.optim import swa_utils as T
    S = rg.optim.swa_utils
    rm, tm = _twin_models()
    kw_r, kw_t = {}, {}
    if mode.startswith("ema-multi") or mode == "ema-buffers":
        kw_r["multi_avg_fn"], kw_t["multi_avg_fn"] = S.get_ema_multi_avg_fn(0.9), T.get_ema_multi_avg_fn(0.9)
    elif mode == "ema-single":
        kw_r["avg_fn"], kw_t["avg_fn"] = S.get_ema_avg_fn(0.8), T.get_ema_avg_fn(0.8)
    elif mode == "swa-single":
        kw_r["avg_fn"], kw_t["avg_fn"] = S.get_swa_avg_fn(), T.get_swa_avg_fn()
    if mode.endswith("buffers"):
        kw_r["use_buffers"] = kw_t["use_buffers"] = True
    ra, ta = S.AveragedModel(rm, **kw_r), T.AveragedModel(tm, **kw_t)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _train_twins(rm, tm, rng)
        ra.update_parameters(rm)
        ta.update_parameters(tm)
    rsd, tsd = ra.state_dict(), ta.state_dict()
    assert list(rsd) == list(tsd)
    for k in tsd:
        np.testing.assert_allclose(rsd[k].data, tsd[k].numpy(), rtol=1e-12, atol=1e-12, err_msg=k)
    assert int(ra.n_averaged.data) == 5
    # the average is not simply the last model
    assert np.abs(rsd["module.0.weight"].data - rm[0].weight.data).max() > 1e-4
    x = rng.standard_normal((5, 4))
    ra.eval()
    ta.eval()
    np.testing.assert_allclose(ra(rg.tensor(x)).data, ta(torch.tensor(x)).detach().numpy(), atol=1e-12)


def test_update_bn_matches_torch():
    import torch
    from torch.optim import swa_utils as T
    rm, tm = _twin_models(1)
    rng = np.random.default_rng(3)
    _train_twins(rm, tm, rng)
    rm.eval()
    tm.eval()
    batches = [rng.standard_normal((n, 4)) * 2 + 1 for n in (16, 16, 9)]
    S = rg.optim.swa_utils
    S.update_bn([(rg.tensor(b), None) for b in batches], rm)
    T.update_bn([(torch.tensor(b), None) for b in batches], tm)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(rm[1], name).data, getattr(tm[1], name).numpy(), rtol=1e-12,
                                   err_msg=name)
    assert not rm.training and rm[1].momentum == 0.1
    # a plain list of arrays works too, and a model without BatchNorm is left alone
    S.update_bn(batches, rm)
    lin = rg.nn.Linear(2, 2)
    S.update_bn([np.ones((1, 2))], lin)


def test_swa_utils_errors():
    S = rg.optim.swa_utils
    with pytest.raises(ValueError, match="decay"):
        S.get_ema_multi_avg_fn(1.5)
    with pytest.raises(TypeError, match="Module"):
        S.AveragedModel([1, 2])
    a = S.AveragedModel(rg.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="shapes"):
        a.update_parameters(rg.nn.Linear(3, 2))


# --------------------------------------------------------------------------- schedule-free
class RefScheduleFree:
    """The paper's three sequences, kept explicitly: y (gradient point), z, x."""

    def __init__(self, params, adam, lr, beta, beta2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0):
        self.adam, self.lr, self.beta, self.beta2, self.eps, self.wd = adam, lr, beta, beta2, eps, weight_decay
        self.warmup, self.r, self.power = warmup_steps, r, weight_lr_power
        self.x = [p.copy() for p in params]
        self.z = [p.copy() for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t, self.lr_max, self.wsum = 0, -1.0, 0.0

    def y(self):
        return [(1 - self.beta) * z + self.beta * x for z, x in zip(self.z, self.x)]

    def step(self, gs):
        self.t += 1
        t = self.t
        lr = self.lr * min(1.0, t / self.warmup) if self.warmup else self.lr
        self.lr_max = max(self.lr_max, lr)
        w = t ** self.r * self.lr_max ** self.power
        self.wsum += w
        c = w / self.wsum
        for i, (y, g) in enumerate(zip(self.y(), gs)):
            if g is None:  # no gradient: skipped, y = x = z stays
                continue
            if self.adam:
                self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * g * g
                d = g / (np.sqrt(self.v[i] / (1 - self.beta2 ** t)) + self.eps) + self.wd * y
            else:
                d = g + self.wd * y
            self.z[i] = self.z[i] - lr * d
            self.x[i] = (1 - c) * self.x[i] + c * self.z[i]


SF_CASES = [
    ("ScheduleFreeAdamW", dict(lr=0.01), dict(adam=True, lr=0.01, beta=0.9)),
    ("ScheduleFreeAdamW", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, warmup_steps=5, r=1.0,
                               weight_lr_power=1.0), dict(adam=True, lr=0.02, beta=0.8, beta2=0.99, weight_decay=0.1,
                                                          warmup_steps=5, r=1.0, weight_lr_power=1.0)),
    ("ScheduleFreeSGD", dict(lr=0.1), dict(adam=False, lr=0.1, beta=0.9)),
    ("ScheduleFreeSGD", dict(lr=0.2, momentum=0.7, weight_decay=0.01, warmup_steps=4, r=0.5),
     dict(adam=False, lr=0.2, beta=0.7, weight_decay=0.01, warmup_steps=4, r=0.5)),
]


@pytest.mark.parametrize("name,kw,ref_kw", SF_CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SF_CASES)])
def test_schedule_free_matches_paper(name, kw, ref_kw):
    w = initial_weights("float64")
    with default_dtype("float64"):
        net = Net(rg, w)
        opt = getattr(rg.optim, name)(net.params, **kw)
        ref = RefScheduleFree([p.detach().numpy() for p in net.params], **ref_kw)
        for i in range(STEPS):
            gs = grads_of(net, i)
            opt.step()
            ref.step(gs)
            for a, b in zip(net.params, ref.y()):
                np.testing.assert_allclose(a.data, b, rtol=0, atol=1e-12, err_msg=f"y at step {i}")
            if i % 5 == 4:  # eval puts x in the parameters, train brings y back
                opt.eval()
                for a, b in zip(net.params, ref.x):
                    np.testing.assert_allclose(a.data, b, rtol=0, atol=1e-12, err_msg=f"x at step {i}")
                with pytest.raises(RuntimeError, match="eval mode"):
                    opt.step()
                opt.train()
                for a, b in zip(net.params, ref.y()):
                    np.testing.assert_allclose(a.data, b, rtol=0, atol=1e-12)
    assert max(np.abs(x - w[k]).max() for x, k in zip(ref.x, NAMES)) > 1e-3


@pytest.mark.parametrize("name", ["ScheduleFreeAdamW", "ScheduleFreeSGD"])
def test_schedule_free_state_dict_and_digits(name):
    kw = dict(lr=0.01) if name == "ScheduleFreeAdamW" else dict(lr=0.1)
    w = initial_weights("float64")
    with default_dtype("float64"):
        a = Net(rg, w, use_c=True)
        oa = getattr(rg.optim, name)(a.params, **kw)
        _train(a, oa, 0, 7)
        sd = snapshot(oa.state_dict())
        b = Net(rg, w, use_c=True)
        for pb, pa in zip(b.params, a.params):
            pb.data[...] = pa.data
        ob = getattr(rg.optim, name)(b.params, **kw)
        ob.load_state_dict(sd)
        _train(a, oa, 7, 10)
        _train(b, ob, 7, 10)
        oa.eval()
        ob.eval()
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa.data, pb.data)
    make = (lambda ps: rg.optim.ScheduleFreeAdamW(ps, lr=3e-2)) if name == "ScheduleFreeAdamW" else \
        (lambda ps: rg.optim.ScheduleFreeSGD(ps, lr=1.0))
    before, _, model, opt = digits_run(make)
    opt.eval()
    assert _digits_loss(model) < 0.5 * before


@pytest.mark.parametrize("name,kw,match", [
    ("ScheduleFreeAdamW", dict(lr=-1.0), "learning rate"),
    ("ScheduleFreeAdamW", dict(betas=(0.0, 0.999)), "beta1"),
    ("ScheduleFreeAdamW", dict(betas=(0.9, 1.0)), "beta2"),
    ("ScheduleFreeAdamW", dict(warmup_steps=-1), "warmup_steps"),
    ("ScheduleFreeAdamW", dict(eps=-1e-8), "eps"),
    ("ScheduleFreeSGD", dict(lr=0.1, momentum=1.0), "momentum"),
    ("ScheduleFreeSGD", dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    ("ScheduleFreeSGD", dict(lr=0.1, r=-1.0), "invalid r"),
])
def test_schedule_free_bad_hyperparameters(name, kw, match):
    p = rg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=match):
        getattr(rg.optim, name)([p], **kw)


# --------------------------------------------------------------------------- Sophia
class RefSophia:
    def __init__(self, lr=1e-4, betas=(0.965, 0.99), rho=0.04, weight_decay=0.1, eps=1e-12, **_):
        self.lr, (self.b1, self.b2), self.rho, self.wd, self.eps = lr, betas, rho, weight_decay, eps
        self.m, self.h = {}, {}

    def update_hessian(self, ests):
        for i, e in enumerate(ests):
            if e is not None:
                self.h[i] = self.b2 * self.h.get(i, 0.0) + (1 - self.b2) * e

    def step(self, ps, gs):
        for i, (p, g) in enumerate(zip(ps, gs)):
            if g is None:
                continue
            p *= 1 - self.lr * self.wd
            self.m[i] = self.b1 * self.m.get(i, 0.0) + (1 - self.b1) * g
            h = self.h.get(i, np.zeros_like(p))
            p -= self.lr * np.clip(self.m[i] / np.maximum(self.rho * h, self.eps), -1, 1)


def _hvp_estimates(net, step, probes):
    """u * (H u) per parameter, from rg.autograd.functional.hvp on the loss as a function of all parameters."""
    values = [p.detach().numpy().copy() for p in net.params]

    def f(*ps):
        saved = net.params
        net.params = list(ps)
        try:
            return net.loss(step)
        finally:
            net.params = saved

    _, hv = rg.autograd.functional.hvp(f, tuple(rg.tensor(v) for v in values),
                                       tuple(rg.tensor(u) for u in probes))
    return [u * h.data for u, h in zip(probes, hv)]


@pytest.mark.parametrize("kw", [dict(lr=1e-2, k=3), dict(lr=2e-2, betas=(0.9, 0.95), rho=0.5, weight_decay=0.0, k=2),
                                dict(lr=1e-2, rho=5.0, weight_decay=0.2, k=1)])
def test_sophia_matches_paper(kw):
    w = initial_weights("float64")
    rng = np.random.default_rng(7)
    with default_dtype("float64"):
        net = Net(rg, w, use_c=True)
        opt = rg.optim.Sophia(net.params, **kw)
        ref = RefSophia(**kw)
        rp = [p.detach().numpy().copy() for p in net.params]
        for i in range(STEPS):
            for p in net.params:
                p.grad = None
            loss = net.loss(i)
            if opt.hessian_due():
                probes = [rng.choice([-1.0, 1.0], size=p.shape) for p in net.params]
                expect = _hvp_estimates(net, i, probes)
                got = opt.update_hessian(loss, u=probes)
                if i % 2 == 1:  # c is unused on odd steps: no estimate for it
                    assert got[-1] is None
                    expect[-1] = None
                for a, b in zip(got, expect):
                    if b is not None:
                        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
                ref.update_hessian(expect)
            loss.backward()
            gs = [None if p.grad is None else p.grad.detach().numpy().copy() for p in net.params]
            opt.step()
            ref.step(rp, gs)
            for name, a, b in zip(NAMES, net.params, rp):
                np.testing.assert_allclose(a.data, b, rtol=0, atol=1e-12, err_msg=f"step {i}, {name}")
    # the Hessian estimate was not trivially 0 and the clip was not always active
    h = np.concatenate([opt.state[p]["hessian"].detach().numpy().ravel() for p in net.params])
    assert np.abs(h).max() > 1e-3


def test_sophia_random_probes_are_unbiased_on_a_quadratic():
    """E[u * Hu] = diag H: with a diagonal Hessian every Rademacher draw gives it exactly."""
    d = np.array([1.0, 2.0, 3.0, 4.0])
    x = rg.tensor(np.ones(4), requires_grad=True)
    opt = rg.optim.Sophia([x], seed=1, betas=(0.9, 0.0))
    (est,) = opt.update_hessian((rg.tensor(d) * x * x).sum() * 0.5)
    np.testing.assert_allclose(est, d)
    np.testing.assert_allclose(opt.state[x]["hessian"].data, d)


def test_sophia_state_dict_and_digits():
    w = initial_weights("float64")

    def run(net, opt, start, steps):
        rng = np.random.default_rng(start)
        for i in range(start, start + steps):
            opt.zero_grad()
            loss = net.loss(i)
            if opt.hessian_due():
                opt.update_hessian(loss, u=[rng.choice([-1.0, 1.0], size=p.shape) for p in net.params])
            loss.backward()
            opt.step()

    with default_dtype("float64"):
        a = Net(rg, w, use_c=True)
        oa = rg.optim.Sophia(a.params, lr=1e-2, k=2)
        run(a, oa, 0, 7)
        sd = snapshot(oa.state_dict())
        b = Net(rg, w, use_c=True)
        for pb, pa in zip(b.params, a.params):
            pb.data[...] = pa.data
        ob = rg.optim.Sophia(b.params, lr=1e-2, k=2)
        ob.load_state_dict(sd)
        assert ob.param_groups[0]["n_steps"] == 7
        run(a, oa, 7, 10)
        run(b, ob, 7, 10)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa.data, pb.data)

    rg.manual_seed(0)
    model = rg.nn.Sequential(rg.nn.Linear(64, 32), rg.nn.Tanh(), rg.nn.Linear(32, 10))
    opt = rg.optim.Sophia(model.parameters(), lr=3e-3, rho=0.05, weight_decay=0.0, k=5, seed=0)
    loss_fn = rg.nn.CrossEntropyLoss()
    before = _digits_loss(model)
    idx = np.random.default_rng(1).permutation(len(DX))
    for i in range(60):
        j = idx[(i * 64) % (len(DX) - 64):][:64]
        opt.zero_grad()
        loss = loss_fn(model(rg.tensor(DX[j])), rg.tensor(DY[j]))
        if opt.hessian_due():
            opt.update_hessian(loss)
        loss.backward()
        opt.step()
    assert _digits_loss(model) < 0.5 * before


@pytest.mark.parametrize("kw,match", [(dict(lr=-1.0), "learning rate"), (dict(rho=0.0), "rho"),
                                      (dict(betas=(0.9, 1.0)), "beta"), (dict(k=0), "invalid k"),
                                      (dict(estimator="gnb"), "estimator"), (dict(weight_decay=-1), "weight_decay")])
def test_sophia_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        rg.optim.Sophia([rg.tensor(np.ones(3), requires_grad=True)], **kw)
