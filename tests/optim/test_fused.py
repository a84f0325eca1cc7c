"""The fused (Numba) Adam kernel gives bitwise the numbers of the NumPy update,
for every option combination, both dtypes, one thread and several; and it
agrees with ``torch.optim.Adam(fused=True)`` over 100 steps."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import accel
from optim_helpers import assert_close, default_dtype, initial_weights, train

pytestmark = pytest.mark.skipif(not accel.available(), reason="Numba is not installed (the 'fast' extra)")

OPTIONS = [dict(zip(("amsgrad", "weight_decay", "decoupled_weight_decay", "maximize"), c))
           for c in itertools.product([False, True], [0.0, 0.1], [False, True], [False, True])]


def _ids(kw: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in kw.items())


def _run(kw: dict, fused_flag: bool, dtype: str, sizes: list[int], steps: int, *, betas=(0.9, 0.999),
         skip_every: int = 0, nan_at: int | None = None) -> list[np.ndarray]:
    """``steps`` Adam steps on random gradients; returns parameters and state."""
    rng = np.random.default_rng(1)
    params = [rg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in sizes]
    opt = rg.optim.Adam(params, lr=0.01, betas=betas, fused=fused_flag, **kw)
    for step in range(steps):
        for i, p in enumerate(params):
            if skip_every and (i + step) % skip_every == 0:
                p.grad = None  # no gradient: the gathered (per-parameter step) path
            else:
                g = rng.standard_normal(p.shape).astype(dtype) * 0.1
                if nan_at is not None and step == nan_at and i == 0:
                    g[:3] = [np.nan, np.inf, -np.inf]
                p.grad = rg.tensor(g)
        opt.step()
    out = [p.detach().numpy().copy() for p in params]
    for p in params:
        out.extend(v.detach().numpy().copy() for v in opt.state[p].values())
    return out


def _assert_identical(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        assert np.array_equal(x, y, equal_nan=True), f"max difference {np.nanmax(np.abs(x - y))}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", OPTIONS, ids=_ids)
def test_fused_equals_numpy_bitwise(kw, dtype):
    sizes = [7, 300, 33]
    _assert_identical(_run(kw, True, dtype, sizes, 25), _run(kw, False, dtype, sizes, 25))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kw", [OPTIONS[0], OPTIONS[-1]], ids=_ids)
def test_fused_threads_split_large_buffers_identically(kw, threads):
    before = rg.get_num_threads()
    rg.set_num_threads(threads)
    try:
        sizes = [accel.MIN_PER_THREAD * 2 + 5, 1001, accel.MIN_PER_THREAD + 3]
        a = _run(kw, True, "float32", sizes, 3)
    finally:
        rg.set_num_threads(before)
    _assert_identical(a, _run(kw, False, "float32", sizes, 3))


def test_fused_with_skipped_parameters_and_nonfinite_gradients():
    kw = {"amsgrad": True, "weight_decay": 0.1}
    sizes = [5, 40, 9]
    _assert_identical(_run(kw, True, "float32", sizes, 12, skip_every=3, nan_at=4),
                      _run(kw, False, "float32", sizes, 12, skip_every=3, nan_at=4))
    out = _run(kw, True, "float32", sizes, 6, nan_at=4)
    assert np.isnan(out[0][:3]).all() and np.isfinite(out[0][3:]).all()


def test_hyperparameters_changed_between_steps_reach_the_kernel():
    # adam_ keeps the scalars that stay from step to step by their values: a group's betas, eps, weight decay
    # and maximize changed by hand (as a scheduler or a user may) must reach the kernel at the next step
    def run(fused_flag: bool) -> list[np.ndarray]:
        rng = np.random.default_rng(3)
        params = [rg.tensor(rng.standard_normal(s).astype("float32"), requires_grad=True) for s in (9, 30)]
        opt = rg.optim.AdamW(params, lr=0.01, fused=fused_flag)
        changes = [{}, {"betas": (0.8, 0.99)}, {"eps": 1e-3}, {"weight_decay": 0.5}, {"maximize": True},
                   {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "maximize": False}]
        for change in changes:
            opt.param_groups[0].update(change)
            for _ in range(2):
                for p in params:
                    p.grad = rg.tensor(rng.standard_normal(p.shape).astype("float32"))
                opt.step()
        return [p.detach().numpy().copy() for p in params] + [
            v.detach().numpy().copy() for p in params for v in opt.state[p].values()]
    _assert_identical(run(True), run(False))


def test_small_beta1_keeps_numpy_lerp_formula():
    # 1 - beta1 >= 0.5 switches PyTorch's lerp formula: the NumPy path handles it
    kw = {"weight_decay": 0.1}
    sizes = [11, 6]
    _assert_identical(_run(kw, True, "float32", sizes, 10, betas=(0.3, 0.9)),
                      _run(kw, False, "float32", sizes, 10, betas=(0.3, 0.9)))


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("amsgrad,maximize", [(False, False), (True, True)])
def test_100_steps_match_torch_fused(name, dtype, amsgrad, maximize):
    w = initial_weights(dtype)
    kw = {"lr": 0.01, "amsgrad": amsgrad, "maximize": maximize, "weight_decay": 0.1}
    sign = -1.0 if maximize else 1.0
    with default_dtype(dtype):
        r, _ = train(rg, name, {**kw, "fused": True}, w, 100, sign=sign)
        t, _ = train(torch, name, {**kw, "fused": True, "foreach": None}, w, 100, sign=sign)
    assert_close(r.values(), t.values(), dtype)


def test_fused_argument_errors(monkeypatch):
    p = [rg.tensor(np.ones(3, np.float32), requires_grad=True)]
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        rg.optim.Adam(p, fused=True, foreach=True)
    monkeypatch.setattr(accel._state, "enabled", False)  # as RETROGRAD_NO_JIT=1
    with pytest.raises(RuntimeError, match=r"fused=True needs Numba.*retrograd\[fast\]"):
        rg.optim.AdamW(p, fused=True)
    # without Numba the default (fused=None) quietly takes the NumPy path
    opt = rg.optim.Adam(p, lr=0.1)
    p[0].grad = rg.tensor(np.ones(3, np.float32))
    opt.step()
    np.testing.assert_allclose(p[0].data, 0.9, rtol=1e-6)
