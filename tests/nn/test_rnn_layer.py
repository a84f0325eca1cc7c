"""The fused recurrent layers (``nn.functional.rnn.rnn_layer``, kernels in ``kernels.rnn``): the
compiled steps give their NumPy twins' bits; LSTM, GRU and RNN layers give PyTorch's outputs, last
states and every gradient (input, h0, c0, weights, biases) in float32 and float64, batch-first,
bidirectional, several layers, without bias, unbatched; one graph node per layer and direction;
hooks, retain_graph, in-place checks and dropout as before; double backward (create_graph) gives
PyTorch's second derivatives and passes gradgradcheck."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import accel
from retrograd.kernels import rnn as KR
from retrograd.nn import rnn as rnn_mod

needs_numba = pytest.mark.skipif(not accel.available(), reason="compiled kernels are off (Numba not installed, or RETROGRAD_NO_JIT set)")
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}  # test_reference.py


def _twin_and_kernel(monkeypatch, fn):
    out = [fn()]
    monkeypatch.setattr(accel._state, "enabled", False)
    out.append(fn())
    monkeypatch.setattr(accel._state, "enabled", True)
    return out


def _same(results, what):
    kernel, twin = results
    assert all(a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True) for a, b in zip(kernel, twin)), \
        f"{what}: kernel and NumPy twin differ"


def _specials(x):
    """``x`` with NaN, infinities, signed zeros and a large value in its first elements."""
    k = min(6, x.size)
    np.put(x, np.arange(k), np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0])[:k])
    return x


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_step_kernels_equal_twin(dtype, monkeypatch):
    rng = np.random.default_rng(0)
    for n, h in [(1, 1), (3, 5), (20, 200), (7, 33)]:
        def r(*shape):
            return (rng.standard_normal(shape) * 3).astype(dtype)
        p4, gi4, cp, dy, dhr, dc = _specials(r(n, 4 * h)), r(n, 4 * h), r(n, h), r(n, h), r(n, h), r(n, h)
        p3, gi3, hp = _specials(r(n, 3 * h)), r(n, 3 * h), r(n, h)
        cp_strided = r(n, 2 * h)[:, ::2]

        def run(p4=p4, gi4=gi4, cp=cp, dy=dy, dhr=dhr, dc=dc, p3=p3, gi3=gi3, hp=hp, cs=cp_strided, n=n, h=h):
            res = []
            for c_prev in (cp, cs):
                p = p4.copy()
                gates, c, tc, hh, e = (np.empty((n, 4 * h), dtype), np.empty((n, h), dtype), np.empty((n, h), dtype),
                                       np.empty((n, h), dtype), np.empty((n, 4 * h), dtype))
                KR.lstm_step(p, gi4, c_prev, gates, c, tc, hh, e)
                dg, dcp = np.empty((n, 4 * h), dtype), dc.copy()
                KR.lstm_step_backward(dy, dhr, dcp, gates, c_prev, tc, dg, dcp)  # dc_prev in place of dc
                res += [p, gates, c, tc, hh, dg, dcp]
            p = p3.copy()
            gates, hh, e = np.empty((n, 4 * h), dtype), np.empty((n, h), dtype), np.empty((n, 2 * h), dtype)
            KR.gru_step(p, gi3, hp, gates, hh, e)
            dgi, dgh, direct = np.empty((n, 3 * h), dtype), np.empty((n, 3 * h), dtype), np.empty((n, h), dtype)
            KR.gru_step_backward(dy, dhr, gates, hp, dgi, dgh, direct)
            res += [p, gates, hh, dgi, dgh, direct]
            for relu in (False, True):
                dg = np.empty((n, h), dtype)
                KR.rnn_step_backward(dy, dhr, np.tanh(hp) if not relu else np.maximum(hp, 0), relu, dg)
                res.append(dg)
            return res
        with np.errstate(all="ignore"):
            _same(_twin_and_kernel(monkeypatch, run), f"rnn steps {n}x{h} {dtype.__name__}")


def _pair(cls, dtype, kw, seed=0):
    torch.manual_seed(seed)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tm = getattr(torch.nn, cls)(4, 6, **kw).to(tdt)
    rm = getattr(rg.nn, cls)(4, 6, dtype=rg.float64 if dtype == np.float64 else rg.float32, **kw)
    rm.load_state_dict({k: rg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, rm


CASES = [
    ("LSTM", {}), ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}), ("LSTM", {"bias": False}),
    ("GRU", {}), ("GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True}), ("GRU", {"bias": False}),
    ("RNN", {"num_layers": 2, "bidirectional": True}), ("RNN", {"nonlinearity": "relu", "num_layers": 2}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,kw", CASES, ids=[f"{c}-{'-'.join(map(str, k.values())) or 'plain'}" for c, k in CASES])
def test_layers_match_torch_with_every_gradient(cls, kw, dtype):
    """Outputs, h_n, c_n, and the gradients of a loss that reads all three, to the input, h0, c0 and
    every parameter."""
    tm, rm = _pair(cls, dtype, kw)
    D = (2 if kw.get("bidirectional") else 1) * kw.get("num_layers", 1)
    rng = np.random.default_rng(1)
    T, N = 5, 3
    x = rng.standard_normal((N, T, 4) if kw.get("batch_first") else (T, N, 4)).astype(dtype)
    h0, c0 = rng.standard_normal((D, N, 6)).astype(dtype), rng.standard_normal((D, N, 6)).astype(dtype)
    lstm = cls == "LSTM"
    res = {}
    for lib, m in (("torch", tm), ("rg", rm)):
        L = torch if lib == "torch" else rg
        xs = [L.tensor(a, requires_grad=True) for a in (x, h0, c0)]
        out, st = m(xs[0], (xs[1], xs[2]) if lstm else xs[1])
        w = L.tensor(np.linspace(-1, 1, out.numel()).reshape(tuple(out.shape)).astype(dtype))
        hn, cn = st if lstm else (st, None)
        loss = (out * w).sum() + (hn ** 2).sum() + ((cn * 3).sum() if lstm else 0)
        loss.backward()
        res[lib] = [out, hn] + ([cn] if lstm else []) + [xs[0].grad, xs[1].grad] + ([xs[2].grad] if lstm else []) \
            + [p.grad for _, p in sorted(m.named_parameters())]
    for a, b in zip(res["torch"], res["rg"]):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), **TOL[dtype])


def test_unbatched_input_and_no_initial_state():
    tm, rm = _pair("LSTM", np.float32, {"num_layers": 2})
    x = np.random.default_rng(2).standard_normal((7, 4)).astype(np.float32)
    xt, xr = torch.tensor(x, requires_grad=True), rg.tensor(x, requires_grad=True)
    (ot, (ht, ct)), (orr, (hr, cr)) = tm(xt), rm(xr)
    assert tuple(orr.shape) == (7, 6) and tuple(hr.shape) == tuple(cr.shape) == (2, 6)
    (ot.sum() + ct.sum()).backward()
    (orr.sum() + cr.sum()).backward()
    for a, b in [(ot, orr), (ht, hr), (ct, cr), (xt.grad, xr.grad), (tm.weight_hh_l1.grad, rm.weight_hh_l1.grad)]:
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), **TOL[np.float32])


def _all_nodes(t):
    seen, stack, out = set(), [t._node], []
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        stack += [i._node for i in n.inputs if i is not None]
    return out


def test_one_graph_node_per_layer_and_direction():
    """A 2-layer bidirectional LSTM over 30 steps records a few dozen nodes (one rule per layer and
    direction, and their views), not one per op per step."""
    m = rg.nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    out, (h, c) = m(rg.randn(30, 2, 4))
    names = [n.rule.name for n in _all_nodes(out.sum() + h.sum() + c.sum())]
    assert names.count("rnn_layer") == 4
    assert len(names) < 40, names


@pytest.mark.parametrize("cls,kw", [("LSTM", dict(num_layers=2)), ("GRU", dict(bidirectional=True)),
                                    ("RNN", dict(nonlinearity="relu", batch_first=True)),
                                    ("LSTM", dict(bidirectional=True, bias=False))])
def test_double_backward_matches_torch(cls, kw):
    """grad with create_graph, then the gradient of the gradients' squared norm: PyTorch's numbers
    for the input and every parameter, float64."""
    tm = getattr(torch.nn, cls)(3, 4, **kw).double()
    rm = getattr(rg.nn, cls)(3, 4, **kw).double()
    rm.load_state_dict({k: rg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    xn = np.random.default_rng(0).standard_normal((5, 2, 3))
    res = []
    for lib, m in ((torch, tm), (rg, rm)):
        x = lib.tensor(xn, requires_grad=True)
        out, st = m(x)
        params = list(m.parameters())
        loss = (out ** 2).sum() + (st[0] if cls == "LSTM" else st).sum() * 0.5
        gs = lib.autograd.grad(loss, [x] + params, create_graph=True)
        g2 = lib.autograd.grad(sum((g ** 2).sum() for g in gs), [x] + params)
        res.append([g.detach().numpy() for g in gs + g2])
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, **TOL[np.float64])


def test_double_backward_runs_a_parameter_hook_once_and_reaches_the_input_history():
    """The op-by-op recomputation under create_graph neither fires a leaf's hook a second time nor
    stops at a non-leaf input: the second derivative flows on through the input's history."""
    m = rg.nn.LSTM(3, 4).double()
    seen = []
    m.weight_hh_l0.register_hook(lambda g: seen.append(1))
    a = rg.randn(5, 2, 3, dtype=rg.float64, requires_grad=True)
    out, _ = m(a * 2.0)  # x has a history
    (gw,) = rg.autograd.grad((out ** 2).sum(), m.weight_hh_l0, create_graph=True)
    assert seen == [1] and gw.requires_grad
    (ga,) = rg.autograd.grad(gw.sum(), a)
    eps = 1e-6
    d = rg.zeros_like(a)
    d.data[0, 0, 0] = eps

    def first(av):
        o, _ = m(av * 2.0)
        return rg.autograd.grad((o ** 2).sum(), m.weight_hh_l0)[0].sum().item()
    num = (first(a.detach() + d) - first(a.detach() - d)) / (2 * eps)
    assert abs(ga[0, 0, 0].item() - num) < 1e-6 * max(1.0, abs(num))


