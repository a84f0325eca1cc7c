"""Views and in-place ops on them, checked against torch: ``_base``/``_is_view``, shared version
counters, PyTorch's CopySlices (an in-place op on a view rebases its base's history, so gradients
reach the base, the view, other views of the base and the operands), a plain buffer gaining
history through a view (``buf[0].copy_(h)``), and torch's errors (views made under no_grad, the
outputs of split/chunk/unbind, views of leaves, expanded views, self-aliasing ``h *= h``)."""
import numpy as np
import pytest
import torch

import retrograd as rg

X = np.random.default_rng(0).normal(size=(3, 4))
W = np.random.default_rng(1).normal(size=(3, 4))


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.detach()._array)


def _leaf(lib):
    return lib.tensor(X, dtype=lib.float64, requires_grad=True)


def _both(program):
    """Run ``program(lib, x)`` (x a float64 leaf that requires grad; it returns a scalar loss and
    tensors to compare) in retrograd and torch; compare the loss, the tensors and x.grad."""
    out = []
    for lib in (rg, torch):
        x = _leaf(lib)
        loss, *ts = program(lib, x)
        loss.backward()
        out.append((loss, ts, x.grad))
    (l1, t1, g1), (l2, t2, g2) = out
    np.testing.assert_allclose(_np(l1), _np(l2), rtol=1e-12)
    for a, b in zip(t1, t2):
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_np(g1), _np(g2), rtol=1e-12, atol=1e-14)
    return out


def _weights(lib, shape):
    return lib.tensor(np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape), dtype=lib.float64)


# ------------------------------------------------------------------ _base, _is_view, versions
VIEWS = {
    "select": lambda b: b[0],
    "slice": lambda b: b[:, 1:3],
    "view of view": lambda b: b[1:][0],
    "reshape": lambda b: b.reshape(12),
    "view": lambda b: b.view(2, 6),
    "transpose": lambda b: b.transpose(0, 1),
    "t": lambda b: b.t(),
    "permute": lambda b: b.permute(1, 0),
    "narrow": lambda b: b.narrow(1, 1, 2),
    "unsqueeze": lambda b: b.unsqueeze(0),
    "squeeze of unsqueeze": lambda b: b.unsqueeze(1).squeeze(1),
    "flatten": lambda b: b.flatten(),
    "expand": lambda b: b[0:1].expand(2, 4),
    "select of transpose": lambda b: b.t()[1],
}


@pytest.mark.parametrize("make", VIEWS.values(), ids=VIEWS.keys())
def test_base_and_is_view_match_torch(make):
    for lib in (rg, torch):
        b = _leaf(lib) * 1
        v = make(b)
        assert v._is_view() and v._base is b
        assert not b._is_view() and b._base is None
        w = v[..., None]  # a view of a view: its base is the root
        assert w._base is b
        assert b.detach()._base is None and not b.detach()._is_view()
        assert not b.clone()._is_view() and not (b + 1)._is_view()


def test_version_counter_is_shared_by_base_and_all_its_views():
    for lib in (rg, torch):
        b = lib.zeros(3, 4)
        v = b[0]
        w = v.view(2, 2)
        w.add_(1)
        b.t()[0].mul_(2)
        versions = [t._version if lib is torch else t._vc[0] for t in (b, v, w)]
        assert versions == [2, 2, 2]
        np.testing.assert_array_equal(_np(b)[0], [2, 1, 1, 1])


# ------------------------------------------------------------------ CopySlices
@pytest.mark.parametrize("make", [m for k, m in VIEWS.items() if k != "expand"],
                         ids=[k for k in VIEWS if k != "expand"])
