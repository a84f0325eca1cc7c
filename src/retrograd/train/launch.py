"""``retrograd train CONFIG --nproc N``: start N local ranks through the installed MPI's launcher.

The command becomes ``mpiexec -n N PYTHON -m retrograd train CONFIG ...`` (the same arguments, less
``--nproc``), run with this process's Python and environment; its exit status is the command's. The
launcher and its flags (Open MPI's ``--oversubscribe``, ``--allow-run-as-root``) come from
``rg.distributed.launch`` (``$RETROGRAD_MPIEXEC``, else the ``mpiexec`` beside the Python executable,
where ``pip install 'retrograd[distributed]'`` puts MPICH's, else ``PATH``). While it runs, each rank
notes its pid in a temporary folder (``note_rank``), so that when one dies the line after mpiexec's
own report names its rank (``RankWatch``).

Threads per rank: N ranks on one machine that each start a thread per core (OpenBLAS, OpenMP,
retrograd's kernel pool) put N threads on every core, and OpenBLAS's workers spin while they wait, so
a step can take several times as long. Unless the user set one of the thread variables
(``THREAD_VARS``), each rank gets ``max(1, cores // N)`` threads through all of them, and the line that
starts the ranks says so (``torchrun`` sets ``OMP_NUM_THREADS=1`` for the same reason).

On several machines, call ``mpiexec`` yourself: ``mpiexec -n 32 --hostfile hosts retrograd train
CONFIG`` (each rank finds its rank and the world size in the launcher's environment,
``retrograd.train.ranks``).
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from ..distributed.launch import mpiexec_command
from .config import ConfigError

__all__ = ["launch", "note_rank", "RankWatch", "rank_threads", "THREAD_VARS"]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RETROGRAD_NUM_THREADS")


def rank_threads(nproc: int, environ: dict, cores: int | None = None) -> dict:
    """The thread variables each of ``nproc`` local ranks gets: ``{}`` when the user set any of
    ``THREAD_VARS`` (theirs are kept as they are), else each set to ``max(1, cores // nproc)``
    (``cores``: the CPUs this process may run on)."""
    if any(environ.get(v, "").strip() for v in THREAD_VARS):
        return {}
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
    return dict.fromkeys(THREAD_VARS, str(max(1, cores // max(1, nproc))))


def launch(nproc: int, argv: Sequence[str], command: str = "train") -> int:
    """Run ``argv`` (the command line without ``--nproc``) as ``nproc`` ranks; returns mpiexec's exit
    status. Ctrl-C reaches the ranks through mpiexec (each stops at the same batch and rank 0 saves a
    checkpoint); this process only waits."""
    try:
        import mpi4py  # noqa: F401 - the ranks need it; say so here, once, not from every rank
    except ImportError:
        raise ConfigError("--nproc: needs mpi4py; install it with: python3 -m pip install "
                          "'retrograd[distributed]' (mpi4py and MPICH)") from None
    try:
        cmd = mpiexec_command(nproc, [sys.executable, "-m", "retrograd", *argv])
    except FileNotFoundError as e:
        raise ConfigError(f"--nproc: {e}") from None
    threads = rank_threads(nproc, os.environ)
    note = (f" ({threads['OMP_NUM_THREADS']} thread(s) each; set OMP_NUM_THREADS, OPENBLAS_NUM_THREADS "
            f"and RETROGRAD_NUM_THREADS to choose)" if threads else "")
    print(f"retrograd {command}: starting {nproc} ranks{note}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # mpiexec gets it from the terminal too
    with tempfile.TemporaryDirectory(prefix="retrograd-ranks-") as folder:
        watch = RankWatch(pathlib.Path(folder), nproc)
        try:
            proc = subprocess.Popen(cmd, env={**os.environ, **threads, RANK_DIR: folder})
            while proc.poll() is None:
                watch.poll()
                time.sleep(0.01)
        finally:
            signal.signal(signal.SIGINT, previous)
        rc = proc.returncode
        noted = [c for c in watch.exits().values() if c != 0]
        if noted:  # a rank said why it stopped (and stopped the others): its status, not MPI's kill of them
            return max(noted)
        lost = watch.lost()
        if rc != 0 and lost:
            print(f"retrograd {command}: error: {lost}; mpiexec stopped the other ranks (exit status {rc})",
                  file=sys.stderr, flush=True)
        return rc


RANK_DIR = "RETROGRAD_RANK_DIR"  # where each rank started by launch() writes RANK.pid, and RANK.exit at its end


def note_rank(rank: int, what: str, value: int) -> None:
    """``RANK.pid`` (at start-up) or ``RANK.exit`` (exit status, at a normal end), for ``launch``'s watch."""
    folder = os.environ.get(RANK_DIR)
    if folder:
        try:
            (pathlib.Path(folder) / f"{rank}.{what}").write_text(str(value))
        except OSError:
            pass


class RankWatch:
    """Which ranks disappeared first without a normal end: polled while mpiexec runs."""

    def __init__(self, folder: pathlib.Path, nproc: int) -> None:
        self.folder, self.nproc = folder, nproc
        self.first_gone: dict[int, int] | None = None

    def _read(self, what: str) -> dict[int, int]:
        out = {}
        for r in range(self.nproc):
            try:
                out[r] = int((self.folder / f"{r}.{what}").read_text())
            except (OSError, ValueError):
                pass
        return out

    def exits(self) -> dict[int, int]:
        """The exit statuses the ranks noted (a normal end, or the status of an MPI_Abort they called)."""
        return self._read("exit")

    def poll(self) -> None:
        if self.first_gone is not None:
            return
        ended = self._read("exit")
        gone = {}
        for r, pid in self._read("pid").items():
            if r in ended:
                continue
            if not _alive(pid):
                gone[r] = pid
        if gone:
            self.first_gone = gone

    def lost(self) -> str | None:
        self.poll()
        gone = self.first_gone
        if not gone:
            return None
        who = ", ".join(f"rank {r} (pid {pid})" for r, pid in sorted(gone.items()))
        if len(gone) == 1:
            return f"{who} ended without finishing (killed, or crashed outside Python)"
        return (f"{who} ended without finishing (killed, or crashed outside Python; mpiexec's message above "
                "names the pid that ended first)")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
