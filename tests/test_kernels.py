"""The fused kernels of ``retrograd.kernels`` (tanh-GELU, layer norm, softmax / log-softmax, attention's
scale + mask + softmax): the compiled loops give their NumPy twins' bits (float32 and float64, odd
shapes, non-contiguous inputs, NaN and infinities, sizes on both sides of the threading threshold,
one thread or two), the ops built on them give PyTorch's numbers and pass gradcheck, and the NumPy
path alone (``RETROGRAD_NO_JIT=1``) trains a transformer to the same bits."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import accel
from retrograd import kernels as K

needs_numba = pytest.mark.skipif(not accel.available(), reason="Numba is not installed (the 'fast' extra)")
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}  # tests/nn/test_reference.py
BIG = 2 * K._MIN_ELEMENTS + 37  # elements: split over two threads


def _both(monkeypatch, fn):
    """``fn()`` with the kernels on two threads, on one thread, on one thread in small pieces (so the
    kernel -> NumPy ufunc -> kernel chains take several), and with the kernels off (the NumPy twins)."""
    out = []
    with np.errstate(all="ignore"):
        for threads in (2, 1):
            monkeypatch.setattr(accel._state, "threads", threads)
            out.append(fn())
        with monkeypatch.context() as m:
            m.setattr(K, "_CHUNK", 777)
            out.append(fn())
        monkeypatch.setattr(accel._state, "enabled", False)
        out.append(fn())
        monkeypatch.setattr(accel._state, "enabled", True)
    return out


def _same(results, what):
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first, other):
            if a is None and b is None:
                continue
            assert a.shape == b.shape and a.dtype == b.dtype, what
            assert np.array_equal(a, b, equal_nan=True), f"{what}: kernel and NumPy twin differ"


def _specials(x):
    flat = x.reshape(-1)
    flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0][:flat.size]
    return x


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sums_follow_numpys_pairwise_order(dtype):
    """``jit._pairwise`` adds as ``np.sum`` over the last axis does, for every length up to 300 and
    some long rows (values spanning 8 decades, so another order would show)."""
    from retrograd.kernels import jit

    rng = np.random.default_rng(0)
    for d in list(range(1, 301)) + [1000, 1024, 4097, 20000]:
        x = (rng.standard_normal((3, d)) * 10.0 ** rng.integers(-4, 4, (3, d))).astype(dtype)
        out = np.empty(3, dtype)
        jit.row_sums(x, out, dtype(0), 0, 3)
        assert np.array_equal(out, np.sum(x, axis=1)), d


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_tanh_kernels_equal_twin(dtype, monkeypatch):
    rng = np.random.default_rng(1)
    for shape in [(1,), (7,), (33, 257), (BIG,)]:
        x = _specials((rng.standard_normal(shape) * 3).astype(dtype))
        g = rng.standard_normal(shape).astype(dtype)
        for xi in (x, x[::2]):  # contiguous and strided
            gi = g[:xi.shape[0]]

            def run(xi=xi, gi=gi):
                y, t = K.gelu_tanh(xi)
                return y, t, K.gelu_tanh_backward(xi, t, gi)
            _same(_both(monkeypatch, run), f"gelu_tanh {shape} {dtype.__name__}")
    x = rng.standard_normal((5, 6)).astype(dtype)
    _same(_both(monkeypatch, lambda: (K.gelu_tanh_backward(x.T, K.gelu_tanh(x.T)[1], np.ones((1, 5), dtype)),)),
          "gelu_tanh, transposed input and a broadcast gradient")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_kernels_equal_twin(dtype, monkeypatch):
    rng = np.random.default_rng(2)
    big_rows = BIG // 64 + 1
    for rows, d in [(1, 2), (3, 7), (5, 8), (127, 129), (129, 128), (300, 257), (2, 1000), (1, 4097),
                    (big_rows, 64), (2 * K.BLOCK_ROWS + 1, 3)]:
        x = (rng.standard_normal((rows, d)) * 10.0 ** rng.integers(-2, 3, (rows, 1)) + 3).astype(dtype)
        g = rng.standard_normal((rows, d)).astype(dtype)
        w, b = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
        for wi, bi, needs in [(None, None, (True, False, False)), (w, None, (True, True, False)),
                              (None, b, (False, False, True)), (w, b, (True, True, True)),
                              (w, b, (False, True, False))]:
            def run(wi=wi, bi=bi, needs=needs, x=x, g=g):
                y, mu, rstd = K.layer_norm(x, wi, bi, 1e-5)
                return (y, mu, rstd) + K.layer_norm_backward(x, g, wi, mu, rstd, needs)
            _same(_both(monkeypatch, run), f"layer_norm {rows}x{d} {dtype.__name__}")
    x = rng.standard_normal((6, 10)).astype(dtype)
    _same(_both(monkeypatch, lambda: K.layer_norm(x[:, ::2], None, None, 1e-5)), "layer_norm, strided input")
    x[0, 3] = np.nan
    x[1] = np.inf
    _same(_both(monkeypatch, lambda: K.layer_norm(x, None, None, 1e-5)), "layer_norm, NaN and inf rows")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_kernels_equal_twin(dtype, monkeypatch):
    monkeypatch.setattr(K, "_MIN_LOG_SOFTMAX", 0)  # the kernel on every shape, small ones too
    rng = np.random.default_rng(3)
    for shape in [(1,), (7,), (3, 1), (2, 3, 129), (9, 300), (4, 5, 1000), (BIG // 64 + 1, 64)]:
        x = (rng.standard_normal(shape) * 5).astype(dtype)
        if x.size > 10:
            x.reshape(-1)[[3, 7, 8]] = [np.nan, np.inf, -np.inf]
        x.reshape(-1, shape[-1])[-1] = -np.inf  # a row of -inf: NaN, as NumPy and torch give
        g = rng.standard_normal(shape).astype(dtype)

        def run(x=x, g=g):
            y, ls = K.softmax(x), K.log_softmax(x)
            return y, ls, K.softmax_backward(y, g), K.log_softmax_backward(ls, g)
        _same(_both(monkeypatch, run), f"softmax {shape} {dtype.__name__}")
    x = rng.standard_normal((8, 12)).astype(dtype)
    _same(_both(monkeypatch, lambda: (K.softmax(x.T), K.log_softmax(x[:, ::3]))), "softmax, strided input")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_pieces_equal_twin(dtype, monkeypatch):
    """Cross-entropy's probabilities (``exp_rows``) and logit gradient (``cross_entropy_grad``, a scalar,
    a Python float or per-row incoming gradient) on rows split over threads give the one-pass twin's bits
    and dtype (Python floats stay weak: a float32 result)."""
    rng = np.random.default_rng(8)
    for rows, c in [(3, 5), (BIG // 100 + 1, 100), (2, BIG // 2 + 1)]:
        logp = K.log_softmax((rng.standard_normal((rows, c)) * 4).astype(dtype))
        t = rng.integers(0, c, rows)
        gs = [np.asarray(0.37, dtype), 0.37, (rng.standard_normal((rows, 1))).astype(dtype)]

        def run(logp=logp, t=t, gs=gs):
            p = K.exp_rows(logp)
            return [p] + [K.cross_entropy_grad(p, t, g) for g in gs]
        res = _both(monkeypatch, run)
        _same(res, f"cross_entropy {rows}x{c} {dtype.__name__}")
        p = np.exp(logp)
        for g, got in zip(gs, res[0][1:]):
            d = p.copy()
            d[np.arange(rows), t] -= 1
            want = g * d
            assert got.dtype == want.dtype == dtype and np.array_equal(got, want)


@needs_numba
def test_sum_rows_in_column_blocks_equals_one_call(monkeypatch):
    """A linear layer's bias gradient (``sum_rows``) on 2 and 3 threads, blocks as small as allowed, has
    ``a.sum(axis=0)``'s bits for random shapes and both dtypes; narrow or strided inputs are one call."""
    monkeypatch.setattr(K, "_MIN_ELEMENTS", 64)
    rng = np.random.default_rng(9)
    split = 0
    for i in range(60):
        m, n = (int(v) for v in np.exp(rng.uniform(0, np.log(1500), 2)))
        dtype = DTYPES[i % 2]
        a = (rng.standard_normal((m, n)) * 10.0 ** rng.integers(-3, 4, (m, n))).astype(dtype)
        want = a.sum(axis=0)
        for threads in (2, 3):
            monkeypatch.setattr(accel._state, "threads", threads)
            calls = []
            real = accel.run_ranges
            monkeypatch.setattr(accel, "run_ranges", lambda *args: (calls.append(1), real(*args))[1])
            got = K.sum_rows(a)
            monkeypatch.setattr(accel, "run_ranges", real)
            split += bool(calls)
            assert calls == ([1] if a.size >= 128 and n >= 64 else []) and got.dtype == dtype
            assert np.array_equal(got, want), (m, n, threads)
    assert split > 40
    a = rng.standard_normal((300, 200)).astype(np.float32)
    assert np.array_equal(K.sum_rows(a.T), a.T.sum(axis=0)) and np.array_equal(K.sum_rows(a[:, ::2]), a[:, ::2].sum(0))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_softmax_kernels_equal_twin(dtype, monkeypatch):
    """Scale, mask (causal with a fully masked row, a float mask, a mask the kernel does not take)
    and softmax in one pass, and the scaled backward."""
    rng = np.random.default_rng(4)
    for shape in [(3, 5), (2, 3, 4, 7), (2, 2, 65, 129), (BIG // 4096 + 1, 64, 64)]:
        L, S = shape[-2:]
        s = (rng.standard_normal(shape) * 4).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        causal = np.where(np.tril(np.ones((L, S), bool)), 0.0, -np.inf).astype(dtype)
        causal[0] = -np.inf
        per_batch = rng.standard_normal((shape[0],) + (1,) * (len(shape) - 2) + (S,)).astype(dtype)
        for mask in (None, causal, rng.standard_normal((L, S)).astype(dtype), per_batch):
            for safe in (False, True):
                def run(mask=mask, safe=safe, s=s, g=g):
                    p = K.softmax(s.copy(), 0.125, mask, safe)
                    return p, K.softmax_backward(p, g, 0.125)
                _same(_both(monkeypatch, run), f"attention softmax {shape} {dtype.__name__}")


def _ops(lib, x, w, b, causal_q):
    """tanh-GELU, layer norm, softmax, log-softmax and causal SDPA, in either library."""
    F = lib.nn.functional
    h = F.gelu(x, approximate="tanh")
    n = F.layer_norm(h, (x.shape[-1],), w, b)
    q = causal_q.reshape(2, 3, 5, 4)
    a = F.scaled_dot_product_attention(q, q * 0.5, q, is_causal=True)
    return (n * F.softmax(n, dim=-1)).sum() + F.log_softmax(n, dim=-1).sum() * 0.1 + (a * a).sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_ops_match_torch(dtype):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((6, 9)).astype(dtype) * 2, rng.standard_normal(9).astype(dtype),
              rng.standard_normal(9).astype(dtype), rng.standard_normal((2, 3, 20)).astype(dtype)]
    rt = [rg.tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    ro, to = _ops(rg, *rt), _ops(torch, *tt)
    ro.backward()
    to.backward()
    np.testing.assert_allclose(ro.item(), to.item(), **TOL[dtype])
    for r, t in zip(rt, tt):
        np.testing.assert_allclose(r.grad.numpy(), t.grad.numpy(), **TOL[dtype])


def test_fused_ops_pass_gradcheck_and_gradgradcheck():
    rng = np.random.default_rng(6)
    x = rg.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    w = rg.tensor(rng.standard_normal(5), requires_grad=True)
    b = rg.tensor(rng.standard_normal(5), requires_grad=True)
    q = rg.tensor(rng.standard_normal((2, 4, 3)), requires_grad=True)
    F = rg.nn.functional
    fns = [(lambda x: F.gelu(x, approximate="tanh"), (x,)),
           (lambda x, w, b: F.layer_norm(x, (5,), w, b), (x, w, b)),
           (lambda x: F.softmax(x, dim=-1), (x,)), (lambda x: F.log_softmax(x, dim=-1), (x,)),
           (lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True), (q,))]
    for fn, ins in fns:
        assert rg.autograd.gradcheck(fn, ins)
        assert rg.autograd.gradgradcheck(fn, ins)


def test_numpy_path_alone_gives_the_same_numbers(tmp_path):
    """A small transformer's loss and gradients with ``RETROGRAD_NO_JIT=1`` (a fresh process, the
    NumPy twins only) and here (the kernels, where Numba is installed): the same bits."""
    code = _NO_JIT_STEP
    env = dict(os.environ, RETROGRAD_NO_JIT="1", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nojit.npz")], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "kernels: False"
    here = subprocess.run([sys.executable, "-c", code, str(tmp_path / "here.npz")],
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), capture_output=True,
                          text=True, check=True)
    assert here.stdout.strip() == f"kernels: {accel.available()}"
    a, b = np.load(tmp_path / "nojit.npz"), np.load(tmp_path / "here.npz")
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 10
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k


_NO_JIT_STEP = """
import sys
import numpy as np
import retrograd as rg
from retrograd import accel
F = rg.nn.functional
rg.manual_seed(0)
ids = rg.tensor(np.random.default_rng(0).integers(0, 11, (3, 16)))
emb, head = rg.nn.Embedding(11, 32), rg.nn.Linear(32, 11)
blocks = [(rg.nn.LayerNorm(32), rg.nn.LayerNorm(32), rg.nn.Linear(32, 64), rg.nn.Linear(64, 32)) for _ in range(2)]
h = emb(ids)
for ln1, ln2, up, down in blocks:
    q = ln1(h).reshape(3, 16, 2, 16).transpose(1, 2)
    h = h + F.scaled_dot_product_attention(q, q * 0.5, q, is_causal=True).transpose(1, 2).reshape(3, 16, 32)
    h = h + down(F.gelu(up(ln2(h)), approximate="tanh"))
loss = F.cross_entropy(head(h).reshape(-1, 11), ids.reshape(-1)) + F.softmax(h, dim=-1).square().sum()
loss.backward()
mods = [emb, head] + [m for blk in blocks for m in blk]
grads = {f"{i}.{n}": p.grad.numpy() for i, m in enumerate(mods) for n, p in m.named_parameters()}
np.savez(sys.argv[1], loss=loss.detach().numpy(), **grads)
print("kernels:", accel.available())
"""


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_gelu_split_over_threads_equals_numpy_path(dtype, monkeypatch):
    """The erf form's kernels (tests/test_accel.py) split over two threads: still the NumPy path's bits."""
    rng = np.random.default_rng(7)
    x = _specials((rng.standard_normal(BIG) * 3).astype(dtype))
    g = rng.standard_normal(BIG).astype(dtype)

    def run():
        rx = rg.tensor(x, requires_grad=True)
        y = rg.nn.functional.gelu(rx)
        y.backward(rg.tensor(g))
        return y.detach().numpy().copy(), rx.grad.detach().numpy().copy()
    _same(_both(monkeypatch, run), f"exact gelu {dtype.__name__}")