@pytest.mark.parametrize("op", ["mul_", "add_tensor", "sigmoid_", "setitem", "copy_"])
def test_in_place_on_a_view_of_an_activation_matches_torch(make, op):
    def program(lib, x):
        w = lib.tensor(W, dtype=lib.float64, requires_grad=True)
        b = x * 2
        v = make(b)
        if op == "mul_":
            v.mul_(3)
        elif op == "add_tensor":
            v.add_(make(w.exp()))
        elif op == "sigmoid_":
            v.sigmoid_()
        elif op == "setitem":
            v[..., 0] = 7.0
        else:
            v.copy_(make(w * w))
        loss = (b * _weights(lib, b.shape)).sum() + (v * v).sum()
        program.grads.append(w.grad)
        return loss, b, v
    program.grads = []
    _both(program)
    # the base's history is torch's CopySlices; the view's reads the base
    b = _leaf(rg) * 2
    v = make(b)
    v.mul_(3)
    assert b.grad_fn.name() == "CopySlices" and v.grad_fn.name() == "AsStridedBackward"


def test_operand_gradient_through_a_view_matches_torch():
    grads = []
    for lib in (rg, torch):
        w = lib.tensor(W, dtype=lib.float64, requires_grad=True)
        x = _leaf(lib)
        b = x * 1.5 + 0.25
        b.t()[1:3].mul_(w.t()[1:3] ** 2)
        (b * _weights(lib, b.shape)).sum().backward()
        grads.append((x.grad, w.grad))
    for a, t in zip(*grads):
        np.testing.assert_allclose(_np(a), _np(t), rtol=1e-12)


def test_other_views_made_before_the_change_see_the_base_new_history():
    def program(lib, x):
        b = x.clone()
        v1, v2, v3 = b[:, 0], b[0], b.view(12)  # overlapping views of one base
        v1.mul_(2)  # v2 and v3 share an element with v1
        b[2].mul_(5)  # an in-place op on the base's own index: only v3 overlaps
        return (v2 * _weights(lib, v2.shape)).sum() + (v3 * v3).sum(), v2, v3
    _both(program)


def test_view_used_after_its_base_changed_in_place_matches_torch():
    def program(lib, x):
        b = x.clone()
        row = b[0]
        col = b.t()[1]
        b.mul_(3)
        return (row * _weights(lib, row.shape)).sum() + col.pow(2).sum(), row, col
    _both(program)


def test_view_in_place_twice_and_view_of_modified_view_match_torch():
    def program(lib, x):
        b = x * 2 - 1
        v = b[1:]
        v.mul_(2)
        v[0].add_(1)  # a view of a view that was itself modified
        u = b.view(12)[3:9]
        u.sin_()
        return (b * _weights(lib, b.shape)).sum() + v.sum(), b, v, u
    _both(program)


def test_in_place_on_view_of_non_contiguous_base_matches_torch():
    def program(lib, x):
        b = (x * 1).t()  # a view: the root is x * 1
        c = b.contiguous() if lib is torch else b.contiguous()
        c[1:3].mul_(4)
        b[0].add_(2)
        return (b * _weights(lib, b.shape)).sum() + (c * c).sum(), b, c
    _both(program)


# ------------------------------------------------------------------ a plain buffer gaining history
def test_copy_into_view_of_plain_buffer_gives_the_buffer_history_as_torch():
    def program(lib, x):
        buf = lib.zeros(4, 4, dtype=lib.float64)
        buf[0].copy_(x[0] * 2)
        buf[1].add_(x[1])
        buf.t()[:, 2].mul_(3)  # row 2 of buf is still 0: times 3, no gradient
        buf.t()[3].copy_(x[2])  # column 3
        assert buf.requires_grad and (lib is torch or buf.grad_fn.name() == "CopySlices")
        return (buf * _weights(lib, buf.shape)).sum(), buf
    _both(program)


def test_rnn_style_buffer_filled_step_by_step_matches_torch():
    def program(lib, x):
        out = lib.zeros(3, 4, dtype=lib.float64)
        h = lib.zeros(4, dtype=lib.float64)
        for t in range(3):
            h = (x[t] + h * 0.5).tanh()
            out[t].copy_(h)
        return (out * _weights(lib, out.shape)).sum(), out
    _both(program)


# ------------------------------------------------------------------ errors as torch
def _torch_and_rg_raise(program, match):
    for lib in (torch, rg):
        with pytest.raises(RuntimeError, match=match):
            program(lib)


