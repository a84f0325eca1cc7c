"""GEMMs and stacks of GEMMs on retrograd's threads (``kernels.matmul``, ``kernels.bmm``): the bits of NumPy's one call with OpenBLAS on one thread (row and column
blocks, transposed and strided operands, a bias, the shapes of a transformer step, random shapes),
OpenBLAS held to one thread only while they run, ``rg.set_num_threads`` setting OpenBLAS's threads
too, the ops built on them (linear, attention) matching PyTorch, and malloc keeping freed blocks."""
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


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


def _runs(monkeypatch, fn):
    """``fn()`` on two and three threads (blocks as small as the shapes allow), on one thread, and
    with the kernels off (NumPy's single call), OpenBLAS on one thread for the single calls."""
    out = []
    monkeypatch.setattr(K, "MIN_GEMM_PER_THREAD", 1)
    monkeypatch.setattr(K, "_MIN_ELEMENTS", 64)
    for threads in (2, 3, 1):
        monkeypatch.setattr(accel._state, "threads", threads)
        with accel.single_threaded_blas() if threads == 1 else _nothing():
            out.append(fn())
    monkeypatch.setattr(accel._state, "enabled", False)
    with accel.single_threaded_blas():
        out.append(fn())
    monkeypatch.setattr(accel._state, "enabled", True)
    return out


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def _same(results, what):
    for r in results[1:]:
        assert r.shape == results[0].shape and r.dtype == results[0].dtype, what
        assert np.array_equal(r, results[0], equal_nan=True), f"{what}: split and single call differ"


@needs_numba
def test_matmul_in_blocks_equals_one_single_threaded_call(monkeypatch):
    dtype = np.float32
    rng = np.random.default_rng(0)
    # (m, k, n): a GPT step's GEMMs (forward, input and weight gradients), odd sizes, n > m (column blocks)
    shapes = [(2048, 128, 384), (2048, 512, 128), (2048, 128, 65), (384, 2048, 128), (65, 2048, 128),
              (37, 19, 300), (300, 7, 41), (1, 5, 3), (17, 1, 64)]
    for m, k, n in shapes:
        a = (rng.standard_normal((m, k)) * 10.0 ** rng.integers(-3, 3, (m, k))).astype(dtype)
        w = rng.standard_normal((n, k)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        at = np.ascontiguousarray(a.T).T  # Fortran-ordered: a transposed operand, as g.T in a weight gradient
        _same(_runs(monkeypatch, lambda: K.matmul(a, w.T)), f"{m}x{k}x{n} {dtype.__name__}")
        _same(_runs(monkeypatch, lambda: K.matmul(at, w.T, bias)), f"{m}x{k}x{n} +bias {dtype.__name__}")
        with accel.single_threaded_blas():
            ref = a @ w.T
        ref += bias
        assert np.array_equal(K.matmul(a, w.T, bias), ref)
    a = rng.standard_normal((50, 40)).astype(dtype)[::2, 3:35]  # strided rows and an offset
    b = rng.standard_normal((64, 30)).astype(dtype)[::2]
    _same(_runs(monkeypatch, lambda: K.matmul(a, b)), "strided operands")


@needs_numba
def test_matmul_of_random_shapes_equals_one_single_threaded_call(monkeypatch):
    """Random float32 shapes at the real block size: the blocks give one single-threaded call's bits."""
    monkeypatch.setattr(accel._state, "threads", 2)
    rng = np.random.default_rng(4)
    tested = 0
    while tested < 12:
        m, k, n = (int(v) for v in np.exp(rng.uniform(np.log(16), np.log(2500), 3)))
        if not 2 * K.MIN_GEMM_PER_THREAD <= m * n * k <= 5e7:
            continue
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k)).astype(np.float32).T
        with accel.single_threaded_blas():
            ref = a @ b
        assert np.array_equal(K.matmul(a, b), ref), (m, k, n)
        tested += 1


