"""Sequential runs a plain ReLU followed by a plain MaxPool2d as one node (``relu_max_pool2d``): the
bits of the two modules called one by one, forward, backward and double backward, with the kernels
and on the NumPy path, PyTorch's numbers, and the two modules called as such whenever something
could see the step between them or the node does not take the input."""
import io

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import accel, nn
from retrograd.nn.functional import pool

# (MaxPool2d arguments, input (C, H, W))
POOLS = [(dict(kernel_size=2), (3, 12, 12)),
         (dict(kernel_size=2), (3, 11, 13)),  # a row and a column in no window
         (dict(kernel_size=2, ceil_mode=True), (3, 11, 11)),
         (dict(kernel_size=3, stride=2, padding=1), (3, 12, 12)),  # overlapping windows (ResNet's stem)
         (dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(1, 2)), (3, 9, 12)),
         (dict(kernel_size=3, stride=1, dilation=2, ceil_mode=True), (3, 10, 10))]


def _paths():
    return pytest.mark.parametrize("jit", [pytest.param(True, marks=pytest.mark.skipif(
        not accel.available(), reason="Numba is not installed (the 'fast' extra)")), False],
        ids=["kernels", "numpy"])


def _model(pool_args, c, dtype, seed=0):
    rg.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(**pool_args),
                          nn.Flatten())
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(c, 4, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(**pool_args), torch.nn.Flatten()).to(
        torch.float64 if dtype == rg.float64 else torch.float32)
    with torch.no_grad():
        tmodel[0].weight.copy_(torch.from_numpy(model[0].weight.detach().numpy()))
        tmodel[0].bias.copy_(torch.from_numpy(model[0].bias.detach().numpy()))
    return model, tmodel


def _one_by_one(model, x):
    for m in model:
        x = m(x)
    return x


def _pool_node(y):
    return y.grad_fn.next_functions[0][0].name()  # (y's own node is the Flatten's)


def _specials(xa):
    xa[0, 0, 0, :3] = np.nan
    xa[0, 1, 2, 2] = np.inf
    xa[0, 1, 3, :] = -np.inf
    xa[-1, 0, 1, :] = -0.0
    return xa


def _assert_same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert np.array_equal(a, b, equal_nan=True), what
    assert np.array_equal(np.signbit(a), np.signbit(b)), f"{what}: signs of zeros differ"


@_paths()
@pytest.mark.parametrize("dtype", [rg.float32, rg.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("pool_args,chw", POOLS, ids=[f"{p}-{c}" for p, c in POOLS])
def test_fused_gives_the_bits_of_the_two_modules_and_torchs_numbers(monkeypatch, jit, dtype, pool_args, chw):
    monkeypatch.setattr(accel._state, "enabled", jit)
    model, tmodel = _model(pool_args, chw[0], dtype)
    npdt = np.float32 if dtype == rg.float32 else np.float64
    xa = np.random.default_rng(1).standard_normal((2,) + chw).astype(npdt)
    xa[0, :, :4] = -np.abs(xa[0, :, :4]) - 10  # conv outputs with no positive value in their windows
    x, xr = rg.tensor(xa, requires_grad=True), rg.tensor(xa, requires_grad=True)
    y = model(x)
    assert _pool_node(y) == "ReluMaxPool2dBackward"
    ref = _one_by_one(model, xr)
    assert _pool_node(ref) == "MaxPool2dBackward"
    _assert_same(y.detach().numpy(), ref.detach().numpy(), "forward")
    g = np.random.default_rng(2).standard_normal(y.shape).astype(npdt)
    g[0, :5] = [-0.0, -1.0, -2.0, 0.0, -3.0]
    y.backward(rg.tensor(g))
    fused = [p.grad.numpy().copy() for p in model.parameters()] + [x.grad.numpy().copy()]
    model.zero_grad()
    ref.backward(rg.tensor(g))
    for a, b in zip(fused, [p.grad.numpy() for p in model.parameters()] + [xr.grad.numpy()]):
        _assert_same(a, b, "gradients")
    xt = torch.tensor(xa, requires_grad=True)
    yt = tmodel(xt)
    yt.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == rg.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), **tol)
    for a, b in zip(fused, [p.grad.numpy() for p in tmodel.parameters()] + [xt.grad.numpy()]):
        np.testing.assert_allclose(a, b, **tol)


@_paths()
@pytest.mark.parametrize("pool_args", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)],
                         ids=["2x2", "3x3-s2-p1"])
