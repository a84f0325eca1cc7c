"""LBFGS against ``torch.optim.LBFGS`` for 100 ``step()`` calls: same problem, same
data and initial weights in both libraries, every option combination, in float32
and float64. After every step the parameters agree to 1e-5 relative (float32) /
1e-10 (float64) and ``func_evals``/``n_iter`` are equal.

L-BFGS feeds its own rounding back (curvature pairs are differences of gradients),
so the problems are convex and well conditioned, where 1-ulp differences between
the libraries die out instead of growing. Measured on this machine:

* ``_softmax_regression`` (18 parameters): worst 1.4e-6 (float32) and 4e-15
  (float64) over all 21 combinations and 100 steps; L-BFGS moves the parameters
  for 8-30 iterations, then every step stops at the gradient tolerance.
* ``_ill_conditioned_softmax`` (44 parameters, feature scales 1..0.32): float64
  worst 1.2e-12 over its 11 combinations, moving for 19-43 iterations. In float32 the same runs differ by
  1e-5..2.5e-3 (and sometimes in the counts): cond ~1e3 times float32's eps, so
  this problem is checked in float64 only.
* The non-convex MLP (``optim_helpers.Net``, float64, one iteration per step):
  the relative difference grows about tenfold every ~12 iterations, 2e-16 (1),
  3e-15 (11), 1e-13 (41), 8e-12 (61), 1e-11 (81), crossing 1e-10 at step 96 and
  reaching 4e-7 at step 131, identically with and without the line search; with
  5 iterations per step (strong Wolfe) it crosses 1e-10 after 23 steps. Those
  runs are checked at 60 and 12 steps (>= 10x below the tolerance), not 100.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

import retrograd as rg
from optim_helpers import TOL, Net, default_dtype, initial_weights, rel_errors
from test_optim_torch_extra import _softmax_regression

warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """PyTorch's thread pool costs ~10 ms per tiny backward on a busy machine (25x
    this file's runtime); one thread is plenty for these sizes."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ill_conditioned_softmax(lib, dtype):
    """Softmax regression, 128 samples, 10 features scaled 1..10**-0.5, 4 classes,
    weak L2 (1e-3): convex, but L-BFGS needs tens of iterations."""
    rng = np.random.default_rng(3)
    scale = np.logspace(0, -0.5, 10)
    X = (rng.standard_normal((128, 10)) * scale).astype(dtype)
    W_true = rng.standard_normal((10, 4)) * 0.9 / scale[:, None]
    O = np.eye(4, dtype=dtype)[np.argmax(X @ W_true + rng.standard_normal((128, 4)), 1)]
    W = lib.tensor((rng.standard_normal((10, 4)) * 0.1).astype(dtype), requires_grad=True)
    b = lib.tensor(np.zeros(4, dtype), requires_grad=True)
    Xt, Ot = lib.tensor(X), lib.tensor(O)

    def loss():
        Z = Xt @ W + b
        return (Z.logsumexp(1) - (Z * Ot).sum(1)).mean() + 1e-3 * (W * W).sum()
    return [W, b], loss


def _net(lib, dtype):
    net = Net(lib, initial_weights(dtype))
    return net.params, lambda: net.loss(0)


def _values(lib, params) -> list[np.ndarray]:
    return [np.array(p.data if lib is rg else p.detach().numpy()) for p in params]


def _run_both(problem, kwargs: dict, dtype: str, steps: int) -> list[dict]:
    """``steps`` calls of ``step(closure)`` in retrograd and in PyTorch; per library the
    losses, ``(func_evals, n_iter)`` and the parameters after every step."""
    out = []
    with default_dtype(dtype):
        for lib in (rg, torch):
            params, f = problem(lib, dtype)
            opt = lib.optim.LBFGS(params, **kwargs)

            def closure(opt=opt, f=f):
                opt.zero_grad()
                loss = f()
                loss.backward()
                return loss
            rec = {"loss": [], "counts": [], "values": [_values(lib, params)]}
            for _ in range(steps):
                rec["loss"].append(float(opt.step(closure)))
                st = opt.state[params[0]]
                rec["counts"].append((st["func_evals"], st["n_iter"]))
                rec["values"].append(_values(lib, params))
            out.append(rec)
    return out


def _assert_match(r: dict, t: dict, dtype: str) -> float:
    """Counts equal and parameters within tolerance after every step; returns the worst error."""
    for i, (rc, tc) in enumerate(zip(r["counts"], t["counts"])):
        assert rc == tc, f"step {i + 1}: (func_evals, n_iter) {rc} != torch's {tc}"
    worst = 0.0
    for i, (rv, tv) in enumerate(zip(r["values"], t["values"])):
        err = max(rel_errors(rv, tv))
        assert err <= TOL[dtype], f"step {i}: relative error {err:.2e} > {TOL[dtype]}"
        assert all(x.dtype == y.dtype for x, y in zip(rv, tv))
        worst = max(worst, err)
    np.testing.assert_allclose(r["loss"], t["loss"], rtol=TOL[dtype])
    return worst


def _moving_iterations(rec: dict) -> int:
    """Iterations (n_iter increments) of the steps that changed the parameters."""
    n, prev_iter = 0, 0
    for i, (_, n_iter) in enumerate(rec["counts"]):
        if any(np.any(a != b) for a, b in zip(rec["values"][i + 1], rec["values"][i])):
            n += n_iter - prev_iter
        prev_iter = n_iter
    return n


def _product(**options) -> list[dict]:
    return [dict(zip(options, vals)) for vals in itertools.product(*options.values())]


