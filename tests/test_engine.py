"""The engine's requirements: deep graphs, .grad bookkeeping, broadcasting, freeing, higher order,
grad modes, hooks, anomaly mode, no reference cycles, in-place rules and input errors."""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest
import torch

import retrograd as rg


def _pair(*shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return rg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


# ------------------------------------------------------------------ depth
def test_chain_of_100000_ops_backward():
    x = rg.tensor(1.0, dtype=rg.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.backward()
    assert x.grad.item() == pytest.approx(1.00001 ** 100_000, rel=1e-9)


# ------------------------------------------------------------------ .grad bookkeeping
def test_grad_accumulates_on_leaves_only_and_retain_grad():
    x, tx = _pair(3)
    h, th = x * 2, tx * 2
    h2, th2 = x.exp(), tx.exp()
    h2.retain_grad()
    th2.retain_grad()
    (h * h2).sum().backward()
    (th * th2).sum().backward()
    assert h.grad is None and h2.grad_fn is not None  # non-leaf without retain_grad: no .grad
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(h2.grad.data, th2.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(h2.grad.data, 2 * x.data, rtol=1e-14)
    first = x.grad.detach().numpy().copy()
    (x * 3).sum().backward()  # accumulates
    np.testing.assert_allclose(x.grad.data, first + 3, rtol=1e-14)
    assert x.is_leaf and not h.is_leaf and h2.retains_grad and not h.retains_grad


def test_broadcasting_is_undone():
    a, ta = _pair(4, 1, 3)
    b, tb = _pair(2, 3, seed=1)
    c, tc = _pair(1, seed=2)
    s = rg.tensor(2.0, dtype=rg.float64, requires_grad=True)
    ts = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    ((a * b + c) * s).sin().sum().backward()
    ((ta * tb + tc) * ts).sin().sum().backward()
    for r, t in ((a, ta), (b, tb), (c, tc), (s, ts)):
        assert r.grad.shape == r.shape
        np.testing.assert_allclose(r.grad.data, t.grad.numpy(), rtol=1e-12)


# ------------------------------------------------------------------ retain_graph
def test_second_backward_needs_retain_graph():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_doubles_like_torch():
    x, tx = _pair(3)
    y, ty = (x.tanh() * x).sum(), (tx.tanh() * tx).sum()
    y.backward(retain_graph=True)
    y.backward()
    ty.backward(retain_graph=True)
    ty.backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(x.grad.data, 2 * (np.tanh(x.data) + x.data * (1 - np.tanh(x.data) ** 2)))


# ------------------------------------------------------------------ higher order
def test_gradient_penalty_vs_torch():
    x, tx = _pair(5, 4)
    w, tw = _pair(4, 3, seed=1)

    def penalty(lib, x, w):
        out = (x @ w).tanh().sum()
        (g,) = lib.autograd.grad(out, x, create_graph=True)
        return ((g * g).sum(1).sqrt() - 1) ** 2

    p, tp = penalty(rg, x, w).mean(), penalty(torch, tx, tw).mean()
    np.testing.assert_allclose(p.item(), tp.item(), rtol=1e-13)
    p.backward()
    tp.backward()
    np.testing.assert_allclose(w.grad.data, tw.grad.numpy(), rtol=1e-11)
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-11)


def test_backward_create_graph_then_grad_of_grad():
    x, tx = _pair(3)
    (x ** 3).sum().backward(create_graph=True)
    with pytest.warns(UserWarning, match="reference cycle"):  # torch warns; the numbers still agree
        (tx ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (h,) = rg.grad(x.grad.sum(), x)
    (th,) = torch.autograd.grad(tx.grad.sum(), tx)
    np.testing.assert_allclose(h.data, th.numpy(), rtol=1e-14)


# ------------------------------------------------------------------ grad modes
def test_no_grad_enable_grad_set_grad_enabled():
    x = rg.ones(2, requires_grad=True)
    with rg.no_grad():
        assert not (x * 2).requires_grad
        with rg.enable_grad():
            assert (x * 2).requires_grad
        assert not rg.is_grad_enabled()
    assert rg.is_grad_enabled()
    with rg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert rg.is_grad_enabled()
    rg.set_grad_enabled(False)
    assert not rg.is_grad_enabled()
    rg.set_grad_enabled(True)
    assert (x * 2).requires_grad


def test_grad_modes_as_decorators():
    x = rg.ones(2, requires_grad=True)

    @rg.no_grad()
    def f(t):
        return t * 2

    @rg.enable_grad()
    def g(t):
        return t * 2

    @rg.set_grad_enabled(False)
    def h(t):
        return t * 2

    rg.set_grad_enabled(True)  # the decorator's construction applied it, as in PyTorch
    assert not f(x).requires_grad and not h(x).requires_grad
    with rg.no_grad():
        assert g(x).requires_grad
    assert rg.is_grad_enabled()


# ------------------------------------------------------------------ hooks
def test_hooks_on_leaf_and_non_leaf_vs_torch():
    x, tx = _pair(3)
    seen, tseen = [], []
    for lib_x, log in ((x, seen), (tx, tseen)):
        lib_x.register_hook(lambda g, log=log: log.append(("leaf", g.detach().numpy().copy())) or g * 10)
        h = lib_x.sin()
        h.register_hook(lambda g, log=log: log.append(("mid", g.detach().numpy().copy())) or g + 1)
        (h * h).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-14)
    for (k1, a), (k2, b) in zip(seen, tseen):
        assert k1 == k2
        np.testing.assert_allclose(a, b, rtol=1e-14)
    assert [k for k, _ in seen] == ["mid", "leaf"]
    # x.grad = 10 * cos(x) * (2 sin(x) + 1)
    np.testing.assert_allclose(x.grad.data, 10 * np.cos(x.data) * (2 * np.sin(x.data) + 1), rtol=1e-13)


def test_hook_handle_remove():
    x = rg.ones(2, requires_grad=True)
    handle = x.register_hook(lambda g: g * 0)
    handle.remove()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])


