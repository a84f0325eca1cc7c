"""Every layer, activation and loss against torch.nn: forward values, input gradients, parameter
gradients and buffers, in float32 and float64, with weights copied through state_dict."""
import zlib

import numpy as np
import pytest
import torch

import retrograd as rg


class Case:
    """``build(nn, T)`` makes the module in either library; ``fwd(module, *inputs)`` calls it
    (default ``module(*inputs)``); outputs may be tuples (None entries skipped, integer outputs
    compared exactly)."""

    def __init__(self, name, build, *inputs, steps=0, eval=False, fwd=None):
        self.name, self.build, self.inputs, self.steps, self.eval = name, build, inputs, steps, eval
        self.fwd = fwd or (lambda m, *ins: m(*ins))


def Fn(nn, f):
    """A parameterless module of library ``nn`` whose forward is ``f(nn.functional, *inputs)``."""
    class _Fn(nn.Module):
        def forward(self, *ins):
            return f(nn.functional, *ins)
    return _Fn()


def X(*shape, scale=1.5):  # a float input that requires grad
    return ("x", shape, scale)


def Int(*shape, high, force=None):  # integer targets in [0, high); ``force`` puts that value first
    return ("int", shape, high, force)


def Target(*shape):  # a float target, no grad
    return ("target", shape)


def Prob(*shape, grad=True):  # values in (0.05, 0.95)
    return ("prob", shape, grad)


def Simplex(*shape, dim=1, grad=False, log=False):  # rows summing to one along ``dim`` (or their logs)
    return ("simplex", shape, dim, grad, log)


def Const(value):  # a fixed input (mask, lengths, labels), passed as a tensor, no grad
    return ("const", value)


def Sign(*shape):  # +1/-1 float targets
    return ("sign", shape)


def _make(spec, rng):
    kind = spec[0]
    if kind == "x":
        return rng.standard_normal(spec[1]) * spec[2], True
    if kind == "int":
        a = rng.integers(0, spec[2], spec[1])
        if spec[3] is not None and a.size:
            a.reshape(-1)[0] = spec[3]
        return a.astype(np.int64), False
    if kind == "target":
        return rng.standard_normal(spec[1]), False
    if kind == "prob":
        return rng.uniform(0.05, 0.95, spec[1]), spec[2]
    if kind == "const":
        return np.array(spec[1]), False
    if kind == "sign":
        return (2 * rng.integers(0, 2, spec[1]) - 1).astype(np.float64), False
    if kind == "simplex":
        e = np.exp(rng.standard_normal(spec[1]))
        p = e / e.sum(axis=spec[2], keepdims=True)
        return (np.log(p) if spec[4] else p), spec[3]
    raise ValueError(kind)


