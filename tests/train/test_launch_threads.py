"""``retrograd train --nproc N``: each local rank's thread variables (``train.launch.rank_threads``).

N ranks that each start a thread per core oversubscribe the machine; unless the user set a thread
variable, each rank gets cores // N threads through every variable, and the start-up line says so."""
import pytest

from retrograd.train import launch as launch_mod
from retrograd.train.launch import THREAD_VARS, rank_threads


@pytest.mark.parametrize("nproc, cores, want", [(2, 2, "1"), (2, 16, "8"), (3, 16, "5"), (3, 2, "1"), (1, 4, "4")])
def test_each_rank_gets_its_share_of_the_cores(nproc, cores, want):
    assert rank_threads(nproc, {}, cores=cores) == {v: want for v in THREAD_VARS}


@pytest.mark.parametrize("var", THREAD_VARS)
def test_a_thread_variable_the_user_set_leaves_all_of_them_alone(var):
    assert rank_threads(2, {var: "3"}, cores=16) == {}
    assert rank_threads(2, {var: " "}, cores=16) == {v: "8" for v in THREAD_VARS}  # blank: not set


def test_launch_hands_the_ranks_their_threads_and_says_so(monkeypatch, capsys):
    pytest.importorskip("mpi4py", reason="launch() needs mpi4py: pip install 'retrograd[distributed]'")
    seen = {}

    class FakeProc:
        returncode = 0

        def __init__(self, cmd, env):
            seen["cmd"], seen["env"] = cmd, env

        def poll(self):
            return 0

    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(launch_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(launch_mod, "mpiexec_command", lambda n, argv: ["mpiexec", "-n", str(n), *argv])
    monkeypatch.setattr(launch_mod.subprocess, "Popen", FakeProc)
    assert launch_mod.launch(2, ["train", "x.toml"]) == 0
    assert {v: seen["env"][v] for v in THREAD_VARS} == {v: "2" for v in THREAD_VARS}
    assert "starting 2 ranks (2 thread(s) each" in capsys.readouterr().err

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert launch_mod.launch(2, ["train", "x.toml"]) == 0
    assert "OMP_NUM_THREADS" not in seen["env"] and seen["env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert "thread(s) each" not in capsys.readouterr().err