# ------------------------------------------------------------------ anomaly mode
def test_detect_anomaly_forward_nan_names_op_shape_and_line():
    x = rg.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(rg.autograd.AnomalyError) as info:
        with rg.autograd.detect_anomaly(), np.errstate(invalid="ignore"):
            x.log()  # the culprit line
    msg = str(info.value)
    assert "'log'" in msg and "nan" in msg and "(2,)" in msg
    assert "test_engine.py" in msg and "x.log()  # the culprit line" in msg


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_detect_anomaly_backward_of_sqrt_at_zero_gives_inf_without_error_as_torch():
    # PyTorch's anomaly mode checks backward outputs for NaN only: sqrt'(0) = inf is not flagged
    x = rg.tensor([0.0, 4.0], requires_grad=True)
    with rg.autograd.detect_anomaly(), np.errstate(divide="ignore"):
        x.sqrt().sum().backward()
    tx = torch.tensor([0.0, 4.0], requires_grad=True, dtype=torch.float64)
    with torch.autograd.detect_anomaly():
        tx.sqrt().sum().backward()
    np.testing.assert_array_equal(x.grad.data, tx.grad.numpy())


def test_no_anomaly_check_outside_context():
    x = rg.tensor([0.0], requires_grad=True)
    with np.errstate(divide="ignore"):
        x.sqrt().sum().backward()
    assert np.isinf(x.grad.data[0])
    assert not rg.autograd.is_anomaly_enabled()


# ------------------------------------------------------------------ memory
def test_graph_freed_after_backward():
    x = rg.randn(50, requires_grad=True)
    y = x.exp()
    node = weakref.ref(y.grad_fn)
    saved = weakref.ref(y.grad_fn.out)  # exp saves its output array (a plain ndarray here)
    loss = (y * 2).sum()
    del y
    loss.backward()
    assert saved() is None  # freed by backward, while the loss tensor is still alive
    del loss
    assert node() is None  # no cycles: freed by reference counting alone, no gc needed


