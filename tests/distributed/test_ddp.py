"""DistributedDataParallel and SyncBatchNorm on 2 and 3 local ranks against one process.

N ranks with batch B each equal one process with batch N*B (plain BatchNorm: one process that
accumulates N chunks of B, since each rank normalises its own batch); float64 to 1e-12, float32 to
1e-6. The worker checks after every step that all ranks hold bitwise the same parameters, and a
second launch must give bitwise the same numbers."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_launch import HERE, run_ranks

sys.path.insert(0, str(HERE))
import mpi_worker as worker  # noqa: E402

RESULTS: dict = {}


def suite(n: int, tmp_path_factory) -> dict:
    if n not in RESULTS:
        out = tmp_path_factory.mktemp(f"ranks{n}") / "suite.npz"
        run_ranks(n, "suite", str(out))
        RESULTS[n] = dict(np.load(out))
    return RESULTS[n]


def reference(name: str, cfg: dict, world: int) -> dict:
    settings = {"steps": "20", "batch": "4", **cfg, "world": str(world)}
    settings["ref"] = "chunks" if cfg["model"] == "cnn" and cfg.get("sync") != "1" else "big"
    return worker.train(settings)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name,cfg", worker.CONFIGS, ids=[c[0] for c in worker.CONFIGS])
def test_n_ranks_equal_one_process_with_n_times_the_batch(n, name, cfg, tmp_path_factory):
    got = suite(n, tmp_path_factory)
    ref = reference(name, cfg, n)
    tol = 1e-6 if cfg["dtype"] == "float32" else 1e-12
    assert ref
    for k, v in ref.items():
        np.testing.assert_allclose(got[f"{name}|{k}"], v, rtol=tol, atol=tol, err_msg=f"{name} {k} on {n} ranks")


def test_two_launches_are_bitwise_equal(tmp_path_factory, tmp_path):
    first = suite(2, tmp_path_factory)
    run_ranks(2, "suite", str(tmp_path / "again.npz"))
    again = dict(np.load(tmp_path / "again.npz"))
    assert sorted(first) == sorted(again)
    for k in first:
        assert first[k].tobytes() == again[k].tobytes(), k


@pytest.mark.parametrize("n", [2, 3])
def test_unused_parameters(n, tmp_path_factory):
    got = suite(n, tmp_path_factory)
    msg = str(got["unused|message"])
    assert msg.startswith("Expected to have finished reduction in the prior iteration")
    assert "find_unused_parameters=True" in msg and "Parameter indices which did not receive grad for rank 0: 2 3" in msg
    assert "idle.weight, idle.bias" in msg
    assert bool(got["unused|idle_grad_is_none"])
    # d/dW of sum((rank + 1) * (x W^T + b)) with x = ones(4, 3): 4 * (rank + 1), averaged over ranks
    np.testing.assert_array_equal(got["unused|used_grad"], np.full((2, 3), 4 * (n + 1) / 2))


@pytest.mark.parametrize("n", [2, 3])
def test_a_parameter_used_on_one_rank_only_with_find_unused_parameters(n, tmp_path_factory):
    """The ranks disagree on which parameters are unused; each still takes part in the same collectives
    (no hang), and the idle layer's gradient is the last rank's 4 per entry averaged with zeros."""
    got = suite(n, tmp_path_factory)
    np.testing.assert_array_equal(got["unused|idle_grad_one_rank"], np.full((2, 3), 4 / n))