def test_double_backward_runs_the_fused_forward_once(monkeypatch):
    """Under create_graph the layer is recorded op by op for the second derivative; the fused forward
    is not run a second time (to be thrown away) by the engine's recomputation of saved outputs."""
    from retrograd.nn.functional import rnn as R
    calls = []
    fwd = R.RNN_LAYER.forward
    monkeypatch.setattr(R.RNN_LAYER, "forward", lambda ins, kw: calls.append(kw["mode"]) or fwd(ins, kw))
    for cls in ("LSTM", "GRU", "RNN"):
        m = getattr(rg.nn, cls)(3, 4).double()
        x = rg.randn(5, 2, 3, dtype=rg.float64, requires_grad=True)
        out, _ = m(x)
        assert len(calls) == 1
        (gx,) = rg.autograd.grad((out ** 2).sum(), x, create_graph=True)
        assert len(calls) == 1 and gx.requires_grad
        rg.autograd.grad(gx.sum(), x)
        assert len(calls) == 1
        calls.clear()


def test_in_place_change_of_the_output_is_caught():
    for cls in ("GRU", "RNN"):  # (LSTM: below) their backward reads the output
        out, _ = getattr(rg.nn, cls)(3, 4)(rg.randn(6, 2, 3))
        out.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()


def test_parameter_hooks_retain_graph_and_in_place_checks():
    m = rg.nn.GRU(3, 4, num_layers=2)
    seen = []
    m.weight_hh_l0.register_hook(lambda g: seen.append(g.shape) or g * 2)
    x = rg.randn(6, 2, 3)
    out, _ = m(x)
    out.sum().backward(retain_graph=True)
    once = m.weight_hh_l0.grad.numpy().copy()
    out.sum().backward()
    assert seen == [(12, 4), (12, 4)]
    np.testing.assert_allclose(m.weight_hh_l0.grad.numpy(), 2 * once, rtol=1e-6)
    out, _ = rg.nn.LSTM(3, 4)(x)
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_dropout_between_layers_draws_as_the_op_by_op_path(monkeypatch):
    """The fused layers leave dropout where it was: the same seed gives the same masks and numbers
    as the layer recorded op by op."""
    m = rg.nn.LSTM(4, 5, num_layers=3, dropout=0.5)
    x = rg.randn(6, 2, 4)
    res = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(rnn_mod.RNNBase, "_fused", lambda *a: False)
        rg.manual_seed(7)
        out, (h, c) = m(x)
        out.sum().backward()
        res.append((out.detach().numpy(), c.detach().numpy(), m.weight_ih_l2.grad.numpy().copy()))
        m.zero_grad()
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(res[0][0], m.eval()(x)[0].detach().numpy())  # dropout did act in training


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_no_grad_gives_the_same_bits(cls):
    m = getattr(rg.nn, cls)(4, 5, num_layers=2, bidirectional=True)
    x = rg.randn(9, 3, 4)
    out, st = m(x)
    with rg.no_grad():
        out2, st2 = m(x)
    assert out2._node is None
    for a, b in [(out, out2)] + list(zip(st, st2) if cls == "LSTM" else [(st, st2)]):
        assert np.array_equal(a.detach().numpy(), b.numpy())