def test_view_made_under_no_grad_modified_with_grad_on_is_refused_as_torch():
    def base_requires_grad(lib):
        b = _leaf(lib) * 1
        with lib.no_grad():
            v = b[0]
        assert v.requires_grad and v.grad_fn is None  # as torch: still requires grad
        v.mul_(2)

    def plain_base(lib):
        b = lib.zeros(3, 4, dtype=lib.float64)
        with lib.no_grad():
            v = b[0]
        v.copy_(_leaf(lib)[0])
    for program in (base_requires_grad, plain_base):
        _torch_and_rg_raise(program, r"A view was created in no_grad mode and is being modified inplace with "
                                     r"grad mode enabled\. Given that this use case is ambiguous")

    for lib in (rg, torch):  # both inside no_grad: allowed
        b = _leaf(lib) * 1
        with lib.no_grad():
            b[0].mul_(2)
        assert _np(b)[0, 0] == 2 * X[0, 0]


@pytest.mark.parametrize("split,match", [
    (lambda b: b.unbind(0)[1], "Output 1 of Unbind is a view and is being modified inplace"),
    (lambda b: b.split(2)[0], "Output 0 of Split is a view and is being modified inplace"),
    (lambda b: b.split(2, dim=1)[1], "Output 1 of Split is a view and is being modified inplace"),
    (lambda b: b.chunk(2)[0], "Output 0 of Split is a view and is being modified inplace"),
    (lambda b: b.chunk(2)[0][0], "Output 0 of Select is a view and is being modified inplace"),
    (lambda b: b.unbind(0)[1].view(2, 2), "Output 0 of View is a view and is being modified inplace"),
])
def test_outputs_of_multi_view_functions_refuse_in_place_as_torch(split, match):
    def program(lib):
        v = split(_leaf(lib) * 1)
        v.mul_(2)
    _torch_and_rg_raise(program, match + r"\. This view is the output of a function that returns multiple views")
    for lib in (rg, torch):  # nothing to record: allowed
        split(lib.zeros(3, 4)).add_(1)
        b = _leaf(lib) * 1
        with lib.no_grad():
            split(b).add_(1)


def test_plain_multi_view_output_gaining_grad_is_refused_as_torch():
    def program(lib):
        a = lib.zeros(3, 4, dtype=lib.float64).unbind(0)[0]
        a.copy_(_leaf(lib)[0])
    _torch_and_rg_raise(program, r"A view was created in no_grad mode and is being modified inplace with grad "
                                 r"mode enabled\. This view is the output of a function that returns multiple")


def test_view_of_leaf_and_expanded_view_refuse_in_place_as_torch():
    _torch_and_rg_raise(lambda lib: _leaf(lib)[0].mul_(2),
                        "a view of a leaf Variable that requires grad is being used in an in-place operation")
    _torch_and_rg_raise(lambda lib: _leaf(lib).t().add_(1),
                        "a view of a leaf Variable that requires grad is being used in an in-place operation")
    overlap = "more than one element of the written-to tensor refers to a single memory location"
    _torch_and_rg_raise(lambda lib: lib.zeros(3).expand(2, 3).add_(1), overlap)
    _torch_and_rg_raise(lambda lib: (_leaf(lib) * 1)[0].expand(2, 4).add_(1), overlap)
    _torch_and_rg_raise(lambda lib: lib.zeros(3).expand(2, 3).copy_(lib.ones(2, 3)), overlap)
    # torch writes fill_/zero_/x[i] = v into an expanded view; retrograd refuses them (a documented difference)
    for write in (lambda e: e.fill_(1), lambda e: e.zero_(), lambda e: e.__setitem__(0, 1.0)):
        with pytest.raises(RuntimeError, match=overlap):
            write(rg.zeros(3).expand(2, 3))


# ------------------------------------------------------------------ self-aliasing
def test_self_aliasing_in_place_matches_torch():
    for lib in (rg, torch):
        x = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        h = x * 1
        h *= h  # mul_ saved self before changing it: backward refuses, as torch
        np.testing.assert_array_equal(_np(h), [1.0, 4.0, 9.0])
        with pytest.raises(RuntimeError, match="one of the variables needed for gradient computation has been "
                                               "modified by an inplace operation"):
            h.sum().backward()
        h = x * 1
        hv = h[0:2]
        hv *= hv
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            h.sum().backward()
        for op, grad in (("add_", [2.0, 2.0, 2.0]), ("copy_", [1.0, 1.0, 1.0]), ("sub_", [0.0, 0.0, 0.0])):
            x.grad = None
            h = x * 1
            getattr(h, op)(h)  # these backward rules do not read their inputs: torch's gradient
            h.sum().backward()
            np.testing.assert_array_equal(_np(x.grad), grad)


