"""DistributedDataParallel's gradient all-reduce: throughput against bare mpi4py, and overlap.

Run on N local ranks (the launcher of the installed MPI; retrograd.distributed.find_mpiexec()):

    mpiexec -n 2 python bench/ddp_allreduce.py [--repeat 15] [--models mlp,gpt,mlp10m] [--components]

For each model, DDP-wrapped, with its optimizer's flat gradient buffer:

- **throughput**, like with like: the same flat buffer (restored before every round, outside the
  timing) reduced (a) by one bare ``comm.Allreduce(MPI.IN_PLACE, buf)``, (b) the way a DDP step
  does it (``DistributedDataParallel._reduce_rest``, the code its backward runs: one ``Iallreduce``
  per bucket, wait for all, with the average's scaling). Two pairs: **avg** = (a) followed by the
  same scaling DDP applies (multiply by 1/N for a power-of-two N, else divide) against DDP's path,
  both giving the average; **sum** = (a) against DDP's buckets without the scaling, both giving
  the sum. Also **vs bare sum** = (a) against DDP's averaging path (the session-7 definition, which
  charged the average to DDP alone). Medians of ``--repeat`` interleaved rounds (in a shuffled order),
  each after a barrier; a ratio is the bare time / DDP's (>= 0.9 is the target).
- **overlap**: training steps (forward, backward, SGD step). After backward returns DDP has waited
  ``last_wait_s`` for reductions still running (after a barrier that absorbs the ranks' skew, which
  is reported apart); the share of the isolated all-reduce time (b, avg) hidden behind backward is
  ``1 - wait / (b)``. Also the step time with DDP against the same
  step under ``no_sync()`` (no communication at all).

- ``--components``: each piece of that path timed alone on the same buffer, interleaved (the blocking
  Allreduce, Iallreduce with Wait / Waitall / a Test spin, ``Work.wait`` untimed and timed, the
  command line's wait hook, the scaling by divide and by multiply, session 7's path and today's).

Prints one line per model on rank 0 (and ``--json PATH`` writes them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402

import retrograd as rg  # noqa: E402
import retrograd.distributed as dist  # noqa: E402
from retrograd import nn  # noqa: E402
from retrograd.models import GPT, MLP  # noqa: E402


def build(name: str):
    """(model, make_batch, loss_fn)"""
    rg.manual_seed(0)
    if name == "mlp":  # bench/mlp.py's model: 784-512-256-10, batch 128
        model = MLP([784, 512, 256, 10])
        x, y = rg.randn(128, 784), rg.randint(0, 10, (128,))
        return model, lambda: (x, y), nn.CrossEntropyLoss()
    if name == "mlp10m":  # ~10M parameters (40 MB of float32 gradients)
        model = MLP([784, 2560, 2560, 784, 10])
        x, y = rg.randn(32, 784), rg.randint(0, 10, (32,))
        return model, lambda: (x, y), nn.CrossEntropyLoss()
    if name == "gpt":  # bench/gpt.py's sizes: vocab 65, d_model 128, 4 heads, 2 layers, seq 64, batch 32
        model = GPT(65, block_size=64, n_layer=2, n_head=4, d_model=128)
        idx = rg.randint(0, 65, (32, 64))
        ce = nn.CrossEntropyLoss()
        return model, lambda: (idx, idx), lambda out, y: ce(out.reshape(-1, 65), y.reshape(-1))
    raise ValueError(f"unknown model {name!r}")


def median_ms(xs: list) -> float:
    return statistics.median(xs) * 1e3


def run(name: str, repeat: int, cap_mb: float, with_components: bool = False) -> dict:
    from mpi4py import MPI
    comm = dist.default_group().comm
    model, batch, loss_fn = build(name)
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=cap_mb)
    opt = rg.optim.SGD(ddp.parameters(), lr=1e-3, momentum=0.9)

    def step(sync: bool = True) -> float:
        x, y = batch()
        opt.zero_grad()
        t0 = time.perf_counter()
        if sync:
            loss_fn(ddp(x), y).backward()
        else:
            with ddp.no_sync():
                loss_fn(ddp(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    for _ in range(2):  # the first backward learns the gradient counts; warm up
        step()
    flat = opt.flat_grads()
    assert len(flat) == 1
    buf = flat[0]
    n = comm.Get_size()
    # the ranks reach the end of backward at different times (two ranks share two busy cores): a
    # barrier there first, so that the wait that follows is communication still running, not skew.
    # Not MPI's: inside any blocking MPI call MPICH progresses the started reductions, which would
    # count their progress during the skew as hidden. A spin on node-shared memory makes no MPI call.
    finish = ddp._finish
    skews = []
    skew_barrier = _SharedBarrier(comm)

    def finish_after_barrier() -> None:
        t0 = time.perf_counter()
        skew_barrier()
        skews.append(time.perf_counter() - t0)
        finish()
    ddp._finish = finish_after_barrier

    saved = buf.copy()
    # the gradients are views of the buffer (DDP's path copies none in)
    assert all(p.grad is not None and p.grad._array is s for p, s in zip(ddp._params, ddp._slots))
    scale = 1.0 / n if n & (n - 1) == 0 else None

    def average_(a: np.ndarray) -> None:  # the scaling DDP applies, on the bare side
        if scale is None:
            np.divide(a, n, out=a)
        else:
            np.multiply(a, scale, out=a)

    def bare_sum() -> None:
        comm.Allreduce(MPI.IN_PLACE, buf)

    def bare_avg() -> None:
        comm.Allreduce(MPI.IN_PLACE, buf)
        average_(buf)

    def ddp_sum() -> None:  # DDP's buckets as it starts and waits for them, without the average
        reqs = [dist.flat_all_reduce(b.view) for b in ddp._buckets]
        dist.Work(reqs, None, ddp.process_group.timeout, "bench").wait()

    def ddp_avg() -> None:  # exactly what the end of a synchronised backward runs
        for b in ddp._buckets:
            b.request = None
        ddp._next = 0
        ddp._reduce_rest()

    rounds = {"bare_sum": bare_sum, "ddp_sum": ddp_sum, "bare_avg": bare_avg, "ddp_avg": ddp_avg}
    times: dict = {k: [] for k in rounds}
    with_ddp, without, waits, early = [], [], [], []
    for k in range(repeat):
        _time_round(rounds, times, k, buf, saved, comm)
        buf[...] = saved
        comm.Barrier()
        with_ddp.append(step(True))
        waits.append(ddp.last_wait_s)
        early.append(ddp.last_buckets_started_early)
        comm.Barrier()
        without.append(step(False))
    t = {k: median_ms(v) for k, v in times.items()}
    t_wait = median_ms(waits)
    parts = components(ddp, buf, saved, repeat) if with_components else None
    return {"model": name, "ranks": n, "params": int(buf.size), "megabytes": buf.nbytes / 2**20,
            "buckets": len(ddp._buckets), "bucket_cap_mb": cap_mb, "bare_sum_ms": t["bare_sum"],
            "ddp_sum_ms": t["ddp_sum"], "bare_avg_ms": t["bare_avg"], "ddp_avg_ms": t["ddp_avg"],
            "ratio_avg": t["bare_avg"] / t["ddp_avg"], "ratio_sum": t["bare_sum"] / t["ddp_sum"],
            "ratio_vs_bare_sum": t["bare_sum"] / t["ddp_avg"],
            "bare_GBps": buf.nbytes / 2**30 / (t["bare_sum"] / 1e3), "step_ddp_ms": median_ms(with_ddp),
            "step_no_sync_ms": median_ms(without), "wait_after_backward_ms": t_wait,
            "hidden_share": max(0.0, 1 - t_wait / t["ddp_avg"]), "buckets_started_early": statistics.median(early),
            "skew_ms": median_ms(skews), "components_ms": parts}


def components(ddp, buf: np.ndarray, saved: np.ndarray, repeat: int) -> dict:
    """Where the time of DDP's path goes, each piece timed alone on the same buffer, interleaved:
    the MPI calls and waits, the average's scaling, and session 7's path (Iallreduce per bucket,
    Waitall, divide) against today's ``_reduce_rest``."""
    from mpi4py import MPI
    from retrograd.train.ranks import RankGroup
    g = ddp.process_group
    comm, n = g.comm, g.size
    spec = [buf, buf.size, MPI.FLOAT if buf.dtype == np.float32 else MPI.DOUBLE]
    hook = RankGroup(comm, 60.0)
    starts: list = []

    def iall_wait() -> None:
        t0 = time.perf_counter()
        r = comm.Iallreduce(MPI.IN_PLACE, spec, MPI.SUM)
        starts.append(time.perf_counter() - t0)
        r.Wait()

    def session7() -> None:
        reqs = [dist.flat_all_reduce(b.view) for b in ddp._buckets]
        MPI.Request.Waitall(reqs)
        for b in ddp._buckets:
            np.divide(b.view, n, out=b.view)

    def reduce_rest() -> None:
        for b in ddp._buckets:
            b.request = None
        ddp._next = 0
        ddp._reduce_rest()

    pieces = {
        "Allreduce (blocking)": lambda: comm.Allreduce(MPI.IN_PLACE, spec, MPI.SUM),
        "Iallreduce + Wait": iall_wait,
        "Iallreduce + Waitall([r])": lambda: MPI.Request.Waitall([comm.Iallreduce(MPI.IN_PLACE, spec, MPI.SUM)]),
        "Iallreduce + Test() spin": lambda: _spin(comm.Iallreduce(MPI.IN_PLACE, spec, MPI.SUM)),
        "flat_all_reduce + Work.wait (no timeout)":
            lambda: dist.Work([dist.flat_all_reduce(buf)], None, None, "bench").wait(),
        "flat_all_reduce + Work.wait (timeout 60 s)":
            lambda: dist.Work([dist.flat_all_reduce(buf)], None, 60.0, "bench").wait(),
        "flat_all_reduce + CLI wait hook (RankGroup)": lambda: hook.wait_all([dist.flat_all_reduce(buf)], "bench"),
        "np.divide(buf, N)": lambda: np.divide(buf, n, out=buf),
        "np.multiply(buf, 1/N)": lambda: np.multiply(buf, 1.0 / n, out=buf),
        "session 7 path (Iallreduce/bucket, Waitall, divide)": session7,
        "DDP._reduce_rest (today)": reduce_rest,
    }
    times: dict = {k: [] for k in pieces}
    for k in range(repeat):
        _time_round(pieces, times, k, buf, saved, comm)
    out = {k: median_ms(v) for k, v in times.items()}
    out["Iallreduce call alone (start)"] = median_ms(starts)
    return out


