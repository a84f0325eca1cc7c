"""The default process group: who this process is among how many, on MPI through mpi4py.

``init_process_group(backend="mpi")`` reads the MPI environment: under ``mpiexec -n N`` every rank
calls it with no arguments and gets its rank and the world size from ``MPI.COMM_WORLD`` (a private
duplicate of it, so a user's own mpi4py traffic never mixes with ours). mpi4py is imported here
and nowhere earlier, so ``import retrograd`` stays light. Without mpi4py, and when no MPI launcher
started the process, the group is a single process (rank 0 of 1) and every collective is the
identity: single-process scripts run unchanged.

A ``timeout`` makes every wait poll its request and raise ``DistTimeoutError`` once it is over, so
a rank that died or hangs cannot leave the others waiting for ever (without one, waits block in
MPI as PyTorch's MPI backend does). With more than one rank, an exception that no one catches
prints its traceback and then aborts every rank (``abort``, ``MPI_Abort``), so the launcher exits
non-zero instead of the job hanging.
"""
from __future__ import annotations

import datetime
import enum
import importlib.util
import os
import sys
import time
from typing import Any, Callable

__all__ = ["ReduceOp", "ProcessGroup", "Work", "DistError", "DistTimeoutError", "is_available",
           "is_mpi_available", "is_initialized", "init_process_group", "destroy_process_group", "get_rank",
           "get_world_size", "get_backend", "default_group", "launched_world_size", "launched_rank", "abort",
           "set_wait_hook", "wait_requests"]

_SPIN_S = 5e-4  # a timed wait polls without sleeping this long first (a sleep costs 0.1-5 ms under load)
_NO_GROUP = "Default process group has not been initialized, please make sure to call init_process_group."

# environment variables MPI launchers set: hydra (MPICH, Intel MPI) and Open MPI / PMIx, MVAPICH
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


class DistError(RuntimeError):
    """A collective failed (PyTorch's ``torch.distributed.DistError``)."""


class DistTimeoutError(DistError):
    """A wait ran past the group's timeout: some rank did not take part in time."""


class ReduceOp(enum.Enum):
    """How ``all_reduce``/``reduce`` combine the ranks' values (``torch.distributed.ReduceOp``).
    ``AVG`` is ``SUM`` divided by the world size (floating dtypes only); ``BAND``/``BOR``/``BXOR``
    are bitwise (integers and bool)."""
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"

    def __repr__(self) -> str:
        return f"ReduceOp.{self.name}"


def _launcher_int(names: tuple) -> int | None:
    for var in names:
        v = os.environ.get(var)
        if v and v.isdigit():
            return int(v)
    return None


def launched_world_size() -> int | None:
    """The number of ranks an MPI launcher said it started (its environment), or None outside one."""
    return _launcher_int(_SIZE_VARS)


def launched_rank() -> int | None:
    """This process's rank as the MPI launcher's environment gives it, or None outside one (no MPI call)."""
    return _launcher_int(_RANK_VARS)


def set_wait_hook(hook: Callable[[list, str], None] | None) -> Callable | None:
    """Make every ``Work.wait()`` without its own timeout call ``hook(requests, what)``, which must
    return once every request completed (or end the job); returns the previous hook. The training
    command line installs ``retrograd.train.ranks.RankGroup``'s waiting, which names a rank that hung
    or died, so that DistributedDataParallel's and SyncBatchNorm's collectives are bounded the same way."""
    old, _STATE.wait_hook = _STATE.wait_hook, hook
    return old


def is_available() -> bool:
    """True: ``rg.distributed`` always works (a single process needs no MPI; see ``is_mpi_available``)."""
    return True


def is_mpi_available() -> bool:
    """Whether mpi4py is installed (``pip install 'retrograd[distributed]'``); does not import it."""
    return importlib.util.find_spec("mpi4py") is not None


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    s = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)
    if not s > 0:
        raise ValueError(f"init_process_group: timeout must be a positive timedelta or seconds, got {timeout!r}")
    return s


