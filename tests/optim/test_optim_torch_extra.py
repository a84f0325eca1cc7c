"""Rprop, ASGD, Adafactor, Muon and LBFGS against their ``torch.optim`` namesakes:
same network, same weights, 100 steps (or iterations), every option combination
(1e-5 relative in float32, 1e-10 in float64)."""
from __future__ import annotations

import itertools
import platform
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
    # float64 just off a bfloat16 midpoint: PyTorch rounds to float32 first, onto the
    # midpoint, then to even (two roundings; one would round away from the midpoint)
    mid = (round_bfloat16(rng.standard_normal(1000)).view(np.uint32) + np.uint32(0x8000)).view(np.float32)
    mid = mid.astype(np.float64)
    x = mid * (1 + rng.choice([-1, 1], 1000) * 2.0 ** -40)
    assert np.array_equal(round_bfloat16(x), torch.tensor(x).bfloat16().float().numpy())


def _torch_bf16_matmul_differs() -> str | None:
    """Why PyTorch's bfloat16 matmuls here may not be the ATen AVX2 kernels whose
    float32 summation order retrograd reproduces (see retrograd/optim/muon.py), or None."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"the CPU is {machine}, not x86-64"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        return f"PyTorch dispatches to its {capability} kernels, not AVX2 ones"
    try:
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = False
    if onednn_bf16 and torch.backends.mkldnn.is_available():
        return "oneDNN runs PyTorch's bfloat16 matmuls on this CPU (AVX512 BF16/AMX)"
    return None


NS_SHAPES = [(4, 8), (8, 3), (8, 8), (16, 4), (3, 70), (40, 18)]


@pytest.mark.parametrize("shape", NS_SHAPES)
def test_newton_schulz_matches_torch_bit_for_bit(shape):
    """Every orthogonalisation bit for bit, on matrices of one scale and of mixed
    scales (where the float32 summation order shows): shapes cover every summation
    path of PyTorch's kernels, wide and tall (transposed), blocks of 4, 16 and 64."""
    reason = _torch_bf16_matmul_differs()
    rng = np.random.default_rng(1)
    same = total = 0
    for dt in (np.float32, np.float64):
        for ns_steps in (5, 3):
            for i in range(20):
                g = rng.standard_normal(shape) * (2.0 ** rng.uniform(-8, 8, shape) if i % 2 else 10.0 ** (i % 5 - 2))
                g = g.astype(dt)
                ours = zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), ns_steps, 1e-7)
                theirs = torch_newtonschulz(torch.tensor(g), (3.4445, -4.7750, 2.0315), ns_steps, 1e-7)
                theirs = theirs.float().numpy()
                assert ours.dtype == np.float32 and ours.shape == shape
                total += 1
                same += np.array_equal(ours, theirs)
                if reason is not None:  # a flipped rounding grows through the iterations
                    assert np.linalg.norm(ours - theirs) <= 2.0 ** -6 * np.linalg.norm(theirs)
    if reason is None:
        assert same == total, (same, total)
    else:
        assert same >= 0.8 * total, (same, total)
        pytest.skip(f"{reason}: Newton-Schulz bit for bit in {same}/{total} cases, the rest within 2^-6")


