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


# ---------------------------------------------------------------- conv, pooling, attention, recurrent
def test_conv_layers_name_expected_and_actual_shapes():
    with pytest.raises(RuntimeError, match=re.escape(
            "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1)): expected input of shape (N, 3, H, W) or (3, H, W) "
            "(3 channels, not 4), got shape (2, 4, 8, 8)")):
        rg.nn.Conv2d(3, 8, 3)(rg.zeros(2, 4, 8, 8))
    with pytest.raises(RuntimeError, match=re.escape(
            "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1)): expected a 4-D (or unbatched 3-D) input of shape "
            "(N, 3, H, W) or (3, H, W), got shape (8, 8)")):
        rg.nn.Conv2d(3, 8, 3)(rg.zeros(8, 8))
    with pytest.raises(RuntimeError, match=re.escape("Conv1d(3, 8, kernel_size=(3,), stride=(1,)): expected a "
                                                     "3-D (or unbatched 2-D) input of shape (N, 3, L) or (3, L), "
                                                     "got shape (2, 3, 4, 4)")):
        rg.nn.Conv1d(3, 8, 3)(rg.zeros(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match=re.escape("ConvTranspose2d(3, 8, kernel_size=(3, 3), stride=(1, 1)): "
                                                     "expected input of shape (N, 3, H, W) or (3, H, W) (3 channels, "
                                                     "not 5), got shape (2, 5, 4, 4)")):
        rg.nn.ConvTranspose2d(3, 8, 3)(rg.zeros(2, 5, 4, 4))
    with pytest.raises(RuntimeError, match=re.escape(
            "conv2d: padded input size 2 in spatial dim 0 is smaller than the (dilated) kernel size 3 (input of "
            "shape (1, 3, 2, 2), weight of shape (4, 3, 3, 3))")):
        F.conv2d(rg.zeros(1, 3, 2, 2), rg.zeros(4, 3, 3, 3))
    with pytest.raises(RuntimeError, match=re.escape("conv2d: expected input with 6 channels (weight of shape "
                                                     "(4, 3, 3, 3), groups=2), got input of shape (1, 3, 5, 5)")):
        F.conv2d(rg.zeros(1, 3, 5, 5), rg.zeros(4, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        rg.nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(RuntimeError, match=re.escape(
            "conv_transpose2d: output padding must be smaller than either stride or dilation")):
        F.conv_transpose2d(rg.zeros(1, 2, 3, 3), rg.zeros(2, 2, 3, 3), stride=2, output_padding=2)


def test_pooling_layers_name_shapes_and_padding():
    with pytest.raises(RuntimeError, match=re.escape(
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False): expected a 4-D input "
            "(N, C, H, W) or (C, H, W), got shape (4, 4)")):
        rg.nn.MaxPool2d(2)(rg.zeros(4, 4))
    with pytest.raises(RuntimeError, match=re.escape("AvgPool1d(kernel_size=(2,), stride=(2,), padding=(0,)): "
                                                     "expected a 3-D input (N, C, L) or (C, L), got shape "
                                                     "(2, 3, 4, 4)")):
        rg.nn.AvgPool1d(2)(rg.zeros(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size, but got pad=2, "
                                           "kernel_size=2"):
        F.max_pool2d(rg.zeros(1, 3, 4, 4), 2, padding=2)
    with pytest.raises(NotImplementedError, match="interpolate: antialias=True is not implemented"):
        F.interpolate(rg.zeros(1, 2, 3, 3), scale_factor=2, mode="bilinear", antialias=True)
    with pytest.raises(ValueError, match="only one of size or scale_factor should be defined"):
        F.interpolate(rg.zeros(1, 2, 3, 3))


def test_attention_and_transformer_name_shapes():
    with pytest.raises(RuntimeError, match=re.escape(
            "MultiheadAttention(embed_dim=8, num_heads=2): expected query of shape (L, N, 8) or (L, 8), got shape "
            "(5, 3, 7)")):
        rg.nn.MultiheadAttention(8, 2)(rg.zeros(5, 3, 7), rg.zeros(5, 3, 7), rg.zeros(5, 3, 7))
    with pytest.raises(RuntimeError, match=re.escape("expected key of shape (N, L, 5) or (L, 5), got shape "
                                                     "(2, 4, 8)")):
        x = rg.zeros(2, 3, 8)
        rg.nn.MultiheadAttention(8, 2, kdim=5, vdim=5, batch_first=True)(x, rg.zeros(2, 4, 8), rg.zeros(2, 4, 5))
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        rg.nn.MultiheadAttention(8, 3)
    with pytest.raises(RuntimeError, match=re.escape("expected key and value of the query's rank (3), got shape "
                                                     "(4, 8)")):
        rg.nn.MultiheadAttention(8, 2)(rg.zeros(5, 3, 8), rg.zeros(4, 8), rg.zeros(4, 8))
    with pytest.raises(RuntimeError, match=re.escape("TransformerEncoderLayer(d_model=8, nhead=2): expected src of "
                                                     "shape (S, N, 8) or (S, 8), got shape (3, 4, 6)")):
        rg.nn.TransformerEncoderLayer(8, 2, 16)(rg.zeros(3, 4, 6))
    with pytest.raises(RuntimeError, match=re.escape("TransformerDecoderLayer(d_model=8, nhead=2): expected memory "
                                                     "of shape (N, S, 8) or (S, 8), got shape (2, 5, 4)")):
        rg.nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)(rg.zeros(2, 3, 8), rg.zeros(2, 5, 4))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        x = rg.zeros(3, 1, 4)
        rg.nn.MultiheadAttention(4, 2)(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match=re.escape("The shape of the 2D attn_mask is (3, 4), but should be "
                                                     "(3, 3).")):
        x = rg.zeros(3, 1, 4)
        rg.nn.MultiheadAttention(4, 2)(x, x, x, attn_mask=rg.zeros(3, 4))
    with pytest.raises(RuntimeError, match=re.escape(
            "scaled_dot_product_attention: query (2, 3, 4), key (2, 5, 3) and value (2, 5, 3) do not align")):
        F.scaled_dot_product_attention(rg.zeros(2, 3, 4), rg.zeros(2, 5, 3), rg.zeros(2, 5, 3))


@pytest.mark.parametrize("make,msg", [
    (lambda: rg.nn.LSTM(4, 5, proj_size=-1), "proj_size should be a positive integer or zero to disable projections"),
    (lambda: rg.nn.LSTM(4, 5, proj_size=5), "proj_size has to be smaller than hidden_size"),
    (lambda: rg.nn.GRU(4, 5, proj_size=2), "proj_size argument is only supported for LSTM, not RNN or GRU"),
])
def test_lstm_proj_size_errors_match_torch(make, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        make()


def test_lstm_proj_size_hidden_state_shapes():
    lstm = rg.nn.LSTM(4, 5, proj_size=2)
    out, (h, c) = lstm(rg.zeros(6, 3, 4))
    assert out.shape == (6, 3, 2) and h.shape == (1, 3, 2) and c.shape == (1, 3, 5)
    with pytest.raises(RuntimeError, match=re.escape("LSTM: expected hidden state h0 of shape (1, 3, 2), got "
                                                     "(1, 3, 5)")):
        lstm(rg.zeros(6, 3, 4), (rg.zeros(1, 3, 5), rg.zeros(1, 3, 5)))
    assert "proj_size=2" in repr(lstm)


def test_recurrent_layers_name_shapes():
    with pytest.raises(RuntimeError, match=re.escape("LSTM(4, 5): expected input with last dimension input_size=4, "
                                                     "got shape (6, 3, 5)")):
        rg.nn.LSTM(4, 5)(rg.zeros(6, 3, 5))
    with pytest.raises(RuntimeError, match=re.escape("GRU(4, 5, num_layers=2): expected a 2-D (unbatched) or 3-D "
                                                     "(batched) input, got shape (4,)")):
        rg.nn.GRU(4, 5, 2)(rg.zeros(4))
    with pytest.raises(RuntimeError, match=re.escape("LSTM: expected hidden state c0 of shape (1, 3, 5), got "
                                                     "(2, 3, 5)")):
        rg.nn.LSTM(4, 5)(rg.zeros(6, 3, 4), (rg.zeros(1, 3, 5), rg.zeros(2, 3, 5)))
    with pytest.raises(RuntimeError, match=re.escape("RNN: expected hidden state h0 of shape (2, 5), got (1, 5)")):
        rg.nn.RNN(4, 5, bidirectional=True)(rg.zeros(6, 4), rg.zeros(1, 5))
    with pytest.raises(RuntimeError, match=re.escape("GRUCell(4, 5): expected a 1-D or 2-D input with last "
                                                     "dimension input_size=4, got shape (3, 3)")):
        rg.nn.GRUCell(4, 5)(rg.zeros(3, 3))
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        rg.nn.RNN(4, 5, nonlinearity="sigmoid")


def test_new_losses_reject_bad_input():
    with pytest.raises(RuntimeError, match=re.escape("ctc_loss: targets must be in [0, 3) and differ from blank "
                                                     "(0), got [1, 0]")):
        F.ctc_loss(rg.zeros(4, 1, 3), rg.tensor([[1, 0]]), [4], [2])
    with pytest.raises(RuntimeError, match=re.escape("ctc_loss: input_lengths must be in [1, 4], got [5]")):
        F.ctc_loss(rg.zeros(4, 1, 3), rg.tensor([[1, 2]]), [5], [2])
    with pytest.raises(ValueError, match="var has negative entry"):
        F.gaussian_nll_loss(rg.zeros(3), rg.zeros(3), rg.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=re.escape("var is of incorrect size: expected (2, 3), (2,) or one dim of "
                                                   "size 1, got (3, 2)")):
        F.gaussian_nll_loss(rg.zeros(2, 3), rg.zeros(2, 3), rg.ones(3, 2))
    with pytest.raises(ValueError, match="expected margin to be greater than 0, got 0"):
        rg.nn.TripletMarginLoss(margin=0)
    with pytest.raises(RuntimeError, match=re.escape("cosine_embedding_loss: expected target of shape (4,), got "
                                                     "(3,)")):
        F.cosine_embedding_loss(rg.zeros(4, 2), rg.zeros(4, 2), rg.ones(3))


def test_ctc_impossible_alignment_is_inf_or_zero_as_torch():
    lp = np.log(np.full((2, 1, 3), 1 / 3))
    t = np.array([[1, 1]])  # needs a blank between the repeats: 3 frames, only 2 given
    for zi in (False, True):
        tl = torch.nn.functional.ctc_loss(torch.tensor(lp), torch.tensor(t), [2], [2], reduction="sum",
                                          zero_infinity=zi)
        x = rg.tensor(lp, requires_grad=True)
        rl = F.ctc_loss(x, rg.tensor(t), [2], [2], reduction="sum", zero_infinity=zi)
        assert rl.item() == tl.item() == (0.0 if zi else np.inf)
        if zi:
            rl.backward()
            np.testing.assert_array_equal(x.grad.numpy(), np.zeros_like(lp))