# ------------------------------------------------------------------ hooks and retain_grad
def test_hooks_and_retain_grad_around_in_place_ops_match_torch():
    seen = {}
    for lib in (rg, torch):
        calls = seen[lib.__name__] = []
        a = lib.tensor([1.0, -2.0, 3.0], dtype=lib.float64, requires_grad=True)
        b = a * 2
        b.register_hook(lambda g, calls=calls: calls.append(("before", _np(g).copy())))
        b.retain_grad()
        b.mul_(3)
        b.register_hook(lambda g, calls=calls: calls.append(("after", _np(g).copy())))
        assert b.retains_grad
        (b * lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)).sum().backward()
        calls.append(("b.grad", _np(b.grad)))  # retain_grad moves with the tensor: the new version's
        # a view's hook and retain_grad stay with the view's old history, which the loss does not reach
        c = a * 2
        v = c[0:2]
        v.register_hook(lambda g, calls=calls: calls.append(("view", _np(g).copy())))
        v.retain_grad()
        v.mul_(5)
        (c * lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)).sum().backward()
        calls.append(("v.grad", v.grad))
    r, t = seen["retrograd"], seen["torch"]
    assert [k for k, _ in r] == [k for k, _ in t] == ["after", "before", "b.grad", "v.grad"]
    for (_, u), (_, w) in zip(r[:3], t[:3]):
        np.testing.assert_array_equal(u, w)
    assert r[3][1] is None and t[3][1] is None


# ------------------------------------------------------------------ view(dtype), storage identity, unique
@pytest.mark.parametrize("src,make,dtype", [
    ("float32", lambda x: x, "int32"),
    ("float32", lambda x: x, "int16"),
    ("float32", lambda x: x, "uint8"),
    ("float32", lambda x: x, "bool"),
    ("float32", lambda x: x, "float64"),
    ("float64", lambda x: x.reshape(3, 4), "float32"),
    ("float32", lambda x: x.reshape(3, 4)[:, :2], "float64"),
    ("float32", lambda x: x.reshape(2, 6).t(), "int32"),
    ("int64", lambda x: x[2:6], "int32"),
])
def test_view_dtype_matches_torch(src, make, dtype):
    out = []
    for lib in (rg, torch):
        x = make(lib.arange(12).to(getattr(lib, src)) + 1)
        y = x.view(getattr(lib, dtype))
        out.append((y, x))
        assert (y._version if lib is torch else y._vc[0]) == 0 and not y.requires_grad
    (y, x), (ty, tx) = out
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_array_equal(_np(y), _np(ty))
    if y.dtype.kind != "b":  # a write through the dtype view is seen by the source, version shared
        y[0] = 1
        ty[0] = 1
        np.testing.assert_array_equal(_np(x), _np(tx))
        assert x._vc[0] == tx._version == 1


@pytest.mark.parametrize("make,dtype", [
    (lambda lib: lib.tensor(1.0), "float16"),
    (lambda lib: lib.arange(8.0)[::2], "float64"),
    (lambda lib: lib.arange(8.0)[1:7], "float64"),
    (lambda lib: lib.arange(24.0).reshape(4, 6)[:, 1:5], "float64"),
    (lambda lib: lib.arange(6.0).reshape(2, 3).t(), "int16"),
    (lambda lib: lib.arange(6.0)[:3], "float64"),
])
def test_view_dtype_errors_match_torch(make, dtype):
    msgs = []
    for lib in (rg, torch):
        with pytest.raises(RuntimeError) as e:
            make(lib).view(getattr(lib, dtype))
        msgs.append(str(e.value).removeprefix("view: "))
    assert msgs[0] == msgs[1]