W5 = [0.5, 1.0, 2.0, 0.25, 1.5]
CASES = [
    # ---------------------------------------------------------------- layers
    Case("Linear", lambda nn, T: nn.Linear(5, 3), X(4, 5)),
    Case("Linear-nobias-3d", lambda nn, T: nn.Linear(5, 3, bias=False), X(2, 3, 5)),
    Case("Linear-1d", lambda nn, T: nn.Linear(5, 3), X(5)),
    Case("Bilinear", lambda nn, T: nn.Bilinear(3, 4, 2), X(5, 3), X(5, 4)),
    Case("Embedding", lambda nn, T: nn.Embedding(10, 4), Int(3, 5, high=10)),
    Case("Embedding-padding", lambda nn, T: nn.Embedding(10, 4, padding_idx=2), Int(4, 6, high=4, force=2)),
    Case("Embedding-freq", lambda nn, T: nn.Embedding(6, 3, scale_grad_by_freq=True), Int(12, high=4)),
    Case("Identity", lambda nn, T: nn.Identity(3, k=1), X(2, 3)),
    Case("Flatten", lambda nn, T: nn.Flatten(), X(2, 3, 4)),
    Case("Flatten-0-1", lambda nn, T: nn.Flatten(0, 1), X(2, 3, 4)),
    Case("Unflatten", lambda nn, T: nn.Unflatten(1, (2, 3)), X(4, 6)),
    Case("Sequential", lambda nn, T: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Sequential(
        nn.Linear(8, 6), nn.LayerNorm(6)), nn.Linear(6, 3)), X(5, 4)),
    Case("LayerNorm", lambda nn, T: nn.LayerNorm(6), X(3, 4, 6)),
    Case("LayerNorm-2d", lambda nn, T: nn.LayerNorm((4, 6), eps=1e-3), X(3, 4, 6)),
    Case("LayerNorm-noaffine", lambda nn, T: nn.LayerNorm(6, elementwise_affine=False), X(3, 6)),
    Case("LayerNorm-nobias", lambda nn, T: nn.LayerNorm(6, bias=False), X(3, 6)),
    Case("RMSNorm", lambda nn, T: nn.RMSNorm(6), X(3, 6)),
    Case("RMSNorm-2d-eps", lambda nn, T: nn.RMSNorm((2, 6), eps=1e-6), X(3, 2, 6)),
    Case("GroupNorm", lambda nn, T: nn.GroupNorm(2, 6), X(3, 6, 5)),
    Case("GroupNorm-4d-noaffine", lambda nn, T: nn.GroupNorm(3, 6, affine=False), X(2, 6, 2, 2)),
    Case("GroupNorm-2d", lambda nn, T: nn.GroupNorm(1, 4), X(3, 4)),
    Case("GroupNorm-nobias", lambda nn, T: nn.GroupNorm(2, 4, bias=False), X(3, 4, 2)),
    Case("BatchNorm1d", lambda nn, T: nn.BatchNorm1d(4), X(8, 4), steps=2),
    Case("BatchNorm1d-3d", lambda nn, T: nn.BatchNorm1d(4), X(6, 4, 5)),
    Case("BatchNorm1d-cumulative", lambda nn, T: nn.BatchNorm1d(4, momentum=None), X(5, 4), steps=3),
    Case("BatchNorm1d-noaffine", lambda nn, T: nn.BatchNorm1d(4, affine=False), X(5, 4)),
    Case("BatchNorm1d-nobias", lambda nn, T: nn.BatchNorm1d(4, bias=False), X(5, 4)),
    Case("BatchNorm1d-nostats", lambda nn, T: nn.BatchNorm1d(4, track_running_stats=False), X(5, 4)),
    Case("BatchNorm1d-nostats-eval", lambda nn, T: nn.BatchNorm1d(4, track_running_stats=False), X(5, 4),
         eval=True),
    Case("BatchNorm1d-eval", lambda nn, T: nn.BatchNorm1d(4, momentum=0.3), X(6, 4), steps=2, eval=True),
    Case("BatchNorm2d", lambda nn, T: nn.BatchNorm2d(3), X(4, 3, 5, 5), steps=1),
    Case("BatchNorm2d-eval", lambda nn, T: nn.BatchNorm2d(3), X(4, 3, 2, 2), steps=2, eval=True),
    # ---------------------------------------------------------------- activations
    Case("ReLU", lambda nn, T: nn.ReLU(), X(3, 7)),
    Case("ReLU6", lambda nn, T: nn.ReLU6(), X(3, 7, scale=5.0)),
    Case("LeakyReLU", lambda nn, T: nn.LeakyReLU(), X(3, 7)),
    Case("LeakyReLU-0.2", lambda nn, T: nn.LeakyReLU(0.2), X(3, 7)),
    Case("PReLU", lambda nn, T: nn.PReLU(), X(3, 7)),
    Case("PReLU-channels", lambda nn, T: nn.PReLU(3), X(4, 3, 5)),
    Case("ELU", lambda nn, T: nn.ELU(), X(3, 7)),
    Case("ELU-0.5", lambda nn, T: nn.ELU(0.5), X(3, 7)),
    Case("SELU", lambda nn, T: nn.SELU(), X(3, 7)),
    Case("CELU", lambda nn, T: nn.CELU(), X(3, 7)),
    Case("CELU-2", lambda nn, T: nn.CELU(2.0), X(3, 7)),
    Case("GELU", lambda nn, T: nn.GELU(), X(3, 7, scale=3.0)),
    Case("GELU-tanh", lambda nn, T: nn.GELU(approximate="tanh"), X(3, 7, scale=3.0)),
    Case("SiLU", lambda nn, T: nn.SiLU(), X(3, 7, scale=4.0)),
    Case("Mish", lambda nn, T: nn.Mish(), X(3, 7, scale=4.0)),
    Case("Sigmoid", lambda nn, T: nn.Sigmoid(), X(3, 7, scale=4.0)),
    Case("Tanh", lambda nn, T: nn.Tanh(), X(3, 7)),
    Case("Hardtanh", lambda nn, T: nn.Hardtanh(), X(3, 7)),
    Case("Hardtanh-range", lambda nn, T: nn.Hardtanh(-2.0, 0.5), X(3, 7)),
    Case("Softplus", lambda nn, T: nn.Softplus(), X(3, 7, scale=5.0)),
    Case("Softplus-beta", lambda nn, T: nn.Softplus(beta=2.0, threshold=5.0), X(3, 7, scale=5.0)),
    Case("Softsign", lambda nn, T: nn.Softsign(), X(3, 7)),
    Case("Softmax", lambda nn, T: nn.Softmax(dim=1), X(3, 7)),
    Case("Softmax-last", lambda nn, T: nn.Softmax(dim=-1), X(2, 3, 4)),
    Case("LogSoftmax", lambda nn, T: nn.LogSoftmax(dim=1), X(3, 7)),
    # ---------------------------------------------------------------- losses
    Case("MSELoss", lambda nn, T: nn.MSELoss(), X(4, 5), Target(4, 5)),
    Case("MSELoss-sum", lambda nn, T: nn.MSELoss(reduction="sum"), X(4, 5), Target(4, 5)),
    Case("MSELoss-none", lambda nn, T: nn.MSELoss(reduction="none"), X(4, 5), Target(4, 5)),
    Case("MSELoss-target-grad", lambda nn, T: nn.MSELoss(), X(4, 5), X(4, 5)),
    Case("L1Loss", lambda nn, T: nn.L1Loss(), X(4, 5), Target(4, 5)),
    Case("L1Loss-sum", lambda nn, T: nn.L1Loss(reduction="sum"), X(4, 5), Target(4, 5)),
    Case("L1Loss-none", lambda nn, T: nn.L1Loss(reduction="none"), X(4, 5), Target(4, 5)),
    Case("SmoothL1Loss", lambda nn, T: nn.SmoothL1Loss(), X(4, 5), Target(4, 5)),
    Case("SmoothL1Loss-beta", lambda nn, T: nn.SmoothL1Loss(reduction="sum", beta=0.5), X(4, 5), Target(4, 5)),
    Case("SmoothL1Loss-beta0", lambda nn, T: nn.SmoothL1Loss(beta=0.0), X(4, 5), Target(4, 5)),
    Case("HuberLoss", lambda nn, T: nn.HuberLoss(), X(4, 5), Target(4, 5)),
    Case("HuberLoss-delta", lambda nn, T: nn.HuberLoss(reduction="none", delta=0.3), X(4, 5), Target(4, 5)),
    Case("CrossEntropyLoss", lambda nn, T: nn.CrossEntropyLoss(), X(6, 5), Int(6, high=5)),
    Case("CrossEntropyLoss-weight", lambda nn, T: nn.CrossEntropyLoss(weight=T(W5)), X(6, 5), Int(6, high=5)),
    Case("CrossEntropyLoss-ignore", lambda nn, T: nn.CrossEntropyLoss(ignore_index=3), X(8, 5),
         Int(8, high=5, force=3)),
    Case("CrossEntropyLoss-smoothing", lambda nn, T: nn.CrossEntropyLoss(label_smoothing=0.1), X(6, 5),
         Int(6, high=5)),
    Case("CrossEntropyLoss-all", lambda nn, T: nn.CrossEntropyLoss(weight=T(W5), ignore_index=1,
                                                                   label_smoothing=0.2), X(8, 5),
         Int(8, high=5, force=1)),
    Case("CrossEntropyLoss-all-sum", lambda nn, T: nn.CrossEntropyLoss(
        weight=T(W5), ignore_index=1, label_smoothing=0.2, reduction="sum"), X(8, 5), Int(8, high=5, force=1)),
    Case("CrossEntropyLoss-all-none", lambda nn, T: nn.CrossEntropyLoss(
        weight=T(W5), ignore_index=1, label_smoothing=0.2, reduction="none"), X(8, 5), Int(8, high=5, force=1)),
    Case("CrossEntropyLoss-nd", lambda nn, T: nn.CrossEntropyLoss(weight=T(W5)), X(4, 5, 3, 2),
         Int(4, 3, 2, high=5)),
    Case("CrossEntropyLoss-nd-none", lambda nn, T: nn.CrossEntropyLoss(reduction="none", ignore_index=0),
         X(4, 5, 3), Int(4, 3, high=5, force=0)),
    Case("CrossEntropyLoss-unbatched", lambda nn, T: nn.CrossEntropyLoss(), X(5), Int(high=5)),
    Case("CrossEntropyLoss-probs", lambda nn, T: nn.CrossEntropyLoss(), X(6, 5), Simplex(6, 5)),
    Case("CrossEntropyLoss-probs-all", lambda nn, T: nn.CrossEntropyLoss(weight=T(W5), label_smoothing=0.1),
         X(6, 5, 2), Simplex(6, 5, 2)),
    Case("CrossEntropyLoss-probs-grad-none", lambda nn, T: nn.CrossEntropyLoss(reduction="none"), X(6, 5),
         Simplex(6, 5, grad=True)),
    Case("NLLLoss", lambda nn, T: nn.NLLLoss(), Simplex(6, 5, grad=True, log=True), Int(6, high=5)),
    Case("NLLLoss-weight-ignore", lambda nn, T: nn.NLLLoss(weight=T(W5), ignore_index=2),
         Simplex(8, 5, grad=True, log=True), Int(8, high=5, force=2)),
    Case("NLLLoss-nd-none", lambda nn, T: nn.NLLLoss(reduction="none"), Simplex(3, 5, 4, grad=True, log=True),
         Int(3, 4, high=5)),
    Case("NLLLoss-sum", lambda nn, T: nn.NLLLoss(reduction="sum"), Simplex(3, 5, grad=True, log=True),
         Int(3, high=5)),
    Case("BCELoss", lambda nn, T: nn.BCELoss(), Prob(4, 3), Prob(4, 3, grad=False)),
    Case("BCELoss-weight-sum", lambda nn, T: nn.BCELoss(weight=T([1.0, 2.0, 0.5]), reduction="sum"),
         Prob(4, 3), Prob(4, 3, grad=False)),
    Case("BCEWithLogitsLoss", lambda nn, T: nn.BCEWithLogitsLoss(), X(4, 3, scale=4.0), Prob(4, 3, grad=False)),
    Case("BCEWithLogitsLoss-posweight", lambda nn, T: nn.BCEWithLogitsLoss(pos_weight=T([1.0, 3.0, 0.5])),
         X(4, 3, scale=4.0), Prob(4, 3, grad=False)),
    Case("BCEWithLogitsLoss-all-none", lambda nn, T: nn.BCEWithLogitsLoss(
        weight=T([2.0, 1.0, 0.5]), pos_weight=T([1.0, 3.0, 0.5]), reduction="none"), X(4, 3, scale=4.0),
        Prob(4, 3)),
    Case("KLDivLoss-batchmean", lambda nn, T: nn.KLDivLoss(reduction="batchmean"),
         Simplex(4, 5, grad=True, log=True), Simplex(4, 5)),
    Case("KLDivLoss-sum-target-grad", lambda nn, T: nn.KLDivLoss(reduction="sum"),
         Simplex(4, 5, grad=True, log=True), Simplex(4, 5, grad=True)),
    Case("KLDivLoss-logtarget-none", lambda nn, T: nn.KLDivLoss(reduction="none", log_target=True),
         Simplex(4, 5, grad=True, log=True), Simplex(4, 5, grad=True, log=True)),
    Case("KLDivLoss-mean", lambda nn, T: nn.KLDivLoss(), Simplex(4, 5, grad=True, log=True), Simplex(4, 5)),
    # ---------------------------------------------------------------- convolution
    Case("Conv1d", lambda nn, T: nn.Conv1d(3, 4, 3), X(2, 3, 9)),
    Case("Conv1d-all", lambda nn, T: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), X(2, 4, 11)),
    Case("Conv1d-same-even", lambda nn, T: nn.Conv1d(3, 4, 4, padding="same"), X(2, 3, 7)),
    Case("Conv1d-unbatched-nobias", lambda nn, T: nn.Conv1d(3, 2, 2, bias=False), X(3, 6)),
    Case("Conv1d-reflect", lambda nn, T: nn.Conv1d(2, 3, 3, padding=2, padding_mode="reflect"), X(2, 2, 6)),
    Case("Conv2d", lambda nn, T: nn.Conv2d(3, 4, 3), X(2, 3, 7, 6)),
    Case("Conv2d-stride-pad", lambda nn, T: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2)), X(2, 3, 8, 7)),
    Case("Conv2d-dilation-groups-nobias", lambda nn, T: nn.Conv2d(4, 6, 3, dilation=(2, 1), groups=2, bias=False),
         X(2, 4, 9, 8)),
    Case("Conv2d-depthwise", lambda nn, T: nn.Conv2d(4, 8, 3, padding=1, groups=4), X(2, 4, 5, 5)),
    Case("Conv2d-same", lambda nn, T: nn.Conv2d(3, 4, (4, 3), padding="same", dilation=(1, 2)), X(2, 3, 6, 7)),
    Case("Conv2d-valid", lambda nn, T: nn.Conv2d(3, 2, 2, padding="valid", stride=3), X(2, 3, 8, 7)),
    Case("Conv2d-unbatched", lambda nn, T: nn.Conv2d(3, 2, 3, padding=1), X(3, 5, 4)),
    Case("Conv2d-circular", lambda nn, T: nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode="circular"),
         X(2, 2, 5, 6)),
    Case("Conv2d-replicate", lambda nn, T: nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), X(2, 2, 4, 4)),
    Case("ConvTranspose1d", lambda nn, T: nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1),
         X(2, 3, 5)),
    Case("ConvTranspose2d", lambda nn, T: nn.ConvTranspose2d(3, 4, 3), X(2, 3, 4, 5)),
    Case("ConvTranspose2d-all", lambda nn, T: nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0),
                                                                 output_padding=(1, 2), groups=2, dilation=(1, 2)),
         X(2, 4, 4, 3)),
    Case("ConvTranspose2d-nobias-unbatched", lambda nn, T: nn.ConvTranspose2d(2, 3, 2, stride=2, bias=False),
         X(2, 3, 4)),
    Case("ConvTranspose2d-output_size", lambda nn, T: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1),
         X(2, 2, 4, 4), fwd=lambda m, x: m(x, output_size=[8, 8])),
    # ---------------------------------------------------------------- pooling and resizing
    Case("MaxPool1d", lambda nn, T: nn.MaxPool1d(3), X(2, 3, 10)),
    Case("MaxPool1d-all", lambda nn, T: nn.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
         X(2, 3, 10)),
    Case("MaxPool1d-indices", lambda nn, T: nn.MaxPool1d(2, return_indices=True), X(2, 3, 7)),
    Case("MaxPool2d", lambda nn, T: nn.MaxPool2d(2), X(2, 3, 6, 6)),
    Case("MaxPool2d-all", lambda nn, T: nn.MaxPool2d((3, 2), stride=(2, 1), padding=1, dilation=(1, 2),
                                                     ceil_mode=True), X(2, 3, 9, 8)),
    Case("MaxPool2d-indices-ceil", lambda nn, T: nn.MaxPool2d(3, 2, 1, ceil_mode=True, return_indices=True),
         X(2, 2, 8, 7)),
    Case("MaxPool2d-unbatched-overlap", lambda nn, T: nn.MaxPool2d(3, 1), X(2, 5, 6)),
    Case("AvgPool1d", lambda nn, T: nn.AvgPool1d(3, 2, 1), X(2, 3, 9)),
    Case("AvgPool1d-nocount-ceil", lambda nn, T: nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False),
         X(2, 3, 10)),
    Case("AvgPool2d", lambda nn, T: nn.AvgPool2d(2), X(2, 3, 6, 6)),
    Case("AvgPool2d-pad-ceil", lambda nn, T: nn.AvgPool2d(3, 2, 1, ceil_mode=True), X(2, 3, 8, 7)),
    Case("AvgPool2d-nocount", lambda nn, T: nn.AvgPool2d((3, 2), (2, 2), 1, ceil_mode=True,
                                                         count_include_pad=False), X(2, 3, 8, 7)),
    Case("AvgPool2d-divisor", lambda nn, T: nn.AvgPool2d(3, 2, 1, divisor_override=5), X(1, 2, 7, 7)),
    Case("AdaptiveAvgPool2d", lambda nn, T: nn.AdaptiveAvgPool2d((3, 4)), X(2, 3, 7, 9)),
    Case("AdaptiveAvgPool2d-global", lambda nn, T: nn.AdaptiveAvgPool2d(1), X(2, 3, 5, 4)),
    Case("AdaptiveAvgPool2d-none-up", lambda nn, T: nn.AdaptiveAvgPool2d((None, 7)), X(2, 5, 4)),
    Case("AdaptiveAvgPool1d", lambda nn, T: nn.AdaptiveAvgPool1d(4), X(2, 3, 10)),
    Case("Upsample-x2", lambda nn, T: nn.Upsample(scale_factor=2), X(2, 3, 4, 5)),
    Case("Upsample-size", lambda nn, T: nn.Upsample(size=(7, 3)), X(2, 3, 4, 5)),
    Case("Upsample-1d-frac", lambda nn, T: nn.Upsample(scale_factor=1.7), X(2, 3, 5)),
    Case("Upsample-nearest-exact", lambda nn, T: nn.Upsample(size=(5, 9), mode="nearest-exact"), X(1, 2, 3, 4)),
    Case("interpolate-recompute", lambda nn, T: Fn(nn, lambda F, x: F.interpolate(
        x, scale_factor=(1.5, 0.6), recompute_scale_factor=True)), X(1, 2, 5, 7)),
    # ---------------------------------------------------------------- attention and transformers
    Case("MultiheadAttention", lambda nn, T: nn.MultiheadAttention(8, 2), X(5, 3, 8),
         fwd=lambda m, x: m(x, x, x)),
    Case("MultiheadAttention-noweights-bf", lambda nn, T: nn.MultiheadAttention(8, 4, batch_first=True),
         X(3, 5, 8), fwd=lambda m, x: m(x, x, x, need_weights=False)),
    Case("MultiheadAttention-cross-kvdim", lambda nn, T: nn.MultiheadAttention(8, 2, kdim=5, vdim=6,
                                                                               batch_first=True),
         X(3, 4, 8), X(3, 6, 5), X(3, 6, 6), fwd=lambda m, q, k, v: m(q, k, v, average_attn_weights=False)),
    Case("MultiheadAttention-kv-shared", lambda nn, T: nn.MultiheadAttention(6, 3, bias=False), X(4, 2, 6),
         X(5, 2, 6), fwd=lambda m, q, kv: m(q, kv, kv)),
    Case("MultiheadAttention-masks", lambda nn, T: nn.MultiheadAttention(8, 2, batch_first=True), X(2, 4, 8),
         Const(np.triu(np.ones((4, 4), bool), 1)), Const([[False] * 4, [False, False, True, True]]),
         fwd=lambda m, x, am, kpm: m(x, x, x, attn_mask=am, key_padding_mask=kpm)),
    Case("MultiheadAttention-masks-fused", lambda nn, T: nn.MultiheadAttention(8, 2, batch_first=True),
         X(2, 4, 8), Const(np.triu(np.ones((4, 4), bool), 1)), Const([[False] * 4, [False, False, True, True]]),
         fwd=lambda m, x, am, kpm: m(x, x, x, attn_mask=am, key_padding_mask=kpm, need_weights=False,
                                     is_causal=False)),
    Case("MultiheadAttention-float3d-causal", lambda nn, T: nn.MultiheadAttention(4, 2), X(3, 2, 4),
         Const(np.where(np.tril(np.ones((3, 3))), 0.0, -np.inf)[None].repeat(4, 0) + 0.1),
         fwd=lambda m, x, am: m(x, x, x, attn_mask=am, need_weights=False, is_causal=True)),
    Case("MultiheadAttention-biaskv-zeroattn", lambda nn, T: nn.MultiheadAttention(6, 2, add_bias_kv=True,
                                                                                   add_zero_attn=True),
         X(3, 2, 6), Const([[False, False, True], [False, True, True]]),
         fwd=lambda m, x, kpm: m(x, x, x, key_padding_mask=kpm)),
    Case("MultiheadAttention-unbatched", lambda nn, T: nn.MultiheadAttention(6, 3), X(4, 6), X(5, 6),
         fwd=lambda m, q, k: m(q, k, k, need_weights=False)),
    Case("MultiheadAttention-dropout-eval", lambda nn, T: nn.MultiheadAttention(6, 3, dropout=0.5), X(4, 2, 6),
         fwd=lambda m, x: m(x, x, x), eval=True),
    Case("sdpa", lambda nn, T: Fn(nn, lambda F, q, k, v: F.scaled_dot_product_attention(q, k, v)),
         X(2, 3, 5, 4), X(2, 3, 6, 4), X(2, 3, 6, 7)),
    Case("sdpa-causal-scale", lambda nn, T: Fn(nn, lambda F, q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=0.3)), X(2, 5, 4), X(2, 6, 4), X(2, 6, 3)),
    Case("sdpa-boolmask-deadrow", lambda nn, T: Fn(nn, lambda F, q, k, v, m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m)), X(2, 4, 3), X(2, 5, 3), X(2, 5, 3),
         Const([[True] * 5, [False] * 5, [True, False] * 2 + [True], [False] * 4 + [True]])),
    Case("sdpa-floatmask-broadcast", lambda nn, T: Fn(nn, lambda F, q, k, v, m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m)), X(2, 2, 3, 4), X(2, 2, 5, 4), X(2, 2, 5, 4), Const(np.linspace(-1, 1, 15).reshape(
            1, 3, 5))),
    Case("TransformerEncoderLayer", lambda nn, T: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), X(5, 3, 8)),
    Case("TransformerEncoderLayer-prenorm-gelu-eval",
         lambda nn, T: nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", norm_first=True, batch_first=True),
         X(3, 5, 8), eval=True),
    Case("TransformerEncoderLayer-callable-masks",
         lambda nn, T: nn.TransformerEncoderLayer(8, 4, 12, 0.0, activation=nn.functional.silu, batch_first=True),
         X(2, 4, 8), Const(np.triu(np.full((4, 4), -np.inf), 1)), Const([[0.0] * 4, [0.0, 0.0, 0.0, -np.inf]]),
         fwd=lambda m, x, am, kpm: m(x, src_mask=am, src_key_padding_mask=kpm, is_causal=True)),
    Case("TransformerDecoderLayer", lambda nn, T: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0), X(4, 3, 8),
         X(5, 3, 8), Const(np.triu(np.ones((4, 4), bool), 1)),
         fwd=lambda m, t, mem, tm: m(t, mem, tgt_mask=tm)),
    Case("TransformerDecoderLayer-prenorm-eval", lambda nn, T: nn.TransformerDecoderLayer(
        8, 2, 16, norm_first=True, batch_first=True, activation="gelu"), X(3, 4, 8), X(3, 6, 8),
         Const([[False] * 6, [False] * 5 + [True], [False] * 3 + [True] * 3]),
         fwd=lambda m, t, mem, kpm: m(t, mem, memory_key_padding_mask=kpm), eval=True),
    Case("TransformerEncoder", lambda nn, T: nn.TransformerEncoder(nn.TransformerEncoderLayer(
        8, 2, 16, 0.0, batch_first=True), 2, norm=nn.LayerNorm(8), enable_nested_tensor=False), X(2, 5, 8)),
    Case("TransformerEncoder-eval", lambda nn, T: nn.TransformerEncoder(nn.TransformerEncoderLayer(
        8, 2, 16, norm_first=True), 2, enable_nested_tensor=False), X(5, 2, 8), eval=True),
    Case("TransformerDecoder", lambda nn, T: nn.TransformerDecoder(nn.TransformerDecoderLayer(
        8, 2, 16, 0.0), 2, norm=nn.LayerNorm(8)), X(4, 2, 8), X(3, 2, 8)),
    # ---------------------------------------------------------------- recurrent
    Case("RNN", lambda nn, T: nn.RNN(4, 5), X(6, 3, 4)),
    Case("RNN-relu-2-bi-bf-h0", lambda nn, T: nn.RNN(4, 5, 2, nonlinearity="relu", batch_first=True,
                                                     bidirectional=True), X(3, 6, 4), X(4, 3, 5, scale=0.5)),
    Case("RNN-unbatched-nobias", lambda nn, T: nn.RNN(3, 4, bias=False), X(5, 3), X(1, 4)),
    Case("LSTM", lambda nn, T: nn.LSTM(4, 5), X(6, 3, 4)),
    Case("LSTM-2-bi-bf-h0c0", lambda nn, T: nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True),
         X(3, 6, 4), X(4, 3, 5), X(4, 3, 5), fwd=lambda m, x, h, c: m(x, (h, c))),
    Case("LSTM-unbatched-nobias", lambda nn, T: nn.LSTM(3, 4, bias=False), X(5, 3)),
    Case("LSTM-proj-2-bi-bf-h0c0", lambda nn, T: nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True,
                                                         proj_size=3),
         X(3, 6, 4), X(4, 3, 3), X(4, 3, 5), fwd=lambda m, x, h, c: m(x, (h, c))),
    Case("LSTM-proj-unbatched-nobias", lambda nn, T: nn.LSTM(3, 4, bias=False, proj_size=2), X(5, 3)),
    Case("GRU", lambda nn, T: nn.GRU(4, 5), X(6, 3, 4)),
    Case("GRU-2-bi-h0", lambda nn, T: nn.GRU(4, 3, 2, bidirectional=True), X(5, 2, 4), X(4, 2, 3)),
    Case("GRU-dropout-eval", lambda nn, T: nn.GRU(4, 3, 3, dropout=0.5), X(5, 2, 4), eval=True),
    Case("RNNCell", lambda nn, T: nn.RNNCell(4, 5), X(3, 4), X(3, 5)),
    Case("RNNCell-relu-nohx", lambda nn, T: nn.RNNCell(4, 5, nonlinearity="relu"), X(3, 4)),
    Case("LSTMCell", lambda nn, T: nn.LSTMCell(4, 5), X(3, 4), X(3, 5), X(3, 5), fwd=lambda m, x, h, c: m(x, (h, c))),
    Case("LSTMCell-unbatched-nohx", lambda nn, T: nn.LSTMCell(4, 5, bias=False), X(4)),
    Case("GRUCell", lambda nn, T: nn.GRUCell(4, 5), X(3, 4), X(3, 5)),
    Case("GRUCell-unbatched", lambda nn, T: nn.GRUCell(4, 5), X(4), X(5)),
    # ---------------------------------------------------------------- more losses
    Case("CosineEmbeddingLoss", lambda nn, T: nn.CosineEmbeddingLoss(), X(6, 5), X(6, 5), Sign(6)),
    Case("CosineEmbeddingLoss-margin-none", lambda nn, T: nn.CosineEmbeddingLoss(margin=-0.2, reduction="none"),
         X(6, 5), X(6, 5), Sign(6)),
    Case("CosineEmbeddingLoss-1d-sum", lambda nn, T: nn.CosineEmbeddingLoss(0.1, reduction="sum"), X(5), X(5),
         Const(-1.0)),
    Case("MarginRankingLoss", lambda nn, T: nn.MarginRankingLoss(), X(6), X(6), Sign(6)),
    Case("MarginRankingLoss-margin-none", lambda nn, T: nn.MarginRankingLoss(0.5, reduction="none"), X(6), X(6),
         Sign(6)),
    Case("TripletMarginLoss", lambda nn, T: nn.TripletMarginLoss(), X(5, 4), X(5, 4), X(5, 4)),
    Case("TripletMarginLoss-p1-swap-sum", lambda nn, T: nn.TripletMarginLoss(2.0, p=1, swap=True, reduction="sum"),
         X(5, 4), X(5, 4), X(5, 4)),
    Case("TripletMarginLoss-1d-none", lambda nn, T: nn.TripletMarginLoss(reduction="none", eps=1e-3), X(4), X(4),
         X(4)),
    Case("PoissonNLLLoss", lambda nn, T: nn.PoissonNLLLoss(), X(4, 5), Const(np.arange(20.0).reshape(4, 5) % 4)),
    Case("PoissonNLLLoss-rate-full", lambda nn, T: nn.PoissonNLLLoss(log_input=False, full=True), Prob(4, 5),
         Const(np.arange(20.0).reshape(4, 5) % 4)),
    Case("PoissonNLLLoss-full-target-grad", lambda nn, T: nn.PoissonNLLLoss(full=True, reduction="none"), X(3, 4),
         Prob(3, 4)),
    Case("GaussianNLLLoss", lambda nn, T: nn.GaussianNLLLoss(), X(4, 3), Target(4, 3), Prob(4, 3)),
    Case("GaussianNLLLoss-homo-full-clamp", lambda nn, T: nn.GaussianNLLLoss(full=True, eps=0.3, reduction="sum"),
         X(4, 3), Target(4, 3), Prob(4)),
    Case("GaussianNLLLoss-onedim-none", lambda nn, T: nn.GaussianNLLLoss(reduction="none"), X(4, 3), X(4, 3),
         Prob(4, 1)),
    Case("CTCLoss", lambda nn, T: nn.CTCLoss(), X(8, 3, 5), Const([[1, 2, 2, 3], [4, 1, 0, 0], [3, 3, 1, 0]]),
         Const([8, 7, 6]), Const([4, 2, 3]), fwd=lambda m, x, *r: m(x.log_softmax(2), *r)),
    Case("CTCLoss-sum-concat-blank", lambda nn, T: nn.CTCLoss(blank=4, reduction="sum"), X(7, 2, 5),
         Const([0, 1, 1, 2, 3]), Const([7, 5]), Const([3, 2]), fwd=lambda m, x, *r: m(x.log_softmax(2), *r)),
    Case("CTCLoss-none-zero-infinity", lambda nn, T: nn.CTCLoss(reduction="none", zero_infinity=True),
         X(6, 3, 4), Const([[1, 1, 1, 2], [2, 3, 0, 0], [1, 2, 3, 1]]), Const([6, 3, 6]), Const([4, 2, 0]),
         fwd=lambda m, x, *r: m(x.log_softmax(2), *r)),
    Case("CTCLoss-unbatched", lambda nn, T: nn.CTCLoss(), X(6, 4), Const([1, 2, 3]), Const(6), Const(3),
         fwd=lambda m, x, *r: m(x.log_softmax(1), *r)),
]

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def _close(a, b, dtype, what):
    a = np.asarray(a)
    assert a.shape == np.shape(b), f"{what}: shape {a.shape} != {np.shape(b)}"
    np.testing.assert_allclose(a, b, err_msg=what, **TOL[dtype])


