"""The convolution, pooling and ReLU kernels of ``retrograd.kernels.conv``: the compiled loops give their
NumPy twins' bits (float32 and float64, strides, asymmetric padding, dilation, one channel and many,
NaN and infinities, one thread or two, pieces split finer than the default), and conv2d built on them
gives PyTorch's outputs and gradients, with the forward's im2col columns kept for the weight gradient
or rebuilt."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import accel
from retrograd.kernels import conv as KC
from retrograd.nn.functional import conv as conv_mod

needs_numba = pytest.mark.skipif(not accel.available(), reason="Numba is not installed (the 'fast' extra)")
DTYPES = [np.float32, np.float64]

# (x shape, kernel, stride, ((top, bottom), (left, right)) padding, dilation)
GEOMS = [((3, 4, 9, 9), (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
         ((2, 1, 12, 11), (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
         ((2, 3, 10, 11), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 1)),
         ((2, 5, 13, 12), (3, 3), (2, 3), ((2, 2), (1, 1)), (2, 3)),
         ((1, 6, 7, 8), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
         ((2, 2, 6, 6), (5, 4), (1, 2), ((3, 3), (3, 2)), (1, 1))]


def _out_hw(shape, k, s, p, d):
    return tuple((shape[2 + a] + p[a][0] + p[a][1] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(2))


def _runs(monkeypatch, fn):
    """``fn()`` with the kernels on two threads in small pieces, on one thread, and off (the twins)."""
    out = []
    with np.errstate(all="ignore"):
        with monkeypatch.context() as m:
            m.setattr(accel._state, "threads", 2)
            m.setattr(KC, "MIN_PER_THREAD", 1)
            out.append(fn())
        with monkeypatch.context() as m:
            m.setattr(accel._state, "threads", 1)
            out.append(fn())
        with monkeypatch.context() as m:
            m.setattr(accel._state, "enabled", False)
            out.append(fn())
    return out


def _same(results, what):
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.shape == b.shape and a.dtype == b.dtype, what
            assert np.array_equal(a, b, equal_nan=True), f"{what}: kernel and NumPy twin differ"
            assert np.array_equal(np.signbit(a), np.signbit(b)), f"{what}: signs of zeros differ"


def _specials(x):
    flat = x.reshape(-1)
    flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0]
    return x


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g[0])) + f"-k{g[1]}-s{g[2]}-d{g[4]}")
def test_im2col_col2im_and_layouts_give_the_twins_bits(monkeypatch, geom, dtype):
    shape, k, s, p, d = geom
    rng = np.random.default_rng(0)
    x = _specials(rng.standard_normal(shape).astype(dtype))
    oh, ow = _out_hw(shape, k, s, p, d)
    m, kk = shape[0] * oh * ow, k[0] * k[1] * shape[1]
    gcols = _specials(rng.standard_normal((m, kk)).astype(dtype))
    y = _specials(rng.standard_normal((m, 5)).astype(dtype))
    bias = rng.standard_normal(5).astype(dtype)
    g = _specials(rng.standard_normal((shape[0], 5, oh, ow)).astype(dtype))
    _same(_runs(monkeypatch, lambda: (KC.im2col(x, k, s, p, d, (oh, ow)),
                                      KC.im2col(x.transpose(0, 1, 3, 2)[:, :, :, :shape[2]].transpose(0, 1, 3, 2),
                                                k, s, p, d, (oh, ow)))), "im2col")
    _same(_runs(monkeypatch, lambda: (KC.col2im(gcols, shape, k, s, p, d, (oh, ow)),)), "col2im")
    _same(_runs(monkeypatch, lambda: (KC.rows_to_nchw(y, shape[0], (oh, ow), bias),
                                      KC.rows_to_nchw(y, shape[0], (oh, ow), None))), "rows_to_nchw")
    yc = np.ascontiguousarray(y.T)
    _same(_runs(monkeypatch, lambda: (KC.channels_to_nchw(yc, shape[0], (oh, ow), bias),
                                      KC.channels_to_nchw(yc, shape[0], (oh, ow), None))), "channels_to_nchw")
    _same(_runs(monkeypatch, lambda: (KC.nchw_to_channels(g), KC.nchw_to_channels(g[:, ::-1]))), "nchw_to_channels")


@needs_numba
def test_col2im_is_the_adjoint_of_im2col():
    shape, k, s, p, d = GEOMS[3]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    oh, ow = _out_hw(shape, k, s, p, d)
    c = rng.standard_normal((shape[0] * oh * ow, k[0] * k[1] * shape[1]))
    lhs = np.sum(KC.im2col(x, k, s, p, d, (oh, ow)) * c)
    rhs = np.sum(x * KC.col2im(c, shape, k, s, p, d, (oh, ow)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


POOLS = [((2, 3, 10, 10), (2, 2), (2, 2), (0, 0), (1, 1), (5, 5)),
         ((2, 3, 9, 9), (2, 2), (2, 2), (0, 0), (1, 1), (5, 5)),  # ceil_mode: last window cut
         ((2, 3, 11, 10), (3, 2), (2, 1), (1, 1), (1, 2), (6, 9)),
         ((2, 4, 8, 8), (3, 3), (1, 1), (1, 1), (2, 2), (6, 6))]


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}-s{c[2]}")
def test_max_pool_gives_the_twins_bits(monkeypatch, cfg, dtype):
    shape, k, s, p, d, out_hw = cfg
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    x[:, :, 1, :] = 0  # ties, as after a ReLU
    x[0, 0, 0, :3] = np.nan
    x[1, 1, 2, 2] = np.inf
    _same(_runs(monkeypatch, lambda: KC.max_pool2d(x, k, s, p, d, out_hw)), "max_pool2d")
    out, idx = KC.max_pool2d(x, k, s, p, d, out_hw)
    g = rng.standard_normal(out.shape).astype(dtype)
    disjoint = all(s[a] >= d[a] * (k[a] - 1) + 1 for a in range(2))
    if disjoint:  # the twin adds overlapping windows in another order (module docstring)
        _same(_runs(monkeypatch, lambda: (KC.max_pool2d_backward(g, idx, shape[2:], k, s, p, d),)),
              "max_pool2d_backward")
    else:
        a, b, c = _runs(monkeypatch, lambda: (KC.max_pool2d_backward(g, idx, shape[2:], k, s, p, d),))
        _same([a, b], "max_pool2d_backward on 1 and 2 threads")
        np.testing.assert_allclose(a[0], c[0], rtol=1e-6, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_kernels_give_numpys_bits(monkeypatch, dtype):
    rng = np.random.default_rng(2)
    x = _specials(rng.standard_normal((3, 70001)).astype(dtype))
    g = rng.standard_normal(x.shape).astype(dtype)
    g.reshape(-1)[6:12] = [np.nan, np.inf, -np.inf, 0.0, -0.0, -3.0]
    out = np.maximum(x, 0)
    _same(_runs(monkeypatch, lambda: (KC.relu(x), KC.relu(x[:, ::2]), KC.relu_backward(g, out))), "relu")
    with np.errstate(all="ignore"):
        assert np.array_equal(KC.relu(x), np.maximum(x, 0), equal_nan=True)
        assert np.array_equal(KC.relu_backward(g, out), g * (out > 0), equal_nan=True)


# (x shape, weight shape, stride, padding, dilation, groups)
CONVS = [((2, 3, 9, 9), (4, 3, 3, 3), 1, 0, 1, 1),
         ((2, 4, 10, 11), (6, 2, 3, 2), 2, 1, 1, 2),
         ((3, 4, 12, 12), (4, 1, 3, 3), 1, 2, 2, 4),
         ((4, 1, 28, 28), (8, 1, 3, 3), 1, 0, 1, 1),
         ((2, 6, 7, 8), (3, 6, 1, 1), 1, 0, 1, 1),
         ((1, 2, 9, 9), (2, 2, 4, 4), 3, (2, 1), (1, 2), 1),
         ((2, 3, 8, 8), (4, 3, 3, 3), 1, "same", 1, 1),
         ((2, 3, 8, 8), (4, 3, 2, 2), 1, "same", 2, 1)]


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "numpy"])
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: "x".join(map(str, c[0])) + f"-w{'x'.join(map(str, c[1]))}")
def test_conv2d_matches_torch(monkeypatch, cfg, kernels):
    if kernels and not accel.available():
        pytest.skip("Numba is not installed (the 'fast' extra)")
    monkeypatch.setattr(accel._state, "enabled", kernels)
    xs, ws, s, p, d, groups = cfg
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    rx, rw, rb = (rg.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ro = rg.nn.functional.conv2d(rx, rw, rb, s, p, d, groups)
    to = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, groups)
    g = rng.standard_normal(tuple(to.shape))
    ro.backward(rg.tensor(g))
    to.backward(torch.tensor(g))
    for mine, ref in ((ro, to), (rx.grad, tx.grad), (rw.grad, tw.grad), (rb.grad, tb.grad)):
        np.testing.assert_allclose(mine.detach().numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-10)


@needs_numba
def test_conv2d_float32_matches_torch_and_the_numpy_path(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 3, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)

    def run():
        rx, rw, rb = (rg.tensor(a, requires_grad=True) for a in (x, w, b))
        out = rg.nn.functional.max_pool2d(rg.relu(rg.nn.functional.conv2d(rx, rw, rb, 1, 1)), 2)
        out.sum().backward()
        return out.detach().numpy(), rx.grad.numpy(), rw.grad.numpy(), rb.grad.numpy()

    results = _runs(monkeypatch, run)
    _same(results, "conv2d + relu + max_pool2d")
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(tx, tw, tb, 1, 1)), 2)
    tout.sum().backward()
    for mine, ref in zip(results[0], (tout, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(mine, ref.detach().numpy(), rtol=2e-4, atol=2e-4)


def test_weight_gradient_from_kept_columns_equals_rebuilt_columns(monkeypatch):
    """The forward keeps its im2col columns for the weight gradient up to ``KEEP_COLS_BYTES``; above,
    the backward rebuilds them: the same bits either way, and nothing kept after the backward."""
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 3, 9, 9)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    grads = []
    for limit in (conv_mod.KEEP_COLS_BYTES, 0):
        monkeypatch.setattr(conv_mod, "KEEP_COLS_BYTES", limit)
        rw = rg.tensor(w, requires_grad=True)
        out = rg.nn.functional.conv2d(rg.tensor(x), rw)
        kept = out._node.kw.get("cols")
        assert (kept is not None) == (limit > 0)
        out.sum().backward()
        assert out._node.kw is None  # the engine dropped the kept columns with the graph
        grads.append(rw.grad.numpy())
    assert np.array_equal(grads[0], grads[1])


@pytest.mark.parametrize("xs,ws,groups", [((64, 1, 28, 28), (32, 1, 3, 3), 1),  # channel-major GEMM
                                          ((64, 32, 13, 13), (64, 32, 3, 3), 1),
                                          ((48, 32, 14, 14), (64, 16, 3, 3), 2)])
def test_conv_gemms_split_on_retrograds_threads_give_the_one_thread_bits(monkeypatch, xs, ws, groups):
    """The conv GEMMs on retrograd's threads (``_mm`` = ``kernels.matmul``, the default; RETROGRAD_CONV_SPLIT=0
    leaves them to OpenBLAS's threads): the forward and both gradients at 2 threads equal those of
    OpenBLAS on one thread, bit for bit."""
    from retrograd import kernels as KS
    from retrograd.nn.functional import conv as C

    g = np.random.default_rng(0)
    xa, wa = g.standard_normal(xs).astype(np.float32), g.standard_normal(ws).astype(np.float32)
    ba = g.standard_normal(ws[0]).astype(np.float32)

    def run():
        x, w, b = (rg.tensor(a, requires_grad=True) for a in (xa, wa, ba))
        y = rg.nn.functional.conv2d(x, w, b, groups=groups)
        (y * y).sum().backward()
        return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()]

    old = rg.get_num_threads()
    try:
        rg.set_num_threads(1)
        ref = run()
        rg.set_num_threads(2)
        calls = []
        monkeypatch.setattr(C, "_mm", lambda a, b: calls.append(KS._gemm_parts(a.shape[0], b.shape[1], a.shape[1]))
                            or KS.matmul(a, b))
        got = run()
    finally:
        rg.set_num_threads(old)
    assert max(calls) == 2  # split
    for r, o in zip(ref, got):
        assert np.array_equal(r, o)


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_matmul_gives_the_same_bits_on_any_threads_and_the_blocks_sum(monkeypatch, dtype):
    """A weight gradient with a long reduction and few outputs (a first layer's 32 x 43,264 x 9) is the
    sum of its blocks' products added in order: the same bits on two and three threads, on one, and
    on the NumPy path, and within rounding of the one product."""
    rng = np.random.default_rng(7)
    a = (rng.standard_normal((7, 1000)) * 10.0 ** rng.integers(-3, 3, (7, 1000))).astype(dtype)
    b = rng.standard_normal((9, 1000)).astype(dtype).T  # a transposed operand, as cols are read
    results = _runs(monkeypatch, lambda: (KC.long_matmul(a, b, 96),))
    with monkeypatch.context() as m:
        m.setattr(accel._state, "threads", 3)
        results.append((KC.long_matmul(a, b, 96),))
    _same(results, "long_matmul")
    expected = np.zeros((7, 9), dtype)
    for lo in range(0, 1000, 96):
        expected += a[:, lo:lo + 96] @ b[lo:lo + 96]
    assert np.array_equal(results[0][0], expected)
    np.testing.assert_allclose(results[0][0], a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-3 if dtype == np.float32 else 1e-10)


def test_a_first_layers_weight_gradient_sums_blocks_of_whole_images(monkeypatch):
    """conv2d's weight gradient takes ``long_matmul`` where the product has fewer than 16 rows or columns
    and a long reduction (blocks of whole images), one product otherwise; against PyTorch either way."""
    from retrograd.nn.functional import conv as C

    seen = []
    real = KC.long_matmul
    monkeypatch.setattr(KC, "long_matmul", lambda a, b, block: seen.append((a.shape, b.shape, block)) or real(a, b, block))
    g = np.random.default_rng(8)
    for xs, ws, long in (((64, 1, 28, 28), (32, 1, 3, 3), True), ((8, 32, 13, 13), (64, 32, 3, 3), False)):
        xa, wa = g.standard_normal(xs).astype(np.float32), g.standard_normal(ws).astype(np.float32)
        x, w = rg.tensor(xa, requires_grad=True), rg.tensor(wa, requires_grad=True)
        y = rg.nn.functional.conv2d(x, w)
        gy = g.standard_normal(tuple(y.shape)).astype(np.float32)
        y.backward(rg.tensor(gy))
        tw = torch.tensor(wa.astype(np.float64), requires_grad=True)  # the exact gradient, near enough
        torch.nn.functional.conv2d(torch.tensor(xa.astype(np.float64)), tw).backward(torch.tensor(gy.astype(np.float64)))
        np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=2e-3)  # sums of 43,264 terms
        assert bool(seen) == long
        if long:
            (m, k), (_, n), block = seen[-1]
            assert (m, k, n) == (32, 64 * 26 * 26, 9) and block % (26 * 26) == 0 and 2 * block <= k
            assert block * m * n <= C.KC.LONG_BLOCK_MACS
        seen.clear()


@needs_numba
@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g[0])) + f"-k{g[1]}-s{g[2]}-d{g[4]}")
def test_input_weight_grads_give_the_twins_bits(monkeypatch, geom):
    """Both gradients side by side (the weight gradient whole on one thread, the input gradient in blocks
    of images, each block's GEMM rows then its col2im): the bits of the twin's two single-threaded calls
    and col2im, on 1, 2 and 3 threads, in blocks of one image or of all, with and without the weight
    gradient, NaN and infinities included."""
    shape, k, s, p, d = geom
    rng = np.random.default_rng(9)
    oh, ow = _out_hw(shape, k, s, p, d)
    kk = k[0] * k[1] * shape[1]
    cols = _specials(rng.standard_normal((shape[0] * oh * ow, kk)).astype(np.float32))
    wmat = rng.standard_normal((7, kk)).astype(np.float32)
    g2 = _specials(rng.standard_normal((7, shape[0] * oh * ow)).astype(np.float32))
    for with_w in (True, False):
        def run():
            return KC.input_weight_grads(g2, wmat, cols if with_w else None, with_w, shape, k, s, p, d, (oh, ow))
        results = []
        for block in (1, KC.DX_BLOCK_MACS):
            with monkeypatch.context() as m:
                m.setattr(KC, "DX_BLOCK_MACS", block)
                results += _runs(monkeypatch, run)
                m.setattr(accel._state, "threads", 3)
                with np.errstate(all="ignore"):
                    results.append(run())
        assert all((r[1] is None) != with_w and (r[2] is None) != with_w for r in results)
        _same([r[:1 + 2 * with_w] for r in results], f"input_weight_grads, weight and bias gradients {with_w}")
        with accel.single_threaded_blas(), np.errstate(all="ignore"):
            ref = KC.col2im(g2.T @ wmat, shape, k, s, p, d, (oh, ow))
        assert np.array_equal(results[0][0], ref, equal_nan=True)
        if with_w:
            assert np.array_equal(results[0][2], np.sum(g2, axis=1), equal_nan=True)


def _side_and_split(run, calls, check):
    """``run(True)`` (conv2d's gradients side by side, the default) and ``run(False)`` (``_side_by_side``
    off: one after the other), on 2 threads and on 1: the same arrays (``None`` where no gradient);
    ``check(got)`` after each pair, ``calls`` cleared before. Returns the last ``run(True)``."""
    old = rg.get_num_threads()
    try:
        for threads in (2, 1):
            rg.set_num_threads(threads)
            calls.clear()
            got, ref = run(True), run(False)
            check(got)
            for a, b in zip(got, ref):
                assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
    finally:
        rg.set_num_threads(old)
    return got


CONVS32 = [((64, 32, 13, 13), (64, 32, 3, 3), 1, 0, 1, True),  # the CNN step's second convolution
           ((5, 3, 9, 9), (4, 3, 3, 3), 1, 0, 1, True),
           ((6, 4, 12, 11), (8, 4, 3, 2), (2, 1), (1, 2), 1, False),
           ((4, 5, 14, 13), (6, 5, 3, 3), 2, 2, (2, 3), True),
           ((3, 3, 8, 8), (4, 3, 2, 2), 1, "same", 2, True),
           ((64, 1, 28, 28), (32, 1, 3, 3), 1, 0, 1, True)]  # a first layer: long_matmul's weight gradient


@needs_numba
@pytest.mark.parametrize("need", ["all", "input", "weight"])
@pytest.mark.parametrize("cfg", CONVS32, ids=lambda c: "x".join(map(str, c[0])) + f"-w{'x'.join(map(str, c[1]))}")
def test_conv2d_float32_gradients_side_by_side_match_torch_and_the_gradients_one_after_the_other(monkeypatch, cfg,
                                                                                                  need):
    """float32 conv2d with one group takes ``input_weight_grads`` where the input needs a gradient: the
    bits of the gradients computed one after the other (``_conv_dx``, ``_conv_dw``), on 1 and 2 threads,
    and PyTorch's gradients to float32 rounding; a frozen weight or input is left without a gradient."""
    xs, ws, s, p, d, bias = cfg
    rng = np.random.default_rng(10)
    xa, wa, ba = (rng.standard_normal(sh).astype(np.float32) for sh in (xs, ws, ws[:1]))
    calls = []
    real = KC.input_weight_grads
    monkeypatch.setattr(KC, "input_weight_grads", lambda *a: calls.append((a[2] is not None, a[3])) or real(*a))

    def run(side):
        with monkeypatch.context() as m:
            if not side:
                m.setattr(conv_mod, "_side_by_side", lambda *a: False)
            x = rg.tensor(xa, requires_grad=need != "weight")
            w = rg.tensor(wa, requires_grad=need != "input")
            b = rg.tensor(ba, requires_grad=True) if bias else None
            y = rg.nn.functional.conv2d(x, w, b, s, p, d)
            gy = np.random.default_rng(11).standard_normal(tuple(y.shape)).astype(np.float32)
            y.backward(rg.tensor(gy))
            return [y.detach().numpy(), gy] + [None if t.grad is None else t.grad.numpy() for t in (x, w)] + \
                [b.grad.numpy() if bias else None]

    def check(got):
        long = conv_mod._long_block(ws[0], ws[1] * ws[2] * ws[3], got[0].size // ws[0], got[0][0, 0].size, True)
        assert calls == ([] if need == "weight" else [(need == "all" and not long, bias)])

    got = _side_and_split(run, calls, check)
    assert (got[2] is None) == (need == "weight") and (got[3] is None) == (need == "input")
    tx = torch.tensor(xa.astype(np.float64), requires_grad=True)
    tw = torch.tensor(wa.astype(np.float64), requires_grad=True)
    tb = torch.tensor(ba.astype(np.float64), requires_grad=True) if bias else None
    torch.nn.functional.conv2d(tx, tw, tb, s, p, d).backward(torch.tensor(got[1].astype(np.float64)))
    for mine, t in zip(got[2:], (tx, tw, tb)):
        if mine is not None:
            np.testing.assert_allclose(mine, t.grad.numpy(), rtol=1e-4, atol=1e-3)


@needs_numba
def test_channel_sums_give_numpys_bits_in_blocks_of_rows(monkeypatch):
    """A convolution's bias gradient summed over rows on threads: each row whole, NumPy's one call's bits."""
    rng = np.random.default_rng(12)
    for shape in ((32, 64 * 676), (7, 5000), (64, 64 * 121)):
        g2 = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3, shape)).astype(np.float32)
        results = _runs(monkeypatch, lambda: (KC.channel_sums(g2),))
        with monkeypatch.context() as m:
            m.setattr(accel._state, "threads", 3)
            m.setattr(KC, "MIN_PER_THREAD", 1)
            results.append((KC.channel_sums(g2),))
        _same(results, f"channel_sums {shape}")
        assert np.array_equal(results[0][0], np.sum(g2, axis=1))


@needs_numba
@pytest.mark.parametrize("cfg", [((4, 6, 7, 7), (6, 3, 3, 3), 2, 1, 1, 1),
                                 ((3, 4, 9, 8), (4, 5, 3, 2), (1, 2), (0, 1), (2, 1), 0),
                                 ((2, 8, 5, 5), (8, 4, 4, 4), 2, 1, 1, 1)])
def test_conv_transpose2d_and_double_backward_float32_by_image_blocks(monkeypatch, cfg):
    """conv_transpose2d's forward and conv2d's input gradient recorded with ``create_graph`` (both the input
    gradient rule) take ``input_weight_grads`` without a weight gradient: the bits of the GEMM cut into
    row blocks then col2im, on 2 threads and on 1, and PyTorch's values to float32 rounding."""
    xs, ws, s, p, d, opad = cfg
    rng = np.random.default_rng(13)
    xa, wa = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    calls = []
    real = KC.input_weight_grads
    monkeypatch.setattr(KC, "input_weight_grads", lambda *a: calls.append(a[2]) or real(*a))

    def run(side):
        with monkeypatch.context() as m:
            if not side:
                m.setattr(conv_mod, "_side_by_side", lambda *a: False)
            x, w = rg.tensor(xa, requires_grad=True), rg.tensor(wa, requires_grad=True)
            y = rg.nn.functional.conv_transpose2d(x, w, None, s, p, opad, 1, d)
            z = rg.nn.functional.conv2d(y, w)
            gy, = rg.autograd.grad((z * z).sum(), y, create_graph=True)
            (gy * gy).sum().backward()
            return [y.detach().numpy(), gy.detach().numpy(), x.grad.numpy(), w.grad.numpy()]

    # the transpose's forward and the recorded input gradient: no weight gradient
    got = _side_and_split(run, calls, lambda got: sum(c is None for c in calls) >= 2 or pytest.fail(str(calls)))
    tx = torch.tensor(xa.astype(np.float64), requires_grad=True)
    tw = torch.tensor(wa.astype(np.float64), requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, None, s, p, opad, 1, d)
    tz = torch.nn.functional.conv2d(ty, tw)
    tgy, = torch.autograd.grad((tz * tz).sum(), ty, create_graph=True)
    (tgy * tgy).sum().backward()
    for mine, t in zip(got, (ty, tgy, tx.grad, tw.grad)):
        ref = t.detach().numpy()
        np.testing.assert_allclose(mine, ref, rtol=2e-4, atol=2e-3 * float(np.abs(ref).max()))
