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

Importing this module also keeps glibc's malloc from unmapping large freed blocks (see
``_tune_malloc``; ``RETROGRAD_MALLOC=0`` opts out): without it, a training step's page faults cost
more than its elementwise passes.

``jit(func)`` wraps a kernel so that it is compiled at its first call (about a
second, then cached on disk for later processes); ``njit(func)`` is the Numba
dispatcher itself, for modules imported only when Numba is (``retrograd.kernels.jit``,
whose kernels call helper kernels). ``run_split`` runs a kernel over contiguous
pieces of arrays, ``run_ranges`` over contiguous index ranges, on a few threads
(the kernels release the GIL, as NumPy's ufuncs do); ``set_num_threads`` bounds them.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import threading
import warnings
from typing import Any, Callable

import numpy as np

__all__ = ["available", "handles", "get_num_threads", "set_num_threads", "jit", "njit", "run_split", "run_ranges",
           "blas_threads", "single_threaded_blas"]

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

    __slots__ = ("numba", "enabled", "pool_size", "threads", "lock", "blas", "blas_depth", "blas_saved")

    def __init__(self) -> None:
        self.numba: bool | None = None  # whether Numba is installed, looked up once
        self.enabled = os.environ.get("RETROGRAD_NO_JIT", "") in ("", "0")
        self.pool_size = 0  # the pool's worker threads (_Pool)
        self.lock = threading.RLock()
        self.threads = _env_threads()
        self.blas: tuple | None = None  # (get, set) of NumPy's OpenBLAS thread count, looked up once; () if none
        self.blas_depth = 0  # callers inside single_threaded_blas()
        self.blas_saved = 0  # OpenBLAS's thread count when the first of them came in


_state = _State()

# glibc's malloc returns a large freed block to the kernel (munmap, or trimming the heap's top) and
# maps fresh zeroed pages for the next one: a transformer step that allocates and frees the same
# few-MB activations over and over then spends a quarter of its time in page faults (11,000 a step,
# 27 ms of system time in the GPT step of bench/programs/gpt.py; PyTorch's: 400 faults, 4 ms).
# Blocks up to 32 MB therefore come from malloc's heap, and up to 512 MB of freed heap stays mapped
# for the next step (the process keeps its peak, which it reached anyway). RETROGRAD_MALLOC=0 leaves
# malloc's defaults alone; nothing happens outside glibc.
_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value (HEAP_MAX_SIZE / 2 on 64-bit)
_TRIM_THRESHOLD = 512 << 20


def _tune_malloc() -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (above); whether it was done."""
    if os.environ.get("RETROGRAD_MALLOC", "") not in ("", "1"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, ValueError, OSError):  # not glibc, or no mallopt
        return False
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(-3, _MMAP_THRESHOLD)) and bool(mallopt(-1, _TRIM_THRESHOLD))  # M_MMAP_, M_TRIM_THRESHOLD


malloc_tuned = _tune_malloc()


def _forget_pool() -> None:
    _state.pool_size = 0  # a forked child has none of its parent's threads
    _Pool.wakes = []
    _Pool.job = None


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
        _import_arraymath_lazily()
    except Exception as e:  # noqa: BLE001  (any failure means: no compiled kernels)
        warnings.warn(f"retrograd: Numba is installed but cannot be imported ({type(e).__name__}: {e}); "
                      f"using the NumPy code paths (same numbers, slower)", RuntimeWarning, stacklevel=3)
        return False
    return True


_CYTHON_BLAS = "scipy.linalg.cython_blas"


class _LazyBlasProbe:
    """Stands for ``numba.np.arraymath._HAVE_BLAS`` until it is first read: then runs Numba's own probe
    (``_check_blas``, which imports SciPy's BLAS) and puts its answer in the module in its place."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __bool__(self) -> bool:
        have = bool(self.module._check_blas())
        self.module._HAVE_BLAS = have
        return have


def _import_arraymath_lazily() -> None:
    """Import ``numba.np.arraymath`` (the first compile would) without its import-time BLAS probe.

    The probe imports ``scipy.linalg`` (11 MiB resident in a process, 27 MiB of modules) for one
    flag, ``_HAVE_BLAS``, read only when a user's kernel types ``np.convolve``/``np.correlate``.
    retrograd's kernels never do. So the probe is held off while the module imports (``None`` in
    ``sys.modules`` for SciPy's BLAS: the import fails at once, SciPy untouched) and the flag
    becomes ``_LazyBlasProbe``, which probes when first read: a user's kernel types as it would have.
    Nothing changes when SciPy's BLAS is loaded already or the module is imported already."""
    if "numba.np.arraymath" in sys.modules or _CYTHON_BLAS in sys.modules:
        return
    sys.modules[_CYTHON_BLAS] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath as arraymath
    finally:
        if sys.modules.get(_CYTHON_BLAS, 0) is None:
            del sys.modules[_CYTHON_BLAS]
    if arraymath._HAVE_BLAS is False and hasattr(arraymath, "_check_blas"):
        arraymath._HAVE_BLAS = _LazyBlasProbe(arraymath)


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
    """Let retrograd use ``n`` threads: its compiled kernels, the GEMMs it splits over its own
    threads (``kernels.matmul``), and NumPy's OpenBLAS (set to ``n`` too where it is found, as
    ``torch.set_num_threads`` sets PyTorch's BLAS). ``RETROGRAD_NUM_THREADS`` sets the starting
    value of retrograd's own threads and leaves OpenBLAS's (``OPENBLAS_NUM_THREADS``) alone."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: expected an integer >= 1, got {n!r}")
    _state.threads = int(n)
    funcs = _blas_funcs()
    if funcs:
        with _state.lock:
            if _state.blas_depth:  # restored to n when the last split GEMM is done
                _state.blas_saved = int(n)
            else:
                funcs[1](int(n))


def _blas_funcs() -> tuple:
    """``(get, set)`` for the thread count of the OpenBLAS that NumPy loaded (ctypes functions
    found through ``/proc/self/maps``, as threadpoolctl does), or ``()`` where there is none (another
    BLAS, or not on Linux)."""
    if _state.blas is None:
        _state.blas = _find_openblas()
    return _state.blas


def _find_openblas() -> tuple:
    import ctypes

    np_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))  # site-packages
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if line.count(" ") >= 5 and "openblas" in line}
    except OSError:
        return ()
    # NumPy's own copy first (numpy.libs/), then any other OpenBLAS (a system NumPy's)
    for path in sorted(paths, key=lambda p: not p.startswith(os.path.join(np_dir, "numpy"))):
        try:
            lib = ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "", "_64"):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    put.restype, put.argtypes = None, [ctypes.c_int]
                    return get, put
    return ()


def blas_threads() -> int | None:
    """NumPy's OpenBLAS thread count, or ``None`` where no OpenBLAS was found."""
    funcs = _blas_funcs()
    return funcs[0]() if funcs else None


class single_threaded_blas:
    """Context: NumPy's OpenBLAS on one thread while retrograd's own threads run GEMMs side by side
    (each on its own rows), so that OpenBLAS's workers do not spin against them; the previous count
    comes back when the last such caller leaves. Does nothing where no OpenBLAS was found."""

    __slots__ = ()

    def __enter__(self) -> None:
        funcs = _blas_funcs()
        if funcs:
            with _state.lock:
                if not _state.blas_depth:
                    _state.blas_saved = funcs[0]()
                    if _state.blas_saved != 1:
                        funcs[1](1)
                _state.blas_depth += 1

    def __exit__(self, *exc: Any) -> None:
        funcs = _blas_funcs()
        if funcs:
            with _state.lock:
                _state.blas_depth -= 1
                if not _state.blas_depth and _state.blas_saved != 1:
                    funcs[1](_state.blas_saved)


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
    if _state.threads < 2 or n < 2 * max(1, min_per_thread):  # one piece (_side_by_side's test): called here
        kernel(*arrays, *scalars)
        return

    def piece(lo: int, hi: int) -> None:
        kernel(*[a[lo:hi] if a.shape[0] else a for a in arrays], *scalars)

    _side_by_side(piece, n, min_per_thread, 1)


def run_ranges(kernel: Callable, args: tuple, n: int, min_per_thread: int, align: int = 1) -> None:
    """``kernel(*args, lo, hi)`` over contiguous ranges ``[lo, hi)`` that cover ``range(n)``, run side
    by side on up to ``get_num_threads()`` threads when each gets at least ``min_per_thread`` items;
    every inner boundary is a multiple of ``align`` (so blocks of ``align`` items stay whole)."""
    _side_by_side(lambda lo, hi: kernel(*args, lo, hi), n, min_per_thread, align)


_worker = threading.local()  # .active on the pool's own threads
SHARES = 2  # pieces per thread of a split run: a thread that comes late finds the others' pieces done


class _Job:
    """One split run: ``piece(lo, hi)`` over the ranges between consecutive ``bounds``. Every thread
    that joins (the caller and the pool's workers) takes the next range not yet taken, until none is
    left, so a worker that the scheduler starts late (a busy machine, OpenBLAS's spinning workers)
    takes fewer ranges, or none, instead of holding the caller up; the caller waits only for the
    ranges already being run. The ranges are the same whoever runs them, so the result is too."""

    __slots__ = ("piece", "bounds", "taken", "finished", "last", "done", "error")

    def __init__(self, piece: Callable, bounds: list) -> None:
        self.piece: Callable | None = piece
        self.bounds = bounds
        self.taken = itertools.count()  # next() is atomic under the GIL: each range is taken once
        self.finished = itertools.count(1)
        self.last = len(bounds) - 1
        self.done = threading.Lock()  # held until the last range is finished
        self.done.acquire()
        self.error: BaseException | None = None

    def work(self) -> None:
        bounds, last = self.bounds, self.last
        for k in self.taken:
            if k >= last:
                return
            try:
                if self.error is None:
                    self.piece(bounds[k], bounds[k + 1])  # not None: range k is not finished
            except BaseException as e:  # noqa: BLE001 - raised in the caller (run)
                self.error = e
            if next(self.finished) == last:
                self.done.release()

    def run(self, helpers: int) -> None:
        """Wake ``helpers`` pool workers to join, work along, then wait for the ranges others took."""
        outer, _Pool.job = _Pool.job, self
        _wake(helpers)
        self.work()
        self.done.acquire()  # at once when this thread finished the last range itself
        self.piece = None  # a worker that wakes late finds no range left: let the arrays go
        if _Pool.job is self:  # a run inside a range of another (or another thread's): back to it
            _Pool.job = outer
            if outer is not None and outer.piece is not None:
                _wake(helpers)
        if self.error is not None:
            raise self.error


def _wake(helpers: int) -> None:
    for wake in _Pool.wakes[:helpers]:
        if wake.locked():  # else a wake-up is pending already: that worker will see the latest job
            try:
                wake.release()
            except RuntimeError:  # another thread released it just now
                pass


class _Pool:
    """The kernels' worker threads. Each waits on its own lock; ``_Job.run`` puts the job in ``job``
    (one slot: a worker that wakes late joins the latest job, or finds it done, and nothing queues
    up behind it) and releases the locks of the workers it wants; a job run inside a range of
    another puts that one back when it is done."""

    job: _Job | None = None
    wakes: list = []  # one lock per worker, held while it has nothing to do


def _serve(wake: Any) -> None:
    _worker.active = True
    while True:
        wake.acquire()
        job = _Pool.job
        if job is not None:
            job.work()


def _pool(workers: int) -> None:
    """At least ``workers`` threads (``get_num_threads() - 1``), started once: their number only
    grows, since a new thread gets its own malloc arena and, at its first GEMM piece, its own
    OpenBLAS buffer."""
    with _state.lock:
        size = max(workers, _state.threads - 1)
        while _state.pool_size < size:
            wake = threading.Lock()
            wake.acquire()
            _Pool.wakes.append(wake)
            threading.Thread(target=_serve, args=(wake,), daemon=True,
                             name=f"retrograd-kernel_{_state.pool_size}").start()
            _state.pool_size += 1


def _side_by_side(piece: Callable, n: int, min_per_thread: int, align: int) -> None:
    parts = min(_state.threads, n // max(1, min_per_thread), -(-n // align))
    if parts <= 1 or getattr(_worker, "active", False):  # a piece that splits again runs whole
        piece(0, n)
        return
    if _state.pool_size < parts - 1:
        _pool(parts - 1)
    # SHARES ranges a thread, each at least half of min_per_thread (and whole blocks of align)
    chunks = max(parts, min(SHARES * parts, n // max(1, min_per_thread // SHARES), -(-n // align)))
    bounds = [0] + [min(n, (n * k // chunks + align - 1) // align * align) for k in range(1, chunks)] + [n]
    bounds = [b for k, b in enumerate(bounds) if k == 0 or b > bounds[k - 1]]
    _Job(piece, bounds).run(parts - 1)