@pytest.mark.parametrize("threads", [2, 1])
def test_matmul_pair_equals_two_single_threaded_calls(threads, monkeypatch):
    """Two products side by side (a linear layer's input and weight gradients): each one
    single-threaded call's bits, paired (MLP shapes, random shapes, transposed views) or not."""
    monkeypatch.setattr(accel._state, "threads", threads)
    rng = np.random.default_rng(5)
    runs = []
    monkeypatch.setattr(accel, "run_ranges", lambda *a, _run=accel.run_ranges: (runs.append(a[2]), _run(*a))[1])
    shapes = [((128, 256), (256, 512), (256, 128), (128, 512)), ((128, 64), (64, 100), (64, 128), (128, 100))]
    while len(shapes) < 8:
        m, k, n = (int(v) for v in np.exp(rng.uniform(np.log(16), np.log(1500), 3)))
        if 2 * K.MIN_GEMM_PER_THREAD <= m * n * k <= 3e7:
            shapes.append(((m, n), (n, k), (n, m), (m, k)))  # g (m, n), w (n, k): g @ w and g.T @ x
    for sa1, sb1, sa2, sb2 in shapes:
        g = rng.standard_normal(sa1).astype(np.float32)
        w = rng.standard_normal(sb1).astype(np.float32)
        x = rng.standard_normal(sb2).astype(np.float32)
        runs.clear()
        got = K.matmul_pair(g, w, g.T, x)
        with accel.single_threaded_blas():
            ref = (g @ w, g.T @ x)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref)), (sa1, sb1, sb2)
        big = g.shape[0] * w.shape[1] * g.shape[1] >= 2 * K.MIN_GEMM_PER_THREAD
        assert (2 in runs) == (threads == 2 and big)


@needs_numba
def test_float64_gemms_stay_one_call(monkeypatch):
    monkeypatch.setattr(K, "MIN_GEMM_PER_THREAD", 1)
    monkeypatch.setattr(accel._state, "threads", 2)
    calls = []
    real = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    a = np.ones((256, 64))
    assert np.array_equal(K.matmul(a, a.T), a @ a.T) and calls == []
    assert np.array_equal(K.bmm(a.reshape(4, 64, 64), a.reshape(4, 64, 64)), a.reshape(4, 64, 64) @ a.reshape(4, 64, 64))
    assert calls == []


@needs_numba
def test_matmul_of_other_dtypes_is_one_call(monkeypatch):
    monkeypatch.setattr(K, "MIN_GEMM_PER_THREAD", 1)
    monkeypatch.setattr(accel._state, "threads", 2)
    a16 = np.ones((64, 8), np.float16)
    assert K.matmul(a16, np.ones((8, 4), np.float16)).dtype == np.float16
    mixed = K.matmul(np.ones((64, 8), np.float32), np.ones((8, 4), np.float64), np.ones(4, np.float64))
    assert mixed.dtype == np.float64 and np.all(mixed == 9)
    assert K.matmul(np.ones((0, 8), np.float32), np.ones((8, 4), np.float32)).shape == (0, 4)


@needs_numba
def test_bmm_in_blocks_equals_one_call(monkeypatch):
    dtype = np.float32
    rng = np.random.default_rng(1)
    qkv = rng.standard_normal((4, 16, 3 * 24)).astype(dtype)
    q = qkv[..., :24].reshape(4, 16, 3, 8).transpose(0, 2, 1, 3)  # heads out of a fused projection: strided
    k = qkv[..., 24:48].reshape(4, 16, 3, 8).transpose(0, 2, 1, 3)
    _same(_runs(monkeypatch, lambda: K.bmm(q, np.swapaxes(k, -1, -2))), f"q k^T {dtype.__name__}")
    p = rng.standard_normal((4, 3, 16, 16)).astype(dtype)
    _same(_runs(monkeypatch, lambda: K.bmm(np.swapaxes(p, -1, -2), q)), f"p^T q {dtype.__name__}")
    _same(_runs(monkeypatch, lambda: K.bmm(p[:1], q[:1])), "a stack of 3")
    # leading dims that broadcast are not split: one call
    assert np.array_equal(K.bmm(p, q[:1]), p @ q[:1])


