"""rg.distributions against torch.distributions: values, gradients, shapes and argument checks."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import distributions as D

td = torch.distributions
RNG = np.random.default_rng(0)


def both(arr, grad=True):
    arr = np.asarray(arr, np.float32)
    return rg.tensor(arr, requires_grad=grad), torch.tensor(arr, requires_grad=grad)


def close(a, b, tol=1e-5):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("given", ["logits", "probs"])
def test_categorical_matches_torch(given):
    raw = RNG.normal(size=(3, 5)) if given == "logits" else RNG.uniform(0.1, 2.0, size=(3, 5))
    x, tx = both(raw)
    c, tc = D.Categorical(**{given: x}), td.Categorical(**{given: tx})
    assert c.batch_shape == tuple(tc.batch_shape) and c.event_shape == tuple(tc.event_shape)
    close(c.probs, tc.probs)
    close(c.logits, tc.logits)
    value = np.array([[0, 4, 2], [1, 1, 3]])  # (2, 3): broadcast against batch (3,)
    lp, tlp = c.log_prob(rg.tensor(value)), tc.log_prob(torch.tensor(value))
    close(lp, tlp)
    close(c.entropy(), tc.entropy())
    close(c.mode, tc.mode)
    (lp.sum() + 0.3 * c.entropy().sum()).backward()
    (tlp.sum() + 0.3 * tc.entropy().sum()).backward()
    close(x.grad, tx.grad)


def test_categorical_sample_frequencies_and_seed():
    probs = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    c = D.Categorical(probs=rg.tensor(probs))
    s = c.sample((40_000,), generator=rg.Generator(3)).numpy()
    assert s.shape == (40_000,) and s.dtype == np.int64
    np.testing.assert_allclose(np.bincount(s, minlength=4) / len(s), probs, atol=0.01)
    again = c.sample((40_000,), generator=rg.Generator(3)).numpy()
    assert np.array_equal(s, again)
    batched = D.Categorical(logits=rg.zeros(2, 3)).sample((5,))
    assert batched.shape == (5, 2) and batched.numpy().max() <= 2


def test_normal_matches_torch():
    loc, tloc = both(RNG.normal(size=(4, 3)))
    scale, tscale = both(RNG.uniform(0.5, 2.0, size=(3,)))
    n, tn = D.Normal(loc, scale), td.Normal(tloc, tscale)
    assert n.batch_shape == tuple(tn.batch_shape) == (4, 3)
    value = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    lp, tlp = n.log_prob(rg.tensor(value)), tn.log_prob(torch.tensor(value))
    close(lp, tlp)
    close(n.entropy(), tn.entropy())
    close(n.cdf(rg.tensor(value)), tn.cdf(torch.tensor(value)))
    close(n.mean, tn.mean)
    close(n.stddev, tn.stddev)
    close(n.variance, tn.variance)
    (lp.sum() + n.entropy().sum()).backward()
    (tlp.sum() + tn.entropy().sum()).backward()
    close(loc.grad, tloc.grad)
    close(scale.grad, tscale.grad)


def test_normal_rsample_is_reparameterised():
    loc, scale = rg.tensor([0.5, -1.0], requires_grad=True), rg.tensor([2.0, 0.5], requires_grad=True)
    n = D.Normal(loc, scale)
    x = n.rsample((3,), generator=rg.Generator(7))
    eps = rg.Generator(7).np.standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_allclose(x.detach().numpy(), 0.5 * 0 + loc.detach().numpy() + eps * scale.detach().numpy(),
                               rtol=1e-6)
    x.sum().backward()
    np.testing.assert_allclose(loc.grad.numpy(), [3.0, 3.0])
    np.testing.assert_allclose(scale.grad.numpy(), eps.sum(0), rtol=1e-6)
    s = n.sample((3,), generator=rg.Generator(7))
    assert not s.requires_grad and np.array_equal(s.numpy(), x.detach().numpy())


def test_independent_diagonal_gaussian_matches_torch():
    loc, tloc = both(RNG.normal(size=(5, 2)))
    scale, tscale = both(RNG.uniform(0.5, 1.5, size=(5, 2)))
    d, t = D.Independent(D.Normal(loc, scale), 1), td.Independent(td.Normal(tloc, tscale), 1)
    assert (d.batch_shape, d.event_shape) == (tuple(t.batch_shape), tuple(t.event_shape)) == ((5,), (2,))
    value = RNG.normal(size=(5, 2)).astype(np.float32)
    lp, tlp = d.log_prob(rg.tensor(value)), t.log_prob(torch.tensor(value))
    close(lp, tlp)
    close(d.entropy(), t.entropy())
    lp.sum().backward()
    tlp.sum().backward()
    close(loc.grad, tloc.grad)
    close(scale.grad, tscale.grad)


def test_tanh_squashed_gaussian_matches_torch():
    loc, tloc = both(RNG.normal(size=(4, 2)))
    scale, tscale = both(RNG.uniform(0.3, 1.0, size=(4, 2)))
    half = np.array([2.0, 0.5], np.float32)
    d = D.Independent(D.TransformedDistribution(D.Normal(loc, scale),
                                                [D.TanhTransform(), D.AffineTransform(0.0, rg.tensor(half))]), 1)
    t = td.Independent(td.TransformedDistribution(td.Normal(tloc, tscale),
                                                  [td.TanhTransform(), td.AffineTransform(0.0, torch.tensor(half))]), 1)
    value = (np.tanh(RNG.normal(size=(4, 2))) * half).astype(np.float32)
    lp, tlp = d.log_prob(rg.tensor(value)), t.log_prob(torch.tensor(value))
    close(lp, tlp, 1e-4)
    lp.sum().backward()
    tlp.sum().backward()
    close(loc.grad, tloc.grad, 1e-4)
    close(scale.grad, tscale.grad, 1e-4)
    x = d.rsample(generator=rg.Generator(0))
    assert x.shape == (4, 2) and np.all(np.abs(x.detach().numpy()) < half)
    x.sum().backward()  # gradients flow through tanh and the affine map


def test_tanh_transform_log_det_matches_torch():
    x = RNG.normal(size=7).astype(np.float32) * 3
    ours = D.TanhTransform().log_abs_det_jacobian(rg.tensor(x), rg.tensor(np.tanh(x)))
    theirs = td.TanhTransform().log_abs_det_jacobian(torch.tensor(x), torch.tanh(torch.tensor(x)))
    close(ours, theirs, 1e-5)


def test_argument_errors():
    with pytest.raises(ValueError, match="scale"):
        D.Normal(0.0, -1.0)
    with pytest.raises(ValueError, match="loc"):
        D.Normal(float("nan"), 1.0)
    with pytest.raises(ValueError, match="Either `probs` or `logits`"):
        D.Categorical()
    with pytest.raises(ValueError, match="Either `probs` or `logits`"):
        D.Categorical(probs=rg.ones(3), logits=rg.ones(3))
    with pytest.raises(ValueError, match="probs"):
        D.Categorical(probs=rg.tensor([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="support"):
        D.Categorical(logits=rg.zeros(3)).log_prob(rg.tensor([3]))
    with pytest.raises(ValueError, match="reinterpreted_batch_ndims"):
        D.Independent(D.Normal(rg.zeros(2), rg.ones(2)), 2)
    D.Normal(0.0, -1.0, validate_args=False)  # checks off: no error, as in PyTorch
