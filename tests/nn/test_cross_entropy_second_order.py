"""Second-order gradients through cross_entropy whose logits come from an op (a node that keeps only an
edge to its input, whose values are then a NaN stand-in): Hessian-vector products match PyTorch's."""
import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn.functional as F
from retrograd.autograd import functional as AF


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("n", [100, 1000])  # 1000 x 10 float64 logits exceed the engine's stand-in threshold
def test_hvp_through_cross_entropy_of_a_matmul_matches_torch(n, label_smoothing):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 64)), rng.integers(0, 10, n)
    w, v = rng.standard_normal((10, 64)) * 0.1, rng.standard_normal((10, 64))

    def f(wt):
        return F.cross_entropy(rg.tensor(x) @ wt.T, rg.tensor(y), label_smoothing=label_smoothing)

    _, hv = AF.hvp(f, rg.tensor(w), rg.tensor(v))
    wt = torch.tensor(w, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(torch.tensor(x) @ wt.T, torch.tensor(y), label_smoothing=label_smoothing)
    (g,) = torch.autograd.grad(loss, wt, create_graph=True)
    (hv_t,) = torch.autograd.grad((g * torch.tensor(v)).sum(), wt)
    assert np.isfinite(hv.numpy()).all()
    np.testing.assert_allclose(hv.numpy(), hv_t.numpy(), rtol=1e-9, atol=1e-12)


def test_third_order_through_cross_entropy_matches_torch():
    rng = np.random.default_rng(1)
    a, y = rng.standard_normal((900, 10)), rng.integers(0, 10, 900)
    z = rg.tensor(a, requires_grad=True)
    zt = torch.tensor(a, requires_grad=True)
    for lib, v, t in ((rg, z, rg.tensor(y)), (torch, zt, torch.tensor(y))):
        loss = lib.nn.functional.cross_entropy(v * 1.5, t)
        (g,) = lib.autograd.grad(loss, v, create_graph=True)
        (h,) = lib.autograd.grad((g ** 2).sum(), v, create_graph=True)
        (h ** 2).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), zt.grad.numpy(), rtol=1e-8, atol=1e-14)
