"""Compiled kernels (``retrograd.accel``, Numba): the kernels give PyTorch's numbers
bit for bit where the NumPy path does, the switches work, and bad thread counts
are refused. (The fused optimizer kernel is tested in tests/optim/test_fused.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import accel

needs_numba = pytest.mark.skipif(not accel.available(), reason="Numba is not installed (the 'fast' extra)")

# (shape, kernel, stride, padding, dilation, ceil_mode): the 2x2 fast kernel (even and odd
# sizes, ceil_mode windows that leave the input) and overlapping / padded / dilated windows
POOLS = [((4, 8, 10, 10), 2, 2, 0, 1, False), ((4, 8, 9, 9), 2, 2, 0, 1, False), ((4, 8, 9, 9), 2, 2, 0, 1, True),
         ((3, 5, 10, 11), 3, 2, 1, 1, True), ((2, 4, 12, 12), 3, 1, 1, 2, False), ((2, 3, 7, 7), 2, 2, 1, 1, True),
         ((2, 3, 8, 8), 2, 1, 0, 1, False)]


def _pool_both(x: np.ndarray, cfg: tuple, g: np.ndarray | None = None):
    _, k, s, p, d, ceil = cfg
    rx = rg.from_numpy(x.copy(order="K")).requires_grad_()
    tx = torch.tensor(x, requires_grad=True)
    ro = rg.nn.functional.max_pool2d(rx, k, s, p, d, ceil_mode=ceil)
    to = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil_mode=ceil)
    if g is None:
        g = np.random.default_rng(1).standard_normal(to.shape).astype(x.dtype)
    ro.backward(rg.tensor(g))
    to.backward(torch.tensor(g))
    return (ro.data, rx.grad.data), (to.detach().numpy(), tx.grad.numpy())


@needs_numba
@pytest.mark.parametrize("special", [False, True], ids=["plain", "nan-inf-ties"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cfg", POOLS, ids=lambda c: "-".join(map(str, c)))
def test_max_pool2d_kernels_match_torch_bit_for_bit(cfg, dtype, special):
    x = np.random.default_rng(0).standard_normal(cfg[0]).astype(dtype)
    if special:
        x[0, 0, 0, :3] = np.nan
        x[1, 1, 2, 2] = np.inf
        x[:, :, 3, :] = 0  # a row of ties, as after a ReLU
    for arr in (x, np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):  # NCHW, NHWC memory
        (ro, rg_), (to, tg) = _pool_both(arr, cfg)
        assert np.array_equal(ro, to, equal_nan=True)
        assert np.array_equal(rg_, tg)


@needs_numba
def test_max_pool2d_backward_adds_overlapping_windows_in_torch_order():
    # one maximum shared by nine 3x3 windows; float32 sums of these gradients depend on order
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, :, 2, 2] = 5
    g = np.tile(np.array([[1e8, 1, -1e8], [3, 1e-3, 7], [0.5, -3, 2]], np.float32), (1, 2, 1, 1))
    (_, rg_), (_, tg) = _pool_both(x, ((1, 2, 5, 5), 3, 1, 0, 1, False), g)
    assert rg_[0, 0, 2, 2] == tg[0, 0, 2, 2] == np.float32(9.500999)


def test_numpy_path_matches_kernels(monkeypatch):
    """With the kernels off (as ``RETROGRAD_NO_JIT=1`` or without Numba) pooling gives the same
    outputs and (for non-overlapping windows) the same gradients."""
    x = np.random.default_rng(2).standard_normal((3, 4, 9, 9)).astype(np.float32)
    x[:, :, 4, :] = 0
    cfgs = [((3, 4, 9, 9), 2, 2, 0, 1, False), ((3, 4, 9, 9), 2, 2, 0, 1, True)]
    with_kernels = [_pool_both(x, cfg)[0] for cfg in cfgs]
    monkeypatch.setattr(accel._state, "enabled", False)
    assert not accel.available()
    without = [_pool_both(x, cfg)[0] for cfg in cfgs]
    for pair_a, pair_b in zip(with_kernels, without):
        for a, b in zip(pair_a, pair_b):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="set_num_threads: expected an integer >= 1"):
        rg.set_num_threads(bad)


def test_set_num_threads_round_trip():
    before = rg.get_num_threads()
    try:
        rg.set_num_threads(3)
        assert rg.get_num_threads() == 3
    finally:
        rg.set_num_threads(before)


@needs_numba
def test_muon_summation_kernel_equals_numpy_twins_and_rows_chunking(monkeypatch):
    """The compiled Newton–Schulz matmuls add in the NumPy twins' order (bit for bit, over
    sizes that exercise every block size), and the NumPy path split into row blocks is the whole."""
    from retrograd.optim import muon as M

    rng = np.random.default_rng(3)
    for _ in range(60):
        m, k, n = (int(v) for v in rng.integers(1, 150, 3))
        a = M.round_bfloat16(rng.standard_normal((m, k)).astype(np.float32) * 10.0 ** rng.integers(-3, 3, (m, k)))
        b = M.round_bfloat16(rng.standard_normal((k, n)).astype(np.float32) * 10.0 ** rng.integers(-3, 3, (k, n)))
        for order, twin in M._NP_SUMS.items():
            assert np.array_equal(M._sum_products(a, b, order), twin(a, b))
            assert np.array_equal(M._sum_products(a, b.T.copy().T, order), twin(a, b))  # a transposed view
    monkeypatch.setattr(accel._state, "enabled", False)
    monkeypatch.setattr(M, "_NP_ROWS_BUDGET", 64 * 7 * 5)  # 5 rows per block
    a = M.round_bfloat16(rng.standard_normal((23, 70)).astype(np.float32))
    b = M.round_bfloat16(rng.standard_normal((70, 7)).astype(np.float32))
    for order, twin in M._NP_SUMS.items():
        assert np.array_equal(M._sum_products(a, b, order), twin(a, b))


def test_a_numba_that_cannot_be_imported_falls_back_with_a_warning(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "numba":
            raise ImportError("Numba needs NumPy 2.0 or less")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    monkeypatch.setattr(accel._state, "numba", None)
    monkeypatch.setattr(accel.importlib.util, "find_spec", lambda name: object())
    with pytest.warns(RuntimeWarning, match="Numba is installed but cannot be imported.*NumPy 2.0 or less"):
        assert not accel.available()
    assert not accel.available()  # decided once
    p = [rg.tensor(np.ones(4, np.float32), requires_grad=True)]
    opt = rg.optim.Adam(p, lr=0.1)
    p[0].grad = rg.tensor(np.ones(4, np.float32))
    opt.step()  # the NumPy update
    np.testing.assert_allclose(p[0].data, 0.9, rtol=1e-6)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_kernels_equal_numpy_path(dtype, monkeypatch):
    """GELU's compiled forward (float32) and backward give the NumPy path's bits, NaN/inf included."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((33, 257)) * 3).astype(dtype)
    x[0, :6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0]
    g = rng.standard_normal(x.shape).astype(dtype)

    def run():
        rx = rg.tensor(x, requires_grad=True)
        y = rg.nn.functional.gelu(rx)
        y.backward(rg.tensor(g))
        return y.detach().numpy().copy(), rx.grad.detach().numpy().copy()

    with np.errstate(invalid="ignore"):
        fast = run()
        monkeypatch.setattr(accel._state, "enabled", False)
        slow = run()
    for a, b in zip(fast, slow):
        assert np.array_equal(a, b, equal_nan=True)


