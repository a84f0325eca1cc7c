"""rg.autograd.functional against torch.autograd.functional (float64) and known closed forms."""
import numpy as np
import pytest
import torch
import torch.autograd.functional as TF

import retrograd as rg
from retrograd.autograd import functional as F

RNG = np.random.default_rng(0)
A = RNG.standard_normal(3)
W = RNG.standard_normal((3, 2))
VA = (RNG.standard_normal(3), RNG.standard_normal((3, 2)))
V2 = RNG.standard_normal(2)


def f2(x, w):  # two inputs, vector output; same code runs on both libraries
    return ((x @ w).tanh() * x.sum()).exp()


def s2(x, w):  # two inputs, scalar output
    return (x @ w).sin().sum() * (x * x).sum()


def rg_in():
    return rg.tensor(A), rg.tensor(W)


def t_in():
    return torch.tensor(A), torch.tensor(W)


def close(a, b, tol=1e-12):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            close(x, y, tol)
        return
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=tol, atol=tol)


def test_hessian_of_known_function():
    # f(x) = sum(x^3) + x0*x1  ->  H = diag(6x) + [[0,1],[1,0]] block
    x = rg.tensor([1.0, -2.0, 0.5])
    h = F.hessian(lambda x: (x ** 3).sum() + x[0] * x[1], x)
    expected = np.diag(6 * x.data)
    expected[0, 1] = expected[1, 0] = 1.0
    np.testing.assert_allclose(h.data, expected, rtol=1e-14)
    # quadratic form 0.5 x^T A x has Hessian (A + A^T) / 2
    m = RNG.standard_normal((4, 4))
    q = F.hessian(lambda x: 0.5 * (x @ rg.tensor(m) @ x), rg.tensor(RNG.standard_normal(4)))
    np.testing.assert_allclose(q.data, (m + m.T) / 2, rtol=1e-13, atol=1e-15)


def test_vjp_vs_torch():
    out, r = F.vjp(f2, rg_in(), rg.tensor(V2))
    tout, tr = TF.vjp(f2, t_in(), torch.tensor(V2))
    close(out, tout)
    close(r, tr)
    assert not r[0].requires_grad


def test_vjp_single_input_and_scalar_output_without_v():
    out, r = F.vjp(lambda x: (x.sin() * x).sum(), rg.tensor(A))
    tout, tr = TF.vjp(lambda x: (x.sin() * x).sum(), torch.tensor(A))
    close(out, tout)
    close(r, tr)
    with pytest.raises(RuntimeError, match="v can only be None"):
        F.vjp(f2, rg_in())


def test_jvp_vs_torch():
    v = tuple(rg.tensor(z) for z in VA)
    out, r = F.jvp(f2, rg_in(), v)
    tout, tr = TF.jvp(f2, t_in(), tuple(torch.tensor(z) for z in VA))
    close(out, tout)
    close(r, tr)


def test_jvp_tuple_outputs_vs_torch():
    def g(x):
        return x.exp(), (x * x).sum()

    v = RNG.standard_normal(3)
    out, r = F.jvp(g, rg.tensor(A), rg.tensor(v))
    tout, tr = TF.jvp(g, torch.tensor(A), torch.tensor(v))
    close(out, tout)
    close(r, tr)


def test_jacobian_vs_torch_all_structures():
    close(F.jacobian(f2, rg_in()), TF.jacobian(f2, t_in()))
    close(F.jacobian(lambda x: x.exp() * x, rg.tensor(W)), TF.jacobian(lambda x: x.exp() * x, torch.tensor(W)))

    def two_out(x, w):
        return x.sin(), (x @ w).sum()

    close(F.jacobian(two_out, rg_in()), TF.jacobian(two_out, t_in()))
    close(F.jacobian(lambda x: (x.sin(), x * 2), rg.tensor(A)),
          TF.jacobian(lambda x: (x.sin(), x * 2), torch.tensor(A)))
    close(F.jacobian(f2, rg_in(), vectorize=True), TF.jacobian(f2, t_in(), vectorize=True))


def test_jacobian_unused_input_zero_or_strict_error():
    j = F.jacobian(lambda x, y: x * 2, (rg.tensor(A), rg.tensor(A)))
    np.testing.assert_array_equal(j[1].data, np.zeros((3, 3)))
    np.testing.assert_array_equal(j[0].data, 2 * np.eye(3))
    with pytest.raises(RuntimeError, match="independent of input 1"):
        F.jacobian(lambda x, y: x * 2, (rg.tensor(A), rg.tensor(A)), strict=True)


def test_hessian_vs_torch_tuple_inputs():
    close(F.hessian(s2, rg_in()), TF.hessian(s2, t_in()))


def test_hvp_vhp_vs_torch():
    v = tuple(rg.tensor(z) for z in VA)
    tv = tuple(torch.tensor(z) for z in VA)
    for ours, theirs in ((F.hvp, TF.hvp), (F.vhp, TF.vhp)):
        out, r = ours(s2, rg_in(), v)
        tout, tr = theirs(s2, t_in(), tv)
        close(out, tout)
        close(r, tr)


def test_create_graph_keeps_results_differentiable():
    x = rg.tensor(A, requires_grad=True)
    tx = torch.tensor(A, requires_grad=True)
    _, r = F.vjp(lambda x: (x ** 3).sum(), x, create_graph=True)
    _, tr = TF.vjp(lambda x: (x ** 3).sum(), tx, create_graph=True)
    assert r.requires_grad
    (r * r).sum().backward()
    (tr * tr).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-13)
    h = F.hessian(lambda x: (x ** 3).sum(), x, create_graph=True)
    (g,) = rg.grad(h.sum(), x)  # d/dx sum(diag(6x)) = 6
    np.testing.assert_allclose(g.data, np.full(3, 6.0))


def test_inputs_not_modified_and_results_detached():
    x = rg.tensor(A)
    out, r = F.vjp(lambda x: x.exp().sum(), x)
    assert not x.requires_grad and not out.requires_grad and not r.requires_grad


def test_bad_v_shape_and_non_scalar_hessian():
    with pytest.raises(RuntimeError, match=r"invalid size: should be \(3,\) but got \(2,\)"):
        F.jvp(lambda x: x * 2, rg.tensor(A), rg.tensor(V2))
    with pytest.raises(RuntimeError, match="single Tensor with a single element"):
        F.hessian(lambda x: x * 2, rg.tensor(A))
    with pytest.raises(TypeError, match="expected a Tensor or a tuple of Tensors"):
        F.vjp(lambda x: 3.0, rg.tensor(A), rg.tensor(A))
