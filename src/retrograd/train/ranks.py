"""The ranks of a data-parallel ``retrograd train``/``resume``: the MPI process group the command line
runs on, with a time limit on every collective, and the start-up check that every rank builds the
same run.

Under ``mpiexec`` (``retrograd train CONFIG --nproc N`` starts one, see ``retrograd.train.launch``)
``from_environment`` sees the launcher's variables (``rg.distributed.launched_world_size``) and joins
``rg.distributed``'s default process group (its private copy of ``MPI.COMM_WORLD``), so a model's own
code can call ``rg.distributed.get_rank()``; without them (or with one rank) the run is one process
and mpi4py is not imported at all. It also installs ``RankGroup.wait_all`` as ``rg.distributed``'s
wait hook, so that the collectives of DistributedDataParallel and SyncBatchNorm are waited on below.

**No silent hang.** Every collective of ``RankGroup`` is non-blocking (``Iallreduce``, ``Iallgather``)
and waited on by polling ``Test``. While it waits, a rank answers the other ranks' "are you there"
messages. When one collective has made no progress for ``timeout`` seconds (``train.rank_timeout``,
``--rank-timeout``; default 60), the waiting rank asks every other rank, gives them a few seconds
to answer, and names the ranks that did not (hung in a computation, stopped, or dead) and those waiting
in another collective; then it prints one ``retrograd COMMAND: error: ...`` line and calls
``MPI_Abort``, which ends every rank (exit status ``EXIT_RANK_LOST``). A rank that dies is caught by
the MPI launcher itself (Hydra's "BAD TERMINATION ... PID ... EXIT CODE: 9", Open MPI's "mpiexec
noticed that process rank 1 ... exited on signal 9"), which ends the others at once.

The limit must exceed the longest work one rank does alone between two collectives: rank 0 writes
checkpoints, logs and plots while the others wait for the next step's all-reduce.
"""
from __future__ import annotations

import pickle
import sys
import time
from typing import Any

import numpy as np