@needs_numba
@pytest.mark.parametrize("kwargs", [{}, {"padding_idx": 2}, {"scale_grad_by_freq": True}])
def test_embedding_backward_kernel_equals_add_at(kwargs, monkeypatch):
    """Repeated indices accumulate in the same order as np.add.at (values spanning 12 decades,
    so a different order would show), and the result is PyTorch's."""
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 9, (6, 50))
    g = (rng.standard_normal((6, 50, 7)) * 10.0 ** rng.integers(-6, 6, (6, 50, 1))).astype(np.float32)

    def run():
        w = rg.tensor(np.zeros((9, 7), np.float32), requires_grad=True)
        rg.nn.functional.embedding(rg.tensor(idx), w, **kwargs).backward(rg.tensor(g))
        return w.grad.detach().numpy().copy()

    fast = run()
    monkeypatch.setattr(accel._state, "enabled", False)
    assert np.array_equal(fast, run())
    tw = torch.zeros((9, 7), requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(idx), tw, **kwargs).backward(torch.tensor(g))
    np.testing.assert_allclose(fast, tw.grad.numpy(), rtol=1e-5, atol=1e-5 * np.abs(g).max())


@pytest.mark.parametrize("dtype", ["float16", "int64"])
def test_dtypes_the_kernels_cannot_take_keep_the_numpy_path(dtype):
    """Numba has no float16 arithmetic: pooling, GELU and embedding in float16 run the NumPy path."""
    rng = np.random.default_rng(6)
    if dtype == "float16":
        x = rg.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float16), requires_grad=True)
        y = rg.nn.functional.max_pool2d(x, 2)
        y.sum().backward()
        ref = rg.nn.functional.max_pool2d(rg.tensor(x.detach().numpy().astype(np.float32)), 2)
        assert y.dtype == rg.float16 and np.array_equal(y.detach().numpy().astype(np.float32), ref.data)
        assert x.grad.dtype == rg.float16 and float(x.grad.data.sum()) == 2 * 3 * 16
        w = rg.tensor(np.ones((3, 4), np.float16), requires_grad=True)
        rg.nn.functional.embedding(rg.tensor(np.array([0, 1, 1])), w).sum().backward()
        assert w.grad.data[:, 0].tolist() == [1.0, 2.0, 0.0]
        h = rg.tensor(np.array([-1.0, 0.0, 2.0], np.float16), requires_grad=True)
        rg.nn.functional.gelu(h).sum().backward()
        np.testing.assert_allclose(h.grad.detach().numpy().astype(np.float64), [-0.0833, 0.5, 1.0852], atol=2e-3)
    else:
        assert not accel.handles(np.zeros(3, np.int64))
        assert not accel.handles(rg.zeros(3))  # a Tensor, not an array


