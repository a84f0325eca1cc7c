"""``inplace=True`` activations and dropouts (and the ``relu_``-style functional names) really write
into their input, as torch: the result is the input tensor, its values and version change, a leaf
that requires grad refuses, gradients flow through the rebased history, and a graph that saved the
input refuses to backpropagate. Checked against torch."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.nn import functional as F

X = np.array([[-4.0, -3.0, -1.5, -0.25, 0.0], [0.5, 1.0, 3.0, 4.5, 7.0]])
WEIGHTS = np.arange(1.0, 11.0).reshape(2, 5)


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.detach()._array)


def _version(t):
    return t._version if isinstance(t, torch.Tensor) else t._vc[0]


# (functional call, module) on (lib, F-module, nn-module)
ACTIVATIONS = {
    "relu": (lambda F, x: F.relu(x, inplace=True), lambda nn: nn.ReLU(inplace=True)),
    "relu_": (lambda F, x: F.relu_(x), None),
    "relu6": (lambda F, x: F.relu6(x, inplace=True), lambda nn: nn.ReLU6(inplace=True)),
    "leaky_relu": (lambda F, x: F.leaky_relu(x, 0.2, inplace=True), lambda nn: nn.LeakyReLU(0.2, inplace=True)),
    "leaky_relu_": (lambda F, x: F.leaky_relu_(x, 0.2), None),
    "elu": (lambda F, x: F.elu(x, 0.7, inplace=True), lambda nn: nn.ELU(0.7, inplace=True)),
    "elu_": (lambda F, x: F.elu_(x), None),
    "selu": (lambda F, x: F.selu(x, inplace=True), lambda nn: nn.SELU(inplace=True)),
    "celu": (lambda F, x: F.celu(x, 1.3, inplace=True), lambda nn: nn.CELU(1.3, inplace=True)),
    "hardtanh": (lambda F, x: F.hardtanh(x, -2.0, 2.5, inplace=True), lambda nn: nn.Hardtanh(-2.0, 2.5, inplace=True)),
    "hardtanh_": (lambda F, x: F.hardtanh_(x), None),
    "silu": (lambda F, x: F.silu(x, inplace=True), lambda nn: nn.SiLU(inplace=True)),
    "mish": (lambda F, x: F.mish(x, inplace=True), lambda nn: nn.Mish(inplace=True)),
    "hardswish": (lambda F, x: F.hardswish(x, inplace=True), lambda nn: nn.Hardswish(inplace=True)),
    "hardsigmoid": (lambda F, x: F.hardsigmoid(x, inplace=True), lambda nn: nn.Hardsigmoid(inplace=True)),
    "threshold": (lambda F, x: F.threshold(x, 0.75, -2.0, inplace=True), lambda nn: nn.Threshold(0.75, -2.0, True)),
    "threshold_": (lambda F, x: F.threshold_(x, 0.75, -2.0), None),
}


def _run(lib, call):
    leaf = lib.tensor(X, dtype=lib.float64, requires_grad=True)
    h = leaf * 1.0  # an activation in a graph: in-place is allowed on it
    v0 = _version(h)
    y = call(h)
    assert y is h
    bumped = _version(h) - v0
    (y * lib.tensor(WEIGHTS, dtype=lib.float64)).sum().backward()
    return y, bumped, leaf.grad


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_inplace_activation_writes_into_its_input_as_torch(name):
    fcall, module = ACTIVATIONS[name]
    calls = [(fcall, "functional")] + ([(module, "module")] if module else [])
    for call, kind in calls:
        res = []
        for lib, fmod in ((rg, F), (torch, torch.nn.functional)):
            c = (lambda x, fmod=fmod: call(fmod, x)) if kind == "functional" else call(lib.nn)
            res.append(_run(lib, c))
        (y, b, g), (ty, tb, tg) = res
        np.testing.assert_allclose(_np(y), _np(ty), rtol=1e-12, atol=1e-15)
        assert b == tb == 1
        # torch's float64 backward of celu and hardsigmoid uses float32 constants (alpha's inverse, 1/6)
        rtol = 1e-7 if name in ("celu", "hardsigmoid") else 1e-12
        np.testing.assert_allclose(_np(g), _np(tg), rtol=rtol, atol=1e-15)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "silu", "hardswish", "threshold"])
def test_inplace_activation_refuses_a_leaf_that_requires_grad_as_torch(name):
    fcall = ACTIVATIONS[name][0]
    for lib, fmod in ((rg, F), (torch, torch.nn.functional)):
        leaf = lib.tensor(X, dtype=lib.float64, requires_grad=True)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
            fcall(fmod, leaf)
        np.testing.assert_array_equal(_np(leaf), X)  # refused before writing
        with lib.no_grad():  # allowed where nothing is recorded
            assert fcall(fmod, leaf) is leaf


def test_inplace_relu_after_an_op_that_saved_its_output_refuses_backward_as_torch():
    for lib, fmod in ((rg, F), (torch, torch.nn.functional)):
        leaf = lib.tensor(X, dtype=lib.float64, requires_grad=True)
        s = leaf.sigmoid()  # saves its output, which relu_ then changes
        fmod.relu(s - 0.5, inplace=True)  # fine: s - 0.5 is a new tensor
        e = leaf.exp()
        fmod.hardtanh(e, 0.0, 3.0, inplace=True)
        with pytest.raises(RuntimeError, match="one of the variables needed for gradient computation has been "
                                               "modified by an inplace operation"):
            e.sum().backward()


def test_mlp_with_inplace_relu_matches_torch():
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(6, 4)), rng.normal(size=6), rng.normal(size=(3, 6))
    x = rng.normal(size=(5, 4))
    grads = []
    for lib in (rg, torch):
        model = lib.nn.Sequential(lib.nn.Linear(4, 6), lib.nn.ReLU(inplace=True), lib.nn.Dropout(0.0, inplace=True),
                                  lib.nn.Linear(6, 3, bias=False), lib.nn.LeakyReLU(0.1, inplace=True)).double()
        model.load_state_dict({"0.weight": lib.tensor(w1), "0.bias": lib.tensor(b1), "3.weight": lib.tensor(w2)})
        out = model(lib.tensor(x))
        out.pow(2).sum().backward()
        grads.append((out, model[0].weight.grad, model[0].bias.grad, model[3].weight.grad))
    for a, b in zip(*grads):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-12)


@pytest.mark.parametrize("fn,shape", [("dropout", (4, 6)), ("dropout1d", (2, 3, 4)), ("dropout2d", (2, 3, 2, 2)),
                                      ("dropout3d", (2, 3, 1, 2, 2))])
def test_inplace_dropout_writes_into_its_input(fn, shape):
    leaf = rg.tensor(np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape), dtype=rg.float64, requires_grad=True)
    h = leaf * 1.0
    v0 = h._vc[0]
    y = getattr(F, fn)(h, 0.5, True, True, generator=rg.Generator().manual_seed(3))
    assert y is h and h._vc[0] == v0 + 1
    kept = _np(h) != 0
    np.testing.assert_array_equal(_np(h)[kept], 2 * _np(leaf)[kept])  # survivors scaled by 1 / (1 - p)
    assert 0 < kept.sum() < kept.size
    h.sum().backward()
    np.testing.assert_array_equal(_np(leaf.grad), 2.0 * kept)
    # torch: a leaf that requires grad refuses, eval mode and p = 0 return the input untouched
    for lib, fmod in ((rg, F), (torch, torch.nn.functional)):
        leaf = lib.ones(shape, dtype=lib.float64, requires_grad=True)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
            getattr(fmod, fn)(leaf, 0.5, True, True)
        assert getattr(fmod, fn)(leaf, 0.5, False, True) is leaf
        assert getattr(fmod, fn)(leaf, 0.0, True, True) is leaf
    m = rg.nn.Dropout(0.5, inplace=True)
    h = rg.ones(4, 6)
    assert m(h) is h and (h.numpy() == 0).any()