class ProcessGroup:
    """The ranks that take part in collectives: ``comm`` (an mpi4py ``Comm``, None for the
    single-process group without MPI), ``rank``, ``size``, ``timeout`` (seconds or None)."""

    def __init__(self, comm: Any, timeout: float | None) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.timeout = timeout

    def backend(self) -> str:
        return "mpi"

    def __repr__(self) -> str:
        return f"ProcessGroup(backend='mpi', rank={self.rank}, size={self.size})"


class _State:
    """The one default group of this process (as PyTorch's ``WORLD``), the exception hook that
    was in place before ``init_process_group`` installed its own, and the wait hook (``set_wait_hook``)."""
    group: ProcessGroup | None = None
    excepthook: Any = None
    wait_hook: Any = None


_STATE = _State()


def _import_mpi() -> Any:
    import mpi4py
    mpi4py.rc.threads = True
    from mpi4py import MPI
    return MPI


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | float | None = None, world_size: int = -1, rank: int = -1,
                       store: Any = None, group_name: str = "", pg_options: Any = None,
                       device_id: Any = None) -> None:
    """Start the default process group on MPI (PyTorch's signature; ``backend`` is ``"mpi"`` or None).

    Under ``mpiexec -n N python script.py`` call it with no arguments: the rank and world size come
    from MPI. ``world_size``/``rank``, where given, must agree with MPI's. Without mpi4py and
    outside an MPI launcher the group is this one process. ``timeout`` (a timedelta or seconds)
    bounds every wait (``DistTimeoutError``); None waits as long as MPI does."""
    if _STATE.group is not None:
        raise ValueError("trying to initialize the default process group twice!")
    if backend is not None and str(backend).lower() != "mpi":
        raise ValueError(f"init_process_group: backend {backend!r} is not available; retrograd runs its "
                         "collectives on MPI: backend='mpi' (or leave it out) and launch with mpiexec")
    if init_method not in (None, "env://") or store is not None:
        raise ValueError("init_process_group: MPI finds its peers through mpiexec; init_method and store "
                         f"are not used (got init_method={init_method!r}, store={store!r})")
    secs = _seconds(timeout)
    launched = launched_world_size()
    if is_mpi_available():
        MPI = _import_mpi()
        comm = MPI.COMM_WORLD.Dup()
        if launched is not None and launched != comm.Get_size():
            n = comm.Get_size()
            comm.Free()
            raise RuntimeError(
                f"init_process_group: the launcher started {launched} ranks but MPI sees {n}: mpiexec belongs "
                "to another MPI than the one mpi4py loaded; use the mpiexec of the same installation "
                "(retrograd.distributed.find_mpiexec() names it)")
    elif launched is not None and launched > 1:
        raise RuntimeError(f"init_process_group: started as one of {launched} MPI ranks but mpi4py is not "
                           "installed; pip install 'retrograd[distributed]'")
    else:
        comm = None
    group = ProcessGroup(comm, secs)
    for name, given, actual in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if given not in (-1, None) and int(given) != actual:
            if comm is not None:
                comm.Free()
            raise ValueError(f"init_process_group: {name}={given} was given but MPI says {actual}")
    _STATE.group = group
    if group.size > 1:
        _STATE.excepthook = sys.excepthook
        sys.excepthook = _abort_on_uncaught


def _abort_on_uncaught(kind: type, value: BaseException, tb: Any) -> None:
    """An exception nobody caught ends every rank (as ``python -m mpi4py``), after its traceback:
    otherwise the others would wait for this rank for ever, and this one in MPI's finalisation."""
    (_STATE.excepthook or sys.__excepthook__)(kind, value, tb)
    g = _STATE.group
    if g is not None and g.comm is not None:
        sys.stderr.write(f"retrograd.distributed: rank {g.rank} of {g.size} stopped by {kind.__name__}; "
                         "aborting all ranks\n")
        sys.stderr.flush()
        abort(1)


