"""Finding and calling the MPI launcher (``mpiexec``) that belongs to the MPI mpi4py loads.

``pip install 'retrograd[distributed]'`` puts MPICH's ``mpiexec`` beside the Python executable of
the environment; a cluster's own MPI has its ``mpiexec`` on PATH. The two must not be mixed: ranks
started by one MPI's launcher and running another MPI's library each see a world of one
(``init_process_group`` catches that). ``find_mpiexec`` therefore prefers, in order:
``$RETROGRAD_MPIEXEC``, the ``mpiexec`` in the environment's ``bin`` folder, then PATH.
``mpiexec_command`` builds the argument list for MPICH's hydra and for Open MPI (which wants
``--oversubscribe`` for more ranks than cores and ``--allow-run-as-root`` as root).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["find_mpiexec", "mpi_implementation", "mpiexec_command"]


def find_mpiexec() -> str:
    """The path of the MPI launcher to use; FileNotFoundError naming what to install when none is found."""
    env = os.environ.get("RETROGRAD_MPIEXEC")
    if env:
        path = shutil.which(env)
        if path is None:
            raise FileNotFoundError(f"RETROGRAD_MPIEXEC={env!r} is not an executable")
        return path
    for name in ("mpiexec", "mpirun"):
        beside = Path(sys.executable).parent / name  # not resolved: a venv's bin, where pip puts it
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    for name in ("mpiexec", "mpirun"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise FileNotFoundError("no MPI launcher (mpiexec) found beside the Python executable or on PATH; "
                            "pip install 'retrograd[distributed]' (mpi4py and MPICH) or load your cluster's MPI")


@functools.lru_cache(maxsize=8)
def mpi_implementation(mpiexec: str | None = None) -> str:
    """Which MPI ``mpiexec`` (default: ``find_mpiexec()``) belongs to: 'mpich' (hydra, also Intel
    MPI's), 'openmpi', or 'unknown'."""
    exe = mpiexec or find_mpiexec()
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        text = out.stdout + out.stderr
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if "HYDRA" in text or "Intel(R) MPI" in text:
        return "mpich"
    if "Open MPI" in text or "OpenRTE" in text or "prterun" in text or "PMIx" in text:
        return "openmpi"
    return "unknown"


def mpiexec_command(nproc: int, command: Sequence[str], *, mpiexec: str | None = None,
                    hostfile: str | os.PathLike | None = None, extra: Sequence[str] = ()) -> list[str]:
    """``[mpiexec, ..., -n, nproc, *command]`` for the installed MPI: Open MPI gets
    ``--oversubscribe`` (more ranks than cores on one machine) and, as root, ``--allow-run-as-root``;
    ``hostfile`` becomes ``-f`` (hydra) or ``--hostfile`` (Open MPI); ``extra`` goes before ``-n``."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"mpiexec_command: nproc must be a positive int, got {nproc!r}")
    exe = mpiexec or find_mpiexec()
    kind = mpi_implementation(exe)
    argv = [exe]
    if kind == "openmpi":
        argv += ["--oversubscribe", "--bind-to", "none"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv.append("--allow-run-as-root")
    if hostfile is not None:
        argv += ["--hostfile" if kind == "openmpi" else "-f", str(hostfile)]
    argv += list(extra)
    argv += ["-n", str(nproc)]
    argv += [str(c) for c in command]
    return argv
