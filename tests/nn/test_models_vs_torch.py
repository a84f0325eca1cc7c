"""Whole small models against torch after copying weights through state_dict: a CNN
(conv-relu-pool-conv-relu-pool-linear), a 2-layer transformer encoder and an LSTM tagger;
forward values and every gradient, float64. Plus sigmoid_focal_loss against torchvision's formula."""
import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn.functional as RF


def _cnn(nn):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, stride=1, padding="same", groups=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def _encoder(nn):
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, activation="gelu")
    return nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False)


class _Tagger:
    @staticmethod
    def build(nn):
        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(20, 8)
                self.lstm = nn.LSTM(8, 6, num_layers=2, batch_first=True, bidirectional=True)
                self.gru = nn.GRU(12, 5, batch_first=True)
                self.head = nn.Linear(5, 4)

            def forward(self, idx):
                h, _ = self.lstm(self.emb(idx))
                h, _ = self.gru(h)
                return self.head(h)
        return Tagger()


def _compare(build, make_inputs, loss_fn, seed):
    torch.manual_seed(seed)
    tm = build(torch.nn).double()
    rm = build(rg.nn).to(rg.float64)
    rm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    arrays = make_inputs(np.random.default_rng(seed))
    tins = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    rins = [rg.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    tout, rout = tm(*tins), rm(*rins)
    np.testing.assert_allclose(rout.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-7)
    tl, rl = loss_fn(torch, tout), loss_fn(rg, rout)
    np.testing.assert_allclose(rl.item(), tl.item(), rtol=1e-10)
    tl.backward()
    rl.backward()
    for t, r in zip(tins, rins):
        if t.requires_grad:
            np.testing.assert_allclose(r.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-9)
    tp = dict(tm.named_parameters())
    names = [n for n, _ in rm.named_parameters()]
    assert names == list(tp)
    for n, p in rm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=1e-5, atol=1e-9, err_msg=n)
    return len(names)


def test_small_cnn_matches_torch():
    n = _compare(_cnn, lambda rng: [rng.standard_normal((4, 3, 16, 16))],
                 lambda lib, out: lib.nn.functional.cross_entropy(out, lib.tensor([1, 0, 9, 3])), 0)
    assert n == 6


def test_two_layer_transformer_encoder_matches_torch():
    mask = np.triu(np.ones((7, 7), bool), 1)

    def loss(lib, out):
        return (out * out).mean() + out[:, 0].sum()
    torch.manual_seed(1)
    tm = _encoder(torch.nn).double()
    rm = _encoder(rg.nn).to(rg.float64)
    rm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((3, 7, 16))
    kpm = np.zeros((3, 7), bool)
    kpm[1, 5:] = True
    tx, rx = torch.tensor(x, requires_grad=True), rg.tensor(x, requires_grad=True)
    tout = tm(tx, mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm))
    rout = rm(rx, mask=rg.tensor(mask), src_key_padding_mask=rg.tensor(kpm))
    np.testing.assert_allclose(rout.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-7)
    loss(torch, tout).backward()
    loss(rg, rout).backward()
    np.testing.assert_allclose(rx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-9)
    tp = dict(tm.named_parameters())
    assert [n for n, _ in rm.named_parameters()] == list(tp)
    assert len(tp) == 2 * 12 + 2
    for n, p in rm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=1e-5, atol=1e-9, err_msg=n)


def test_lstm_gru_tagger_matches_torch():
    n = _compare(_Tagger.build, lambda rng: [rng.integers(0, 20, (3, 9))],
                 lambda lib, out: lib.nn.functional.cross_entropy(out.reshape(-1, 4), lib.tensor(
                     np.arange(27) % 4)), 2)
    assert n == 1 + 16 + 4 + 2


def _focal_torch(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    # torchvision.ops.sigmoid_focal_loss, written out
    p = torch.sigmoid(inputs)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("kw", [{}, {"alpha": -1, "gamma": 0.5, "reduction": "sum"},
                                {"alpha": 0.7, "gamma": 3, "reduction": "mean"}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_focal_loss_matches_torchvision_formula(kw, dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 4)) * 3).astype(dtype)
    t = (rng.uniform(size=(5, 4)) > 0.6).astype(dtype)
    tx, rx = torch.tensor(x, requires_grad=True), rg.tensor(x, requires_grad=True)
    tl, rl = _focal_torch(tx, torch.tensor(t), **kw), RF.sigmoid_focal_loss(rx, rg.tensor(t), **kw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rl.detach().numpy(), tl.detach().numpy(), **tol)
    seed = rng.standard_normal(tl.shape)
    (tl * torch.tensor(seed, dtype=tl.dtype)).sum().backward()
    (rl * rg.tensor(seed, dtype=dtype)).sum().backward()
    np.testing.assert_allclose(rx.grad.numpy(), tx.grad.numpy(), **tol)
    with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'"):
        RF.sigmoid_focal_loss(rx, rg.tensor(t), reduction="avg")


def test_max_pool_indices_and_sdpa_dropout_statistics():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 9))
    tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    rv, ri = RF.max_pool2d(rg.tensor(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(ri.numpy(), ti.numpy())
    assert ri.dtype == np.int64
    np.testing.assert_array_equal(rv.numpy(), tv.numpy())
    # dropout on the attention weights: kept weights are scaled by 1/(1-p); with V = I the output is the weights
    q = rg.zeros(1, 200, 4)
    v = rg.tensor(np.eye(200)[None])
    out = RF.scaled_dot_product_attention(q, rg.zeros(1, 200, 4), v, dropout_p=0.25,
                                          generator=rg.Generator().manual_seed(0)).numpy()
    vals = np.unique(np.round(out, 12))
    np.testing.assert_allclose(vals, [0.0, 1 / 200 / 0.75])
    assert abs((out == 0).mean() - 0.25) < 0.01


def test_rnn_dropout_acts_between_layers_only_in_training():
    rg.manual_seed(0)
    m = rg.nn.GRU(4, 3, num_layers=2, dropout=1.0)
    x = rg.randn(5, 2, 4)
    with rg.no_grad():
        out1, h1 = m(x)
        m.weight_ih_l0.mul_(3.0)  # layer 0 feeds layer 1 only through the dropped connection
        out2, h2 = m(x)
    np.testing.assert_array_equal(out1.numpy(), out2.numpy())
    assert not np.allclose(h1.numpy()[0], h2.numpy()[0])  # layer 0's own final state did change
    m.eval()
    with rg.no_grad():
        out3, _ = m(x)
    assert np.abs(out3.numpy() - out2.numpy()).max() > 1e-3