class _SharedBarrier:
    """A barrier of the ranks that calls no MPI function while it waits: each rank bumps its counter
    in an MPI shared-memory window and spins until every counter reached its own (ranks on one
    node; elsewhere it falls back to ``comm.Barrier()``, which progresses pending collectives)."""

    def __init__(self, comm) -> None:
        from mpi4py import MPI
        self.comm, self.rank, self.count = comm, comm.Get_rank(), 0
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.shared = node.Get_size() == comm.Get_size()
        if not self.shared:
            node.Free()
            return
        self.node = node
        self.win = MPI.Win.Allocate_shared(8 * comm.Get_size() if node.Get_rank() == 0 else 0, 8, comm=node)
        mem, _ = self.win.Shared_query(0)
        self.flags = np.ndarray((comm.Get_size(),), np.int64, mem)
        self.flags[self.rank] = 0
        comm.Barrier()

    def __call__(self) -> None:
        if not self.shared:
            self.comm.Barrier()
            return
        self.count += 1
        self.flags[self.rank] = self.count
        while int(self.flags.min()) < self.count:
            pass


def _time_round(pieces: dict, times: dict, k: int, buf: np.ndarray, saved: np.ndarray, comm) -> None:
    """Round ``k``: each piece once, in a shuffled order, on the buffer restored and after a barrier."""
    for key in _shuffled(list(pieces), k):
        buf[...] = saved
        comm.Barrier()
        t0 = time.perf_counter()
        pieces[key]()
        times[key].append(time.perf_counter() - t0)


