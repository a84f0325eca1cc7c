"""Launching tests/distributed/mpi_worker.py on N local ranks through the installed MPI's launcher."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

import retrograd.distributed as dist

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def run_ranks(n: int, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    """``mpiexec -n n python mpi_worker.py *args``; with ``check`` fails the test (with the output) when a
    rank fails."""
    if not dist.is_mpi_available():
        pytest.fail("mpi4py is not installed: pip install -e '.[test]' brings mpi4py and MPICH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", RETROGRAD_NUM_THREADS="1")
    cmd = dist.mpiexec_command(n, [sys.executable, str(HERE / "mpi_worker.py"), *args])
    # a session of its own: on a timeout the launcher and every rank are ended together
    with subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s:\n{out[-4000:]}\n{err[-4000:]}")
    proc = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc
