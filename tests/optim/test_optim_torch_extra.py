"""Rprop, ASGD, Adafactor, Muon and LBFGS against their ``torch.optim`` namesakes:
same network, same weights, 100 steps (or iterations), every option combination
(1e-5 relative in float32, 1e-10 in float64)."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newtonschulz

import retrograd as rg
from retrograd.optim.muon import round_bfloat16, zeropower_via_newtonschulz
from optim_helpers import TOL, assert_close, default_dtype, initial_weights, rel_errors, train

warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")


def _product(**options) -> list[dict]:
    return [dict(zip(options, vals)) for vals in itertools.product(*options.values())]


# Adafactor's relative steps make this net chaotic above lr ~1e-2 (both libraries alike)
CASES = {
    "Rprop": [{"lr": 0.01, **c} for c in _product(etas=[(0.5, 1.2), (0.3, 1.5)], step_sizes=[(1e-6, 50), (1e-3, 0.02)],
                                                  maximize=[False, True])],
    "ASGD": [{"lr": 0.05, **c} for c in _product(lambd=[1e-4, 1e-2], alpha=[0.75, 0.5], t0=[1e6, 10.0],
                                                 weight_decay=[0.0, 0.1], maximize=[False, True])],
    "Adafactor": [c for c in _product(lr=[1e-2, 5e-3], beta2_decay=[-0.8, -0.6], eps=[(None, 1e-3), (1e-30, 1e-2)],
                                      d=[1.0, 1.2], weight_decay=[0.0, 0.1], maximize=[False, True])],
}
PARAMS = [pytest.param(name, kw, id=f"{name}-" + "-".join(f"{k}={v}" for k, v in kw.items()))
          for name, cases in CASES.items() for kw in cases]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kwargs", PARAMS)
def test_100_steps_match_torch(name, kwargs, dtype):
    w = initial_weights(dtype)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    with default_dtype(dtype):
        r, ro = train(rg, name, kwargs, w, 100, sign=sign)
        t, to = train(torch, name, kwargs, w, 100, sign=sign)
    assert_close(r.values(), t.values(), dtype)
    assert max(abs(a - w[k]).max() for a, k in zip(r.values(), ("W1", "b1", "W2", "b2"))) > 1e-3
    # the state too: ASGD's average ax and step size eta, Rprop's step sizes, Adafactor's factors
    for rp, tp in zip(r.params, t.params):
        for key, tv in to.state[tp].items():
            if key == "prev":  # a gradient: near-zero entries carry the forward pass's rounding
                continue
            rv = ro.state[rp][key]
            rv = np.asarray(rv.data if isinstance(rv, rg.Tensor) else rv)
            tv = tv.detach().numpy()
            assert rv.shape == tv.shape, key
            assert np.max(np.abs(rv - tv)) <= 100 * TOL[dtype] * max(np.max(np.abs(tv)), 1e-30), key


@pytest.mark.parametrize("start", [0, 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_parameters_without_grad_are_skipped_like_torch(name, dtype, start):
    kw = CASES[name][-1]
    sign = -1.0 if kw.get("maximize") else 1.0
    w = initial_weights(dtype)
    with default_dtype(dtype):
        r, ro = train(rg, name, kw, w, 41, sign=sign, use_c=True, start=start)
        t, to = train(torch, name, kw, w, 41, sign=sign, use_c=True, start=start)
    assert_close(r.values(), t.values(), dtype)
    assert float(ro.state[r.params[4]]["step"]) == float(to.state[t.params[4]]["step"]) == 21 - start


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip_and_from_torch(name):
    """Continue 20 steps after loading PyTorch's state dict: same as PyTorch continuing."""
    kw = CASES[name][-1]
    sign = -1.0 if kw.get("maximize") else 1.0
    w = initial_weights("float64")
    with default_dtype("float64"):
        t, to = train(torch, name, kw, w, 30, sign=sign)
        r, ro = train(rg, name, kw, w, 0, sign=sign)
        for rp, tp in zip(r.params, t.params):
            rp.data[...] = tp.detach().numpy()
        sd = to.state_dict()
        ro.load_state_dict({"state": {k: {n: (v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v)
                                          for n, v in s.items()} for k, s in sd["state"].items()},
                            "param_groups": [dict(g) for g in sd["param_groups"]]})
        train(rg, name, kw, w, 20, sign=sign, net=r, opt=ro, start=30)
        train(torch, name, kw, w, 20, sign=sign, net=t, opt=to, start=30)
    assert_close(r.values(), t.values(), "float64")


def test_constructor_errors_match_torch():
    p = [rg.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="Invalid eta values: 1.5, 1.2"):
        rg.optim.Rprop(p, etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="beta2_decay should be <= 0 but is: 0.5"):
        rg.optim.Adafactor(p, beta2_decay=0.5)
    with pytest.raises(ValueError, match="Clipping threshold d should be >= 1 but is: 0.5"):
        rg.optim.Adafactor(p, d=0.5)
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters .* size: \(3,\)"):
        rg.optim.Muon(p)
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        rg.optim.LBFGS([{"params": p}, {"params": [rg.zeros(2, requires_grad=True)]}])


