"""Bad input names the layer and the shapes; losses are finite at extreme logits; warnings as PyTorch."""
import re
import warnings

import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn.functional as F


def test_linear_wrong_feature_count():
    m = rg.nn.Linear(784, 10)
    with pytest.raises(RuntimeError, match=re.escape(
            "Linear(in_features=784, out_features=10, bias=True): expected input with last dimension 784, "
            "got shape (32, 100)")):
        m(rg.zeros(32, 100))
    with pytest.raises(RuntimeError, match=re.escape("got shape ()")):
        m(rg.tensor(1.0))


def test_bilinear_and_norm_layers_name_shapes():
    with pytest.raises(RuntimeError,
                       match=r"Bilinear\(in1_features=2.*input2 with last dimension 3, got shape \(4, 5\)"):
        rg.nn.Bilinear(2, 3, 1)(rg.zeros(4, 2), rg.zeros(4, 5))
    with pytest.raises(RuntimeError, match=re.escape("LayerNorm((8,), eps=1e-05, elementwise_affine=True, "
                                                     "bias=True): expected input with trailing shape (8,), got "
                                                     "shape (2, 7)")):
        rg.nn.LayerNorm(8)(rg.zeros(2, 7))
    with pytest.raises(RuntimeError, match=r"RMSNorm\(\(4,\).*trailing shape \(4,\), got shape \(3, 5\)"):
        rg.nn.RMSNorm(4)(rg.zeros(3, 5))
    with pytest.raises(RuntimeError,
                       match=r"GroupNorm\(2, 4.*expected input of shape \(N, 4, \*\), got shape \(3, 6\)"):
        rg.nn.GroupNorm(2, 4)(rg.zeros(3, 6))
    with pytest.raises(ValueError, match=re.escape("num_channels (5) must be divisible by num_groups (2)")):
        rg.nn.GroupNorm(2, 5)