def test_nan_inf_signed_zeros_and_ties(monkeypatch, jit, pool_args):
    """The pair on its own (its input straight from the user): NaN wins a window (PyTorch's max_pool),
    ReLU keeps it; infinities, -0.0, ties of zeros and of positive values, windows with no positive
    input. The unfused calls' bits everywhere, and PyTorch's pool gradient times ReLU's gate as
    retrograd's ReLU rule multiplies it (``g * (out > 0)``: ``-g * 0 = -0.0``, ``inf * 0 = NaN``, and
    ``g * 0`` at a NaN output, where PyTorch's ``threshold_backward`` selects 0, or passes ``g``)."""
    monkeypatch.setattr(accel._state, "enabled", jit)
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(**pool_args))
    rng = np.random.default_rng(3)
    xa = _specials(rng.standard_normal((2, 2, 8, 8)).astype(np.float32))
    xa[1, 1, :4, :4] = 0.0
    xa[1, 0, 4:, 4:] = 2.5
    x, xr = rg.tensor(xa, requires_grad=True), rg.tensor(xa, requires_grad=True)
    y = model(x)
    assert y.grad_fn.name() == "ReluMaxPool2dBackward"
    ref = _one_by_one(model, xr)
    _assert_same(y.detach().numpy(), ref.detach().numpy(), "forward")
    g = rng.standard_normal(y.shape).astype(np.float32)
    g.reshape(-1)[:6] = [-0.0, np.inf, -np.inf, np.nan, -4.0, 0.0]
    g[0, 1] = -np.abs(g[0, 1])
    with np.errstate(all="ignore"):
        y.backward(rg.tensor(g))
        ref.backward(rg.tensor(g))
    _assert_same(x.grad.numpy(), xr.grad.numpy(), "input gradient")
    xt = torch.tensor(xa, requires_grad=True)
    rt = torch.relu(xt)
    rt.retain_grad()
    yt = torch.nn.functional.max_pool2d(rt, **pool_args)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(y.detach().numpy(), yt.detach().numpy())  # NaN where torch has NaN
    ours, theirs = x.grad.numpy(), xt.grad.numpy()
    # PyTorch's pool backward, then ReLU's rule as retrograd's RELU states it (a product)
    with np.errstate(invalid="ignore"):
        expect = rt.grad.numpy() * (rt.detach().numpy() > 0)
    _assert_same(ours, expect, "PyTorch's pool gradient times relu(x) > 0")
    # PyTorch's threshold_backward selects instead: the same numbers except where the gate is shut
    shut = (rt.grad.numpy() != 0) & ~(rt.detach().numpy() > 0)
    assert shut.any() and np.isnan(ours[shut]).any()  # inf * 0 at a NaN maximum: the case is exercised
    np.testing.assert_array_equal(ours[~shut], theirs[~shut])


def _loss(y, c):
    return (y * c + y * y).sum()  # an output gradient c + 2y: not 0 where the ReLU shuts a window


def test_double_backward_matches_the_two_modules_and_torch():
    model, tmodel = _model(dict(kernel_size=3, stride=2, padding=1), 2, rg.float64)
    model2, _ = _model(dict(kernel_size=2), 2, rg.float64)
    # (the engine recomputes a small input's output for create_graph, and reads a large one's saved one)
    for m, xa in ((model, np.random.default_rng(4).standard_normal((2, 2, 8, 8))),
                  (model2, np.random.default_rng(4).standard_normal((2, 2, 32, 32)))):
        c = rg.tensor(np.random.default_rng(5).standard_normal(m(rg.tensor(xa)).shape))
        x, xr = rg.tensor(xa, requires_grad=True), rg.tensor(xa, requires_grad=True)
        y = m(x)
        assert (y.detach().numpy() == 0).any()  # windows the ReLU shuts
        (gx,) = rg.autograd.grad(_loss(y, c), x, create_graph=True)
        (gxr,) = rg.autograd.grad(_loss(_one_by_one(m, xr), c), xr, create_graph=True)
        _assert_same(gx.detach().numpy(), gxr.detach().numpy(), "first-order gradient with create_graph")
        gx.pow(2).sum().backward()
        fused = [p.grad.numpy().copy() for p in m.parameters()] + [x.grad.numpy().copy()]
        m.zero_grad()
        gxr.pow(2).sum().backward()
        for a, b in zip(fused, [p.grad.numpy() for p in m.parameters()] + [xr.grad.numpy()]):
            _assert_same(a, b, "second-order gradients")
    xa = np.random.default_rng(4).standard_normal((2, 2, 8, 8))
    c = rg.tensor(np.random.default_rng(5).standard_normal(model(rg.tensor(xa)).shape))
    ct = torch.from_numpy(c.numpy())
    xt = torch.tensor(xa, requires_grad=True)
    (gxt,) = torch.autograd.grad(_loss(tmodel(xt), ct), xt, create_graph=True)
    gxt.pow(2).sum().backward()
    x = rg.tensor(xa, requires_grad=True)
    model.zero_grad()
    (gx,) = rg.autograd.grad(_loss(model(x), c), x, create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), gxt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gx.pow(2).sum().backward()
    for p, pt in zip(list(model.parameters()) + [x], list(tmodel.parameters()) + [xt]):
        np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_unbatched_input_no_grad_and_the_functional():
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    xa = np.random.default_rng(5).standard_normal((3, 6, 7)).astype(np.float32)
    x = rg.tensor(xa, requires_grad=True)
    y = model(x)
    assert y.shape == (3, 3, 3) and y.grad_fn.next_functions[0][0].name() == "ReluMaxPool2dBackward"
    ref = torch.nn.functional.max_pool2d(torch.relu(torch.from_numpy(xa)), 2)
    np.testing.assert_array_equal(y.detach().numpy(), ref.numpy())
    with rg.no_grad():
        assert model(x).grad_fn is None
    np.testing.assert_array_equal(pool.relu_max_pool2d(rg.tensor(xa), 2, 1, 1).numpy(),
                                  torch.nn.functional.max_pool2d(torch.relu(torch.from_numpy(xa)), 2, 1, 1).numpy())


