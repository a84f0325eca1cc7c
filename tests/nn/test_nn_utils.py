"""rg.nn.utils against torch.nn.utils: gradient clipping, parameters <-> vector,
and gradient accumulation over micro-batches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import retrograd as rg


def _pair(seed: int = 0, scale: float = 1.0, dtype: str = "float64"):
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    grads = [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]
    rp = [rg.tensor(np.zeros(s, dtype), requires_grad=True) for s in shapes]
    tp = [torch.zeros(s, dtype=getattr(torch, dtype), requires_grad=True) for s in shapes]
    for r, t, g in zip(rp, tp, grads):
        r.grad = rg.tensor(g.copy())
        t.grad = torch.tensor(g.copy())
    return rp, tp


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype):
    rp, tp = _pair(dtype=dtype)
    nt = math.inf if norm_type == "inf" else norm_type
    r_total = rg.nn.utils.clip_grad_norm_(rp, max_norm, norm_type=nt)
    t_total = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=nt)
    assert isinstance(r_total, rg.Tensor) and r_total.shape == ()
    rtol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(float(r_total), float(t_total), rtol=rtol)
    for r, t in zip(rp, tp):
        np.testing.assert_allclose(r.grad.data, t.grad.numpy(), rtol=rtol, atol=1e-7 if dtype == "float32" else 0)
        assert r.grad.dtype == getattr(rg, dtype)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_clip_grad_norm_foreach_matches_torch(foreach):
    """``foreach`` picks torch's kernel, not its numbers: every value gives torch's result."""
    rp, tp = _pair(dtype="float32", scale=3.0)
    r_total = rg.nn.utils.clip_grad_norm_(rp, 0.5, foreach=foreach)
    t_total = torch.nn.utils.clip_grad_norm_(tp, 0.5, foreach=foreach)
    assert r_total.dtype == rg.float32
    np.testing.assert_allclose(float(r_total), float(t_total), rtol=1e-6)
    for r, t in zip(rp, tp):
        np.testing.assert_allclose(r.grad.data, t.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_single_tensor_and_no_grads():
    p = rg.tensor([3.0, 4.0], requires_grad=True)
    p.grad = rg.tensor([3.0, 4.0])
    total = rg.nn.utils.clip_grad_norm_(p, 1.0)
    assert float(total) == 5.0
    np.testing.assert_allclose(p.grad.data, np.array([3.0, 4.0]) / (5.0 + 1e-6))
    assert float(rg.nn.utils.clip_grad_norm_([rg.zeros(2, requires_grad=True)], 1.0)) == 0.0


def test_clip_grad_norm_nonfinite():
    rp, tp = _pair()
    rp[1].grad.data[0] = np.nan
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is "
                                           "non-finite, so it cannot be clipped"):
        rg.nn.utils.clip_grad_norm_(rp, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(rp[0].grad.data, tp[0].grad.numpy())  # untouched when it raises
    rp[1].grad.data[0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        rg.nn.utils.clip_grad_norm_(rp, 1.0, norm_type=math.inf, error_if_nonfinite=True)
    total = rg.nn.utils.clip_grad_norm_(rp, 1.0)  # without the flag: scaled by the infinite norm, as torch
    tp[1].grad[0] = math.inf
    t_total = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    assert float(total) == float(t_total) == math.inf
    np.testing.assert_array_equal(rp[0].grad.data, tp[0].grad.numpy())


def test_clip_grad_value_matches_torch():
    rp, tp = _pair(scale=2.0)
    rg.nn.utils.clip_grad_value_(rp, 0.7)
    torch.nn.utils.clip_grad_value_(tp, 0.7)
    for r, t in zip(rp, tp):
        np.testing.assert_array_equal(r.grad.data, t.grad.numpy())
    assert max(abs(r.grad.numpy()).max() for r in rp) == pytest.approx(0.7)


def test_clipping_keeps_the_optimizer_gradient_buffer():
    """Clipping scales in place: the optimizer's flat gradient buffer sees it."""
    rp, _ = _pair()
    opt = rg.optim.SGD(rp, lr=1.0)
    before = [p.detach().numpy().copy() for p in rp]
    rg.nn.utils.clip_grad_norm_(rp, 0.1)
    clipped = [p.grad.detach().numpy().copy() for p in rp]
    opt.step()
    for p, b, g in zip(rp, before, clipped):
        np.testing.assert_allclose(p.data, b - g)
    assert np.sqrt(sum((g ** 2).sum() for g in clipped)) == pytest.approx(0.1, rel=1e-5)


def test_parameters_to_vector_and_back_match_torch():
    rng = np.random.default_rng(3)
    vals = [rng.standard_normal(s) for s in [(2, 3), (4,), (1, 2, 2)]]
    rp = [rg.tensor(v.copy(), requires_grad=True) for v in vals]
    tp = [torch.tensor(v.copy(), requires_grad=True) for v in vals]
    rv, tv = rg.nn.utils.parameters_to_vector(rp), torch.nn.utils.parameters_to_vector(tp)
    np.testing.assert_array_equal(rv.data, tv.detach().numpy())
    new = rng.standard_normal(rv.shape[0])
    rg.nn.utils.vector_to_parameters(rg.tensor(new), rp)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), tp)
    for r, t in zip(rp, tp):
        np.testing.assert_array_equal(r.data, t.detach().numpy())
    with pytest.raises(ValueError, match=r"vec has shape \(3,\), expected \(14,\)"):
        rg.nn.utils.vector_to_parameters(rg.tensor(new[:3]), rp)
    with pytest.raises(TypeError, match="got: list"):
        rg.nn.utils.vector_to_parameters([1.0], rp)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_accumulation_equals_full_batch(reduction):
    """k micro-batches, each loss divided by k (mean reduction) or left as is (sum
    reduction: the sum over micro-batches is the full-batch sum), give the full-batch
    gradient, up to float64 rounding."""
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((24, 5)), rng.standard_normal((24, 2))
    model = rg.nn.Sequential(rg.nn.Linear(5, 7), rg.nn.Tanh(), rg.nn.Linear(7, 2)).double()
    loss_fn = rg.nn.MSELoss(reduction=reduction)
    params = list(model.parameters())
    loss_fn(model(rg.tensor(X)), rg.tensor(Y)).backward()
    full = [p.grad.detach().numpy().copy() for p in params]
    model.zero_grad()
    k = 4
    for xb, yb in zip(np.split(X, k), np.split(Y, k)):
        loss = loss_fn(model(rg.tensor(xb)), rg.tensor(yb))
        (loss / k if reduction == "mean" else loss).backward()
    for g, f in zip((p.grad.data for p in params), full):
        np.testing.assert_allclose(g, f, rtol=1e-12, atol=1e-14)
        assert np.abs(f).max() > 1e-3
