"""nn.init: PyTorch's bounds and scales, checked on large samples against the formulas."""
import math

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.nn import init


def _w(*shape):
    return rg.empty(*shape)


@pytest.mark.parametrize("nl,param,gain", [
    ("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01 ** 2))),
    ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("selu", None, 0.75)])
def test_calculate_gain(nl, param, gain):
    assert init.calculate_gain(nl, param) == pytest.approx(gain, rel=1e-12)
    assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param), rel=1e-12)


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity gelu"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


def _uniform_bound_ok(arr, bound):
    assert np.abs(arr).max() <= bound
    assert np.abs(arr).max() > 0.99 * bound  # fills the interval
    assert abs(arr.mean()) < 0.01 * bound
    assert arr.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)


def test_uniform_normal_constant():
    rg.manual_seed(0)
    a = init.uniform_(_w(400, 500), -2.0, 3.0).numpy()
    assert a.min() >= -2 and a.max() <= 3 and a.mean() == pytest.approx(0.5, abs=0.01)
    n = init.normal_(_w(400, 500), 1.5, 0.5).numpy()
    assert n.mean() == pytest.approx(1.5, abs=0.005) and n.std() == pytest.approx(0.5, rel=0.01)
    assert np.all(init.constant_(_w(3, 2), 0.25).numpy() == 0.25)
    assert np.all(init.zeros_(_w(3, 2)).numpy() == 0) and np.all(init.ones_(_w(3, 2)).numpy() == 1)
    np.testing.assert_array_equal(init.eye_(_w(3, 4)).numpy(), np.eye(3, 4))
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.eye_(_w(3))


def test_xavier():
    rg.manual_seed(1)
    fan_in, fan_out = 300, 200
    _uniform_bound_ok(init.xavier_uniform_(_w(fan_out, fan_in), gain=2.0).numpy(),
                      2.0 * math.sqrt(6 / (fan_in + fan_out)))
    n = init.xavier_normal_(_w(fan_out, fan_in)).numpy()
    assert n.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.01)
    # conv-shaped: the receptive field multiplies both fans
    _uniform_bound_ok(init.xavier_uniform_(_w(64, 32, 3, 3)).numpy(), math.sqrt(6 / (32 * 9 + 64 * 9)))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(_w(5))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nl,a", [("relu", 0), ("leaky_relu", 0.1), ("leaky_relu", math.sqrt(5)), ("tanh", 0)])
def test_kaiming(mode, nl, a):
    rg.manual_seed(2)
    shape = (300, 150, 3)
    fan = 150 * 3 if mode == "fan_in" else 300 * 3
    gain = torch.nn.init.calculate_gain(nl, a)
    _uniform_bound_ok(init.kaiming_uniform_(_w(*shape), a=a, mode=mode, nonlinearity=nl).numpy(),
                      gain * math.sqrt(3 / fan))
    n = init.kaiming_normal_(_w(*shape), a=a, mode=mode, nonlinearity=nl).numpy()
    assert n.std() == pytest.approx(gain / math.sqrt(fan), rel=0.01)
    assert abs(n.mean()) < 0.01 * n.std()


def test_kaiming_errors_and_empty():
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(_w(3, 3), mode="fan_avg")
    with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
        init.kaiming_uniform_(_w(0, 3))


@pytest.mark.parametrize("shape", [(50, 80), (80, 50), (20, 4, 5)])
def test_orthogonal(shape):
    rg.manual_seed(3)
    w = init.orthogonal_(_w(*shape), gain=2.0).numpy().astype(np.float64).reshape(shape[0], -1)
    r, c = w.shape
    gram = w @ w.T if r <= c else w.T @ w
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(r, c)), atol=1e-5)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(_w(4))


def test_trunc_normal():
    rg.manual_seed(4)
    mean, std, a, b = 0.5, 2.0, -1.0, 3.0
    x = init.trunc_normal_(_w(500, 400), mean, std, a, b).numpy().astype(np.float64)
    assert x.min() >= a and x.max() <= b and x.min() < a + 0.01 and x.max() > b - 0.01
    # moments of the truncated normal
    al, be = (a - mean) / std, (b - mean) / std
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    Z = Phi(be) - Phi(al)
    m = mean + std * (phi(al) - phi(be)) / Z
    v = std ** 2 * (1 + (al * phi(al) - be * phi(be)) / Z - ((phi(al) - phi(be)) / Z) ** 2)
    assert x.mean() == pytest.approx(m, abs=0.005)
    assert x.std() == pytest.approx(math.sqrt(v), rel=0.005)
    y = init.trunc_normal_(_w(400, 500), std=0.02).numpy()  # the ViT/GPT use: bounds far out
    assert y.std() == pytest.approx(0.02, rel=0.01)


def test_generator_and_seed_reproducible():
    a = init.kaiming_uniform_(_w(5, 4), generator=rg.Generator(7)).numpy().copy()
    b = init.kaiming_uniform_(_w(5, 4), generator=rg.Generator(7)).numpy().copy()
    np.testing.assert_array_equal(a, b)
    rg.manual_seed(11)
    l1 = rg.nn.Linear(4, 3)
    rg.manual_seed(11)
    l2 = rg.nn.Linear(4, 3)
    np.testing.assert_array_equal(l1.weight.detach().numpy(), l2.weight.detach().numpy())


def test_layer_default_inits_match_torch_distribution():
    rg.manual_seed(5)
    lin = rg.nn.Linear(400, 300)
    _uniform_bound_ok(lin.weight.detach().numpy(), 1 / math.sqrt(400))  # kaiming_uniform_(a=sqrt(5))
    b = lin.bias.detach().numpy()
    assert np.abs(b).max() <= 1 / math.sqrt(400) and b.std() == pytest.approx(1 / math.sqrt(1200), rel=0.15)
    bil = rg.nn.Bilinear(200, 30, 40)
    _uniform_bound_ok(bil.weight.detach().numpy(), 1 / math.sqrt(200))
    emb = rg.nn.Embedding(1000, 200, padding_idx=3).weight.detach().numpy()
    assert np.all(emb[3] == 0) and emb.std() == pytest.approx(1.0, rel=0.01)
    assert np.all(rg.nn.LayerNorm(5).weight.detach().numpy() == 1)
    assert np.all(rg.nn.PReLU(3).weight.detach().numpy() == 0.25)
    bn = rg.nn.BatchNorm1d(3)
    assert np.all(bn.running_var.numpy() == 1) and bn.num_batches_tracked.item() == 0
    assert bn.num_batches_tracked.dtype == np.int64