def test_newton_schulz_orthogonalises():
    g = np.random.default_rng(2).standard_normal((16, 8))
    s = np.linalg.svd(zeropower_via_newtonschulz(g).astype(np.float64), compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.5  # U S' V^T with S' ~ Uniform(0.5, 1.5), as documented


def _grads(W1, W2, X, Y):
    """The gradients of the net ``X @ W1 @ W2`` with MSE loss, one NumPy function for both
    libraries: equal weights give equal gradients, bit for bit."""
    H = X @ W1
    r = (H @ W2 - Y) * (2.0 / (X.shape[0] * W2.shape[1]))
    return X.T @ (r @ W2.T), H.T @ r


# PyTorch's bfloat16 matmuls are slow on CPU (~10 ms per orthogonalisation): 17 combinations
MUON_CASES = _product(lr=[0.02], weight_decay=[0.1, 0.0], momentum=[0.95, 0.5], nesterov=[True, False],
                      adjust_lr_fn=[None, "match_rms_adamw"]) + [{"lr": 0.02, "ns_steps": 3}]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", MUON_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_muon_100_steps_match_torch(kwargs, dtype):
    """100 steps, each library on its own weights (a wide and a tall matrix). Muon
    rounds its update to bfloat16 (2^-8), so this holds only because the bfloat16
    orthogonalisation is bit for bit PyTorch's; where PyTorch runs other kernels,
    each step is checked from PyTorch's state instead, to one bfloat16 rounding."""
    reason = _torch_bf16_matmul_differs()
    if reason is not None:
        _muon_steps_within_one_bfloat16_ulp(kwargs, dtype)
        pytest.skip(f"{reason}: Muon checked step by step, to one bfloat16 ulp, not end to end")
    w = initial_weights(dtype)
    with default_dtype(dtype):
        tp = [torch.tensor(w[k].copy(), requires_grad=True) for k in ("W1", "W2")]
        rp = [rg.tensor(w[k].copy(), requires_grad=True) for k in ("W1", "W2")]
        to, ro = torch.optim.Muon(tp, **kwargs), rg.optim.Muon(rp, **kwargs)
        for _ in range(100):
            for p, g in zip(rp, _grads(*[p.data for p in rp], w["X"], w["Y"])):
                p.grad = rg.tensor(g.astype(dtype))
            for p, g in zip(tp, _grads(*[p.detach().numpy() for p in tp], w["X"], w["Y"])):
                p.grad = torch.tensor(g.astype(dtype))
            ro.step()
            to.step()
    assert_close([p.data for p in rp], [p.detach().numpy() for p in tp], dtype)
    assert_close([np.asarray(ro.state[p]["momentum_buffer"].data) for p in rp],
                 [to.state[p]["momentum_buffer"].numpy() for p in tp], dtype)
    assert np.abs(rp[0].data - w["W1"]).max() > 1e-2


def _muon_steps_within_one_bfloat16_ulp(kwargs, dtype):
    """Where PyTorch's bfloat16 summation order is not the one emulated, a rounding can
    fall the other way (one bfloat16 ulp) and trajectories part. Each of the 100 steps
    therefore starts both optimizers from PyTorch's parameters and momentum, with the
    same gradients, and compares the step's result."""
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
    """Load PyTorch's state after one step, go on in both libraries: counts, history
    and parameters agree step by step. With max_iter=3, max_eval defaults to
    3 * 5 // 4 = 3, and without a line search every iteration but the last costs
    one evaluation after the step's first, so a step stops after 2 iterations
    (n_iter 2, 4, 6, 8; not 3, 6, 9) -- in PyTorch as here."""
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
        for k in range(3):
            ro.step(rclosure)
            to.step(tclosure)
            rs, ts = ro.state[rparams[0]], to.state[tparams[0]]
            assert (rs["func_evals"], rs["n_iter"]) == (ts["func_evals"], ts["n_iter"]) == (6 + 3 * k, 4 + 2 * k)
            assert len(rs["old_dirs"]) == len(ts["old_dirs"])
            assert float(rs["t"]) == float(ts["t"])
            for name in ("d", "prev_flat_grad"):
                np.testing.assert_allclose(rs[name].data, ts[name].numpy(), rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose([float(rs["H_diag"]), rs["prev_loss"]], [float(ts["H_diag"]), ts["prev_loss"]],
                                       rtol=1e-10)
            assert_close([p.data for p in rparams], [p.detach().numpy() for p in tparams], "float64")


def test_lbfgs_needs_a_closure():
    opt = rg.optim.LBFGS([rg.zeros(2, requires_grad=True)])
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step(None)