def _pair(arrays, dtype):
    tins, rins = [], []
    for arr, grad in arrays:
        if arr.dtype.kind == "f":
            arr = arr.astype(dtype)
        tins.append(torch.tensor(arr, requires_grad=grad))
        rins.append(rg.tensor(arr, requires_grad=grad))
    return tins, rins


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_torch(case, dtype):
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    tm = case.build(torch.nn, lambda v: torch.tensor(v)).to(tdt)
    rm = case.build(rg.nn, lambda v: rg.tensor(v)).to(dtype)
    with torch.no_grad():  # move the weights off their (often trivial) defaults
        for p in tm.parameters():
            p.add_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.3, dtype=tdt))
    tsd = tm.state_dict()
    assert list(rm.state_dict()) == list(tsd)
    assert [n for n, _ in rm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    rm.load_state_dict({k: v.detach().numpy() for k, v in tsd.items()})
    for _ in range(case.steps):
        tins, rins = _pair([_make(s, rng) for s in case.inputs], dtype)
        case.fwd(tm, *tins)
        case.fwd(rm, *rins)
    if case.eval:
        tm.eval()
        rm.eval()
    tins, rins = _pair([_make(s, rng) for s in case.inputs], dtype)
    touts, routs = _flat(case.fwd(tm, *tins)), _flat(case.fwd(rm, *rins))
    assert len(routs) == len(touts), f"{len(routs)} outputs != {len(touts)}"
    tloss, rloss = 0, 0
    for i, (tout, rout) in enumerate(zip(touts, routs)):
        if not tout.dtype.is_floating_point:
            np.testing.assert_array_equal(rout.numpy(), tout.numpy(), err_msg=f"output {i}")
            continue
        assert rout.dtype == dtype
        _close(rout.detach().numpy(), tout.detach().numpy(), dtype, f"forward output {i}")
        if tout.requires_grad:
            seed = rng.standard_normal(tuple(tout.shape))
            tloss = tloss + (tout * torch.tensor(seed, dtype=tdt)).sum()
            assert rout.requires_grad, f"output {i} does not require grad"
            rloss = rloss + (rout * rg.tensor(seed, dtype=dtype)).sum()
    if isinstance(tloss, torch.Tensor):
        tloss.backward()
        rloss.backward()
    for i, (t, r) in enumerate(zip(tins, rins)):
        if t.requires_grad:
            assert r.grad is not None, f"input {i} got no gradient"
            _close(r.grad.numpy(), t.grad.numpy(), dtype, f"grad of input {i}")
    tparams = dict(tm.named_parameters())
    for name, p in rm.named_parameters():
        assert p.grad is not None, f"parameter {name} got no gradient"
        _close(p.grad.numpy(), tparams[name].grad.numpy(), dtype, f"grad of {name}")
    for k, v in tm.state_dict().items():  # buffers after the forward passes (running stats)
        _close(rm.state_dict()[k].numpy(), v.numpy(), dtype, f"state_dict[{k}]")


def _flat(out):
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [y for x in out for y in _flat(x)]
    return [out]