def test_memory_returns_to_baseline_without_gc():
    w = rg.randn(200, 200, requires_grad=True)

    def step():
        x = rg.randn(64, 200)
        ((x @ w).tanh() @ w).exp().mean().backward()
        w.grad = None

    step()
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            step()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        gc.enable()
    assert peak - base > 200_000  # a forward+backward allocates hundreds of kB...
    assert current - base < 20_000  # ...and all of it comes back


def test_nll_loss_backward_holds_two_class_sized_gradients_at_most():
    # a language model's loss: log_softmax over (rows, vocab), then nll_loss, which gathers one entry per
    # row with a (rows, 1) index. Its backward needs the dense gradient of the gather and that of
    # log_softmax, as PyTorch's; the gather once took a full-size slice first, whose backward added a
    # third (rows, vocab) copy at the peak, and x.grad was a copy of log_softmax's gradient (a reshaped view)
    rows, vocab = 128, 4096
    size = rows * vocab * 4
    x = rg.tensor(np.random.default_rng(0).standard_normal((rows, vocab)).astype(np.float32), requires_grad=True)
    t = rg.tensor(np.random.default_rng(1).integers(0, vocab, rows))
    loss = rg.nn.functional.nll_loss(rg.nn.functional.log_softmax(x, dim=1), t)
    assert loss._node is not None
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    loss.backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 1.9 * size < peak - base < 2.5 * size  # the two gradients (the second one becomes x.grad, not a copy)
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    torch.nn.functional.nll_loss(torch.log_softmax(xt, dim=1), torch.tensor(t.numpy())).backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-9)