def test_defaults_match_torch():
    for name in ("Rprop", "ASGD", "Adafactor", "LBFGS"):
        r = getattr(rg.optim, name)([rg.zeros(3, requires_grad=True)]).defaults
        t = getattr(torch.optim, name)([torch.zeros(3, requires_grad=True)]).defaults
        for k, v in r.items():
            assert t[k] == v, (name, k)
    r = rg.optim.Muon([rg.zeros((2, 3), requires_grad=True)]).defaults
    t = torch.optim.Muon([torch.zeros((2, 3), requires_grad=True)]).defaults
    assert r == t


# --------------------------------------------------------------------------- Muon
def test_bfloat16_rounding_matches_torch():
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        x = (rng.standard_normal(4000) * 10.0 ** rng.integers(-8, 8, 4000)).astype(dt)
        assert np.array_equal(round_bfloat16(x), torch.tensor(x).bfloat16().float().numpy())


@pytest.mark.parametrize("shape", [(4, 8), (8, 3), (8, 8), (16, 4)])
def test_newton_schulz_matches_torch_bit_for_bit(shape):
    """Bit for bit in nearly all cases; PyTorch's float32 accumulation order inside its
    bfloat16 matmul is not reproduced, so a rounding can fall the other way (one bfloat16 ulp)."""
    rng = np.random.default_rng(1)
    same = total = 0
    for dt in (np.float32, np.float64):
        for ns_steps in (5, 3):
            for _ in range(20):
                g = rng.standard_normal(shape).astype(dt)
                ours = zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), ns_steps, 1e-7)
                theirs = torch_newtonschulz(torch.tensor(g), (3.4445, -4.7750, 2.0315), ns_steps, 1e-7)
                theirs = theirs.float().numpy()
                total += 1
                same += np.array_equal(ours, theirs)
                np.testing.assert_allclose(ours, theirs, rtol=2.0 ** -7, atol=2.0 ** -9)
    assert same >= 0.95 * total, (same, total)


