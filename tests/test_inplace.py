"""In-place operations with PyTorch's semantics, checked against torch: augmented assignment
(aliases see the change, version counters, the leaf error, dtype and broadcasting rules), in-place
ops on tensors in a graph (history rebase, gradients), scatter_/index_add_/index_fill_ and their
out-of-place forms, and ``tensor == None``."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.flat import FlatParams


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.data)


def _same(a, b, rtol=1e-12):
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_allclose(_np(a), _np(b), rtol=rtol, atol=1e-13)


# ------------------------------------------------------------------ augmented assignment
@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_augmented_assignment_writes_in_place_and_aliases_see_it(op):
    results = []
    for lib in (rg, torch):
        x = lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=lib.float64)
        alias, row = x, x[1]
        vc = x._version if lib is torch else x._vc[0]
        other = lib.tensor([2.0, 4.0, 8.0], dtype=lib.float64)  # broadcasts to x's shape
        exec(f"x {op} other")
        assert x is alias
        results.append((x, row))
        assert (x._version if lib is torch else x._vc[0]) == vc + 1
    (x, row), (tx, trow) = results
    _same(x, tx)
    _same(row, trow)


@pytest.mark.parametrize("op,dtype,value", [
    ("//=", "int64", 3), ("%=", "int64", 3), ("**=", "float64", 2), ("&=", "int64", 6), ("|=", "int64", 6),
    ("^=", "int64", 6), ("+=", "int32", 2), ("*=", "float32", 0.5), ("-=", "int64", 1)])
def test_other_augmented_operators_match_torch(op, dtype, value):
    outs = []
    for lib in (rg, torch):
        x = lib.tensor([1, 5, 7, 10], dtype=getattr(lib, dtype))
        alias = x
        exec(f"x {op} value")
        assert x is alias
        outs.append(x)
    assert str(outs[0].dtype).split(".")[-1] == str(outs[1].dtype).split(".")[-1]
    np.testing.assert_array_equal(_np(outs[0]), _np(outs[1]))


def test_augmented_assignment_casts_to_self_dtype_and_refuses_what_torch_refuses():
    x = rg.ones(3, dtype=rg.float32)
    x += rg.tensor([0.5, 1.5, 2.5], dtype=rg.float64)  # float64 result cast to float32, as torch
    assert x.dtype == rg.float32
    np.testing.assert_array_equal(x.data, [1.5, 2.5, 3.5])
    for lib, err in ((rg, RuntimeError), (torch, RuntimeError)):
        a = lib.ones(3, dtype=lib.int64)
        for bad in (lambda: a.__iadd__(lib.ones(3)), lambda: a.__isub__(1.5), lambda: a.__itruediv__(2)):
            with pytest.raises(err, match="result type Float can't be cast to the desired output type Long"):
                bad()
        b = lib.ones(3, dtype=lib.bool)
        with pytest.raises(err, match="result type Long can't be cast to the desired output type Bool"):
            b += 1
        np.testing.assert_array_equal(_np(a), [1, 1, 1])


def test_other_broadcasts_to_self_but_self_never_grows():
    for lib in (rg, torch):
        b = lib.ones(3)
        with pytest.raises(RuntimeError, match=r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"):
            b += lib.ones(2, 3)
        assert tuple(b.shape) == (3,)


def test_leaf_that_requires_grad_refuses_in_place_unless_no_grad():
    for lib in (rg, torch):
        w = lib.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                               "operation"):
            w -= 1
        with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being used in an "
                                               "in-place operation"):
            w[0].add_(1)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            w[0] = 2.0
        with lib.no_grad():
            w -= 0.5
            w[1] = 7.0
        assert w.requires_grad and w.is_leaf and w.grad_fn is None
        np.testing.assert_array_equal(_np(w), [0.5, 7.0, 0.5])


def test_saved_tensor_modified_in_place_makes_backward_raise_torchs_error():
    for lib in (rg, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 2
        y = (h * x).sum()  # mul saves h
        h += 1
        with pytest.raises(RuntimeError, match="one of the variables needed for gradient computation has been "
                                               "modified by an inplace operation"):
            y.backward()


def test_relu_in_place_then_modified_again_raises_as_torch():
    for lib in (rg, torch):
        x = lib.tensor([1.0, -2.0], requires_grad=True)
        h = x * 1.0
        h.relu_()  # relu saves its output: h itself
        h.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            h.sum().backward()


# ------------------------------------------------------------------ the tutorial loop
def _tutorial_losses(lib, steps=60):
    """PyTorch's "learning PyTorch with examples" polynomial fit, by hand with -= under no_grad."""
    xs = lib.linspace(-3.14159, 3.14159, 200, dtype=lib.float64)
    ys = lib.sin(xs)
    gen = np.random.default_rng(0)
    a, b, c, d = (lib.tensor(gen.standard_normal(), dtype=lib.float64, requires_grad=True) for _ in range(4))
    lr = 1e-6
    losses = []
    for _ in range(steps):
        y_pred = a + b * xs + c * xs ** 2 + d * xs ** 3
        loss = (y_pred - ys).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with lib.no_grad():
            a -= lr * a.grad
            b -= lr * b.grad
            c -= lr * c.grad
            d -= lr * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None
    return losses