def test_data_ptr_and_untyped_storage_identity_as_torch():
    for lib in (rg, torch):
        x = lib.arange(12.0).reshape(3, 4)
        v = x[1:, 2:]
        assert v.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() == x.data_ptr()
        assert v.data_ptr() - x.data_ptr() == (4 + 2) * 4 and v.storage_offset() == 6
        assert x.detach().data_ptr() == x.data.data_ptr() == x.data_ptr()
        assert x.clone().data_ptr() != x.data_ptr()
        assert x.untyped_storage().nbytes() == 48
    lin = rg.nn.Linear(3, 2)
    rg.optim.SGD(lin.parameters(), lr=0.1)  # parameters now live in one flat buffer: still distinct storages
    assert lin.weight.untyped_storage().data_ptr() != lin.bias.untyped_storage().data_ptr()


def test_unique_with_sorted_false_and_nans_matches_torch_cpu():
    rng = np.random.default_rng(0)
    for arr in (rng.integers(-50, 50, 500), np.array([3.0, np.nan, 1.0, np.nan, 0.0]), rng.normal(size=40).round(1)):
        res = []
        for lib in (rg, torch):
            res.append(lib.unique(lib.tensor(arr), sorted=False, return_inverse=True, return_counts=True))
        for a, b in zip(*res):
            np.testing.assert_array_equal(_np(a), _np(b))


@pytest.mark.parametrize("make,match", [
    (lambda b: b.unbind(0)[1], "Output 1 of Unbind is a view and its base or another view of its base has been "
                               "modified inplace. This view is the output of a function that returns multiple"),
    (lambda b: b.chunk(2, dim=1)[0], "Output 0 of Split is a view and its base or another view of its base has"),
])
def test_multi_view_output_used_after_its_base_changed_is_refused(make, match):
    # torch refuses when the view is used; retrograd when backward reaches it
    for lib in (torch, rg):
        with pytest.raises(RuntimeError, match=match):
            b = _leaf(lib) * 1
            a = make(b)
            b.mul_(2)
            (a * 1).sum().backward()


def test_no_grad_view_used_after_its_base_changed_is_refused():
    for lib in (torch, rg):
        with pytest.raises(RuntimeError, match="A view was created in no_grad mode and its base or another view "
                                               "of its base has been modified inplace with grad mode enabled"):
            b = _leaf(lib) * 1
            with lib.no_grad():
                v = b[0]
            b.mul_(2)
            (v * 1).sum().backward()


def test_detach_in_place_refuses_views_as_torch():
    for lib in (torch, rg):
        b = _leaf(lib) * 1
        with pytest.raises(RuntimeError, match="Can't detach views in-place. Use detach"):
            b[0].detach_()
        assert b.detach_() is b and not b.requires_grad


def test_in_place_on_view_of_a_base_with_non_contiguous_memory():
    # the base's own array is laid out column-major (from_numpy of a transposed array)
    grads = []
    for lib in (rg, torch):
        buf = lib.from_numpy(np.zeros((3, 4)).T.copy().T) if lib is torch else rg.from_numpy(np.zeros((4, 3)).T)
        x = _leaf(lib)
        buf[1].copy_(x[0] * 2)
        buf.t()[2].add_(x[:, 1])
        (buf * _weights(lib, buf.shape)).sum().backward()
        grads.append((buf, x.grad))
    for a, b in zip(*grads):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-12)


def test_view_made_under_no_grad_requires_grad_but_gets_no_grad_as_torch():
    for lib in (rg, torch):
        w = lib.ones(3, requires_grad=True)
        with lib.no_grad():
            v = w[0:2]
        assert v.requires_grad and v.is_leaf and v.grad_fn is None
        (v * 2).sum().backward()
        assert v.grad is None and w.grad is None


def test_copies_and_pickles_of_a_view_are_not_views_as_torch():
    import copy
    import pickle
    for lib in (rg, torch):
        b = lib.zeros(3, 4, dtype=lib.float64)
        v = b[1]
        for c in (copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
            assert not c._is_view() and c._base is None
            c.copy_(_leaf(lib)[0])  # an ordinary tensor gaining history
            assert c.requires_grad and _np(b).sum() == 0