def _shuffled(keys: list, k: int) -> list:
    """Round ``k``'s order, the same on every rank: shuffled, so that no piece always follows the same
    one (a rotation keeps the cyclic order; a piece after a CPU-hungry one would always pay for it)."""
    out = list(keys)
    random.Random(k).shuffle(out)
    return out


def _spin(req) -> None:
    while not req.Test():
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--models", default="mlp,gpt,mlp10m")
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--components", action="store_true",
                    help="also time the pieces of DDP's path alone (MPI calls, waits, scaling), interleaved")
    args = ap.parse_args()
    dist.init_process_group("mpi")
    rows = [run(m, args.repeat, args.bucket_cap_mb, args.components) for m in args.models.split(",")]
    if dist.get_rank() == 0:
        for r in rows:
            print(f"{r['model']:7s} {r['ranks']} ranks {r['params'] / 1e6:6.2f}M params ({r['megabytes']:.1f} MB), "
                  f"{r['buckets']} buckets: avg bare {r['bare_avg_ms']:.3f} / DDP {r['ddp_avg_ms']:.3f} ms ratio "
                  f"{r['ratio_avg']:.2f}; sum bare {r['bare_sum_ms']:.3f} ({r['bare_GBps']:.2f} GB/s) / DDP "
                  f"{r['ddp_sum_ms']:.3f} ms ratio {r['ratio_sum']:.2f}; DDP avg vs bare sum {r['ratio_vs_bare_sum']:.2f}; "
                  f"step {r['step_ddp_ms']:.1f} ms (no_sync {r['step_no_sync_ms']:.1f} ms), wait after backward "
                  f"{r['wait_after_backward_ms']:.3f} ms, hidden {100 * r['hidden_share']:.0f} %, rank skew "
                  f"{r['skew_ms']:.1f} ms, buckets started during backward {r['buckets_started_early']:.0f}/{r['buckets']}")
            if r["components_ms"]:
                for k, v in r["components_ms"].items():
                    print(f"    {k:55s} {v:8.3f} ms")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