def _ids(kw: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in kw.items())


CASES = _product(lr=[1.0, 0.3], max_iter=[1, 20], history_size=[3, 100],
                 line_search_fn=[None, "strong_wolfe"]) + [
    {"max_iter": 20, "max_eval": 7}, {"max_iter": 20, "max_eval": 7, "line_search_fn": "strong_wolfe"},
    {"max_iter": 20, "tolerance_grad": 1e-3},
    {"max_iter": 20, "tolerance_change": 1e-4},
    {"max_iter": 20, "tolerance_change": 1e-4, "line_search_fn": "strong_wolfe"}]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", CASES, ids=_ids)
def test_lbfgs_100_steps_softmax_regression_matches_torch(kwargs, dtype):
    """In float32 the default tolerances (1e-7/1e-9) would stop on rounding noise,
    which differs between libraries: float32-sized ones (1e-4/1e-6) are used."""
    kw = dict(kwargs)
    if dtype == "float32":
        kw.setdefault("tolerance_grad", 1e-4)
        kw.setdefault("tolerance_change", 1e-6)
    r, t = _run_both(_softmax_regression, kw, dtype, 100)
    _assert_match(r, t, dtype)
    assert t["counts"][-1][0] >= 100  # every step evaluated at least once
    # not vacuous: a real descent (loss 1.507 -> 0.883), several iterations long
    assert t["loss"][-1] < 0.6 * t["loss"][0]
    assert _moving_iterations(t) >= 8


ILL_CASES = _product(max_iter=[1, 5], history_size=[3, 100], line_search_fn=[None, "strong_wolfe"]) + [
    {"lr": 0.5, "max_iter": 1}, {"max_iter": 5, "max_eval": 4},
    {"max_iter": 5, "tolerance_change": 1e-6, "line_search_fn": "strong_wolfe"}]


@pytest.mark.parametrize("kwargs", ILL_CASES, ids=_ids)
def test_lbfgs_100_steps_ill_conditioned_float64_matches_torch(kwargs):
    """The slower problem, float64 only (see the module docstring for float32)."""
    r, t = _run_both(_ill_conditioned_softmax, kwargs, "float64", 100)
    _assert_match(r, t, "float64")
    loss = t["loss"]
    assert loss[-1] < 0.6 * loss[0]
    # still descending well into the run: after 10 iterations the loss has further to go
    after_10 = next(i for i, (_, n_iter) in enumerate(t["counts"]) if n_iter >= 10)
    assert loss[after_10 + 1] - loss[-1] > 1e-6
    assert _moving_iterations(t) >= 15


@pytest.mark.parametrize("line_search_fn,max_iter,steps", [(None, 1, 60), ("strong_wolfe", 1, 60),
                                                           ("strong_wolfe", 5, 12)])
def test_lbfgs_on_the_net_matches_torch_up_to_its_horizon(line_search_fn, max_iter, steps):
    """The non-convex MLP in float64, for as long as rounding differences stay >= 10x
    below 1e-10 (they grow exponentially: see the module docstring)."""
    kw = {"max_iter": max_iter, "line_search_fn": line_search_fn}
    r, t = _run_both(_net, kw, "float64", steps)
    worst = _assert_match(r, t, "float64")
    assert worst <= 1e-11
    assert t["loss"][-1] < 0.1 * t["loss"][0]



def test_lbfgs_mixed_dtypes_keep_torchs_flat_layout():
    """With float64 and float32 parameters the flat vectors (d, prev_flat_grad,
    old_dirs) run over the parameters in order, as PyTorch's, not bucket by dtype:
    a PyTorch state dict loaded mid-run continues exactly."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)), rng.standard_normal(20)
    w0, b0, c0 = rng.standard_normal(4), np.array([0.3], np.float32), rng.standard_normal(1)

    def make(lib):
        W, b, c = (lib.tensor(v.copy(), requires_grad=True) for v in (w0, b0, c0))
        Xt, yt = lib.tensor(X), lib.tensor(y)
        return [W, b, c], lambda: (((Xt @ W + b * c) - yt) ** 2).mean() + 0.1 * (W * W).sum()

    def closure_for(opt, f):
        def closure():
            opt.zero_grad()
            loss = f()
            loss.backward()
            return loss
        return closure
    tparams, tf = make(torch)
    to = torch.optim.LBFGS(tparams, max_iter=3)
    tclosure = closure_for(to, tf)
    to.step(tclosure)
    rparams, rf = make(rg)
    for rp, tp in zip(rparams, tparams):
        rp.data[...] = tp.detach().numpy()
    ro = rg.optim.LBFGS(rparams, max_iter=3)
    sd = to.state_dict()
    conv = lambda v: v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v  # noqa: E731
    ro.load_state_dict({"state": {k: {n: ([conv(x) for x in v] if isinstance(v, list) else conv(v))
                                      for n, v in st.items()} for k, st in sd["state"].items()},
                        "param_groups": sd["param_groups"]})
    rclosure = closure_for(ro, rf)
    for _ in range(3):
        ro.step(rclosure)
        to.step(tclosure)
        rs, ts = ro.state[rparams[0]], to.state[tparams[0]]
        assert (rs["func_evals"], rs["n_iter"]) == (ts["func_evals"], ts["n_iter"])
        np.testing.assert_allclose(rs["d"].data, ts["d"].numpy(), rtol=1e-5, atol=1e-12)
    for rp, tp in zip(rparams, tparams):
        assert rp.data.dtype == tp.detach().numpy().dtype
        np.testing.assert_allclose(rp.data, tp.detach().numpy(), rtol=1e-5)
