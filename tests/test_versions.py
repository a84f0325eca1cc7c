"""Version counters made on first need (``retrograd.versions``): an op's output starts with the shared
read-only ``FRESH`` instead of a list of its own. Whatever later shares or changes its counter (a view,
``detach``, a Parameter, a saved tensor of a Function, an in-place op, an optimizer step, a buffer
loaded from a state dict, a collective) must see and make the same versions as PyTorch's, and autograd
must still refuse a backward through a tensor changed in place after it was saved."""
import copy
import pickle

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import versions

X = np.array([0.5, -1.25, 2.0, 3.5], dtype=np.float32)


def _version(t):
    return t._version if isinstance(t, torch.Tensor) else t._vc[0]


def _both(fn):
    """``fn(lib, x)`` on retrograd and torch, with ``x`` a leaf that requires grad."""
    return [fn(lib, lib.tensor(X.copy(), requires_grad=True)) for lib in (rg, torch)]


def test_an_ops_output_starts_fresh_and_gets_a_list_on_first_bump():
    y = rg.tensor(X, requires_grad=True) * 2.0
    assert y._vc is versions.FRESH  # no list made for the op's output
    with rg.no_grad():
        y.add_(1.0)
    assert type(y._vc) is list and y._vc[0] == 1
    assert versions.FRESH == (0,)  # the shared one never changes


def test_a_saved_output_has_its_own_counter():
    y = rg.tensor(X, requires_grad=True).tanh()  # tanh's backward reads its output: watched
    assert type(y._vc) is list and y._node.out_vc is y._vc


@pytest.mark.parametrize("case", ["input_saved", "output_saved", "view_of_input", "detached", "view_then_base"])
def test_in_place_change_after_save_is_refused_as_in_torch(case):
    def run(lib, x):
        y = x * 2.0  # fresh in retrograd
        if case == "input_saved":
            z = y * y  # mul reads its inputs
            y.add_(1.0)
        elif case == "output_saved":
            z = y.exp()
            z.mul_(2.0)
        elif case == "view_of_input":
            v = y.view(2, 2)
            z = (v * v).sum()
            y.add_(1.0)
        elif case == "detached":
            z = y * y
            y.detach().add_(1.0)  # shares the storage and its counter
        else:
            v = y[1:]
            z = y * y
            v.mul_(3.0)
        try:
            z.sum().backward()
        except RuntimeError as e:
            return "modified by an inplace operation" in str(e), _version(y)
        return False, _version(y)

    (rg_refused, rg_v), (t_refused, t_v) = _both(run)
    assert rg_refused and t_refused
    assert rg_v == t_v


def test_views_and_detach_share_one_counter_with_a_fresh_tensor():
    def run(lib, x):
        y = x * 3.0
        v = y.view(2, 2)
        d = y.detach()
        with lib.no_grad():
            d.add_(1.0)
            v.mul_(2.0)
        return _version(y), _version(v), _version(d), y.detach().numpy().tolist()

    r, t = _both(run)
    assert r == t and r[0] == 2


def test_parameter_made_from_an_op_output_steps_and_counts():
    def run(lib, x):
        p = lib.nn.Parameter(x.detach() * 0.5)
        opt = lib.optim.SGD([p], lr=0.1)
        (p * p).sum().backward()
        opt.step()
        return p.detach().numpy().copy(), _version(p) > 0

    (rp, rb), (tp, tb) = _both(run)
    np.testing.assert_array_equal(rp, tp)
    assert rb and tb


def test_buffer_from_an_op_output_loads_a_state_dict():
    m = rg.nn.Module()
    m.register_buffer("scale", rg.tensor(X) * 2.0)
    before = m.scale._vc[0]
    m.load_state_dict({"scale": rg.tensor(X + 1.0)})
    np.testing.assert_array_equal(m.scale.numpy(), X + 1.0)
    assert m.scale._vc[0] == before + 1


def test_function_saving_a_fresh_tensor_refuses_after_an_in_place_change():
    class Square(rg.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2.0 * a * g

    x = rg.tensor(X, requires_grad=True)
    y = x * 2.0
    z = Square.apply(y)
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
        z.sum().backward()


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_of_a_fresh_tensor_change_in_place(how):
    y = rg.tensor(X) * 2.0
    c = copy.deepcopy(y) if how == "deepcopy" else pickle.loads(pickle.dumps(y))
    c.add_(1.0)
    assert c._vc[0] == 1 and y._vc[0] == 0
    np.testing.assert_array_equal(c.numpy(), X * 2.0 + 1.0)
    np.testing.assert_array_equal(y.numpy(), X * 2.0)