def _fused(model, x):
    y = model(x)
    return y.grad_fn.name() == "ReluMaxPool2dBackward"


def test_hooks_subclasses_and_in_place_see_the_modules():
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    x = rg.randn(2, 3, 6, 6, requires_grad=True)
    assert _fused(model, x)
    seen = []
    h = model[0].register_forward_hook(lambda m, i, o: seen.append(o.detach().numpy().copy()))
    y = model(x)
    assert len(seen) == 1 and seen[0].shape == (2, 3, 6, 6) and y.grad_fn.name() == "MaxPool2dBackward"
    h.remove()
    h = model[1].register_forward_pre_hook(lambda m, i: (i[0] * 2,))
    np.testing.assert_array_equal(model(x).detach().numpy(), _one_by_one(model, x).detach().numpy())
    assert not _fused(model, x)
    h.remove()
    model[1].forward = lambda inp: inp[:, :, :2, :2]
    assert model(x).shape == (2, 3, 2, 2)
    del model[1].forward
    assert _fused(model, x)

    class MyReLU(nn.ReLU):
        pass

    class MyPool(nn.MaxPool2d):
        pass

    assert not _fused(nn.Sequential(MyReLU(), nn.MaxPool2d(2)), x)
    assert not _fused(nn.Sequential(nn.ReLU(), MyPool(2)), x)
    out, idx = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, return_indices=True))(x)
    assert out.grad_fn.name() == "MaxPool2dBackward" and idx.shape == out.shape
    xi = rg.randn(2, 3, 6, 6)
    y = nn.Sequential(nn.ReLU(inplace=True), nn.MaxPool2d(2))(xi)  # ReLU(inplace) rectifies its input
    assert (xi.numpy() >= 0).all() and y.shape == (2, 3, 3, 3)


def test_other_dtypes_autocast_and_bad_input_run_the_two_modules():
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    xb = rg.randn(2, 3, 6, 6).to(rg.bfloat16).requires_grad_()
    assert model(xb).dtype == rg.bfloat16 and not _fused(model, xb)
    with rg.autocast("cpu"):
        assert not _fused(model, rg.randn(2, 3, 6, 6, requires_grad=True))
    for bad, pool_args in [(rg.randn(2, 6, 6), dict(kernel_size=2, padding=2)),  # pad > half the kernel
                           (rg.randn(6, 6), dict(kernel_size=2)),  # 2-D
                           (rg.randn(1, 1, 2, 2), dict(kernel_size=3))]:  # output too small
        errs = []
        for call in (nn.Sequential(nn.ReLU(), nn.MaxPool2d(**pool_args)),
                     lambda t: _one_by_one(nn.Sequential(nn.ReLU(), nn.MaxPool2d(**pool_args)), t)):
            with pytest.raises((RuntimeError, TypeError, ValueError)) as e:
                call(bad)
            errs.append((type(e.value), str(e.value)))
        assert errs[0] == errs[1]
    xi = rg.tensor(np.arange(-36, 36).reshape(2, 1, 6, 6))  # integers: the pool's float32 of ReLU's integers
    y = model(xi)
    assert y.dtype == _one_by_one(model, xi).dtype
    np.testing.assert_array_equal(y.numpy(), _one_by_one(model, xi).numpy())


def test_cnn_model_runs_the_fused_node():
    model = rg.models.CNN()
    x = rg.randn(4, 1, 28, 28)
    names, fn = [], model(x).grad_fn
    stack = [fn]
    while stack:
        f = stack.pop()
        if f is not None and not isinstance(f, str):  # (a leaf's "AccumulateGrad")
            names.append(f.name())
            stack += [n for n, _ in f.next_functions]
    assert names.count("ReluMaxPool2dBackward") == 2 and "ReluBackward" not in names


def test_onnx_export_still_sees_relu_and_max_pool():
    pytest.importorskip("onnx")
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    buf = io.BytesIO()
    rg.onnx.export(model, (rg.randn(1, 1, 8, 8),), buf)
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
    assert "Relu" in ops and "MaxPool" in ops
