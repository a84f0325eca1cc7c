"""``Tensor.data`` as PyTorch's (a detached Tensor sharing storage), the ``.data`` setter,
``numpy()`` as a view, and ``view`` on non-contiguous tensors: each checked against torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.tensor_shape import view_strides

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------- .data
def test_data_is_a_detached_tensor_sharing_storage():
    p = rg.nn.Parameter(rg.tensor(RNG.standard_normal((2, 3))))
    tp = torch.nn.Parameter(torch.tensor(p.detach().numpy().copy()))
    d, td = p.data, tp.data
    assert type(d) is rg.Tensor and type(td) is torch.Tensor
    assert d.requires_grad is td.requires_grad is False and d.is_leaf and d.grad_fn is None
    assert d.shape == tuple(td.shape) and d.dtype == np.float64
    assert np.shares_memory(d.numpy(), p.detach().numpy())
    assert type(d.numpy()) is np.ndarray


def test_in_place_methods_through_data_change_the_parameter_as_torch():
    a = RNG.standard_normal((3, 4))
    p, tp = rg.nn.Parameter(rg.tensor(a)), torch.nn.Parameter(torch.tensor(a))
    for q in (p, tp):
        q.data.add_(1.5)
        q.data.sub_(0.25)
        q.data.mul_(2.0)
        q.data.div_(3.0)
        q.data.clamp_(-1.0, 1.2)
        q.data[0, 1:3] = 7.0
        q.data[2] = q.data[1] * 2
    np.testing.assert_array_equal(p.detach().numpy(), tp.detach().numpy())
    p.data.copy_(rg.tensor(a[::-1].copy()))
    tp.data.copy_(torch.tensor(a[::-1].copy()))
    np.testing.assert_array_equal(p.data.numpy(), tp.data.numpy())
    p.data.zero_()
    assert not p.detach().numpy().any() and p.requires_grad and isinstance(p, rg.nn.Parameter)
    p.data.normal_(0.0, 0.02)
    assert p.detach().numpy().std() > 0


def test_data_does_not_share_the_version_counter_as_torch():
    # torch: in-place changes through .data are invisible to autograd (detach() would raise)
    x, tx = rg.tensor([1.0, 2.0, 3.0], requires_grad=True), torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y, ty = (x * x).sum(), (tx * tx).sum()
    x.data.mul_(2)
    tx.data.mul_(2)
    y.backward()
    ty.backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    x2, tx2 = rg.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    y2, ty2 = (x2 * x2).sum(), (tx2 * tx2).sum()
    x2.detach().mul_(2)
    tx2.detach().mul_(2)
    with pytest.raises(RuntimeError):
        ty2.backward()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y2.backward()


def test_numpy_is_a_view_and_numpy_functions_take_data():
    t = rg.tensor([[1.0, -2.0], [3.0, 4.0]])
    a = t.numpy()
    a[0, 0] = 10.0
    assert t[0, 0].item() == 10.0 and np.shares_memory(a, t.data.numpy())
    p = rg.tensor([0.5, -1.0], requires_grad=True)
    tp = torch.tensor([0.5, -1.0], requires_grad=True)
    # NumPy functions without a Tensor rule run on the values, as on a torch tensor
    np.testing.assert_array_equal(np.diag(p.data), np.diag(tp.data))
    np.testing.assert_array_equal(np.argsort(p.data), np.argsort(tp.data.numpy()))
    assert np.isinf(rg.tensor([np.inf]).data[0]) and np.isinf(torch.tensor([np.inf]).data[0].numpy())
    with pytest.raises(RuntimeError, match="requires grad"):
        np.diag(p)
    with pytest.raises(RuntimeError, match="requires grad"):
        np.diag(tp)


# ---------------------------------------------------------------------- .data = tensor
def _model(a, b, mod):
    lin = mod.nn.Linear(3, 2).double()
    with (rg.no_grad() if mod is rg else torch.no_grad()):
        lin.weight.copy_(mod.tensor(a))
        lin.bias.copy_(mod.tensor(b))
    return lin


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_data_setter_then_step_and_backward_match_torch(opt):
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal(2)
    x = RNG.standard_normal((5, 3))
    new_w = RNG.standard_normal((2, 3))
    runs = []
    for mod in (rg, torch):
        lin = _model(a, b, mod)
        kw = {"lr": 0.1, "momentum": 0.9} if opt == "SGD" else {"lr": 0.01}
        o = getattr(mod.optim, opt)(lin.parameters(), **kw)
        xs = mod.tensor(x)
        for step in range(3):
            if step == 1:  # rebind the weight's storage between steps (the issue's report)
                lin.weight.data = mod.tensor(new_w.copy())
                assert isinstance(lin.weight, mod.nn.Parameter) and lin.weight.requires_grad
            o.zero_grad()
            loss = (lin(xs) ** 2).mean()
            loss.backward()
            o.step()
        runs.append((float(loss.item()), lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy(),
                     lin.weight.grad.numpy().copy()))
    (l1, w1, b1, g1), (l2, w2, b2, g2) = runs
    assert l1 == pytest.approx(l2, rel=1e-12)
    np.testing.assert_allclose(w1, w2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b1, b2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-14)


def test_data_setter_changes_shape_and_dtype_as_torch():
    for mod in (rg, torch):
        p = mod.nn.Parameter(mod.ones(2, 3))
        p.data = mod.zeros(5, 5, dtype=mod.float64)
        assert tuple(p.shape) == (5, 5) and p.dtype == mod.float64 and isinstance(p, mod.nn.Parameter)
        assert p.requires_grad
        t = mod.zeros(3)
        t.data = mod.arange(3)
        assert t.dtype == mod.int64 and t.tolist() == [0, 1, 2]
        src = mod.zeros(3)
        q = mod.nn.Parameter(mod.ones(3))
        q.data = src
        src.add_(2.0)  # the parameter now uses src's storage
        assert q.tolist() == [2.0, 2.0, 2.0]
        (q * q).sum().backward()
        assert q.grad.tolist() == [4.0, 4.0, 4.0]


def test_data_setter_refuses_what_torch_refuses():
    p, tp = rg.nn.Parameter(rg.ones(3)), torch.nn.Parameter(torch.ones(3))
    for bad in (np.zeros(3), [1.0, 2.0], 3.0):
        with pytest.raises(TypeError):
            tp.data = bad
        with pytest.raises(TypeError, match="has to be a tensor, but got"):
            p.data = bad
    with pytest.raises(RuntimeError, match="requires gradients must be floating point"):
        tp.data = torch.zeros(3, dtype=torch.long)
    with pytest.raises(RuntimeError, match="requires gradients must be floating point"):
        p.data = rg.zeros(3, dtype=rg.int64)
    assert p.tolist() == [1.0, 1.0, 1.0] and p.dtype == rg.float32


def test_issue_report_data_assignment_no_longer_corrupts_the_parameter():
    # was: later TypeError from the optimizer, "'Tensor' object has no attribute 'base'" in backward
    lin = rg.nn.Linear(4, 3)
    o = rg.optim.SGD(lin.parameters(), lr=0.1)
    lin.weight.data = rg.randn(3, 4)
    w0 = lin.weight.detach().numpy().copy()
    out = lin(rg.ones(2, 4)).sum()
    out.backward()
    o.step()
    np.testing.assert_allclose(lin.weight.detach().numpy(), w0 - 0.1 * 2.0, rtol=1e-6)
    assert type(lin.weight._array) is np.ndarray


# ---------------------------------------------------------------------- view
def _pair(shape, make):
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    return make(rg.tensor(a)), make(torch.tensor(a))


CASES = [
    # (input shape, how to make the input, view shape)
    ((2, 3, 4), lambda t: t.transpose(0, 1), (-1,)),
    ((2, 3, 4), lambda t: t.transpose(0, 1), (3, 2, 2, 2)),       # splits a contiguous dim: allowed
    ((2, 3, 4), lambda t: t.transpose(0, 1), (3, 8)),
    ((2, 3, 4), lambda t: t.transpose(0, 1), (6, 4)),
    ((2, 3, 4), lambda t: t.transpose(1, 2), (2, 12)),
    ((2, 3, 4), lambda t: t.transpose(1, 2), (2, 4, 3, 1)),
    ((2, 3, 4), lambda t: t.permute(2, 0, 1), (4, 6)),             # 0 and 1 stay adjacent: allowed
    ((2, 3, 4), lambda t: t.permute(2, 0, 1), (24,)),
    ((2, 3, 4), lambda t: t.permute(2, 0, 1), (2, 2, 3, 2)),
    ((4, 6), lambda t: t.t(), (24,)),
    ((4, 6), lambda t: t.t(), (3, 2, 4)),
    ((4, 6), lambda t: t.t(), (6, 4, 1)),
    ((2, 3, 4), lambda t: t[:, :, ::2], (-1,)),                    # a uniform stride: allowed
    ((2, 3, 4), lambda t: t[:, :, 1:3], (2, 6)),
    ((2, 3, 4), lambda t: t[:, :, 1:3], (2, 3, 2, 1)),
    ((2, 3, 4), lambda t: t[:, 1:], (2, 8)),
    ((2, 3, 4), lambda t: t[:, 1:], (-1,)),
    ((2, 3, 4), lambda t: t[1:], (3, 4)),
    ((3, 4), lambda t: t[:, None].expand(3, 5, 4), (15, 4)),
    ((3, 4), lambda t: t[:, None].expand(3, 5, 4), (3, 20)),
    ((3, 1, 4), lambda t: t.transpose(0, 1), (12,)),               # a size-1 dim moved: still contiguous
    ((2, 0, 3), lambda t: t.transpose(0, 2), (6, 0)),              # empty: any shape of that size
    ((2, 3, 4), lambda t: t.transpose(0, 1)[:, :, :2], (3, 4)),
    ((5,), lambda t: t[::2], (3, 1)),
]


@pytest.mark.parametrize("shape,make,new", CASES)
def test_view_raises_exactly_where_torch_raises(shape, make, new):
    r, t = _pair(shape, make)
    try:
        tv = t.view(new)
    except RuntimeError as e:
        assert "view size is not compatible with input tensor's size and stride" in str(e)
        with pytest.raises(RuntimeError, match=r"view size is not compatible with input tensor's size and "
                                               r"stride.*Use \.reshape\(\.\.\.\) instead"):
            r.view(new)
        np.testing.assert_array_equal(r.reshape(new).numpy(), t.reshape(new).numpy())  # reshape copies
        return
    rv = r.view(new)
    np.testing.assert_array_equal(rv.numpy(), tv.numpy())
    assert rv.numel() == 0 or np.shares_memory(rv.numpy(), r.numpy())  # a view, as in torch
    itemsize = rv.numpy().itemsize
    if tv.numel() > 1:
        strides = view_strides(r.numpy(), tuple(tv.shape))
        got = tuple(s // itemsize for s in rv.numpy().strides)
        assert strides == tuple(tv.stride()) or tv.numel() == 0
        assert all(g == s for g, s, n in zip(got, tv.stride(), tv.shape) if n > 1)
    assert r.is_contiguous() == t.is_contiguous()


def test_view_shares_storage_and_carries_gradients():
    x = rg.tensor(RNG.standard_normal((3, 4)), requires_grad=True)
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    y, ty = x.t().view(2, 2, 3), tx.t().view(2, 2, 3)  # (4, 3) -> split the 4: allowed
    w = RNG.standard_normal((2, 2, 3))
    (y * rg.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_contiguous_then_view_works_as_in_torch():
    # nanoGPT's y.transpose(1, 2).contiguous().view(B, T, C)
    a = RNG.standard_normal((2, 4, 5, 3))
    x, tx = rg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    with pytest.raises(RuntimeError, match="Use .reshape"):
        x.transpose(1, 2).view(2, 5, 12)
    y, ty = x.transpose(1, 2).contiguous(), tx.transpose(1, 2).contiguous()
    assert y.is_contiguous() and y.grad_fn is not None
    out, tout = y.view(2, 5, 12), ty.view(2, 5, 12)
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
    g = RNG.standard_normal((2, 5, 12))
    (out * rg.tensor(g)).sum().backward()
    (tout * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    c = rg.ones(3, 4)
    assert c.contiguous() is c


@pytest.mark.parametrize("make", [
    lambda m, f, x: f.conv2d(x, m.ones(4, 3, 3, 3, dtype=m.float64), padding=1),
    lambda m, f, x: f.max_pool2d(x, 2),
    lambda m, f, x: f.interpolate(x, scale_factor=2),
    lambda m, f, x: x.flip(1),
    lambda m, f, x: x[:, :, m.tensor([0, 2, 1])],
    lambda m, f, x: x.permute(0, 2, 3, 1).contiguous(),
    lambda m, f, x: f.relu(x.transpose(2, 3)),
], ids=["conv2d", "max_pool2d", "interpolate", "flip", "index", "permute_contiguous", "relu_of_transpose"])
def test_ops_lay_out_their_output_as_torch(make):
    # view(B, -1) after these must work (or fail) as it does in torch
    a = RNG.standard_normal((2, 3, 8, 8))
    import retrograd.nn.functional as RF
    import torch.nn.functional as TF
    r, t = make(rg, RF, rg.tensor(a)), make(torch, TF, torch.tensor(a))
    assert r.is_contiguous() == t.is_contiguous()
    try:
        t.view(2, -1)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            r.view(2, -1)
    else:
        np.testing.assert_allclose(r.view(2, -1).numpy(), t.view(2, -1).numpy(), rtol=1e-12, atol=1e-12)


def test_view_bad_shape_message():
    with pytest.raises(RuntimeError, match=r"view: shape \[5, 5\] is invalid for input of size 12"):
        rg.ones(3, 4).view(5, 5)
    with pytest.raises(RuntimeError, match="invalid for input of size 12"):
        torch.ones(3, 4).view(5, 5)


def test_pickle_of_a_tensor_with_history_is_a_leaf_as_torch():
    import pickle

    x, xt = rg.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    y, yt = pickle.loads(pickle.dumps(x * 3)), pickle.loads(pickle.dumps(xt * 3))
    assert (y.requires_grad, y.is_leaf, y.grad_fn) == (yt.requires_grad, yt.is_leaf, yt.grad_fn) == (True, True, None)
    np.testing.assert_array_equal(y.detach().numpy(), yt.detach().numpy())
    y.sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [1.0, 1.0])