__all__ = ["RankGroup", "SingleProcess", "from_environment", "env_world_size", "EXIT_RANK_LOST",
           "RankMismatchError", "run_fingerprint", "check_same_run", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 60.0
EXIT_RANK_LOST = 4  # a rank hung or died: the others were stopped (MPI_Abort)
_PING, _PONG = 7301, 7302  # message tags of the "are you there" exchange

def env_world_size() -> int | None:
    """The number of ranks the MPI launcher that started this process says it started (None: not
    started by one; ``rg.distributed.launched_world_size``)."""
    from ..distributed import launched_world_size

    return launched_world_size()


class RankMismatchError(RuntimeError):
    """The ranks did not build the same run (config, model, data, or library version)."""


class SingleProcess:
    """The ranks of a one-process run: rank 0 of 1; every collective returns its input."""

    rank, size, timeout, command = 0, 1, DEFAULT_TIMEOUT, "train"

    def allreduce_(self, array: np.ndarray, what: str) -> np.ndarray:
        return array

    def allgather(self, obj: Any, what: str) -> list:
        return [obj]

    def bcast(self, obj: Any, what: str, root: int = 0) -> Any:
        return obj

    def abort(self, message: str, code: int = EXIT_RANK_LOST) -> None:
        raise RuntimeError(message)


class RankGroup:
    """``comm`` (an mpi4py communicator) with every collective timed: see the module docstring.
    ``command`` names the CLI command in messages; ``err`` is where they go (stderr)."""

    def __init__(self, comm: Any, timeout: float = DEFAULT_TIMEOUT, command: str = "train", err: Any = None) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout)
        self.command = command
        self.err = err
        self.count = 0  # collectives entered so far
        self.what = "start-up"  # the collective now waited on
        self._sends: list = []

    # ------------------------------------------------------------------ collectives
    def allreduce_(self, array: np.ndarray, what: str) -> np.ndarray:
        """Sum ``array`` (contiguous) over the ranks, in place."""
        self._wait(self.comm.Iallreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM), what)
        return array

    def allgather(self, obj: Any, what: str) -> list:
        """Every rank's ``obj`` (picklable), in rank order."""
        data = np.frombuffer(pickle.dumps(obj, protocol=4), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([len(data)], dtype=np.int64), sizes), what)
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._wait(self.comm.Iallgatherv(data, [out, sizes, offsets, self._MPI.BYTE]), what)
        return [pickle.loads(out[o:o + s].tobytes()) for o, s in zip(offsets, sizes)]

    def bcast(self, obj: Any, what: str, root: int = 0) -> Any:
        """``root``'s ``obj``, on every rank (small objects: run folder names, parameters at start)."""
        return self.allgather(obj if self.rank == root else None, what)[root]

    def bcast_array_(self, array: np.ndarray, what: str, root: int = 0) -> np.ndarray:
        """``root``'s values into ``array`` (contiguous, the same shape on every rank), in place."""
        self._wait(self.comm.Ibcast(array, root=root), what)
        return array

    # ------------------------------------------------------------------ waiting with a limit
    def wait_all(self, requests: list, what: str) -> None:
        """Wait for MPI ``requests`` as for this group's own collectives: ``rg.distributed``'s wait hook
        (``set_wait_hook``), so that DistributedDataParallel's and SyncBatchNorm's collectives are
        bounded by ``timeout`` and a stall names the ranks, too."""
        for req in requests:
            self._wait(req, what)

    def _wait(self, req: Any, what: str) -> None:
        self.count += 1
        self.what = what
        start = time.monotonic()
        pause = 0.0
        while not req.Test():
            waited = time.monotonic() - start
            if waited < 0.0005:  # spin briefly: an all-reduce completes microseconds after the last arrival
                continue
            self._serve()
            if waited > self.timeout and self._stalled(req, waited):
                return
            # then sleep up to 2 ms between polls, so waiting ranks leave the cores to those still computing
            pause = min(0.002, pause + 0.0001)
            time.sleep(pause)
        self._serve()

    def _serve(self) -> None:
        """Answer the other ranks' pings with what this rank waits on; drop late answers to ours."""
        MPI = self._MPI
        st = MPI.Status()
        while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_PING, status=st):
            self.comm.recv(source=st.Get_source(), tag=_PING)
            self._sends.append(self.comm.isend((self.count, self.what), dest=st.Get_source(), tag=_PONG))
        while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_PONG, status=st):
            self.comm.recv(source=st.Get_source(), tag=_PONG)
        self._sends = [r for r in self._sends if not r.Test()]

    def _stalled(self, req: Any, waited: float) -> bool:
        """No progress for ``timeout`` s: ask the others, name who did not answer, stop every rank.
        Returns True when the collective completed meanwhile (a slow rank caught up)."""
        MPI = self._MPI
        for r in range(self.size):
            if r != self.rank:
                self._sends.append(self.comm.isend((self.count, self.what), dest=r, tag=_PING))
        grace = min(5.0, max(1.0, self.timeout / 4))
        answers: dict[int, tuple] = {self.rank: (self.count, self.what)}
        st = MPI.Status()
        end = time.monotonic() + grace
        while time.monotonic() < end and len(answers) < self.size:
            if req.Test():
                return True
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_PONG, status=st):
                answers[st.Get_source()] = self.comm.recv(source=st.Get_source(), tag=_PONG)
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_PING, status=st):
                self.comm.recv(source=st.Get_source(), tag=_PING)
                self._sends.append(self.comm.isend((self.count, self.what), dest=st.Get_source(), tag=_PONG))
            time.sleep(0.01)
        if req.Test():
            return True
        silent = [r for r in range(self.size) if r not in answers]
        elsewhere = {r: a for r, a in answers.items() if a[0] != self.count or a[1] != self.what}
        parts = [f"rank {self.rank}: no progress for {waited:.0f} s in {self.what} (collective #{self.count})"]
        if silent:
            parts.append(f"{_ranks(silent)} did not answer (hung, stopped or dead)")
        for r, (count, what) in sorted(elsewhere.items()):
            parts.append(f"rank {r} waits in {what} (collective #{count}) instead")
        if not silent and not elsewhere:
            parts.append("every rank answered from the same collective (the MPI library made no progress)")
        alive = sorted(answers)
        if alive[0] != self.rank:  # the lowest rank that is alive speaks; the others wait for its abort
            time.sleep(2 * grace)
        self.abort("; ".join(parts) + f"; stopping every rank (limit: train.rank_timeout = {self.timeout:g} s, "
                   "--rank-timeout)")
        return False  # pragma: no cover - abort does not return

    def abort(self, message: str, code: int = EXIT_RANK_LOST) -> None:
        """Print ``message`` as the command's error line and end every rank (``MPI_Abort``)."""
        from .launch import note_rank

        print(f"retrograd {self.command}: error: {message}", file=self.err or sys.stderr, flush=True)
        sys.stdout.flush()
        note_rank(self.rank, "exit", code)
        self.comm.Abort(code)


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def from_environment(timeout: float = DEFAULT_TIMEOUT, command: str = "train") -> RankGroup | SingleProcess:
    """The ranks this process belongs to: under an MPI launcher that started several processes, the
    default process group of ``rg.distributed`` (initialised here when the program has not) as a
    ``RankGroup``; else ``SingleProcess`` (mpi4py is not imported)."""
    size = env_world_size()
    if size is None or size == 1:
        return SingleProcess()
    from .. import distributed as dist

    if not dist.is_mpi_available():
        raise ImportError(f"this process was started by an MPI launcher ({size} processes) but mpi4py is "
                          "missing; install it with: python3 -m pip install 'retrograd[distributed]'")
    if not dist.is_initialized():
        dist.init_process_group(backend="mpi")
    group = dist.default_group()
    if group.size == 1:
        return SingleProcess()
    ranks = RankGroup(group.comm, timeout, command)
    dist.set_wait_hook(ranks.wait_all)
    return ranks


