"""logsigmoid, soft_margin_loss, hinge_embedding_loss and multilabel_soft_margin_loss (functions and modules)
against PyTorch in float64: values and gradients, every reduction."""
import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn.functional as F

RNG = np.random.default_rng(0)
X = RNG.normal(scale=8.0, size=(5, 4))          # wide enough for logsigmoid's large-|x| branches
X[0, :3] = [0.0, 40.0, -40.0]
SIGNS = np.where(RNG.random((5, 4)) < 0.5, -1.0, 1.0)
LABELS = (RNG.random((5, 4)) < 0.5).astype(np.float64)


def _both(fn_rg, fn_t, x, *args):
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yr, yt = fn_rg(xr, *[rg.tensor(a) for a in args]), fn_t(xt, *[torch.tensor(a) for a in args])
    np.testing.assert_allclose(yr.detach().numpy(), yt.detach().numpy(), rtol=1e-13, atol=1e-15)
    g = RNG.normal(size=tuple(yt.shape))
    yr.backward(rg.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xr.grad.numpy(), xt.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_logsigmoid_function_and_module():
    _both(F.logsigmoid, torch.nn.functional.logsigmoid, X)
    _both(rg.nn.LogSigmoid(), torch.nn.LogSigmoid(), X)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_soft_margin_loss(reduction):
    _both(lambda x, t: F.soft_margin_loss(x / 8, t, reduction=reduction),
          lambda x, t: torch.nn.functional.soft_margin_loss(x / 8, t, reduction=reduction), X, SIGNS)
    _both(rg.nn.SoftMarginLoss(reduction=reduction), torch.nn.SoftMarginLoss(reduction=reduction), X / 8, SIGNS)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("margin", [1.0, 2.5])
def test_hinge_embedding_loss(reduction, margin):
    _both(lambda x, t: F.hinge_embedding_loss(x, t, margin=margin, reduction=reduction),
          lambda x, t: torch.nn.functional.hinge_embedding_loss(x, t, margin=margin, reduction=reduction),
          X / 4, SIGNS)
    _both(rg.nn.HingeEmbeddingLoss(margin, reduction=reduction),
          torch.nn.HingeEmbeddingLoss(margin, reduction=reduction), X / 4, SIGNS)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_multilabel_soft_margin_loss(reduction, weighted):
    w = RNG.random(4) + 0.5
    mr = rg.nn.MultiLabelSoftMarginLoss(weight=rg.tensor(w) if weighted else None, reduction=reduction)
    mt = torch.nn.MultiLabelSoftMarginLoss(weight=torch.tensor(w) if weighted else None, reduction=reduction)
    _both(mr, mt, X / 4, LABELS)
    _both(lambda x, t: F.multilabel_soft_margin_loss(x, t, reduction=reduction),
          lambda x, t: torch.nn.functional.multilabel_soft_margin_loss(x, t, reduction=reduction), X / 4, LABELS)


def test_bad_reduction_is_named():
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.soft_margin_loss(rg.tensor(X), rg.tensor(SIGNS), reduction="avg")