def test_proj_size_and_mixed_dtypes_use_the_op_by_op_path():
    m = rg.nn.LSTM(4, 5, proj_size=2)
    out, _ = m(rg.randn(3, 2, 4))
    assert "rnn_layer" not in [n.rule.name for n in _all_nodes(out.sum())]
    m = rg.nn.GRU(4, 5)
    out, _ = m(rg.randn(3, 2, 4, dtype=rg.float64))
    assert out.dtype == rg.float64 and "rnn_layer" not in [n.rule.name for n in _all_nodes(out.sum())]
    with pytest.raises(TypeError, match="rnn_layer: expected every input of one dtype"):
        rg.nn.functional.rnn.rnn_layer("GRU", rg.randn(3, 2, 4, dtype=rg.float64), rg.zeros(2, 5), None,
                                       m.weight_ih_l0, m.weight_hh_l0)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_layer_passes_gradcheck(mode, reverse):
    """The rule alone, float64, against finite differences: the output, h_n and c_n weighted apart."""
    from retrograd.nn.functional.rnn import rnn_layer

    rng = np.random.default_rng(3)
    G = {"LSTM": 4, "GRU": 3}.get(mode, 1)

    def t(*s):
        return rg.tensor(rng.standard_normal(s) * 0.7, dtype=rg.float64, requires_grad=True)
    ins = (t(4, 2, 3), t(2, 5), t(2, 5), t(G * 5, 3), t(G * 5, 5), t(G * 5), t(G * 5))

    def f(x, h0, c0, wi, wh, bi, bh):
        outs = rnn_layer(mode, x, h0, c0 if mode == "LSTM" else None, wi, wh, bi, bh, reverse=reverse)
        return sum((o * (k + 1)).sum() for k, o in enumerate(outs) if o is not None)
    assert rg.autograd.gradcheck(f, ins)
    assert rg.autograd.gradgradcheck(f, ins)


