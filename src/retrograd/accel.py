"""Optional compiled kernels (Numba): availability, compile on first use, threads.

NumPy runs an elementwise formula as one whole-array pass per operator, each a
trip through memory on one core. Where that dominates (Adam's update, max-pooling,
GELU, Muon's bfloat16 matmuls), retrograd has a second implementation: a plain loop that Numba
compiles (``pip install 'retrograd[fast]'``) and that reads and writes each
element once. Each such kernel performs the same float operations in the same
order as its NumPy twin (no fast-math, no fused multiply-adds), so results are
bitwise identical and the NumPy path stays the reference (one exception: the
max-pool backward adds the gradients of overlapping windows in PyTorch's order,
where the NumPy path's order differs in the last bit). Without Numba, or with
``RETROGRAD_NO_JIT=1``, the NumPy path is the only one and nothing else changes.

``jit(func)`` wraps a kernel so that it is compiled at its first call (about a
second, then cached on disk for later processes); ``njit(func)`` is the Numba
dispatcher itself, for modules imported only when Numba is (``retrograd.kernels.jit``,
whose kernels call helper kernels). ``run_split`` runs a kernel over contiguous
pieces of arrays, ``run_ranges`` over contiguous index ranges, on a few threads
(the kernels release the GIL, as NumPy's ufuncs do); ``set_num_threads`` bounds them.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from typing import Any, Callable

import numpy as np

__all__ = ["available", "handles", "get_num_threads", "set_num_threads", "jit", "njit", "run_split", "run_ranges"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # what the kernels are compiled for
MIN_PER_THREAD = 1 << 20  # elements (~1 ms of work); below this a second thread costs more than it saves


def _cpu_count() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _env_threads() -> int:
    """``RETROGRAD_NUM_THREADS`` if set to an integer >= 1; else (with a warning if it was set to
    something else) the CPUs this process may run on."""
    env = os.environ.get("RETROGRAD_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n
        warnings.warn(f"retrograd: RETROGRAD_NUM_THREADS={env!r} is not an integer >= 1; using "
                      f"{_cpu_count()} threads", RuntimeWarning, stacklevel=2)
    return _cpu_count()


class _State:
    """Process-wide settings and the worker threads, in one object rather than loose globals."""

    __slots__ = ("numba", "enabled", "pool", "threads", "lock")

    def __init__(self) -> None:
        self.numba: bool | None = None  # whether Numba is installed, looked up once
        self.enabled = os.environ.get("RETROGRAD_NO_JIT", "") in ("", "0")
        self.pool = None
        self.lock = threading.RLock()
        self.threads = _env_threads()


_state = _State()


def _forget_pool() -> None:
    _state.pool = None  # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def available() -> bool:
    """Whether compiled kernels run: Numba is installed and importable, and ``RETROGRAD_NO_JIT``
    is not set. (A Numba that fails to import, e.g. one too old for the installed NumPy, is
    reported once in a warning and the NumPy paths are used.)"""
    if _state.numba is None:
        _state.numba = _import_numba()
    return _state.numba and _state.enabled


def _import_numba() -> bool:
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        import numba  # noqa: F401
    except Exception as e:  # noqa: BLE001  (any failure means: no compiled kernels)
        warnings.warn(f"retrograd: Numba is installed but cannot be imported ({type(e).__name__}: {e}); "
                      f"using the NumPy code paths (same numbers, slower)", RuntimeWarning, stacklevel=3)
        return False
    return True


def handles(*arrays: Any) -> bool:
    """Whether compiled kernels run (``available()``) and can take these arrays: NumPy arrays of
    float32 or float64 (Numba has no float16 arithmetic; other dtypes keep the NumPy path)."""
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype not in _FLOATS:
            return False
    return available()


def get_num_threads() -> int:
    """Threads a compiled kernel may use (default: the CPUs this process may run on, at most 8)."""
    return _state.threads


def set_num_threads(n: int) -> None:
    """Let compiled kernels use ``n`` threads. The BLAS library's threads are separate
    (``OPENBLAS_NUM_THREADS`` or threadpoolctl); ``RETROGRAD_NUM_THREADS`` sets the
    starting value."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: expected an integer >= 1, got {n!r}")
    _state.threads = int(n)


class _Lazy:
    """A kernel compiled by Numba at its first call."""

    __slots__ = ("func", "compiled", "__name__")

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.compiled: Callable | None = None
        self.__name__ = func.__name__

    def __call__(self, *args: Any) -> Any:
        f = self.compiled
        if f is None:
            f = self._compile()
        return f(*args)

    def _compile(self) -> Callable:
        with _state.lock:
            if self.compiled is None:
                self.compiled = njit(self.func)
        return self.compiled


def njit(func: Callable) -> Callable:
    """``func`` as a Numba dispatcher with the kernels' options (no fast-math, GIL released, cached
    on disk where a cache directory is writable); it compiles at its first call. This imports
    Numba: use it in modules that are imported only when ``available()``, where kernels call
    helper kernels (a ``jit`` wrapper cannot be called from compiled code)."""
    import numba

    opts = dict(nogil=True, fastmath=False, error_model="numpy", boundscheck=False)
    try:
        return numba.njit(cache=True, **opts)(func)
    except RuntimeError:  # no writable cache directory: compile in every process
        return numba.njit(**opts)(func)


def jit(func: Callable) -> _Lazy:
    """Mark ``func`` (plain Python on NumPy arrays and scalars) as a kernel compiled on first call.
    Call it only when ``available()``."""
    return _Lazy(func)


def run_split(kernel: Callable, arrays: list, scalars: tuple, min_per_thread: int = MIN_PER_THREAD) -> None:
    """``kernel(*arrays, *scalars)`` over arrays of equal length along their first axis, split into
    contiguous pieces run side by side when each piece has at least ``min_per_thread`` of them (a
    0-length array stands for an unused operand and is passed whole)."""
    n = arrays[0].shape[0]

    def piece(lo: int, hi: int) -> None:
        kernel(*[a[lo:hi] if a.shape[0] else a for a in arrays], *scalars)

    _side_by_side(piece, n, min_per_thread, 1)


def run_ranges(kernel: Callable, args: tuple, n: int, min_per_thread: int, align: int = 1) -> None:
    """``kernel(*args, lo, hi)`` over contiguous ranges ``[lo, hi)`` that cover ``range(n)``, run side
    by side on up to ``get_num_threads()`` threads when each gets at least ``min_per_thread`` items;
    every inner boundary is a multiple of ``align`` (so blocks of ``align`` items stay whole)."""
    _side_by_side(lambda lo, hi: kernel(*args, lo, hi), n, min_per_thread, align)


def _side_by_side(piece: Callable, n: int, min_per_thread: int, align: int) -> None:
    parts = min(_state.threads, n // max(1, min_per_thread), -(-n // align))
    if parts <= 1:
        piece(0, n)
        return
    pool = _state.pool
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with _state.lock:
            pool = _state.pool
            if pool is None:  # threads start on demand, so a generous cap costs nothing
                pool = _state.pool = ThreadPoolExecutor(63, thread_name_prefix="retrograd-kernel")
    bounds = [0] + [min(n, (n * k // parts + align - 1) // align * align) for k in range(1, parts)] + [n]
    futures = [pool.submit(piece, bounds[k], bounds[k + 1]) for k in range(1, parts) if bounds[k] < bounds[k + 1]]
    try:
        piece(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()
