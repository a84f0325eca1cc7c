"""Fused optimizer kernels: a whole update in one pass over the flat buffers.

The NumPy form of Adam's update is about ten whole-array passes (each ufunc reads
and writes its operands once), so a large step is bound by memory traffic and
runs on one core. With Numba installed (``pip install 'retrograd[fast]'``) the
update is instead one compiled loop that reads every element of ``param``,
``grad`` and the state once and writes them once, split over a few threads (the
loop releases the GIL). This is what ``torch.optim.Adam(fused=True)`` does.

The loop performs the same float operations in the same order and precision as
the NumPy path (scalars rounded to the buffer's dtype first, no fast-math, no
contraction into fused multiply-adds), so both give bitwise identical results;
``fused=False`` on an optimizer selects the NumPy path. Without Numba the NumPy
path is used and nothing else changes.

Numba compiles each kernel once per dtype on first use (about a second) and
caches the machine code on disk for later processes.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any, Callable

import numpy as np

__all__ = ["available", "get_num_threads", "set_num_threads", "adam_"]

_MIN_PER_THREAD = 1 << 17  # elements; below this a second thread costs more than it saves


class _State:
    """The compiled kernels (built on first use) and the worker threads."""

    __slots__ = ("kernels", "pool", "threads", "lock", "numba")

    def __init__(self) -> None:
        self.kernels: dict | None = None
        self.numba: bool | None = None  # whether Numba is installed, looked up once
        self.pool = None
        self.lock = threading.Lock()
        env = os.environ.get("RETROGRAD_NUM_THREADS")
        self.threads = int(env) if env else _cpu_count()


def _cpu_count() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


_state = _State()


def _forget_pool() -> None:
    _state.pool = None  # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def available() -> bool:
    """Whether Numba is installed, so fused kernels can run."""
    if _state.numba is None:
        _state.numba = importlib.util.find_spec("numba") is not None
    return _state.numba


def get_num_threads() -> int:
    """Threads a fused kernel may use (default: the CPUs this process may run on, at most 8)."""
    return _state.threads


def set_num_threads(n: int) -> None:
    """Let fused kernels use ``n`` threads (the BLAS library's threads are separate:
    ``OPENBLAS_NUM_THREADS`` or threadpoolctl). ``RETROGRAD_NUM_THREADS`` sets the
    starting value."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: expected an integer >= 1, got {n!r}")
    _state.threads = int(n)


def _compile() -> dict:
    import numba

    def jit(func: Callable) -> Callable:
        opts = dict(nogil=True, fastmath=False, error_model="numpy", boundscheck=False)
        try:
            return numba.njit(cache=True, **opts)(func)
        except RuntimeError:  # no writable cache directory: compile in every process
            return numba.njit(**opts)(func)

    def adam(p, g, m, v, vmax, l2, amsgrad, sign, pscale, wd, omb1, beta2, omb2, step_size, bc2_sqrt, eps):
        # the loop-invariant branches are hoisted out by LLVM, which then vectorises each variant
        for i in range(p.shape[0]):
            gi = g[i] * sign
            pi = p[i] * pscale
            if l2:
                gi = gi + wd * pi
            mi = m[i]
            mi = mi + omb1 * (gi - mi)
            m[i] = mi
            vi = v[i] * beta2 + omb2 * gi * gi
            v[i] = vi
            if amsgrad:
                vm = vmax[i]
                if vi > vm or vi != vi:  # np.maximum: NaN wins
                    vm = vi
                vmax[i] = vm
                vi = vm
            p[i] = pi + step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)

    return {"adam": jit(adam)}


def _kernels() -> dict:
    if _state.kernels is None:
        with _state.lock:
            if _state.kernels is None:
                _state.kernels = _compile()
    return _state.kernels


def _run(kernel: Callable, arrays: list, scalars: tuple) -> None:
    """``kernel(*arrays, *scalars)`` over equal-length 1-D arrays, split into
    contiguous pieces run side by side when they are large enough (a 0-length
    array stands for an unused operand and is passed whole)."""
    n = arrays[0].shape[0]
    parts = min(_state.threads, n // _MIN_PER_THREAD)
    if parts <= 1:
        kernel(*arrays, *scalars)
        return
    pool = _state.pool
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with _state.lock:
            pool = _state.pool
            if pool is None or pool._max_workers < parts - 1:
                pool = _state.pool = ThreadPoolExecutor(max(parts - 1, _state.threads - 1),
                                                        thread_name_prefix="retrograd-fused")
    bounds = [n * k // parts for k in range(parts + 1)]

    def piece(k: int) -> list:
        lo, hi = bounds[k], bounds[k + 1]
        return [a[lo:hi] if a.shape[0] else a for a in arrays]

    futures = [pool.submit(kernel, *piece(k), *scalars) for k in range(1, parts)]
    try:
        kernel(*piece(0), *scalars)
    finally:
        for f in futures:
            f.result()


def adam_(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
          max_exp_avg_sq: np.ndarray | None, *, beta1: float, beta2: float, step_size: float,
          bias_correction2_sqrt: float, eps: float, weight_decay: float, decoupled_scale: float,
          maximize: bool) -> None:
    """Adam's update in place on flat contiguous arrays of one float dtype, rounded
    exactly as ``Adam._math``: ``weight_decay`` is the L2 coefficient (0: none),
    ``decoupled_scale`` the factor ``1 - lr * lambda`` of decoupled decay (1: none),
    ``step_size`` is ``-lr / (1 - beta1^t)``. Needs ``1 - beta1 < 0.5`` (PyTorch's
    lerp switches formula at 0.5; the caller keeps the NumPy path otherwise)."""
    t = param.dtype.type
    amsgrad = max_exp_avg_sq is not None
    vmax = max_exp_avg_sq if amsgrad else param[:0]
    scalars = (weight_decay != 0, amsgrad, t(-1.0 if maximize else 1.0), t(decoupled_scale), t(weight_decay),
               t(1 - beta1), t(beta2), t(1 - beta2), t(step_size), t(bias_correction2_sqrt), t(eps))
    _run(_kernels()["adam"], [param, grad, exp_avg, exp_avg_sq, vmax], scalars)


def usable(fused: Any, dtype: np.dtype) -> bool:
    """Whether an optimizer group with ``fused`` (None: when possible, False: never)
    runs a fused kernel on buffers of ``dtype``."""
    return fused is not False and dtype in (np.float32, np.float64) and available()
