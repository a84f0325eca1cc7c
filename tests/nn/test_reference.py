"""Every layer, activation and loss against torch.nn: forward values, input gradients, parameter
gradients and buffers, in float32 and float64, with weights copied through state_dict."""
import zlib

import numpy as np
import pytest
import torch

import retrograd as rg


class Case:
    def __init__(self, name, build, *inputs, steps=0, eval=False):
        self.name, self.build, self.inputs, self.steps, self.eval = name, build, inputs, steps, eval


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
        tm(*tins)
        rm(*rins)
    if case.eval:
        tm.eval()
        rm.eval()
    tins, rins = _pair([_make(s, rng) for s in case.inputs], dtype)
    tout = tm(*tins)
    rout = rm(*rins)
    assert rout.dtype == dtype
    _close(rout.detach().numpy(), tout.detach().numpy(), dtype, "forward")
    seed = rng.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(seed, dtype=tdt)).sum().backward()
    if rout.requires_grad:
        (rout * rg.tensor(seed, dtype=dtype)).sum().backward()
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
