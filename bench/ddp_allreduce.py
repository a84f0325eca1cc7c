"""DistributedDataParallel's gradient all-reduce: throughput against bare mpi4py, and overlap.

Run on N local ranks (the launcher of the installed MPI; retrograd.distributed.find_mpiexec()):

    mpiexec -n 2 python bench/ddp_allreduce.py [--repeat 15] [--models mlp,gpt,mlp10m]

For each model, DDP-wrapped, with its optimizer's flat gradient buffer:

- **throughput**: the same flat buffer reduced (a) by one bare ``comm.Allreduce(MPI.IN_PLACE, buf)``,
  (b) the way a DDP step does it: one ``Iallreduce`` per bucket (``bucket_cap_mb``), wait for all,
  divide by the world size. Median of ``--repeat`` interleaved rounds, each after a barrier; the
  ratio is (a)'s time / (b)'s time (>= 0.9 is the target: buckets cost at most 10 % of throughput).
- **overlap**: training steps (forward, backward, SGD step). After backward returns DDP has waited
  ``last_wait_s`` for reductions still running (after a barrier that absorbs the ranks' skew, which
  is reported apart); the share of the isolated all-reduce time (b) hidden behind backward is
  ``1 - wait / (b)``. Also the step time with DDP against the same
  step under ``no_sync()`` (no communication at all).

Prints one line per model on rank 0 (and ``--json PATH`` writes them).
"""
from __future__ import annotations

import argparse
import json
import os
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


def run(name: str, repeat: int, cap_mb: float) -> dict:
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
    # barrier there first, so that the wait that follows is communication still running, not skew
    finish = ddp._finish
    skews = []

    def finish_after_barrier() -> None:
        t0 = time.perf_counter()
        comm.Barrier()
        skews.append(time.perf_counter() - t0)
        finish()
    ddp._finish = finish_after_barrier

    def bare_round() -> None:
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf)
        bare.append(time.perf_counter() - t0)

    def bucket_round() -> None:
        comm.Barrier()
        t0 = time.perf_counter()
        reqs = [dist.flat_all_reduce(b.view) for b in ddp._buckets]
        MPI.Request.Waitall(reqs)
        for b in ddp._buckets:
            np.divide(b.view, n, out=b.view)
        buckets.append(time.perf_counter() - t0)

    bare, buckets, with_ddp, without, waits, early = [], [], [], [], [], []
    for k in range(repeat):
        for f in ((bare_round, bucket_round) if k % 2 else (bucket_round, bare_round)):
            f()
        comm.Barrier()
        with_ddp.append(step(True))
        waits.append(ddp.last_wait_s)
        early.append(ddp.last_buckets_started_early)
        comm.Barrier()
        without.append(step(False))
    t_bare, t_buckets = median_ms(bare), median_ms(buckets)
    t_wait = median_ms(waits)
    return {"model": name, "ranks": n, "params": int(buf.size), "megabytes": buf.nbytes / 2**20,
            "buckets": len(ddp._buckets), "bucket_cap_mb": cap_mb, "bare_allreduce_ms": t_bare,
            "bucket_allreduce_ms": t_buckets, "throughput_ratio": t_bare / t_buckets,
            "bare_GBps": buf.nbytes / 2**30 / (t_bare / 1e3), "step_ddp_ms": median_ms(with_ddp),
            "step_no_sync_ms": median_ms(without), "wait_after_backward_ms": t_wait,
            "hidden_share": max(0.0, 1 - t_wait / t_buckets), "buckets_started_early": statistics.median(early),
            "skew_ms": median_ms(skews)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--models", default="mlp,gpt,mlp10m")
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dist.init_process_group("mpi")
    rows = [run(m, args.repeat, args.bucket_cap_mb) for m in args.models.split(",")]
    if dist.get_rank() == 0:
        for r in rows:
            print(f"{r['model']:7s} {r['ranks']} ranks {r['params'] / 1e6:6.2f}M params ({r['megabytes']:.1f} MB), "
                  f"{r['buckets']} buckets: bare Allreduce {r['bare_allreduce_ms']:.2f} ms "
                  f"({r['bare_GBps']:.2f} GB/s), DDP buckets {r['bucket_allreduce_ms']:.2f} ms, "
                  f"ratio {r['throughput_ratio']:.2f}; step {r['step_ddp_ms']:.1f} ms (no_sync "
                  f"{r['step_no_sync_ms']:.1f} ms), wait after backward {r['wait_after_backward_ms']:.2f} ms, "
                  f"hidden {100 * r['hidden_share']:.0f} %, rank skew {r['skew_ms']:.1f} ms, buckets started during backward "
                  f"{r['buckets_started_early']:.0f}/{r['buckets']}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