def test_a_node_that_reads_no_input_value_keeps_edges_not_arrays():
    # PyTorch's add/view/log_softmax keep no input: the projection's output a residual add takes, or the
    # logits view reshaped, are freed at once; retrograd's node keeps a stand-in (edges)
    x = rg.randn(256, 256, dtype=rg.float64, requires_grad=True)
    h = x * 3.0  # 512 KiB, has a history
    ref = weakref.ref(h._array)
    y = (h + 1.0).view(-1)
    z = rg.nn.functional.log_softmax(y.view(256, 256) * 2.0, dim=1)
    del h
    gc.collect()
    assert ref() is None  # nothing holds h's values: add's backward does not read them
    (z * rg.arange(256.0, dtype=rg.float64)).sum().backward()
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    zt = torch.log_softmax(((xt * 3.0 + 1.0).view(-1)).view(256, 256) * 2.0, dim=1)
    (zt * torch.arange(256.0, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_second_order_through_a_node_that_kept_edges():
    # log_softmax keeps its output, not its input: the differentiable backward (create_graph) uses the
    # saved output as a tensor whose history is that node, as PyTorch's saved result, instead of
    # recomputing it from the input
    a = np.random.default_rng(3).standard_normal((64, 300))
    x, xt = rg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    for lib, v in ((rg, x), (torch, xt)):
        z = lib.log_softmax(v * 1.5, dim=1)
        (g,) = lib.autograd.grad((z[:, :7] ** 2).sum(), v, create_graph=True)
        (g ** 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_gather_with_a_column_index_reads_the_input_itself():
    x = rg.randn(5, 7, requires_grad=True)
    picked = x.gather(1, rg.tensor([[0], [6], [3], [2], [1]]))
    assert picked._node.inputs[0] is x  # no slice node in between (the index spans dim 0 whole)
    narrow = x.gather(1, rg.tensor([[0], [6]]))  # reads rows 0-1 only: the slice stays
    assert narrow._node.inputs[0] is not x
    (picked.sum() + 2 * narrow.sum()).backward()
    want = np.zeros((5, 7), np.float32)
    want[[0, 1, 2, 3, 4], [0, 6, 3, 2, 1]] += 1
    want[[0, 1], [0, 6]] += 2
    np.testing.assert_array_equal(x.grad.numpy(), want)


# ------------------------------------------------------------------ in place
def test_in_place_ops_on_leaves_under_no_grad():
    w = rg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with rg.no_grad():
        w.add_(1).mul_(2)
        np.testing.assert_array_equal(w.data, [4.0, 6.0, 8.0])
        w.add_(rg.tensor([1.0, 1.0, 1.0]), alpha=-2)
        np.testing.assert_array_equal(w.data, [2.0, 4.0, 6.0])
        w.copy_(rg.tensor([7.0, 8.0, 9.0]))
        np.testing.assert_array_equal(w.data, [7.0, 8.0, 9.0])
        w.fill_(5)
        np.testing.assert_array_equal(w.data, [5.0, 5.0, 5.0])
        w.zero_()
        np.testing.assert_array_equal(w.data, [0.0, 0.0, 0.0])
    assert w.requires_grad and w.is_leaf


def test_in_place_on_leaf_requiring_grad_raises():
    w = rg.ones(2, requires_grad=True)
    for op in (lambda: w.add_(1), lambda: w.mul_(2), lambda: w.zero_(), lambda: w.fill_(1),
               lambda: w.copy_(rg.zeros(2))):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
            op()
    np.testing.assert_array_equal(w.data, [1.0, 1.0])


def test_modifying_saved_tensor_then_backward_raises():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()  # mul saves x
    with rg.no_grad():
        x.mul_(3)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()
    z = rg.tensor([1.0, 2.0], requires_grad=True)
    e = z.exp()  # exp saves its output
    with rg.no_grad():
        e.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        e.sum().backward()


# ------------------------------------------------------------------ input errors
def test_backward_on_non_scalar_without_gradient():
    x = rg.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"implicitly created only for scalar outputs.*\(2, 3\)"):
        (x * 2).backward()
    (x * 2).backward(rg.ones(2, 3))
    np.testing.assert_array_equal(x.grad.data, np.full((2, 3), 2.0))


def test_requires_grad_on_int_tensor():
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients, got int64"):
        rg.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        rg.tensor([1, 2]).requires_grad_()


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"matmul: shapes \(32, 64\) and \(32, 10\) do not align \(64 != 32\)"):
        rg.ones(32, 64) @ rg.ones(32, 10)


def test_out_of_range_index_names_dimension():
    t = rg.ones(2, 3)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 2"):
        t[5]
    with pytest.raises(IndexError, match="index 7 is out of bounds for dimension 1 with size 3"):
        t[:, 7]
    with pytest.raises(IndexError, match=r"dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        t.sum(2)


_DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


def _make(lib, dt, zero_dim):
    vals = [True, False, True] if dt == "bool" else [1, 2, 3]
    return lib.tensor(vals[0] if zero_dim else vals, dtype=getattr(lib, dt))


def _name(dtype):
    return str(dtype).split(".")[-1]


@pytest.mark.parametrize("a", _DTYPES)
def test_dtype_promotion_matches_torch(a):
    for b in _DTYPES:
        for zero_dim in (False, True):  # a 0-dim tensor only promotes across categories
            r = _make(rg, a, False) + _make(rg, b, zero_dim)
            t = _make(torch, a, False) + _make(torch, b, zero_dim)
            assert _name(r.dtype) == _name(t.dtype), (a, b, zero_dim)
    for s in (2, 2.5, True):  # python scalars
        for op in (lambda x, s: x + s, lambda x, s: s * x):
            assert _name(op(_make(rg, a, False), s).dtype) == _name(op(_make(torch, a, False), s).dtype), (a, s)
    with np.errstate(all="ignore"):
        assert _name((_make(rg, a, False) / _make(rg, a, False)).dtype) == \
            _name((_make(torch, a, False) / _make(torch, a, False)).dtype)
