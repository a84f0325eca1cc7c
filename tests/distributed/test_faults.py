"""A rank that dies or never joins stops the whole job, bounded in time, exit code non-zero.
(The command line's 60 s default, rank naming and checkpoints are tested with `retrograd train`.)"""
from __future__ import annotations

import time

from mpi_launch import run_ranks


def test_a_rank_that_never_joins_times_out_and_aborts_all(tmp_path):
    t0 = time.monotonic()
    proc = run_ranks(2, "timeout", str(tmp_path / "x.npz"), "timeout=2", "sleep=60", check=False, timeout=50)
    assert proc.returncode != 0
    assert "DistTimeoutError: all_reduce: not finished after 2 s" in proc.stderr
    assert "rank 0 of 2 stopped by DistTimeoutError; aborting all ranks" in proc.stderr
    assert time.monotonic() - t0 < 40  # not the 60 s rank 1 sleeps


def test_a_killed_rank_ends_the_job(tmp_path):
    t0 = time.monotonic()
    proc = run_ranks(2, "killed", str(tmp_path / "x.npz"), check=False, timeout=50)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 40