def test_newton_schulz_orthogonalises():
    g = np.random.default_rng(2).standard_normal((16, 8))
    s = np.linalg.svd(zeropower_via_newtonschulz(g).astype(np.float64), compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.5  # U S' V^T with S' ~ Uniform(0.5, 1.5), as documented


def _grads(W1, W2, X, Y):
    H = X @ W1
    r = (H @ W2 - Y) * (2.0 / (X.shape[0] * W2.shape[1]))
    return X.T @ (r @ W2.T), H.T @ r


# PyTorch's bfloat16 matmuls are slow on CPU (~10 ms per orthogonalisation): 16 combinations
MUON_CASES = _product(lr=[0.02], weight_decay=[0.1, 0.0], momentum=[0.95, 0.5], nesterov=[True, False],
                      adjust_lr_fn=[None, "match_rms_adamw"]) + [{"lr": 0.02, "ns_steps": 3}]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", MUON_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_muon_100_steps_match_torch_step_by_step(kwargs, dtype):
    """Muon rounds its update to bfloat16 (2^-8), so a 1-ulp difference in any
    input flips some bfloat16 roundings and trajectories part. Each of the
    100 steps therefore starts both optimizers from PyTorch's parameters and
    momentum, with the same gradients, and compares the step's result."""
    w = initial_weights(dtype)
    with default_dtype(dtype):
        tp = [torch.tensor(w[k].copy(), requires_grad=True) for k in ("W1", "W2")]
        rp = [rg.tensor(w[k].copy(), requires_grad=True) for k in ("W1", "W2")]
        to, ro = torch.optim.Muon(tp, **kwargs), rg.optim.Muon(rp, **kwargs)
        worst, exact = 0.0, 0
        for _ in range(100):
            vals = [p.detach().numpy().copy() for p in tp]
            grads = _grads(*vals, w["X"], w["Y"])
            for p, v, g in zip(rp, vals, grads):
                p.data[...] = v
                p.grad = rg.tensor(g.astype(dtype))
            for p, q in zip(rp, tp):
                if p in ro.state:
                    ro.state[p]["momentum_buffer"].data[...] = to.state[q]["momentum_buffer"].numpy()
            for p, g in zip(tp, grads):
                p.grad = torch.tensor(g.astype(dtype))
            ro.step()
            to.step()
            errs = rel_errors([p.data for p in rp], [p.detach().numpy() for p in tp])
            exact += max(errs) <= TOL[dtype]
            worst = max(worst, *[float(np.abs(a.data - b.detach().numpy()).max()) for a, b in zip(rp, tp)])
    # nearly every step agrees to the dtype's tolerance; the others by one bfloat16
    # rounding of the update (see test_newton_schulz_matches_torch_bit_for_bit)
    assert exact >= 90, exact
    lr_max = max(kwargs["lr"] * 0.2 * 8 ** 0.5, kwargs["lr"] * 8 ** 0.5 / 3 ** 0.5)
    assert worst <= lr_max * 2.0 ** -6
    assert np.abs(rp[0].data - w["W1"]).max() > 1e-2


# --------------------------------------------------------------------------- LBFGS
def _softmax_regression(lib, dtype):
    """An L2-regularised softmax regression: convex, so rounding differences die out
    (on a non-convex net, L-BFGS amplifies 1-ulp differences exponentially)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 5)).astype(dtype)
    onehot = np.eye(3, dtype=dtype)[rng.integers(0, 3, 32)]
    W = lib.tensor((rng.standard_normal((5, 3)) * 0.5).astype(dtype), requires_grad=True)
    b = lib.tensor(np.zeros(3, dtype), requires_grad=True)
    Xt, O = lib.tensor(X), lib.tensor(onehot)

    def loss():
        Z = Xt @ W + b
        return (Z.logsumexp(1) - (Z * O).sum(1)).mean() + 0.05 * (W * W).sum()
    return [W, b], loss


LBFGS_CASES = _product(lr=[1.0, 0.5], max_iter=[20, 4], history_size=[100, 3],
                       line_search_fn=[None, "strong_wolfe"]) + [
    {"max_iter": 20, "max_eval": 7}, {"max_iter": 20, "max_eval": 7, "line_search_fn": "strong_wolfe"},
    {"tolerance_grad": 1e-3}, {"tolerance_change": 1e-4, "line_search_fn": "strong_wolfe"}]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", LBFGS_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_lbfgs_matches_torch(kwargs, dtype):
    """5 steps of up to 20 iterations. In float32 the tolerances are float32-sized
    (the defaults 1e-7/1e-9 stop on rounding noise, which differs between libraries)."""
    kw = dict(kwargs)
    if dtype == "float32":
        kw.setdefault("tolerance_grad", 1e-4)
        kw.setdefault("tolerance_change", 1e-6)
    out = []
    with default_dtype(dtype):
        for lib in (rg, torch):
            params, f = _softmax_regression(lib, dtype)
            opt = lib.optim.LBFGS(params, **kw)

            def closure(opt=opt, f=f):
                opt.zero_grad()
                loss = f()
                loss.backward()
                return loss
            losses = [float(opt.step(closure)) for _ in range(5)]
            st = opt.state[params[0]]
            out.append(([np.array(p.data if lib is rg else p.detach().numpy()) for p in params], losses,
                        st["func_evals"], st["n_iter"], len(st["old_dirs"])))
    (rv, rl, *rc), (tv, tl, *tc) = out
    assert rc == tc  # the same number of evaluations, iterations and stored pairs
    assert_close(rv, tv, dtype)
    np.testing.assert_allclose(rl, tl, rtol=TOL[dtype])
    assert rl[-1] < 0.9 * rl[0]


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_on_the_net_matches_torch_for_50_iterations(line_search_fn):
    """The non-convex MLP, float64, one iteration per step."""
    w = initial_weights("float64")
    with default_dtype("float64"):
        nets = []
        for lib in (rg, torch):
            from optim_helpers import Net
            net = Net(lib, w)
            opt = lib.optim.LBFGS(net.params, max_iter=1, line_search_fn=line_search_fn)

            def closure(opt=opt, net=net):
                opt.zero_grad()
                loss = net.loss(0)
                loss.backward()
                return loss
            for _ in range(50):
                opt.step(closure)
            nets.append(net)
    assert_close(nets[0].values(), nets[1].values(), "float64")


def test_lbfgs_state_dict_resume_matches_torch():
    out = []
    with default_dtype("float64"):
        tparams, tf = _softmax_regression(torch, "float64")
        to = torch.optim.LBFGS(tparams, max_iter=3, history_size=4)

        def tclosure():
            to.zero_grad()
            loss = tf()
            loss.backward()
            return loss
        to.step(tclosure)
        rparams, rf = _softmax_regression(rg, "float64")
        for rp, tp in zip(rparams, tparams):
            rp.data[...] = tp.detach().numpy()
        ro = rg.optim.LBFGS(rparams, max_iter=3, history_size=4)
        sd = to.state_dict()
        conv = lambda v: v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v  # noqa: E731
        ro.load_state_dict({"state": {k: {n: ([conv(x) for x in v] if isinstance(v, list) else conv(v))
                                          for n, v in s.items()} for k, s in sd["state"].items()},
                            "param_groups": sd["param_groups"]})

        def rclosure():
            ro.zero_grad()
            loss = rf()
            loss.backward()
            return loss
        for _ in range(2):  # 9 iterations in all: before convergence, where stopping is rounding noise
            ro.step(rclosure)
            to.step(tclosure)
    assert_close([p.data for p in rparams], [p.detach().numpy() for p in tparams], "float64")
    assert ro.state[rparams[0]]["n_iter"] > 3  # it went on from the loaded count


def test_lbfgs_needs_a_closure():
    opt = rg.optim.LBFGS([rg.zeros(2, requires_grad=True)])
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step(None)
