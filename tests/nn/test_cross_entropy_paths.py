"""``cross_entropy`` reads (N, C) logits with int64 class indices straight off the arrays (a classifier's
step); every other target dtype goes through ``_class_rows``. Both must give the same bits, forward and
backward, and PyTorch's numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn.functional as F


def _loss_and_grad(logits: np.ndarray, target: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    x = rg.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, rg.tensor(target), **kw)
    loss.sum().backward() if loss.ndim else loss.backward()
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", [{}, {"reduction": "sum"}, {"reduction": "none"}, {"label_smoothing": 0.1},
                                {"ignore_index": 1}, {"ignore_index": 2}, {"weight": [0.5, 2.0, 1.0]}],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_int64_targets_match_the_general_path_bitwise_and_torch(dtype, kw):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((32, 3)) * 3).astype(dtype)
    target = rng.integers(0, 3, 32)
    kw = dict(kw)
    if "weight" in kw:
        kw["weight"] = rg.tensor(np.array(kw["weight"], dtype))
    fast = _loss_and_grad(logits, target.astype(np.int64), **kw)
    general = _loss_and_grad(logits, target.astype(np.int32), **kw)  # int32: through _class_rows
    for a, b in zip(fast, general):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    tkw = {k: (torch.from_numpy(v.numpy()) if k == "weight" else v) for k, v in kw.items()}
    xt = torch.tensor(logits, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.from_numpy(target), **tkw)
    (lt.sum() if lt.ndim else lt).backward()
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(fast[0], lt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(fast[1], xt.grad.numpy(), rtol=tol, atol=tol)


def test_int64_targets_out_of_range_and_wrong_shape_still_raise():
    x = rg.zeros(4, 3, requires_grad=True)
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(x, rg.tensor(np.array([0, 1, 3, 0])))
    with pytest.raises(ValueError, match="expected target of shape"):
        F.cross_entropy(x, rg.tensor(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, rg.tensor(np.array([0, 1, 2, 0])), reduction="avg")
