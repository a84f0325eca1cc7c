"""The max-pool kernels of ``retrograd.kernels.conv`` over a ReLU's output without writing it
(``max_pool2d(..., relu=True)``, ``max_pool2d_backward(..., relu_out=...)``) and the 2x2 stride-2
backward: the bits of the ReLU kernels and the plain pool run one after the other, on every path
(compiled on two threads in small pieces, on one thread, and the NumPy twins), with NaN, infinities,
signed zeros, ties and windows with no positive input; and the same bits on every path where the
twins' order of adds is the kernels' (disjoint windows)."""
from __future__ import annotations

import numpy as np
import pytest

from retrograd import accel
from retrograd.kernels import conv as KC

needs_numba = pytest.mark.skipif(not accel.available(), reason="Numba is not installed (the 'fast' extra)")
DTYPES = [np.float32, np.float64]

# (x shape, kernel, stride, padding, dilation, out_hw)
POOLS = [((2, 3, 10, 10), (2, 2), (2, 2), (0, 0), (1, 1), (5, 5)),  # max_pool_2x2
         ((2, 3, 11, 9), (2, 2), (2, 2), (0, 0), (1, 1), (5, 4)),  # 2x2, a last row and column in no window
         ((2, 3, 9, 9), (2, 2), (2, 2), (0, 0), (1, 1), (5, 5)),  # ceil_mode: last window cut (general kernel)
         ((2, 3, 11, 10), (3, 2), (2, 1), (1, 1), (1, 2), (6, 9)),  # overlapping, padding, dilation
         ((2, 4, 8, 8), (3, 3), (1, 1), (1, 1), (2, 2), (6, 6)),
         ((2, 2, 9, 9), (3, 3), (2, 2), (1, 1), (1, 1), (5, 5)),  # ResNet's stem pool
         ((2, 2, 8, 9), (2, 3), (3, 3), (0, 1), (1, 1), (3, 3))]  # disjoint with gaps and padding
IDS = ["x".join(map(str, c[0])) + f"-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}" for c in POOLS]


def _paths(monkeypatch, fn):
    """``fn()`` on the kernels on two threads in small pieces, on one thread, and on the twins."""
    out = []
    with np.errstate(all="ignore"):
        for threads, enabled in ((2, True), (1, True), (1, False)):
            with monkeypatch.context() as m:
                m.setattr(accel._state, "threads", threads)
                m.setattr(accel._state, "enabled", enabled)
                m.setattr(KC, "MIN_PER_THREAD", 1)
                out.append(fn())
    return out


def _same(a, b, what):
    for u, v in zip(a, b):
        assert u.shape == v.shape and u.dtype == v.dtype, what
        assert np.array_equal(u, v, equal_nan=True), f"{what}: values differ"
        assert np.array_equal(np.signbit(u), np.signbit(v)), f"{what}: signs of zeros (or NaNs) differ"


def _input(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x[:, :, 1, :] = 0.0  # ties of zeros
    x[:, :, 2, ::2] = -0.0
    x[0, 0, 3, :4] = 1.5  # ties of positive values
    x[0, 1] = -np.abs(x[0, 1])  # a plane of windows with no positive input
    x[0, 1, 0, 0] = -np.inf
    x[0, 0, 0, :3] = np.nan
    x[1, 0, 0, 1] = -np.nan  # a NaN with its sign bit set
    x[1, 1, 2, 2] = np.inf
    x[1, 1, 4, :] = -np.inf
    return x


def _grad(shape, dtype, seed):
    g = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    g.reshape(-1)[:8] = [-0.0, 0.0, np.inf, -np.inf, np.nan, -2.0, -0.0, 1e30]
    g[-1, -1] = -0.0  # negative zeros and negative values at windows with no positive input
    g[0, 1] = -np.abs(g[0, 1])
    return g


def _unfused(x, g, cfg):
    """ReLU, pool, pool backward, ReLU backward: the four calls the fused pair replaces."""
    shape, k, s, p, d, out_hw = cfg
    r = KC.relu(x)
    out, idx = KC.max_pool2d(r, k, s, p, d, out_hw)
    return out, idx, KC.relu_backward(KC.max_pool2d_backward(g, idx, shape[2:], k, s, p, d), r)


def _fused(x, g, cfg):
    shape, k, s, p, d, out_hw = cfg
    out, idx = KC.max_pool2d(x, k, s, p, d, out_hw, relu=True)
    return out, idx, KC.max_pool2d_backward(g, idx, shape[2:], k, s, p, d, relu_out=out)


def _disjoint(cfg):
    _, k, s, _, d, _ = cfg
    return all(s[a] >= d[a] * (k[a] - 1) + 1 for a in range(2))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS, ids=IDS)
