"""``retrograd train CONFIG --nproc N``: start N local ranks through the installed MPI's launcher.

The command becomes ``mpiexec -n N PYTHON -m retrograd train CONFIG ...`` (the same arguments, less
``--nproc``), run with this process's Python and environment; its exit status is the command's. The
launcher is the ``mpiexec`` beside the Python executable (what ``pip install 'retrograd[distributed]'``
puts there with the ``mpich`` wheel), else the first on ``PATH``, else ``$RETROGRAD_MPIEXEC``
first when set. Open MPI's launcher refuses to start more processes than cores and to run as root
unless told: ``--oversubscribe`` and ``--allow-run-as-root`` are added when needed (MPICH's Hydra
needs neither).

On several machines, call ``mpiexec`` yourself: ``mpiexec -n 32 --hostfile hosts retrograd train
CONFIG`` (each rank finds its rank and the world size in the launcher's environment,
``retrograd.train.ranks``).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from .config import ConfigError

__all__ = ["find_mpiexec", "mpiexec_command", "launch", "note_rank", "RankWatch"]


def find_mpiexec() -> str:
    """The ``mpiexec`` to start ranks with (see the module docstring); a ``ConfigError`` saying how to
    install one when there is none."""
    given = os.environ.get("RETROGRAD_MPIEXEC")
    if given:
        found = shutil.which(given)
        if found is None:
            raise ConfigError(f"--nproc: RETROGRAD_MPIEXEC={given!r} is not an executable")
        return found
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise ConfigError("--nproc: no MPI launcher (mpiexec) beside this Python or on PATH; install MPI with: "
                          "python3 -m pip install 'retrograd[distributed]' (mpi4py and MPICH), or a system MPI")
    return found


def _is_open_mpi(mpiexec: str) -> bool:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "open mpi" in (out.stdout + out.stderr).lower() or "open-mpi" in (out.stdout + out.stderr).lower()


def mpiexec_command(nproc: int, argv: Sequence[str], mpiexec: str | None = None) -> list[str]:
    """``[mpiexec, -n, N, (Open MPI's flags), python, -m, retrograd, *argv]``."""
    mpiexec = mpiexec or find_mpiexec()
    cmd = [mpiexec, "-n", str(nproc)]
    if _is_open_mpi(mpiexec):
        if nproc > (os.cpu_count() or 1):
            cmd.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd + [sys.executable, "-m", "retrograd", *argv]


def launch(nproc: int, argv: Sequence[str], command: str = "train") -> int:
    """Run ``argv`` (the command line without ``--nproc``) as ``nproc`` ranks; returns mpiexec's exit
    status. Ctrl-C reaches the ranks through mpiexec (each stops at the same batch and rank 0 saves a
    checkpoint); this process only waits."""
    try:
        import mpi4py  # noqa: F401 - the ranks need it; say so here, once, not from every rank
    except ImportError:
        raise ConfigError("--nproc: needs mpi4py; install it with: python3 -m pip install "
                          "'retrograd[distributed]' (mpi4py and MPICH)") from None
    cmd = mpiexec_command(nproc, argv)
    print(f"retrograd {command}: starting {nproc} ranks: {' '.join(cmd)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # mpiexec gets it from the terminal too
    with tempfile.TemporaryDirectory(prefix="retrograd-ranks-") as folder:
        watch = RankWatch(pathlib.Path(folder), nproc)
        try:
            proc = subprocess.Popen(cmd, env={**os.environ, RANK_DIR: folder})
            while proc.poll() is None:
                watch.poll()
                time.sleep(0.01)
        finally:
            signal.signal(signal.SIGINT, previous)
        rc = proc.returncode
        lost = watch.lost()
        if rc not in (0, 2, 3, 4, 130) and lost:
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
