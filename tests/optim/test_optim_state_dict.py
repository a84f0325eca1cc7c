"""state_dict / load_state_dict: PyTorch's layout, bit-identical round trips
mid-training, loading a PyTorch optimizer's state dict, and the errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from optim_helpers import (Net, assert_close, default_dtype, initial_weights, snapshot, state_to_numpy,
                           train)
from test_optim_vs_torch import RICH

NAMES = ("W1", "b1", "W2", "b2", "c")


def _weights_from(w: dict, values: list) -> dict:
    out = dict(w)
    out.update({k: v.copy() for k, v in zip(NAMES, values)})
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(RICH))
def test_round_trip_mid_training_is_bit_identical(name, dtype):
    """Save at step 50, build a fresh optimizer on fresh parameters, load, run 50
    more steps: exactly what 100 uninterrupted steps give. ``c`` skips odd steps,
    so the saved state has parameters at different step counts."""
    w = initial_weights(dtype)
    kw = RICH[name]
    with default_dtype(dtype):
        net, opt = train(rg, name, kw, w, 50, use_c=True)
        saved = snapshot(opt.state_dict())
        w50 = _weights_from(w, net.values())
        train(rg, name, kw, w, 50, use_c=True, net=net, opt=opt, start=50)

        net2 = Net(rg, w50, use_c=True)
        opt2 = getattr(rg.optim, name)(net2.params, **kw)
        opt2.load_state_dict(saved)
        train(rg, name, kw, w, 50, use_c=True, net=net2, opt=opt2, start=50)
    for a, b in zip(net.values(), net2.values()):
        np.testing.assert_array_equal(a, b)
    for p, q in zip(net.params, net2.params):
        assert opt.state[p].keys() == opt2.state[q].keys()
        for k in opt.state[p]:
            np.testing.assert_array_equal(opt.state[p][k].data, opt2.state[q][k].data)


@pytest.mark.parametrize("name", list(RICH))
def test_state_dict_layout_matches_torch(name):
    w = initial_weights("float64")
    with default_dtype("float64"):
        r, ro = train(rg, name, RICH[name], w, 7, use_c=True, split={"lr": 0.01})
        t, to = train(torch, name, RICH[name], w, 7, use_c=True, split={"lr": 0.01})
    rs, ts = ro.state_dict(), to.state_dict()
    assert [g["params"] for g in rs["param_groups"]] == [g["params"] for g in ts["param_groups"]] == [[0, 1],
                                                                                                      [2, 3, 4]]
    assert [set(g) for g in rs["param_groups"]] == [set(g) for g in ts["param_groups"]]
    for rg_group, t_group in zip(rs["param_groups"], ts["param_groups"]):
        for k, v in t_group.items():
            if k not in ("params", "foreach"):
                assert rg_group[k] == v, k
    assert sorted(rs["state"]) == sorted(ts["state"])
    for i in ts["state"]:
        assert list(rs["state"][i]) == list(ts["state"][i])  # same keys, same order
        for k, v in ts["state"][i].items():
            np.testing.assert_allclose(rs["state"][i][k].data, v.numpy(), rtol=1e-10, atol=1e-12)
            assert rs["state"][i][k].shape == tuple(v.shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(RICH))
def test_loading_a_torch_state_dict_continues_like_torch(name, dtype):
    """Train 50 steps in PyTorch, convert its state dict with ``.numpy()``, load it
    into a retrograd optimizer over the same weights, and continue both 50 steps."""
    w = initial_weights(dtype)
    kw = RICH[name]
    with default_dtype(dtype):
        t, to = train(torch, name, kw, w, 50, use_c=True)
        converted = state_to_numpy(to.state_dict())
        r = Net(rg, _weights_from(w, t.values()), use_c=True)
        ro = getattr(rg.optim, name)(r.params, **kw)
        ro.load_state_dict(converted)
        assert float(ro.state[r.params[0]].get("step", rg.tensor(50.0))) == 50
        train(torch, name, kw, w, 50, use_c=True, net=t, opt=to, start=50)
        train(rg, name, kw, w, 50, use_c=True, net=r, opt=ro, start=50)
    assert_close(r.values(), t.values(), dtype)


@pytest.mark.parametrize("name", list(RICH))
def test_torch_loads_a_retrograd_state_dict(name):
    """The layout is PyTorch's: converted back to torch tensors, it loads into
    ``torch.optim`` and both continue alike."""
    w = initial_weights("float64")
    kw = RICH[name]
    with default_dtype("float64"):
        r, ro = train(rg, name, kw, w, 30, use_c=True)
        sd = ro.state_dict()
        converted = {"state": {i: {k: torch.tensor(v.detach().numpy().copy()) for k, v in s.items()}
                               for i, s in sd["state"].items()},
                     "param_groups": sd["param_groups"]}
        t = Net(torch, _weights_from(w, r.values()), use_c=True)
        to = getattr(torch.optim, name)(t.params, **kw)
        to.load_state_dict(converted)
        train(torch, name, kw, w, 20, use_c=True, net=t, opt=to, start=30)
        train(rg, name, kw, w, 20, use_c=True, net=r, opt=ro, start=30)
    assert_close(r.values(), t.values(), "float64")


def test_load_state_dict_restores_hyperparameters_and_keeps_params():
    p = rg.zeros(3, requires_grad=True)
    q = rg.zeros(3, requires_grad=True)
    a = rg.optim.Adam([p], lr=0.1, betas=(0.5, 0.6))
    b = rg.optim.Adam([q], lr=0.2)
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["lr"] == 0.1 and b.param_groups[0]["betas"] == (0.5, 0.6)
    assert b.param_groups[0]["params"][0] is q
    assert len(b.state) == 0  # a has taken no step: no state


def test_loading_resets_state_of_parameters_absent_from_the_dict():
    p = rg.ones(2, requires_grad=True)
    opt = rg.optim.SGD([p], lr=0.1, momentum=0.9)
    fresh = snapshot(opt.state_dict())
    p.grad = rg.tensor([1.0, 2.0])
    opt.step()
    assert len(opt.state) == 1
    opt.load_state_dict(fresh)
    assert len(opt.state) == 0
    p.data[...] = 1.0
    p.grad = rg.tensor([1.0, 2.0])
    opt.step()  # a first step again: the buffer restarts at the gradient
    np.testing.assert_allclose(p.data, [0.9, 0.8], rtol=1e-6)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"].data, [1.0, 2.0])


def test_adamw_keeps_decoupled_weight_decay_after_loading_an_adam_dict():
    p, q = rg.zeros(2, requires_grad=True), rg.zeros(2, requires_grad=True)
    adam = rg.optim.Adam([p])
    adamw = rg.optim.AdamW([q])
    adamw.load_state_dict(adam.state_dict())
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True


# ---------------------------------------------------------------- errors
def _params(lib, n=2):
    return [lib.zeros(3, requires_grad=True) for _ in range(n)]


def _msg(fn) -> tuple:
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


def test_load_state_dict_with_a_different_number_of_groups_fails_like_torch():
    msgs = []
    for lib in (rg, torch):
        a, b = _params(lib), _params(lib)
        one = lib.optim.Adam(a)
        two = lib.optim.Adam([{"params": b[:1]}, {"params": b[1:]}])
        msgs.append(_msg(lambda: two.load_state_dict(one.state_dict())))
    assert msgs[0] == msgs[1] == (ValueError, "loaded state dict has a different number of parameter groups")


def test_load_state_dict_with_a_different_group_size_fails_like_torch():
    msgs = []
    for lib in (rg, torch):
        one = lib.optim.Adam(_params(lib, 2))
        other = lib.optim.Adam(_params(lib, 3))
        msgs.append(_msg(lambda: other.load_state_dict(one.state_dict())))
    assert msgs[0] == msgs[1] == (ValueError, "loaded state dict contains a parameter group that doesn't "
                                              "match the size of optimizer's group")


def test_load_state_dict_with_a_mismatched_state_shape_fails():
    p = rg.zeros(3, requires_grad=True)
    opt = rg.optim.Adam([p])
    sd = {"state": {0: {"step": np.float32(1), "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(3)}},
          "param_groups": opt.state_dict()["param_groups"]}
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(4,\), expected \(3,\)"):
        opt.load_state_dict(sd)
    assert len(opt.state) == 0  # nothing was applied


def test_load_state_dict_from_a_different_optimizer_fails():
    p, q = rg.zeros(3, requires_grad=True), rg.zeros(3, requires_grad=True)
    sgd = rg.optim.SGD([p], lr=0.1, momentum=0.9)
    adam = rg.optim.Adam([q])
    with pytest.raises(ValueError, match=r"not one of Adam: its parameter group 0 lacks the hyperparameters "
                                         r"\['amsgrad', 'betas', 'eps'\]"):
        adam.load_state_dict(sgd.state_dict())
    q.grad = rg.ones(3)
    adam.step()
    sd = adam.state_dict()
    sd["param_groups"][0].update(momentum=0.9, dampening=0, nesterov=False)
    with pytest.raises(ValueError, match="not one of SGD: parameter 0 has state 'step', and SGD keeps only "
                                         r"\['momentum_buffer'\]"):
        sgd.load_state_dict(sd)
    # loading a torch Adam state dict into rg.optim.SGD fails the same way
    t = torch.zeros(3, requires_grad=True)
    tadam = torch.optim.Adam([t])
    with pytest.raises(ValueError, match="not one of SGD"):
        sgd.load_state_dict(state_to_numpy(tadam.state_dict()))


# constructor errors: the same type and message as PyTorch
CTOR_ERRORS = [
    ("SGD", dict(lr=-1), "Invalid learning rate: -1"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    ("SGD", dict(lr=0.1, weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    ("SGD", dict(lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires a momentum and zero dampening"),
    ("Adam", dict(lr=-1), "Invalid learning rate: -1"),
    ("Adam", dict(lr=float("nan")), "Invalid learning rate: nan"),
    ("Adam", dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    ("Adam", dict(eps=float("nan")), "Invalid epsilon value: nan"),
    ("Adam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    ("Adam", dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    ("Adam", dict(betas=(float("nan"), 0.9)), "Invalid beta parameter at index 0: nan"),
    ("Adam", dict(weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
    ("AdamW", dict(lr=-0.5), "Invalid learning rate: -0.5"),
    ("AdamW", dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    ("Adamax", dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    ("Adamax", dict(betas=(-0.1, 0.9)), "Invalid beta parameter at index 0: -0.1"),
    ("NAdam", dict(momentum_decay=-1.0), "Invalid momentum_decay value: -1.0"),
    ("NAdam", dict(lr=-1.0), "Invalid learning rate: -1.0"),
    ("RAdam", dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    ("RAdam", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("Adagrad", dict(lr_decay=-1.0), "Invalid lr_decay value: -1.0"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value value: -1.0"),
    ("Adagrad", dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    ("Adadelta", dict(rho=1.5), "Invalid rho value: 1.5"),
    ("Adadelta", dict(lr=-1.0), "Invalid learning rate: -1.0"),
    ("RMSprop", dict(alpha=-0.1), "Invalid alpha value: -0.1"),
    ("RMSprop", dict(momentum=-0.1), "Invalid momentum value: -0.1"),
    ("RMSprop", dict(eps=-0.1), "Invalid epsilon value: -0.1"),
]


@pytest.mark.parametrize("name,kwargs,message", CTOR_ERRORS,
                         ids=[f"{n}-{'-'.join(map(str, k.items()))}" for n, k, _ in CTOR_ERRORS])
def test_bad_hyperparameters_fail_like_torch(name, kwargs, message):
    got = [_msg(lambda: getattr(lib.optim, name)(_params(lib), **kwargs)) for lib in (rg, torch)]
    assert got[0] == got[1] == (ValueError, message)


def test_nan_learning_rate_is_rejected_by_sgd_too():
    # PyTorch's SGD checks `lr < 0` and lets NaN through; every rg optimizer rejects it
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        rg.optim.SGD(_params(rg), lr=float("nan"))


PARAM_ERRORS = [
    ("empty list", lambda lib: lib.optim.SGD([], lr=0.1), ValueError, "optimizer got an empty parameter list"),
    ("empty generator", lambda lib: lib.optim.Adam(iter([])), ValueError, "optimizer got an empty parameter list"),
    ("same parameter in two groups",
     lambda lib: (lambda p: lib.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1))(
         lib.zeros(2, requires_grad=True)),
     ValueError, "some parameters appear in more than one parameter group"),
    ("a set of parameters", lambda lib: lib.optim.SGD([{"params": {lib.zeros(2, requires_grad=True)}}], lr=0.1), TypeError,
     "optimizer parameters need to be organized in ordered collections, but the ordering of tensors in sets "
     "will change between runs. Please use a list instead."),
    ("non-leaf", lambda lib: lib.optim.SGD([lib.zeros(2, requires_grad=True) * 2], lr=0.1), ValueError,
     "can't optimize a non-leaf Tensor"),
    ("a param group that is not a dict",
     lambda lib: lib.optim.SGD([lib.zeros(2, requires_grad=True)], lr=0.1).add_param_group([1]), TypeError,
     "param_group must be a dict, but got <class 'list'>"),
]


@pytest.mark.parametrize("what,make,exc,message", PARAM_ERRORS, ids=[e[0] for e in PARAM_ERRORS])
def test_bad_params_fail_like_torch(what, make, exc, message):
    got = [_msg(lambda: make(lib)) for lib in (rg, torch)]
    assert got[0] == got[1] == (exc, message)


def test_params_given_as_one_tensor_or_non_tensors_fail():
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable of "
                                        "Tensors or dicts, but got retrograd.tensor.Tensor"):
        rg.optim.SGD(rg.zeros(2, requires_grad=True), lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is int"):
        rg.optim.SGD([1, 2], lr=0.1)


def test_duplicate_parameter_in_one_group_is_an_error():
    p = rg.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="optimizer contains a parameter group with duplicate parameters"):
        rg.optim.SGD([p, p], lr=0.1)


def test_required_hyperparameter_missing_fails():
    class Custom(rg.optim.Optimizer):
        pass

    with pytest.raises(ValueError, match="parameter group didn't specify a value of required optimization "
                                         "parameter lr"):
        Custom([rg.zeros(2, requires_grad=True)], {"lr": rg.optim.required})
    opt = Custom([{"params": [rg.zeros(2, requires_grad=True)], "lr": 0.5}], {"lr": rg.optim.required})
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(NotImplementedError, match="Custom does not implement step"):
        opt.param_groups[0]["params"][0].grad = rg.ones(2)
        opt.step()


def test_an_empty_state_entry_starts_afresh_like_torch():
    """``{}`` for a parameter (what touching ``opt.state[p]`` leaves) means no state:
    SGD's momentum buffer then starts at the gradient, with dampening too."""
    vals = []
    for lib in (rg, torch):
        p = lib.ones(2, requires_grad=True)
        opt = lib.optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
        sd = opt.state_dict()
        sd["state"] = {0: {}}
        opt.load_state_dict(sd)
        p.grad = lib.tensor([1.0, 2.0])
        opt.step()
        vals.append(np.array(opt.state[p]["momentum_buffer"].data if lib is rg else
                             opt.state[p]["momentum_buffer"].numpy()))
    np.testing.assert_array_equal(vals[0], [1.0, 2.0])
    np.testing.assert_array_equal(vals[0], vals[1])