def test_pool_of_relu_gives_the_relu_then_pool_bits_on_every_path(monkeypatch, cfg, dtype):
    x = _input(cfg[0], dtype, 1)
    g = _grad((cfg[0][0], cfg[0][1]) + cfg[5], dtype, 2)
    big = np.random.default_rng(3).standard_normal((2, 3, 120, 90)).astype(dtype)  # the ReLU kernels' sizes
    fused, unfused = _paths(monkeypatch, lambda: _fused(x, g, cfg)), _paths(monkeypatch, lambda: _unfused(x, g, cfg))
    for path, (a, b) in enumerate(zip(fused, unfused)):
        _same(a, b, f"path {path}: fused and unfused")
    for a in fused[1:]:
        _same(fused[0][:2], a[:2], "forward on each path")
        if _disjoint(cfg):  # the twin adds overlapping windows in another order (kernels/conv.py)
            _same(fused[0][2:], a[2:], "backward on each path")
    assert not fused[0][0][0, 1].any() and not np.signbit(fused[0][0][0, 1]).any()  # +0 where nothing is positive
    if cfg[1] == (2, 2) and cfg[2] == (2, 2):
        gb = _grad((2, 3, 60, 45), dtype, 4)
        bcfg = ((2, 3, 120, 90), (2, 2), (2, 2), (0, 0), (1, 1), (60, 45))
        for a, b in zip(_paths(monkeypatch, lambda: _fused(big, gb, bcfg)),
                        _paths(monkeypatch, lambda: _unfused(big, gb, bcfg))):
            _same(a, b, "fused and unfused, ReLU kernel sizes")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_by_two_backward_writes_zeros_plus_g(monkeypatch, dtype):
    """The 2x2 stride-2 backward stores each window's ``0 + g`` (``-0.0`` gives ``+0.0``, as PyTorch's
    adds onto zeros) and zeros around it, the rows and columns no window reads included."""
    x = _input((3, 4, 13, 12), dtype, 5)
    out, idx = KC.max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), (6, 6))
    g = _grad(out.shape, dtype, 6)
    res = _paths(monkeypatch, lambda: (KC.max_pool2d_backward(g, idx, (13, 12), (2, 2), (2, 2), (0, 0), (1, 1)),))
    for a in res[1:]:
        _same(res[0], a, "2x2 backward on each path")
    gx = res[0][0]
    expect = np.zeros_like(gx)
    ii, jj = np.divmod(idx, 2)
    n, c, a, b = np.indices(idx.shape)
    expect[n, c, 2 * a + ii, 2 * b + jj] = g + 0
    _same((gx,), (expect,), "2x2 backward against its definition")
    assert not np.signbit(gx[gx == 0]).any()  # every zero written is +0.0


@needs_numba
def test_gate_uses_each_windows_own_output():
    """Overlapping windows: an input that is the maximum of several gets the sum of their gradients,
    then the ReLU's gate once (a window's ``out`` is that input's rectified value)."""
    x = np.array([[[[-1.0, -2.0, -3.0], [-4.0, -0.5, -6.0], [-7.0, -8.0, -9.0]],
                   [[1.0, 2.0, 3.0], [4.0, 9.0, 6.0], [7.0, 8.0, 5.0]]]])
    out, idx = KC.max_pool2d(x, (2, 2), (1, 1), (0, 0), (1, 1), (2, 2), relu=True)
    assert np.array_equal(out[0, 0], np.zeros((2, 2))) and np.array_equal(out[0, 1], np.full((2, 2), 9.0))
    assert np.array_equal(idx[0, 0], np.zeros((2, 2))) and np.array_equal(idx[0, 1], [[3, 2], [1, 0]])
    g = np.array([[[[-1.0, 2.0], [3.0, -4.0]], [[1.0, 2.0], [3.0, 4.0]]]])
    gx = KC.max_pool2d_backward(g, idx, (3, 3), (2, 2), (1, 1), (0, 0), (1, 1), relu_out=out)
    expect0 = np.zeros((3, 3))
    expect0[0, 0], expect0[0, 1], expect0[1, 0], expect0[1, 1] = -0.0, 0.0, 0.0, -0.0
    assert np.array_equal(gx[0, 0], expect0) and np.array_equal(np.signbit(gx[0, 0]), np.signbit(expect0))
    assert gx[0, 1, 1, 1] == 10.0 and np.count_nonzero(gx[0, 1]) == 1