@needs_numba
def test_blas_split_off_leaves_gemms_to_openblas(monkeypatch):
    env = dict(os.environ, RETROGRAD_BLAS_SPLIT="0", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", "from retrograd import kernels; print(kernels._SPLIT_GEMMS)"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    monkeypatch.setattr(K, "_SPLIT_GEMMS", False)
    monkeypatch.setattr(K, "MIN_GEMM_PER_THREAD", 1)
    monkeypatch.setattr(accel._state, "threads", 2)
    calls = []
    real = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    a = np.ones((256, 64), np.float32)
    assert np.array_equal(K.matmul(a, a.T), a @ a.T)
    assert np.array_equal(K.bmm(a.reshape(4, 64, 64), a.reshape(4, 64, 64)), a.reshape(4, 64, 64) @ a.reshape(4, 64, 64))
    assert calls == []


@needs_numba
def test_openblas_is_one_thread_only_while_blocks_run(monkeypatch):
    if accel.blas_threads() is None:
        pytest.skip("NumPy's BLAS here is not OpenBLAS: nothing to hold")
    monkeypatch.setattr(K, "MIN_GEMM_PER_THREAD", 1)
    monkeypatch.setattr(accel._state, "threads", 2)
    before = accel.blas_threads()
    seen = []
    real = np.matmul

    def spy(*args, **kw):
        seen.append(accel.blas_threads())
        return real(*args, **kw)
    monkeypatch.setattr(np, "matmul", spy)
    K.matmul(np.ones((256, 64), np.float32), np.ones((64, 32), np.float32))
    monkeypatch.setattr(np, "matmul", real)
    assert len(seen) >= 2 and set(seen) == {1} and accel.blas_threads() == before
    with accel.single_threaded_blas():
        with accel.single_threaded_blas():
            assert accel.blas_threads() == 1
        assert accel.blas_threads() == 1
    assert accel.blas_threads() == before


def test_set_num_threads_sets_openblas_too():
    if accel.blas_threads() is None:
        pytest.skip("NumPy's BLAS here is not OpenBLAS")
    before, blas_before = rg.get_num_threads(), accel.blas_threads()
    try:
        rg.set_num_threads(1)
        assert rg.get_num_threads() == 1 and accel.blas_threads() == 1
        rg.set_num_threads(2)
        assert rg.get_num_threads() == 2 and accel.blas_threads() == 2
        with accel.single_threaded_blas():  # set inside a split GEMM: takes effect when it is done
            rg.set_num_threads(3)
            assert accel.blas_threads() == 1
        assert accel.blas_threads() == 3
    finally:
        rg.set_num_threads(before)
        accel._blas_funcs()[1](blas_before)
    with pytest.raises(ValueError, match="expected an integer >= 1, got 0"):
        rg.set_num_threads(0)


@pytest.mark.parametrize("threads", [1, 2])
def test_linear_and_attention_on_threads_match_torch(threads, monkeypatch):
    """A linear layer and causal attention at sizes that split (forward and all gradients) against PyTorch."""
    monkeypatch.setattr(accel._state, "threads", threads)
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((4, 64, 32)).astype(np.float32), rng.standard_normal((96, 32)).astype(np.float32),
              rng.standard_normal(96).astype(np.float32)]

    def run(lib, x, w, b):
        F = lib.nn.functional
        qkv = F.linear(x, w, b)
        q, k, v = (t.reshape(4, 64, 2, 16).transpose(1, 2) for t in qkv.split(32, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return (y * y).mean() + qkv.square().mean()
    monkeypatch.setattr(K, "MIN_GEMM_PER_THREAD", 1)
    rt = [rg.tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    ro, to = run(rg, *rt), run(torch, *tt)
    ro.backward()
    to.backward()
    np.testing.assert_allclose(ro.item(), to.item(), rtol=2e-5)
    for r, t in zip(rt, tt):
        np.testing.assert_allclose(r.grad.numpy(), t.grad.numpy(), rtol=2e-4, atol=2e-5 * np.abs(t.grad.numpy()).max())


_FAULTS = """
import resource, sys
import numpy as np
import retrograd as rg
a = [np.ones(1 << 20, np.float32) for _ in range(3)]  # 4 MB blocks, as a transformer step's activations
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = [np.ones(1 << 20, np.float32) for _ in range(3)]
    del a
print(rg.accel.malloc_tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not hasattr(os, "confstr") or not _glibc(), reason="malloc tuning is for glibc only")
def test_freed_blocks_stay_mapped_unless_opted_out():
    """With glibc, 4 MB arrays allocated and freed 20 times fault in their pages once (not 20 times);
    RETROGRAD_MALLOC=0 leaves malloc's defaults (a fresh mapping each time: ~1000 page faults per
    array, fewer with transparent huge pages)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("RETROGRAD_MALLOC", None)
    tuned, kept = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
    assert tuned == "True" and int(kept) < 200
    env["RETROGRAD_MALLOC"] = "0"
    tuned, fresh = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True,
                                  check=True).stdout.split()
    assert tuned == "False" and int(fresh) > max(int(kept), 50)