def _layer_results(cls, kw, x, hidden):
    """Output, states and every gradient of a float32 layer (fixed weights) on ``x``, as arrays."""
    m = getattr(rg.nn, cls)(x.shape[2], hidden, **kw)
    rng = np.random.default_rng(5)
    with rg.no_grad():
        for p in m.parameters():
            p.copy_(rg.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.1))
    xt = rg.tensor(x, requires_grad=True)
    out, st = m(xt)
    sts = list(st) if cls == "LSTM" else [st]
    w = rg.tensor(np.linspace(-1, 1, out.numel()).reshape(tuple(out.shape)).astype(np.float32))
    ((out * w).sum() + sum((s * s).sum() for s in sts)).backward()
    return [a.detach().numpy().copy() for a in [out, *sts, xt.grad] + [p.grad for _, p in sorted(m.named_parameters())]]


@needs_numba
@pytest.mark.parametrize("cls,kw,batch", [("LSTM", {}, 32), ("GRU", {"bidirectional": True}, 48), ("RNN", {}, 128)])
def test_threaded_gemms_give_the_bits_of_one_thread(cls, kw, batch, monkeypatch):
    """float32 layers whose GEMMs (per step and sequence-wide, each above kernels.matmul's size for two
    threads) and bias gradients split into row / column blocks on 2 and 3 threads give the bits of the same layer on one
    thread and of the NumPy path (OpenBLAS on one thread meanwhile: the rule holds it there).
    (Much smaller blocks may not: OpenBLAS's kernel for products under ~1M multiply-adds adds in
    another order, so its result depends on the block's rows.)"""
    from retrograd import kernels

    x = np.random.default_rng(4).standard_normal((3, batch, 128)).astype(np.float32)
    monkeypatch.setattr(kernels, "_MIN_ELEMENTS", 64)  # the biases' gradients (kernels.sum_rows) split too
    split = []
    parts = kernels._gemm_parts
    monkeypatch.setattr(kernels, "_gemm_parts", lambda m, n, k: (split.append((m, k)), parts(m, n, k))[1]
                        if parts(m, n, k) > 1 else 1)
    runs = []
    for threads in (2, 3, 1):
        monkeypatch.setattr(accel._state, "threads", threads)
        split.clear()
        runs.append(_layer_results(cls, kw, x, 256))
        # per step h W_hh^T ((batch, 256) @ (256, G * 256)) and the weight gradients (over 3 * batch rows)
        assert ((batch, 256) in split and 3 * batch in {k for _, k in split}) == (threads > 1), (threads, split)
    monkeypatch.setattr(accel._state, "enabled", False)
    runs.append(_layer_results(cls, kw, x, 256))
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"{cls}: threaded and one-thread results differ"