def abort(errorcode: int = 1) -> None:
    """End every rank of the job now (``MPI_Abort``); in a single process without MPI, exit."""
    g = _STATE.group
    if g is not None and g.comm is not None:
        g.comm.Abort(errorcode)
    raise SystemExit(errorcode)


def is_initialized() -> bool:
    return _STATE.group is not None


def default_group(group: Any = None) -> ProcessGroup:
    """``group`` when it is a ProcessGroup, else the default one; raises PyTorch's ValueError when
    no group was started."""
    if isinstance(group, ProcessGroup):
        return group
    if group is not None:
        raise TypeError(f"expected a ProcessGroup or None for group, got {type(group).__name__}")
    if _STATE.group is None:
        raise ValueError(_NO_GROUP)
    return _STATE.group


def destroy_process_group(group: Any = None) -> None:
    """End the default group (MPI itself stays initialised until the process exits)."""
    g = default_group(group)
    if g.comm is not None:
        g.comm.Free()
    if g is _STATE.group:
        _STATE.group = None
        if _STATE.excepthook is not None:
            sys.excepthook, _STATE.excepthook = _STATE.excepthook, None


def get_rank(group: Any = None) -> int:
    return default_group(group).rank


def get_world_size(group: Any = None) -> int:
    return default_group(group).size


def get_backend(group: Any = None) -> str:
    default_group(group)
    return "mpi"


class Work:
    """A started collective (``async_op=True``): ``wait()`` blocks until it is done and finishes it
    (copies back, divides for AVG); ``is_completed()`` asks without blocking."""

    def __init__(self, requests: list, finish: Callable[[], None] | None, timeout: float | None,
                 what: str) -> None:
        self._requests = requests
        self._finish = finish
        self._timeout = timeout
        self._what = what
        self._done = not requests
        if self._done:
            self._run_finish()

    def _run_finish(self) -> None:
        f, self._finish = self._finish, None
        if f is not None:
            f()

    def is_completed(self) -> bool:
        if not self._done and all(r.Test() for r in self._requests):
            self._done = True
            self._run_finish()
        return self._done

    def wait(self, timeout: datetime.timedelta | float | None = None) -> bool:
        if self._done:
            return True
        if timeout is None:
            wait_requests(self._requests, self._timeout, self._what)
        else:
            _wait_timed(self._requests, _seconds(timeout), self._what)
        self._done = True
        self._run_finish()
        return True

    def result(self) -> list:
        self.wait()
        return []


def wait_requests(requests: list, timeout: float | None, what: str) -> None:
    """Wait for the MPI ``requests`` as ``Work.wait()`` does, without a Work: through the wait hook
    (``set_wait_hook``) when one is set, else bounded by ``timeout`` seconds (None: ``Wait`` in MPI).
    DistributedDataParallel waits for its buckets with it (no object per backward)."""
    hook = _STATE.wait_hook
    if hook is not None:
        hook(requests, what)
    elif timeout is None:
        for r in requests:
            r.Wait()
    else:
        _wait_timed(requests, timeout, what)


def _wait_timed(requests: list, secs: float, what: str) -> None:
    """Poll ``requests`` until all completed; ``DistTimeoutError`` after ``secs`` seconds."""
    start = time.monotonic()
    deadline = start + secs
    pause = 0.0
    while not all(r.Test() for r in requests):
        now = time.monotonic()
        if now > deadline:
            raise DistTimeoutError(f"{what}: not finished after {secs:g} s; a rank did not take "
                                   "part in time (it died, hangs, or runs different code)")
        if now - start < _SPIN_S:  # most collectives end within microseconds of the last arrival
            continue
        time.sleep(pause)  # then leave the core to ranks still computing
        pause = min(1e-3, pause * 2 or 2e-5)
