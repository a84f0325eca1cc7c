"""Finite-difference checks (float64) of the new functional forms: convolution, pooling,
resizing, attention, the new losses and CTC; second derivatives of the fused Rules."""
import numpy as np
import pytest

import retrograd as rg
import retrograd.nn.functional as F
from retrograd.autograd import gradcheck, gradgradcheck


def R(*shape, seed=0, scale=1.0, grad=True, low=None):
    rng = np.random.default_rng(seed + 7 * len(shape) + sum(shape))
    a = rng.uniform(low, 1.0, shape) if low is not None else rng.standard_normal(shape) * scale
    return rg.tensor(a, dtype=rg.float64, requires_grad=grad)


CASES = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
               (R(2, 4, 5, 6), R(6, 2, 3, 2), R(6))),
    "conv2d-same": (lambda x, w: F.conv2d(x, w, padding="same"), (R(1, 2, 4, 5), R(3, 2, 2, 3))),
    "conv1d": (lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2), (R(2, 3, 9), R(4, 3, 3), R(4))),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,
                                                            groups=2, dilation=(2, 1)),
                         (R(2, 4, 3, 3), R(4, 3, 3, 2), R(6))),
    "conv_transpose1d": (lambda x, w: F.conv_transpose1d(x, w, stride=3, padding=1), (R(2, 2, 4), R(2, 3, 3))),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1, dilation=(1, 2), ceil_mode=True), (R(2, 2, 7, 8),)),
    "max_pool1d": (lambda x: F.max_pool1d(x, 2, 1), (R(2, 3, 6),)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (R(2, 2, 6, 7),)),
    "avg_pool1d": (lambda x: F.avg_pool1d(x, 3, 2, 1), (R(2, 2, 7),)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (R(2, 2, 5, 7),)),
    "interpolate": (lambda x: F.interpolate(x, scale_factor=1.5), (R(1, 2, 3, 4),)),
    "sdpa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), (R(2, 4, 3), R(2, 5, 3),
                                                                                       R(2, 5, 2))),
    "sdpa-mask": (lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=rg.tensor([[True, False, True], [False, False, False]]), scale=0.7),
                  (R(2, 2, 3), R(2, 3, 3), R(2, 3, 4))),
    "cosine_embedding_loss": (lambda a, b: F.cosine_embedding_loss(a, b, rg.tensor([1.0, -1.0, 1.0, -1.0]),
                                                                   margin=-0.5), (R(4, 3), R(4, 3))),
    "margin_ranking_loss": (lambda a, b: F.margin_ranking_loss(a, b, rg.tensor([1.0, -1.0, 1.0]), 0.1),
                            (R(3), R(3, seed=1))),
    "triplet_margin_loss": (lambda a, p, n: F.triplet_margin_loss(a, p, n, swap=True, p=3),
                            (R(4, 3), R(4, 3, seed=1), R(4, 3, seed=2))),
    "poisson_nll_loss": (lambda x, t: F.poisson_nll_loss(x, t, log_input=False, full=True),
                         (R(3, 4, low=0.2), R(3, 4, seed=3, low=0.5) * 3)),
    "gaussian_nll_loss": (lambda x, t, v: F.gaussian_nll_loss(x, t, v, full=True), (R(3, 4), R(3, 4, seed=1),
                                                                                  R(3, 1, low=0.2))),
    "sigmoid_focal_loss": (lambda x, t: F.sigmoid_focal_loss(x, t, reduction="mean"), (R(3, 4, scale=2),
                                                                                     R(3, 4, low=0.0))),
    "ctc_loss": (lambda lp: F.ctc_loss(lp, rg.tensor([[1, 2, 2], [3, 1, 0]]), [6, 5], [3, 2]),
                 (R(6, 2, 4, scale=2),)),
    "ctc_loss-raw-logprobs-none": (lambda lp: F.ctc_loss(lp, rg.tensor([1, 1, 2]), [5, 4], [2, 1], blank=3,
                                                         reduction="none"), (R(5, 2, 4),)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name):
    fn, ins = CASES[name]
    ins = tuple(x.detach().requires_grad_() if x.requires_grad or x.grad_fn is not None else x for x in ins)
    assert gradcheck(fn, ins, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["conv2d", "conv_transpose2d", "conv1d", "max_pool2d", "avg_pool2d", "sdpa",
                                  "sdpa-mask"])
def test_gradgradcheck(name):
    fn, ins = CASES[name]
    ins = tuple(x.detach().requires_grad_() for x in ins)
    assert gradgradcheck(fn, ins, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_ctc_double_backward_is_refused_clearly():
    lp = R(4, 1, 3)
    loss = F.ctc_loss(lp, rg.tensor([[1, 2]]), [4], [2])
    with pytest.raises(NotImplementedError, match="ctc_loss: double backward"):
        rg.grad(loss, lp, create_graph=True)