@pytest.mark.parametrize("value,expected", [("3", 3), (" 2 ", 2), ("0", None), ("many", None), ("", None)])
def test_num_threads_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("RETROGRAD_NUM_THREADS", value)
    if expected is None and value.strip():
        with pytest.warns(RuntimeWarning, match="RETROGRAD_NUM_THREADS=.* is not an integer >= 1"):
            n = accel._env_threads()
    else:
        n = accel._env_threads()
    assert n == (expected if expected is not None else accel._cpu_count())


_PROBE_SCRIPT = """
import sys, numpy as np
import retrograd as rg
opt = rg.optim.Adam([rg.nn.Parameter(rg.randn(1000))], fused=True)
opt.param_groups[0]["params"][0].grad = rg.ones(1000)
opt.step()
assert rg.accel.available() and "numba.np.arraymath" in sys.modules
print("scipy.linalg after the first kernel:", "scipy.linalg" in sys.modules)
import numba
@numba.njit
def conv(a, b):
    return np.convolve(a, b), np.correlate(a, b)
a, b = np.arange(7.0), np.array([1.0, -2.0, 0.5])
got = conv(a, b)
assert np.array_equal(got[0], np.convolve(a, b)) and np.array_equal(got[1], np.correlate(a, b))
try:
    import scipy.linalg.cython_blas  # noqa: F401
    have = True
except ImportError:
    have = False
print("flag after a user's np.convolve:", numba.np.arraymath._HAVE_BLAS is have)
"""


@needs_numba
def test_numba_blas_probe_waits_for_a_users_kernel():
    """retrograd's first kernel no longer loads scipy.linalg through Numba's import-time BLAS probe
    (11 MiB resident); a user's Numba kernel with np.convolve still types as with the probe: the
    flag is probed when first read and gets Numba's own answer."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(os.path.dirname(__file__), "..", "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "scipy.linalg after the first kernel: False" in r.stdout
    assert "flag after a user's np.convolve: True" in r.stdout


def test_the_pool_keeps_its_size_and_a_piece_that_splits_again_runs_whole():
    """The kernels' pool has a fixed number of threads (threads - 1): submitting piece after piece
    never starts more (a ThreadPoolExecutor with a large cap did, a few times a minute, and each new
    thread got its own malloc arena and OpenBLAS buffer); a piece that splits again runs whole on
    its thread instead of waiting for the pool it runs on."""
    import threading
    import time

    old = rg.get_num_threads()
    rg.set_num_threads(3)
    try:
        seen = []

        def outer(lo, hi):
            on_worker = threading.current_thread().name.startswith("retrograd-kernel")
            accel.run_ranges(lambda a, b: seen.append((on_worker, a, b)), (), 30, 1)
            if not on_worker:
                time.sleep(0.2)  # the caller takes its time: the workers take the other pieces

        for _ in range(300):
            accel.run_ranges(lambda lo, hi: None, (), 3, 1)
        names = [t.name for t in threading.enumerate() if t.name.startswith("retrograd-kernel")]
        assert 1 <= len(names) <= 2 and accel._state.pool_size == 2
        accel.run_ranges(outer, (), 3, 1)
        on_workers = [s for s in seen if s[0]]
        assert len(on_workers) >= 1 and all(s[1:] == (0, 30) for s in on_workers)  # whole, inline
        inner = sorted(s[1:] for s in seen if not s[0])  # the caller's piece splits: ranges that tile 0..30
        assert len(inner) > 1 and inner[0][0] == 0 and inner[-1][1] == 30
        assert all(a[1] == b[0] for a, b in zip(inner, inner[1:]))
        rg.set_num_threads(5)  # more threads: a larger pool replaces the old one
        accel.run_ranges(lambda lo, hi: None, (), 5, 1)
        assert accel._state.pool_size == 4
    finally:
        rg.set_num_threads(old)
