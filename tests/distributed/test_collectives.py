"""The collectives against NumPy's reductions on 2 and 3 ranks, and the single-process group that
needs no MPI at all."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import retrograd as rg
import retrograd.distributed as dist
from retrograd import nn
from retrograd.distributed import group as group_module
from mpi_launch import HERE, run_ranks

sys.path.insert(0, str(HERE))
import mpi_worker as worker  # noqa: E402


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_against_numpy_on_n_ranks(n, tmp_path):
    run_ranks(n, "collectives", str(tmp_path / "out.npz"))
    got = np.load(tmp_path / "out.npz")
    assert int(got["world"]) == n
    assert int(got["checks"]) == 229  # every ReduceOp x dtype (2 each; 1 for a refused pair) + the rest


@pytest.fixture
def without_mpi(monkeypatch):
    """A process with no mpi4py and no MPI launcher around it."""
    monkeypatch.setattr(group_module, "is_mpi_available", lambda: False)
    for var in group_module._SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_one_process_without_mpi(without_mpi):
    dist.init_process_group()
    assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (0, 1, "mpi")
    assert dist.default_group().comm is None
    worker.collectives({})  # every check against NumPy with one rank, on the identity path
    with pytest.raises(ValueError, match="trying to initialize the default process group twice"):
        dist.init_process_group()


def test_ddp_and_syncbn_in_one_process_equal_plain_training(without_mpi):
    dist.init_process_group(backend="mpi")
    plain = worker.train(dict(model="cnn", optim="adamw", dtype="float64", steps="3", batch="4", world="1",
                              ref="big"))
    ddp = worker.train(dict(model="cnn", optim="adamw", dtype="float64", steps="3", batch="4", sync="1"))
    assert sorted(plain) == sorted(ddp)
    for k in plain:
        assert plain[k].tobytes() == ddp[k].tobytes(), k


def test_state_dict_keys_and_module(without_mpi):
    dist.init_process_group()
    inner = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ddp = nn.parallel.DistributedDataParallel(inner)
    assert ddp.module is inner
    assert list(ddp.state_dict()) == ["module." + k for k in inner.state_dict()]


def test_launched_ranks_without_mpi4py_and_bad_arguments(without_mpi, monkeypatch):
    with pytest.raises(ValueError, match="init_method and store are not used"):
        dist.init_process_group(init_method="tcp://127.0.0.1:23456")
    with pytest.raises(ValueError, match="world_size=2 was given but MPI says 1"):
        dist.init_process_group(world_size=2)
    assert not dist.is_initialized()
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"one of 2 MPI ranks but mpi4py is not installed; pip install "
                                           r"'retrograd\[distributed\]'"):
        dist.init_process_group()


def test_convert_sync_batchnorm_keeps_the_tensors():
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), bn, nn.Sequential(nn.BatchNorm1d(4)))
    model.eval()
    out = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model and isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][0], nn.SyncBatchNorm)
    assert model[1].weight is bn.weight and model[1].running_mean is bn.running_mean and not model[1].training
    assert list(model.state_dict()) == list(nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3),
                                                          nn.Sequential(nn.BatchNorm1d(4))).state_dict())


def test_mpiexec_command_for_the_installed_mpi():
    exe = dist.find_mpiexec()
    kind = dist.mpi_implementation(exe)
    assert kind in ("mpich", "openmpi")
    cmd = dist.mpiexec_command(3, ["python", "x.py"], hostfile="hosts")
    assert cmd[0] == exe and cmd[-4:] == ["-n", "3", "python", "x.py"]
    assert ("--hostfile" if kind == "openmpi" else "-f") in cmd and "hosts" in cmd
    with pytest.raises(ValueError, match="nproc must be a positive int"):
        dist.mpiexec_command(0, ["python"])


class _FakeRequest:
    """An MPI request that completes after ``polls`` Tests (never, for None)."""

    def __init__(self, polls: int | None) -> None:
        self.polls, self.tests, self.waited = polls, 0, False

    def Test(self) -> bool:
        self.tests += 1
        return self.polls is not None and self.tests >= self.polls

    def Wait(self) -> None:
        self.waited = True


def test_wait_requests_hook_untimed_timed_and_timeout():
    reqs = [_FakeRequest(1), _FakeRequest(3)]
    dist.wait_requests(reqs, None, "x")  # no timeout: MPI's Wait on each, no polling
    assert [(r.waited, r.tests) for r in reqs] == [(True, 0), (True, 0)]
    reqs = [_FakeRequest(2), _FakeRequest(5)]
    dist.wait_requests(reqs, 30.0, "x")  # timed: polls until every request completed
    assert not any(r.waited for r in reqs) and reqs[1].tests == 5
    with pytest.raises(dist.DistTimeoutError, match="^bucket: not finished after 0.01 s"):
        dist.wait_requests([_FakeRequest(None)], 0.01, "bucket")
    seen = []
    old = dist.set_wait_hook(lambda rs, what: seen.append((len(rs), what)))
    try:
        dist.wait_requests([_FakeRequest(None)], 0.01, "hooked")  # the hook decides, whatever the timeout
        work = dist.Work([_FakeRequest(None)], None, None, "work")
        assert work.wait() and work.is_completed()
    finally:
        dist.set_wait_hook(old)
    assert seen == [(1, "hooked"), (1, "work")]
    with pytest.raises(dist.DistTimeoutError, match="^w: not finished after 0.01 s"):
        dist.Work([_FakeRequest(None)], None, None, "w").wait(timeout=0.01)  # its own timeout: no hook