def test_batchnorm_rank_channels_and_single_value():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3, .*expected 2D or 3D input \(N, C\) or \(N, C, L\), "
                                         r"got 4D input of shape \(2, 3, 4, 4\)"):
        rg.nn.BatchNorm1d(3)(rg.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*expected 4D input"):
        rg.nn.BatchNorm2d(3)(rg.zeros(2, 3))
    with pytest.raises(RuntimeError,
                       match=r"BatchNorm1d\(3, .*expected input with 3 channels \(dim 1\), got shape \(8, 4\)"):
        rg.nn.BatchNorm1d(3)(rg.zeros(8, 4))
    with pytest.raises(ValueError, match=re.escape("Expected more than 1 value per channel when training, got "
                                                   "input size (1, 3)")):
        rg.nn.BatchNorm1d(3)(rg.zeros(1, 3))
    m = rg.nn.BatchNorm1d(3).eval()
    assert m(rg.ones(1, 3)).shape == (1, 3)  # eval mode needs no batch


def test_cross_entropy_bad_targets():
    x = rg.zeros(4, 10)
    with pytest.raises(IndexError, match=re.escape("cross_entropy: target 12 is out of bounds for 10 classes")):
        F.cross_entropy(x, rg.tensor([1, 2, 12, 0]))
    with pytest.raises(IndexError, match="target -1 is out of bounds"):
        F.cross_entropy(x, rg.tensor([1, 2, -1, 0]))
    assert np.isfinite(F.cross_entropy(x, rg.tensor([1, -100, 3, 0])).item())  # ignore_index is fine
    with pytest.raises(RuntimeError, match=re.escape("cross_entropy: expected target of integer class indices "
                                                     "(int64) of shape (4,)")):
        F.cross_entropy(x, rg.tensor([1.0, 2.0, 3.0, 0.0]))
    with pytest.raises(ValueError, match=re.escape("expected target of shape (4,) for input of shape (4, 10), "
                                                   "got target of shape (4, 1)")):
        F.cross_entropy(x, rg.zeros(4, 1, dtype=rg.int64))
    with pytest.raises(IndexError, match="nll_loss: target 5 is out of bounds for 5 classes"):
        F.nll_loss(rg.zeros(2, 5), rg.tensor([5, 0]))
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 10 classes"):
        F.cross_entropy(x, rg.tensor([1, 2, 3, 0]), weight=rg.ones(3))
    with pytest.raises(ValueError, match="foo is not a valid value for reduction"):
        rg.nn.MSELoss(reduction="foo")


def test_size_mismatch_warns_like_torch():
    x, t = np.zeros((5, 1), np.float32), np.ones(5, np.float32)
    for loss in ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"):
        with pytest.warns(UserWarning, match=re.escape("Using a target size ((5,)) that is different to the "
                                                       "input size ((5, 1))")):
            r = getattr(rg.nn, loss)()(rg.tensor(x), rg.tensor(t))
        with pytest.warns(UserWarning, match="Using a target size"):
            tt = getattr(torch.nn, loss)()(torch.tensor(x), torch.tensor(t))
        assert r.item() == pytest.approx(tt.item())  # same broadcast result as torch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rg.nn.MSELoss()(rg.tensor(x), rg.tensor(x))
    with pytest.raises(ValueError, match="Target size"):
        F.binary_cross_entropy_with_logits(rg.zeros(3, 1), rg.zeros(3))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(rg.tensor([1.5]), rg.tensor([1.0]))


def test_embedding_bad_indices():
    e = rg.nn.Embedding(5, 2)
    with pytest.raises(IndexError, match=re.escape("embedding: index 5 is out of range for an embedding of 5 rows")):
        e(rg.tensor([0, 5]))
    with pytest.raises(RuntimeError, match="expected indices of an integer dtype"):
        e(rg.tensor([0.0, 1.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_at_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3], [3e3, -2e3, 1e4]], dtype=dtype)
    target = np.array([1, 1, 2])
    for kw in ({}, {"label_smoothing": 0.1}, {"weight": [1.0, 2.0, 3.0]}):
        x = rg.tensor(logits, requires_grad=True)
        rkw = {k: (rg.tensor(v, dtype=dtype) if k == "weight" else v) for k, v in kw.items()}
        loss = F.cross_entropy(x, rg.tensor(target), **rkw)
        loss.backward()
        tx = torch.tensor(logits, requires_grad=True)
        tkw = {k: (torch.tensor(v, dtype=tx.dtype) if k == "weight" else v) for k, v in kw.items()}
        tl = torch.nn.functional.cross_entropy(tx, torch.tensor(target), **tkw)
        tl.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(x.grad.numpy()))
        np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-6)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_stable_at_huge_logits(dtype):
    logits = np.array([1e4, -1e4, 50.0, -50.0, 0.0], dtype=dtype)
    target = np.array([0.0, 1.0, 1.0, 0.0, 0.5], dtype=dtype)
    x = rg.tensor(logits, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, rg.tensor(target), pos_weight=rg.tensor(2.0, dtype=dtype))
    loss.backward()
    tx = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.tensor(target),
                                                              pos_weight=torch.tensor(2.0, dtype=tx.dtype))
    tl.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(x.grad.numpy()))
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-9)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    x = rg.zeros(2, 3, requires_grad=True)
    tx = torch.zeros(2, 3, requires_grad=True)
    r = F.cross_entropy(x, rg.tensor([-100, -100]))
    t = torch.nn.functional.cross_entropy(tx, torch.tensor([-100, -100]))
    assert np.isnan(r.item()) and np.isnan(t.item())


def test_cross_entropy_second_order_matches_torch():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((4, 3))
    tgt = np.array([0, 2, 1, 2])
    x = rg.tensor(x0, requires_grad=True)
    (g,) = rg.grad(F.cross_entropy(x, rg.tensor(tgt), label_smoothing=0.1), x, create_graph=True)
    (g * g).sum().backward()
    tx = torch.tensor(x0, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.nn.functional.cross_entropy(tx, torch.tensor(tgt), label_smoothing=0.1), tx,
                                create_graph=True)
    (tg * tg).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "selu", "celu", "mish", "softplus"])
def test_activation_second_order_matches_torch(name):
    x0 = np.random.default_rng(1).standard_normal(7) * 2
    x = rg.tensor(x0, requires_grad=True)
    (g,) = rg.grad(getattr(F, name)(x).sum(), x, create_graph=True)
    g.sum().backward()
    tx = torch.tensor(x0, requires_grad=True)
    (tg,) = torch.autograd.grad(getattr(torch.nn.functional, name)(tx).sum(), tx, create_graph=True)
    tg.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