@pytest.mark.skipif(accel.blas_threads() is None, reason="no OpenBLAS found (NumPy built against another BLAS)")
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_holds_openblas_to_one_thread_and_gives_it_back(dtype, monkeypatch):
    """OpenBLAS's workers busy-wait after each threaded GEMM and take the core from the next step:
    the rule runs its forward and backward with OpenBLAS on one thread (float64 too, while its
    per-step GEMMs are small), and OpenBLAS's count is back when it returns."""
    funcs = accel._blas_funcs()
    before = funcs[0]()
    seen = []
    fwd, bwd = KR.lstm_step, KR.lstm_step_backward
    monkeypatch.setattr(KR, "lstm_step", lambda *a: (seen.append(("f", funcs[0]())), fwd(*a))[1])
    monkeypatch.setattr(KR, "lstm_step_backward", lambda *a: (seen.append(("b", funcs[0]())), bwd(*a))[1])
    try:
        funcs[1](2)
        m = rg.nn.LSTM(8, 16, dtype=rg.float64 if dtype == np.float64 else rg.float32)
        out, _ = m(rg.randn(5, 3, 8, dtype=m.weight_hh_l0.dtype))
        assert funcs[0]() == 2
        out.sum().backward()
        assert funcs[0]() == 2
    finally:
        funcs[1](before)
    assert seen == [("f", 1)] * 5 + [("b", 1)] * 5
