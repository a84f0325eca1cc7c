"""Launching tests/distributed/worker.py on N local ranks through the installed MPI's launcher."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import retrograd.distributed as dist

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def run_ranks(n: int, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``mpiexec -n n python worker.py *args``; fails the test with the output when a rank fails."""
    if not dist.is_mpi_available():
        pytest.fail("mpi4py is not installed: pip install -e '.[test]' brings mpi4py and MPICH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", RETROGRAD_NUM_THREADS="1")
    cmd = dist.mpiexec_command(n, [sys.executable, str(HERE / "worker.py"), *args])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc
