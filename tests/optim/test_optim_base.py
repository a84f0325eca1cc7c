"""The Optimizer base: flat buffers, gradients written in place, zero_grad,
closures, hooks, add_param_group, and the per-parameter helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from optim_helpers import Net, assert_close, default_dtype, initial_weights, train


def _mlp(lib, dtype="float64"):
    return Net(lib, initial_weights(dtype))


def test_parameters_become_views_of_one_flat_buffer():
    net = _mlp(rg)
    before = [p.detach().numpy().copy() for p in net.params]
    opt = rg.optim.SGD(net.params, lr=0.1)
    (flat,) = opt.flat_params()
    assert flat.size == sum(p.numel() for p in net.params) and flat.ndim == 1
    off = 0
    for p, b in zip(net.params, before):
        assert np.shares_memory(p.data, flat)
        np.testing.assert_array_equal(p.data, b)  # values copied in first
        np.testing.assert_array_equal(flat[off:off + p.numel()], b.ravel())
        off += p.numel()


def test_backward_writes_gradients_into_the_flat_gradient_buffer():
    net = _mlp(rg)
    opt = rg.optim.SGD(net.params, lr=0.1)
    net.loss(1).backward()
    (flat_grad,) = opt.flat_grads()
    tnet = _mlp(torch)
    tnet.loss(1).backward()
    off = 0
    for p, tp in zip(net.params, tnet.params):
        if tp.grad is None:
            assert p.grad is None
            assert np.all(flat_grad[off:off + p.numel()] == 0)  # c is unused: zeros in the buffer
        else:
            assert p.grad._array is p._gslot and np.shares_memory(p.grad.data, flat_grad)
            np.testing.assert_allclose(flat_grad[off:off + p.numel()], tp.grad.numpy().ravel(), rtol=1e-12)
        off += p.numel()
    # gradients accumulate in place across backward calls, as in PyTorch
    net.loss(1).backward()
    tnet.loss(1).backward()
    for p, tp in zip(net.params[:4], tnet.params[:4]):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-12)
        assert p.grad._array is p._gslot


def test_zero_grad_semantics_match_torch():
    for set_to_none in (True, False):
        grads = []
        for lib in (rg, torch):
            net = _mlp(lib)
            opt = lib.optim.SGD(net.params, lr=0.1)
            net.loss(1).backward()
            held = net.params[0].grad
            opt.zero_grad(set_to_none=set_to_none)
            grads.append([None if p.grad is None else np.array(p.grad.data if lib is rg else p.grad.numpy())
                          for p in net.params])
            if not set_to_none:
                assert net.params[0].grad is held  # zeroed in place, same object
                assert not net.params[0].grad.requires_grad
        assert [g is None for g in grads[0]] == [g is None for g in grads[1]]
        assert all(a is None or (np.all(a == 0) and a.shape == b.shape) for a, b in zip(*grads))
    # default is set_to_none=True
    net = _mlp(rg)
    opt = rg.optim.Adam(net.params)
    net.loss(1).backward()
    opt.zero_grad()
    assert all(p.grad is None for p in net.params)


def test_step_after_zero_grad_to_zeros_matches_torch():
    """With zeroed (not None) gradients a parameter keeps stepping on steps that do
    not use it: ``c`` (used on even steps only) takes all 5 steps."""
    w = initial_weights("float64")
    vals = []
    for lib in (rg, torch):
        net = Net(lib, w, use_c=True)
        opt = lib.optim.Adam(net.params, lr=0.01, weight_decay=0.1)
        for i in range(5):
            opt.zero_grad(set_to_none=False)
            net.loss(i).backward()
            opt.step()
        vals.append(net.values())
        assert float(opt.state[net.params[4]]["step"]) == 5
    assert_close(vals[0], vals[1], "float64")


def test_assigned_gradients_and_rebound_data_are_used():
    w = initial_weights("float64")
    vals = []
    rng = np.random.default_rng(3)
    manual = [rng.standard_normal(np.shape(w[k])) for k in ("W1", "b1", "W2", "b2", "c")]
    for lib in (rg, torch):
        net = Net(lib, w)
        opt = lib.optim.SGD(net.params, lr=0.1, momentum=0.9)
        for _ in range(3):
            for p, g in zip(net.params, manual):
                p.grad = lib.tensor(g.copy())
            opt.step()
        # rebinding .data (not in place) is taken back by the optimizer at the next step, which updates
        # the new storage (the user's tensor sees the step, as in torch)
        new = lib.tensor(np.full(8, 0.25), dtype=lib.float64)
        net.params[1].data = new
        for p, g in zip(net.params, manual):
            p.grad = lib.tensor(g.copy())
        opt.step()
        vals.append(net.values())
        np.testing.assert_array_equal(new.numpy(), net.params[1].detach().numpy())
        if lib is rg:
            assert np.shares_memory(net.params[1]._array, new._array)
            assert net.params[0].grad._array is not net.params[0]._gslot  # still the user's tensor
    assert_close(vals[0], vals[1], "float64")


def test_changing_the_flat_gradient_buffer_changes_the_step():
    """What data-parallel training does: average the flat buffer in place, then step."""
    w = initial_weights("float64")
    net = Net(rg, w)
    opt = rg.optim.SGD(net.params, lr=0.1)
    net.loss(0).backward()
    net.params[3].grad = rg.tensor(np.ones(3))  # an assigned gradient is copied into the buffer
    bufs = opt.flat_grads()
    assert net.params[3].grad._array is net.params[3]._gslot
    np.testing.assert_array_equal(net.params[3].grad.data, 1.0)
    expected = [p.data - 0.1 * (0.5 * p.grad.data if p.grad is not None else 0) for p in net.params]
    for b in bufs:
        b *= 0.5
    opt.step()
    for p, e in zip(net.params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-15)
    assert net.params[4].grad is None  # unused parameter: zeros in the buffer, no gradient, no step


def test_step_with_closure_returns_its_loss_and_matches_torch():
    w = initial_weights("float64")
    out = []
    for lib in (rg, torch):
        net = Net(lib, w)
        opt = lib.optim.RMSprop(net.params, lr=0.01)
        losses = []
        for i in range(5):
            def closure():
                opt.zero_grad()
                loss = net.loss(i)
                loss.backward()
                return loss
            losses.append(float(opt.step(closure).detach()))
        out.append((losses, net.values()))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-12)
    assert_close(out[0][1], out[1][1], "float64")
    # a closure runs with grad enabled even inside no_grad
    net = Net(rg, w)
    opt = rg.optim.SGD(net.params, lr=0.1)
    with rg.no_grad():
        loss = opt.step(lambda: (opt.zero_grad(), net.loss(0).backward(), 1.5)[2])
    assert loss == 1.5 and net.params[0].grad is not None


def test_step_hooks_run_in_order_and_can_be_removed():
    p = rg.zeros(2, requires_grad=True)
    opt = rg.optim.SGD([p], lr=0.1)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o is opt, args, kwargs)))
    h2 = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", len(args))))
    g1 = rg.optim.register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global-pre"))
    g2 = rg.optim.register_optimizer_step_post_hook(lambda o, a, k: calls.append("global-post"))
    try:
        p.grad = rg.ones(2)
        opt.step()
        assert calls == ["global-pre", ("pre", True, (opt,), {}), ("post", 1), "global-post"]
        np.testing.assert_allclose(p.data, [-0.1, -0.1])
    finally:
        g1.remove()
        g2.remove()
    h1.remove()
    h2.remove()
    calls.clear()
    opt.step()
    assert calls == []


def test_pre_hook_can_replace_the_arguments():
    p = rg.zeros(2, requires_grad=True)
    opt = rg.optim.SGD([p], lr=1.0)

    def closure():
        p.grad = rg.full((2,), 3.0, dtype=rg.float32)
        return "replaced"

    opt.register_step_pre_hook(lambda o, args, kwargs: (args, {"closure": closure}))
    assert opt.step() == "replaced"
    np.testing.assert_allclose(p.data, [-3.0, -3.0])
    opt.register_step_pre_hook(lambda o, args, kwargs: 42)
    with pytest.raises(RuntimeError, match="must return None or a tuple of \\(new_args, new_kwargs\\), but got 42"):
        opt.step()


def test_hooks_run_once_for_a_subclass_step_that_calls_its_parent():
    class Wrapped(rg.optim.SGD):
        def step(self, closure=None):
            return super().step(closure)

    p = rg.zeros(2, requires_grad=True)
    opt = Wrapped([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    p.grad = rg.ones(2)
    opt.step()
    assert calls == ["pre", "post"]


def test_step_bumps_version_counters_like_torch():
    msgs = []
    for lib in (rg, torch):
        p = lib.ones(3, requires_grad=True)
        opt = lib.optim.SGD([p], lr=0.1)
        loss = (p * p).sum()
        p.grad = lib.ones(3)
        opt.step()
        with pytest.raises(RuntimeError) as info:
            loss.backward()
        msgs.append(str(info.value))
    assert "modified by an in-place operation" in msgs[0] and "modified by an inplace operation" in msgs[1]


def test_add_param_group_later_matches_torch():
    w = initial_weights("float64")
    vals = []
    for lib in (rg, torch):
        net = Net(lib, w)
        opt = lib.optim.Adam(net.params[:2], lr=0.01)
        train(lib, "Adam", {}, w, 5, net=net, opt=opt)
        opt.add_param_group({"params": net.params[2:], "lr": 0.003})
        train(lib, "Adam", {}, w, 5, net=net, opt=opt, start=5)
        vals.append(net.values())
        assert len(opt.param_groups) == 2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    assert_close(vals[0], vals[1], "float64")


def test_state_entries_are_live_views_matching_torch():
    w = initial_weights("float64")
    with default_dtype("float64"):
        r, ro = train(rg, "Adam", {"lr": 0.01, "amsgrad": True}, w, 3)
        t, to = train(torch, "Adam", {"lr": 0.01, "amsgrad": True}, w, 3)
    for p, q in zip(r.params[:4], t.params[:4]):
        assert list(ro.state[p]) == list(to.state[q]) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_allclose(ro.state[p][k].data, to.state[q][k].numpy(), rtol=1e-10, atol=1e-14)
            assert ro.state[p][k].shape == p.shape
        assert float(ro.state[p]["step"]) == 3.0 and ro.state[p]["step"].dtype == rg.float64
    assert r.params[4] not in ro.state and t.params[4] not in to.state  # never had a gradient
    before = ro.state[r.params[0]]["exp_avg"].detach().numpy().copy()
    train(rg, "Adam", {}, w, 1, net=r, opt=ro, start=3)
    assert not np.array_equal(before, ro.state[r.params[0]]["exp_avg"].data)  # a view: it moved


def test_step_scalar_dtype_follows_the_default_dtype_like_torch():
    for dtype in ("float32", "float64"):
        with default_dtype(dtype):
            p, q = rg.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
            ro, to = rg.optim.NAdam([p]), torch.optim.NAdam([q])
            p.grad, q.grad = rg.ones(2), torch.ones(2)
            ro.step()
            to.step()
        assert ro.state[p]["mu_product"].dtype.name == str(to.state[q]["mu_product"].dtype).split(".")[1] == dtype
        assert float(ro.state[p]["mu_product"]) == float(to.state[q]["mu_product"])


def test_adagrad_creates_state_at_construction_like_torch():
    p, q = rg.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    ro = rg.optim.Adagrad([p], initial_accumulator_value=0.5)
    to = torch.optim.Adagrad([q], initial_accumulator_value=0.5)
    assert list(ro.state[p]) == list(to.state[q]) == ["step", "sum"]
    np.testing.assert_array_equal(ro.state[p]["sum"].data, [0.5, 0.5])
    assert float(ro.state[p]["step"]) == 0.0


def test_step_arrays_per_parameter_helpers():
    a, b, c = rg.zeros(2, 3, requires_grad=True), rg.zeros(0, requires_grad=True), rg.zeros(4, requires_grad=True)
    seen = {}

    class Probe(rg.optim.Optimizer):
        def _update(self, group, u):
            seen["split"] = [x.shape for x in u.split(u.param)]
            seen["sums"] = u.segment_sum(u.grad)
            seen["expand"] = u.expand(np.array([1.0, 2.0, 3.0]))

    opt = Probe([a, b, c], {})
    a.grad = rg.tensor(np.arange(6.0).reshape(2, 3).astype(np.float32))
    b.grad = rg.zeros(0)
    c.grad = rg.ones(4)
    opt.step()
    assert seen["split"] == [(2, 3), (0,), (4,)]
    np.testing.assert_array_equal(seen["sums"], [15.0, 0.0, 4.0])
    np.testing.assert_array_equal(seen["expand"], [1.0] * 6 + [3.0] * 4)
    assert seen["expand"].dtype == np.float32


def test_repr_lists_the_groups_like_torch():
    p = rg.zeros(2, requires_grad=True)
    q = torch.zeros(2, requires_grad=True)
    r = repr(rg.optim.SGD([p], lr=0.1, momentum=0.9))
    t = repr(torch.optim.SGD([q], lr=0.1, momentum=0.9))
    assert r == t
    assert r.startswith("SGD (\nParameter Group 0\n    dampening: 0\n")


def test_gradient_or_parameter_of_the_wrong_shape_fails():
    p = rg.zeros(2, 3, requires_grad=True)
    opt = rg.optim.Adam([p])
    p.grad = rg.zeros(3, 2)
    with pytest.raises(RuntimeError, match=r"Adam.step: the gradient of shape \(3, 2\) does not match its "
                                           r"parameter of shape \(2, 3\)"):
        opt.step()
    p.grad = None
    p.data = rg.zeros(6, dtype=rg.float32)
    with pytest.raises(RuntimeError, match=r"Adam: parameter 0 of its group changed shape from \(2, 3\) to \(6,\)"):
        opt.step()


def test_no_gradient_anywhere_is_a_no_op_like_torch():
    p = rg.ones(2, requires_grad=True)
    opt = rg.optim.Adam([p], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(p.data, [1.0, 1.0])
    assert len(opt.state) == 0 and opt.state_dict()["state"] == {}