# ---------------------------------------------------------------------- the start-up check
def run_fingerprint(setup: Any, version: str) -> dict:
    """What every rank must agree on, from a recipe ``Setup``: the resolved config (but ``[run]``, which
    rank 0 alone fills in), the model's parameter names, shapes and dtypes, the number of training
    samples and retrograd's version."""
    from .config import dumps

    cfg = {k: v for k, v in setup.cfg.items() if k != "run"}
    params = [(n, tuple(p.shape), str(p.dtype)) for n, p in setup.model.named_parameters()]
    return {"config": dumps(cfg), "params": params, "train_samples": len(setup.data.train), "version": version}


def check_same_run(group: Any, fingerprint: dict, what: str = "start-up check") -> None:
    """Raise ``RankMismatchError`` on every rank when any rank's ``fingerprint`` differs from rank 0's,
    naming the ranks and the first difference."""
    prints = group.allgather(fingerprint, what)
    ref = prints[0]
    bad = [r for r, p in enumerate(prints) if p != ref]
    if not bad:
        return
    p = prints[bad[0]]
    diff = next((k for k in ref if ref.get(k) != p.get(k)), None) or next(k for k in p if k not in ref)
    detail = _first_difference(ref.get(diff), p.get(diff), f"rank {bad[0]}")
    raise RankMismatchError(f"the ranks do not build the same run: {_ranks(bad)} "
                            f"{'differs' if len(bad) == 1 else 'differ'} from rank 0 in "
                            f"{_FIELDS.get(diff, diff)} ({detail}); every rank must read the same config, "
                            "data and model code with the same retrograd version")


_FIELDS = {"config": "the resolved config", "params": "the model's parameters", "train_samples":
           "the number of training samples", "version": "the retrograd version", "world": "the world size"}


def _first_difference(a: Any, b: Any, other: str) -> str:
    if isinstance(a, str) and isinstance(b, str):
        la, lb = a.splitlines(), b.splitlines()
        for i, (x, y) in enumerate(zip(la, lb)):
            if x != y:
                return f"rank 0 has {x!r}, {other} {y!r}"
        return f"rank 0 has {len(la)} lines, {other} {len(lb)}"
    if isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b):
            if x != y:
                return f"rank 0 has {_param_text(x)}, {other} {_param_text(y)}"
        return f"rank 0 has {len(a)} parameters, {other} {len(b)}"
    return f"rank 0 has {a!r}, {other} {b!r}"


def _param_text(p: Any) -> str:
    if isinstance(p, (list, tuple)) and len(p) == 3:
        return f"{p[0]} {tuple(p[1])} {p[2]}"
    return repr(p)


def start(group: Any, setup: Any, version: str, *, fresh: bool) -> None:
    """The start-up of a data-parallel run, on every rank: ``check_same_run``, then (``fresh``: a new run,
    not a resume, where every rank loads the same checkpoint) rank 0's parameters and buffers copied to
    every rank, as ``DistributedDataParallel`` does when it wraps a model."""
    if group.size == 1:
        return
    check_same_run(group, run_fingerprint(setup, version))
    if fresh:
        for name, t in [*setup.model.named_parameters(), *setup.model.named_buffers()]:
            arr = t._array
            if arr.flags.c_contiguous and arr.size:
                group.bcast_array_(arr, f"the start-up copy of {name}")