def _model_losses(lib, steps=40):
    """The nn.Module version: `for p in model.parameters(): p -= lr * p.grad`."""
    gen = np.random.default_rng(1)
    x = lib.tensor(gen.standard_normal((64, 3)))
    y = lib.tensor(gen.standard_normal((64, 1)))
    model = lib.nn.Sequential(lib.nn.Linear(3, 8), lib.nn.Tanh(), lib.nn.Linear(8, 1)).double()
    with lib.no_grad():
        for p in model.parameters():
            p.copy_(lib.tensor(gen.standard_normal(tuple(p.shape))))
    loss_fn = lib.nn.MSELoss(reduction="sum")
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        with lib.no_grad():
            for p in model.parameters():
                p -= 1e-3 * p.grad
    return losses


def test_tutorial_manual_sgd_loop_trains_exactly_as_torch():
    ours, theirs = _tutorial_losses(rg), _tutorial_losses(torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours[-1] < 0.5 * ours[0]
    ours, theirs = _model_losses(rg), _model_losses(torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert ours[-1] < 0.5 * ours[0]


def test_in_place_update_keeps_optimizer_flat_buffer_consistent():
    ps = [rg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True),
          rg.tensor([1.0, 2.0], dtype=rg.float64, requires_grad=True)]
    flat = FlatParams(ps)
    views = [p._array for p in ps]
    with rg.no_grad():
        ps[0] -= 0.5 * rg.ones(2, 3, dtype=rg.float64)
        ps[1] *= 2
    assert all(p._array is v for p, v in zip(ps, views))  # the parameters still are the buffer's views
    np.testing.assert_array_equal(flat.data, [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 2.0, 4.0])


# ------------------------------------------------------------------ in place in the graph
def _leaves(lib, seed=0):
    gen = np.random.default_rng(seed)
    x = lib.tensor(gen.standard_normal((4, 5)), requires_grad=True)
    w = lib.tensor(gen.standard_normal((5, 3)), requires_grad=True)
    b = lib.tensor(gen.standard_normal(3), requires_grad=True)
    return x, w, b


def _chain_masked_relu_add_mul(lib, x, w, b):
    h = x @ w
    mask = lib.tensor(np.array([[True, False, False]] * 2 + [[False, True, False]] * 2))
    h.masked_fill_(mask, 0)
    h.add_(b)
    h.mul_(2)
    h.relu_()  # relu saves its output (h itself): nothing may change h after it
    return (h * h).sum()


def _chain_augmented(lib, x, w, b):
    h = x @ w
    h += 1
    h *= b  # b requires grad: the old h is kept for b's gradient
    h -= b.exp()
    h /= 3
    return h.tanh().sum()


def _chain_setitem(lib, x, w, b):
    h = (x @ w) * 1.5
    h[1] = b * 2  # index_put_ on an activation
    h[:, 0] = 0.5
    h[lib.tensor([0, 2])] = h[lib.tensor([3, 3])].detach() + b
    return (h ** 2).sum()


def _chain_old_consumers(lib, x, w, b):
    h = x @ w
    early = h * 3  # recorded before the change: its gradient goes to the old h
    h.mul_(b)
    h.clamp_(min=-0.5)
    h.sqrt_() if False else h.exp_()
    return (early + h).sum() + h.mean()


def _chain_buffer_filled_from_activations(lib, x, w, b):
    out = lib.zeros(4, 3, dtype=lib.float64)  # a leaf that does not require grad
    for i in range(4):
        out[i] = (x[i] @ w).tanh() + b
    out.sigmoid_()
    return (out * out).sum()


def _chain_pow_div_copy(lib, x, w, b):
    h = x @ w
    h.pow_(2)
    h.div_(b.abs() + 1)
    g = lib.zeros(4, 3, dtype=lib.float64, requires_grad=False)
    g.copy_(h)  # copy_ from an activation into a fresh tensor
    h.zero_()
    h.add_(x[:, :3], alpha=0.5)
    return (g * b).sum() + (h * h).sum()


def _chain_index_ops(lib, x, w, b):
    h = x @ w
    h.index_fill_(1, lib.tensor([0]), -1.0)
    h.index_add_(0, lib.tensor([1, 1, 3]), b.expand(3, 3) * 2)
    h.scatter_(1, lib.tensor([[2], [0], [1], [2]]), x[:, :1].clone())
    h.masked_fill_(h > 1.0, 1.0)
    return (h.sin() * h).sum()


def _chain_views_of_activation(lib, x, w, b):
    h = x @ w
    early = h * 2  # recorded before the views change h: its gradient goes to the old h
    h[:, :2] += b[:2]  # Python: v = h[:, :2]; v += ...; h[:, :2] = v
    h[0].mul_(b)
    v = h[2]
    v.sub_(b.sum())
    h[1, 1:].relu_()
    return (h * h).sum() + early.sum() + (v * v).sum()


@pytest.mark.parametrize("chain", [_chain_masked_relu_add_mul, _chain_augmented, _chain_setitem,
                                   _chain_old_consumers, _chain_buffer_filled_from_activations,
                                   _chain_pow_div_copy, _chain_index_ops, _chain_views_of_activation])
def test_in_place_chains_on_activations_match_torch(chain):
    ours, theirs = _leaves(rg), _leaves(torch)
    loss, tloss = chain(rg, *ours), chain(torch, *theirs)
    _same(loss, tloss)
    loss.backward()
    tloss.backward()
    for a, ta in zip(ours, theirs):
        _same(a.grad, ta.grad)


def test_in_place_rebases_history():
    x = rg.ones(3, requires_grad=True)
    h = x * 2
    first = h.grad_fn
    h.relu_()
    assert h.grad_fn is not first and h.grad_fn.name() == "ReluBackward" and not h.is_leaf
    assert h.grad_fn.next_functions[0][0] is first  # the new node's input: the old value
    y = x.exp()
    consumer = y * 2
    y.mul_(3)
    assert consumer.grad_fn.next_functions[0][0].name() == "ExpBackward"  # as recorded, not the new node
    buf = rg.zeros(3)
    assert buf.is_leaf and not buf.requires_grad
    buf += x
    assert buf.requires_grad and not buf.is_leaf and buf.grad_fn is not None


def test_same_tensor_on_both_sides():
    for lib in (rg, torch):
        x = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        h = x * 1.0
        h += h
        h.sum().backward()
        np.testing.assert_array_equal(_np(x.grad), [2.0, 2.0, 2.0])


def test_grad_of_activation_captured_after_change():
    x = rg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    tx = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    res = []
    for lib, leaf in ((rg, x), (torch, tx)):
        h = leaf * 3
        h.mul_(leaf)
        res.append(lib.autograd.grad((h * h).sum(), [leaf, h]))
    for a, b in zip(*res):
        _same(a, b)


def test_in_place_on_a_basic_index_view_rebases_the_base():
    h = rg.ones(3, 4, requires_grad=True) * 1.0
    before = h.grad_fn
    h[0].add_(1)  # the base's history changes too (PyTorch's CopySlices)
    assert h.grad_fn is not before


def test_non_differentiable_op_in_place_on_a_graph_tensor_raises():
    h = rg.ones(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="not differentiable"):
        h //= 2


# ------------------------------------------------------------------ scatter_, index_add_, index_fill_
def _both(f, seed=0):
    a = np.random.default_rng(seed).standard_normal((3, 4))
    s = np.random.default_rng(seed + 1).standard_normal((2, 4))
    out = []
    for lib in (rg, torch):
        x = lib.tensor(a, requires_grad=True)
        src = lib.tensor(s, requires_grad=True)
        y = f(lib, x * 1.0, src)
        (y * lib.tensor(np.arange(12.0).reshape(3, 4))).sum().backward()
        out.append((y, x.grad, src.grad))
    for ours, theirs in zip(*out):
        if theirs is None:
            assert ours is None
        else:
            _same(ours, theirs)


@pytest.mark.parametrize("f", [
    lambda lib, x, s: x.scatter(0, lib.tensor([[1, 2, 0, 1], [0, 0, 2, 2]]), s),
    lambda lib, x, s: x.scatter(1, lib.tensor([[3, 1], [0, 2]]), s[:, :2]),  # index narrower than self
    lambda lib, x, s: x.scatter_(1, lib.tensor([[3], [0], [1]]), 2.5),
    lambda lib, x, s: x.scatter(0, lib.tensor([[2, 2, 2, 2]]), value=-1.0),
    lambda lib, x, s: x.scatter_(0, lib.tensor([[1, 0, 2, 2]]), s[1:]),
    lambda lib, x, s: x.index_add(0, lib.tensor([2, 0]), s),
    lambda lib, x, s: x.index_add_(0, lib.tensor([1, 1]), s, alpha=-2.0),
    lambda lib, x, s: x.index_add_(1, lib.tensor([3, 0, 3, 1]), s[:, :4].t().reshape(4, 2).t().repeat(2, 1)[:3]),
    lambda lib, x, s: x.index_fill(1, lib.tensor([0, -1]), 7.0),
    lambda lib, x, s: x.index_fill_(0, lib.tensor(1), s[0, 0]),
])
def test_scatter_index_add_index_fill_match_torch(f):
    _both(f)


def test_scatter_with_reduce_matches_torch_and_is_not_differentiable():
    for lib in (rg, torch):
        x = lib.ones(3, 4, dtype=lib.float64)
        idx = lib.tensor([[1, 1], [1, 2]])
        r = x.clone().scatter_(0, idx, lib.full((2, 2), 3.0, dtype=lib.float64), reduce="multiply")
        r2 = x.clone().scatter_(1, idx, 2.0, reduce="add")
        if lib is rg:
            ours = (r, r2)
        else:
            _same(ours[0], r)
            _same(ours[1], r2)
    with pytest.raises(RuntimeError, match="reduce"):
        rg.ones(3, requires_grad=True).scatter(0, rg.tensor([0]), rg.ones(1, requires_grad=True), reduce="add")


@pytest.mark.parametrize("f,match", [
    (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([[-1, 0]]), 1.0), "index -1 is out of bounds"),
    (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([[3, 0]]), 1.0), "index 3 is out of bounds"),
    (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([1]), lib.ones(1)), "same number of dimensions"),
    (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([[1, 1, 1, 1, 1]]), lib.ones(1, 5)), "no larger than self"),
    (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([[1]]), lib.ones(1, 1, dtype=lib.float64)),
     "self.dtype to be equal to src.dtype"),
    (lambda lib: lib.zeros(3, 4).index_add(0, lib.tensor([-1]), lib.ones(1, 4)), "index -1 is out of bounds"),
    (lambda lib: lib.zeros(3, 4).index_add(0, lib.tensor([1]), lib.ones(1, 4, dtype=lib.float64)),
     r"self \(Float\) and source \(Double\) must have the same scalar type"),
    (lambda lib: lib.zeros(3, 4).index_add(0, lib.tensor([1.0]), lib.ones(1, 4)), "int32/int64 for index"),
    (lambda lib: lib.zeros(3, 4).index_fill(1, lib.tensor([[1]]), 2.0), "Index has to be a vector/scalar"),
])
def test_scatter_family_errors_as_torch(f, match):
    for lib in (rg, torch):
        with pytest.raises(RuntimeError, match=match):
            f(lib)


def test_index_ops_on_integer_tensors_match_torch():
    for lib in (rg, torch):
        a = lib.zeros(3, dtype=lib.int64).index_fill(0, lib.tensor([1]), 2.7)
        b = lib.zeros(3, dtype=lib.int64).index_add(0, lib.tensor([1, 1]), lib.tensor([2, 3]), alpha=2)
        c = lib.zeros(2, 2, dtype=lib.int64).scatter_(1, lib.tensor([[1], [0]]), lib.tensor([[5], [6]]))
        if lib is rg:
            ours = (a, b, c)
        else:
            for o, t in zip(ours, (a, b, c)):
                assert o.dtype == rg.int64
                np.testing.assert_array_equal(_np(o), _np(t))


# ------------------------------------------------------------------ tensor == None
def test_comparison_with_none_as_torch():
    for lib in (rg, torch):
        t = lib.ones(2)
        assert (t == None) is False  # noqa: E711
        assert (t != None) is True  # noqa: E711
        with pytest.raises(TypeError):
            t < None  # noqa: B015
