"""``detect_anomaly`` (issue 12, item 13): healthy masked models pass, real NaNs still raise naming the op.

PyTorch's anomaly mode checks backward outputs for NaN only; retrograd matches that in the backward
and adds a forward check (NaN always; inf only where an op created it from finite inputs and it is
not a mask fill)."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.nn.transformer import generate_square_subsequent_mask

pytestmark = [pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled"),
              pytest.mark.filterwarnings("ignore:Error detected in")]


def _mha_pair(seed=0):
    rng = np.random.default_rng(seed)
    m, tm = rg.nn.MultiheadAttention(8, 2, batch_first=True), torch.nn.MultiheadAttention(8, 2, batch_first=True)
    m.double()
    tm.double()
    sd = {k: rng.standard_normal(tuple(v.shape)) * 0.3 for k, v in tm.state_dict().items()}
    tm.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    m.load_state_dict({k: rg.tensor(v) for k, v in sd.items()})
    x = rng.standard_normal((2, 5, 8))
    return m, tm, x


def test_mha_with_causal_mask_passes_and_matches_torch():
    m, tm, x = _mha_pair()
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with rg.autograd.detect_anomaly():
        out, w = m(xr, xr, xr, attn_mask=generate_square_subsequent_mask(5, dtype=rg.float64))
        (out * out).sum().backward()
    with torch.autograd.detect_anomaly():
        tout, tw = tm(xt, xt, xt, attn_mask=torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64))
        (tout * tout).sum().backward()
    np.testing.assert_allclose(out.data.numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xr.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.all(w.data.numpy()[:, np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] == 0)


def test_masked_fill_minus_inf_then_softmax_passes_and_matches_torch():
    s = np.random.default_rng(1).standard_normal((4, 4))
    g = np.random.default_rng(2).standard_normal((4, 4))
    mask = np.triu(np.ones((4, 4), bool), 1)
    grads = []
    for lib, ctx in ((rg, rg.autograd.detect_anomaly), (torch, torch.autograd.detect_anomaly)):
        t = lib.tensor(s, requires_grad=True)
        with ctx():
            p = t.masked_fill(lib.tensor(mask), float("-inf")).softmax(-1)
            lp = t.masked_fill(lib.tensor(mask), float("-inf")).log_softmax(-1)
            e = t.masked_fill(lib.tensor(mask), float("-inf")).exp()
            ((p * lib.tensor(g)).sum() + lp[:, 0].sum() + e.sum()).backward()
        assert (p.detach().numpy()[mask] == 0).all()  # the -inf became an exact 0
        grads.append(t.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-14)


def test_where_with_inf_fill_and_in_place_fill_pass():
    x = rg.randn(3, 3, requires_grad=True)
    with rg.autograd.detect_anomaly():
        y = rg.where(rg.eye(3, dtype=rg.bool), x, float("-inf")).softmax(0)
        z = (x * 1).masked_fill_(rg.eye(3, dtype=rg.bool), float("inf")).neg().exp()
        (y.sum() + z.sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), np.eye(3) * 0 + (1 - np.eye(3)) * -np.exp(-x.data.numpy()), atol=1e-6)


def test_forward_nan_still_names_the_op():
    x = rg.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(rg.autograd.AnomalyError, match=r"forward of op 'sqrt' produced nan values \(input shapes: \(2,\)\)") as info:
        with rg.autograd.detect_anomaly(), np.errstate(invalid="ignore"):
            x.sqrt()  # the culprit line
    assert "x.sqrt()  # the culprit line" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    # torch: no forward check, the value is the same NaN
    with torch.autograd.detect_anomaly():
        assert torch.isnan(torch.tensor([-1.0, 2.0], requires_grad=True).sqrt()[0])


def test_forward_inf_made_from_finite_inputs_is_flagged():
    x = rg.tensor([1000.0, 1.0], requires_grad=True)
    with pytest.raises(rg.autograd.AnomalyError, match="forward of op 'exp' produced inf"):
        with rg.autograd.detect_anomaly(), np.errstate(over="ignore"):
            x.exp()


def test_backward_nan_raises_like_torch():
    # sqrt'(0) = inf, times the 0 from the product: NaN in sqrt's backward output
    def f(lib):
        x = lib.tensor([0.0, 4.0], requires_grad=True)
        (x.sqrt() * lib.tensor([0.0, 1.0])).sum().backward()

    with pytest.raises(RuntimeError, match=r"Function 'SqrtBackward0' returned nan values in its 0th output"):
        with torch.autograd.detect_anomaly():
            f(torch)
    with pytest.raises(rg.autograd.AnomalyError, match=r"backward of op 'sqrt' produced nan values") as info:
        with rg.autograd.detect_anomaly(), np.errstate(all="ignore"):
            f(rg)
    assert "x.sqrt() * lib.tensor" in str(info.value)


def test_backward_inf_is_not_an_anomaly_as_in_torch():
    grads = []
    for lib, ctx in ((rg, rg.autograd.detect_anomaly), (torch, torch.autograd.detect_anomaly)):
        x = lib.tensor([0.0, 4.0], requires_grad=True)
        with ctx(), np.errstate(divide="ignore"):
            x.sqrt().sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.isinf(grads[0][0]) and grads[0][1] == 0.25


def test_fully_masked_row_nan_is_still_caught():
    # all -inf in a row: softmax gives NaN (torch too); that is a real anomaly
    x = rg.randn(2, 3, requires_grad=True)
    with pytest.raises(rg.autograd.AnomalyError, match="forward of op 'softmax' produced nan"):
        with rg.autograd.detect_anomaly(), np.errstate(invalid="ignore"):
            x.masked_fill(rg.tensor([[True] * 3, [False] * 3]), float("-inf")).softmax(-1)
    assert torch.isnan(torch.zeros(2, 3).masked_fill(torch.tensor([[True] * 3, [False] * 3]), float("-inf"))
                       .softmax(-1)[0]).all()
