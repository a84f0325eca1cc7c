"""DistributedDataParallel's gradient all-reduce: throughput against bare mpi4py, and overlap.

Run on N local ranks (the launcher of the installed MPI; retrograd.distributed.find_mpiexec()):

    mpiexec -n 2 python bench/ddp_allreduce.py [--repeat 401] [--steps 21] [--models mlp,gpt,mlp10m] [--components]

For each model, DDP-wrapped, with its optimizer's flat gradient buffer:

- **throughput**, like with like: the same flat buffer (restored before every round, outside the
  timing) reduced (a) by one bare ``comm.Allreduce(MPI.IN_PLACE, buf)``, (b) by DDP's own code
  for the end of a synchronised backward (``DistributedDataParallel._reduce_rest``: one prepared
  ``Iallreduce`` per bucket, wait for all). Two pairs: **avg** = (a) followed by the scaling DDP
  applies (multiply by 1/N for a power-of-two N, else divide) against ``_reduce_rest()``, both
  giving the average; **sum** = (a) against ``_reduce_rest(average=False)``, the same buckets not
  scaled, both giving the sum. Also **vs bare sum** = (a) against DDP's averaging path (session 7's
  definition, which charged the average to DDP alone). ``--repeat`` rounds, each piece once per round
  in a shuffled order, each after the buffer's restore and a barrier; a piece's time in a round is the
  slower rank's (from the barrier to the end of the call). A ratio is bare / DDP (>= 0.9 is the
  target): the ratio of the medians, and the median and quartiles of the per-round ratios (paired:
  both sides of a pair ran within the same round, so slow drifts of the load cancel).
- **DDP's own Python** around the requests: CPU time of ``_reduce_rest(average=False)`` with the
  buckets' requests replaced by a completed one (``MPI.REQUEST_NULL``), i.e. what DDP adds to the MPI
  call, independent of the load.
- **overlap**: ``--steps`` training steps (forward, backward, SGD step). After backward returns DDP
  has waited ``last_wait_s`` for reductions still running (after a barrier that absorbs the ranks'
  skew, which is reported apart); the share of the isolated all-reduce time (b, avg) hidden behind
  backward is ``1 - wait / (b)``. Also the step time with DDP against the same step under
  ``no_sync()`` (no communication at all).

- ``--components``: each piece of that path timed alone on the same buffer, interleaved (the blocking
  Allreduce, Iallreduce with Wait, the prepared request of ``flat_all_reduce_starter`` against the
  unprepared ``flat_all_reduce`` + ``Work.wait``, a pure ``Test()`` spin instead of ``MPI_Wait``
  (MPICH's Wait polls harder), timed waits, the command line's wait hook, the
  scaling by divide and by multiply, ``_reduce_rest`` with and without the average).

Prints a few lines per model on rank 0 (and ``--json PATH`` writes them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
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


def median_ms(xs) -> float:
    return float(np.median(xs)) * 1e3


def pair(bare: np.ndarray, ddp: np.ndarray) -> dict:
    """bare / DDP: the ratio of the medians; the median and quartiles of the per-round ratios; and the
    ratio of the 10th percentiles (the rounds that no other process interrupted: under load the noise
    only ever adds time, so the low percentiles are the closest to a quiet machine's figure)."""
    r = bare / ddp
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"ratio": float(np.median(bare) / np.median(ddp)), "paired": float(med), "q1": float(q1),
            "q3": float(q3), "p10": float(np.percentile(bare, 10) / np.percentile(ddp, 10))}


def run(name: str, repeat: int, steps: int, cap_mb: float, with_components: bool = False) -> dict:
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
    saved = buf.copy()
    # the gradients are views of the buffer (DDP's path copies none in)
    assert all(p.grad is not None and p.grad._array is s for p, s in zip(ddp._params, ddp._slots))
    scale = 1.0 / n if n & (n - 1) == 0 else None

    def bare_sum() -> None:
        comm.Allreduce(MPI.IN_PLACE, buf)

    def bare_avg() -> None:  # followed by the scaling DDP applies
        comm.Allreduce(MPI.IN_PLACE, buf)
        if scale is None:
            np.divide(buf, n, out=buf)
        else:
            np.multiply(buf, scale, out=buf)

    rounds = {"bare_sum": bare_sum, "ddp_sum": (_ddp_reset(ddp), lambda: ddp._reduce_rest(False)),
              "bare_avg": bare_avg, "ddp_avg": (_ddp_reset(ddp), ddp._reduce_rest)}
    wall, cpu = _interleaved(rounds, repeat, buf, saved, comm)
    python_us = _python_us(ddp)
    step_us = _bookkeeping_us(ddp)
    with_ddp, without, waits, early, skews = _steps(ddp, step, steps, comm)
    t = {k: median_ms(v) for k, v in wall.items()}
    parts = components(ddp, buf, saved, repeat) if with_components else None
    return {"model": name, "ranks": n, "params": int(buf.size), "megabytes": buf.nbytes / 2**20,
            "buckets": len(ddp._buckets), "bucket_cap_mb": cap_mb, "repeat": repeat,
            **{f"{k}_ms": v for k, v in t.items()}, **{f"{k}_cpu_ms": median_ms(v) for k, v in cpu.items()},
            **{f"{k}_p10_ms": float(np.percentile(v, 10)) * 1e3 for k, v in wall.items()},
            "avg": pair(wall["bare_avg"], wall["ddp_avg"]), "sum": pair(wall["bare_sum"], wall["ddp_sum"]),
            "vs_bare_sum": pair(wall["bare_sum"], wall["ddp_avg"]), "ddp_python_us": python_us, "ddp_step_us": step_us,
            "bare_GBps": buf.nbytes / 2**30 / (t["bare_sum"] / 1e3), "steps": steps,
            "step_ddp_ms": median_ms(with_ddp), "step_no_sync_ms": median_ms(without),
            "wait_after_backward_ms": median_ms(waits),
            "hidden_share": max(0.0, 1 - median_ms(waits) / t["ddp_avg"]),
            "buckets_started_early": float(np.median(early)), "skew_ms": median_ms(skews), "components_ms": parts}


def _ddp_reset(ddp):
    """A function that makes every bucket of ``ddp`` not started yet, as at the end of a backward where
    none started early: then ``ddp._reduce_rest()`` runs exactly what the end of a synchronised backward
    runs (the reset is bench-only work, done before the barrier, outside the timing)."""
    def reset() -> None:
        for b in ddp._buckets:
            b.request = None
        ddp._next = 0
    return reset


def _python_us(ddp, calls: int = 2000) -> float:
    """CPU microseconds per ``_reduce_rest(average=False)`` with every request replaced by a completed
    one: DDP's own work around the MPI calls (the smallest of three blocks of ``calls``)."""
    from mpi4py import MPI
    starts = [b.start for b in ddp._buckets]
    reset = _ddp_reset(ddp)
    for b in ddp._buckets:
        b.start = lambda: MPI.REQUEST_NULL
    best = float("inf")
    try:
        for _ in range(3):
            c0 = time.thread_time()
            for _ in range(calls):
                reset()
                ddp._reduce_rest(False)
            best = min(best, (time.thread_time() - c0) / calls * 1e6)
    finally:
        for b, f in zip(ddp._buckets, starts):
            b.start = f
    return best


def _bookkeeping_us(ddp, calls: int = 2000) -> float:
    """CPU microseconds of DDP's whole bookkeeping for one backward, requests stubbed as in
    ``_python_us`` and without the scaling: ``_arm`` (at forward), the engine's calls of ``_on_grad``
    (every parameter as often as in the first backward, last parameter first) and ``_finish``."""
    from mpi4py import MPI
    import retrograd.nn.parallel.distributed as ddp_module
    starts, prescale, queue = [b.start for b in ddp._buckets], ddp._prescale, ddp_module.queue_callback
    grads = [p for i in reversed(range(len(ddp._params))) for p in [ddp._params[i]] * ddp._expected[i]]
    callbacks: list = []
    for b in ddp._buckets:
        b.start = lambda: MPI.REQUEST_NULL
    ddp._prescale = None  # no scaling before the starts, and none after: the sum
    ddp._reduce_rest = lambda: type(ddp)._reduce_rest(ddp, False)
    ddp_module.queue_callback = callbacks.append
    best = float("inf")
    try:
        for _ in range(3):
            c0 = time.thread_time()
            for _ in range(calls):
                ddp._arm()
                for p in grads:
                    ddp._on_grad(p)
                callbacks.pop()()
            best = min(best, (time.thread_time() - c0) / calls * 1e6)
    finally:
        ddp_module.queue_callback = queue
        ddp._prescale = prescale
        del ddp._reduce_rest
        for b, f in zip(ddp._buckets, starts):
            b.start = f
    return best


def _steps(ddp, step, steps: int, comm) -> tuple:
    """``steps`` training steps with DDP and as many under ``no_sync``, alternating."""
    # the ranks reach the end of backward at different times (two ranks share two busy cores): a
    # barrier there first, so that the wait that follows is communication still running, not skew.
    # Not MPI's: inside any blocking MPI call MPICH progresses the started reductions, which would
    # count their progress during the skew as hidden. A spin on node-shared memory makes no MPI call.
    finish = ddp._finish
    skews: list = []
    skew_barrier = _SharedBarrier(comm)

    def finish_after_barrier() -> None:
        t0 = time.perf_counter()
        skew_barrier()
        skews.append(time.perf_counter() - t0)
        finish()
    ddp._finish = finish_after_barrier
    with_ddp, without, waits, early = [], [], [], []
    try:
        for _ in range(steps):
            comm.Barrier()
            with_ddp.append(step(True))
            waits.append(ddp.last_wait_s)
            early.append(ddp.last_buckets_started_early)
            comm.Barrier()
            without.append(step(False))
    finally:
        ddp._finish = finish
    return with_ddp, without, waits, early, skews


def components(ddp, buf: np.ndarray, saved: np.ndarray, repeat: int) -> dict:
    """Where the time of DDP's path goes, each piece timed alone on the same buffer, interleaved:
    the MPI calls and waits, the average's scaling, DDP's ``_reduce_rest`` with and without it."""
    from mpi4py import MPI
    from retrograd.train.ranks import RankGroup
    g = ddp.process_group
    comm, n = g.comm, g.size
    spec = [buf, buf.size, MPI.FLOAT if buf.dtype == np.float32 else MPI.DOUBLE]
    hook = RankGroup(comm, 60.0)
    prepared = dist.flat_all_reduce_starter(buf)
    pieces = {
        "Allreduce (blocking, the bare call)": lambda: comm.Allreduce(MPI.IN_PLACE, spec, MPI.SUM),
        "Iallreduce + Wait": lambda: comm.Iallreduce(MPI.IN_PLACE, spec, MPI.SUM).Wait(),
        "prepared request (flat_all_reduce_starter) + Wait": lambda: prepared().Wait(),
        "unprepared flat_all_reduce + Work.wait (session 8's sum)":
            lambda: dist.Work([dist.flat_all_reduce(buf)], None, None, "bench").wait(),
        "prepared request + Test() spin (no MPI_Wait)": lambda: _spin(prepared()),
        "prepared request + timed wait (timeout 60 s)": lambda: dist.wait_requests([prepared()], 60.0, "bench"),
        "prepared request + CLI wait hook (RankGroup)": lambda: hook.wait_all([prepared()], "bench"),
        "np.divide(buf, N)": lambda: np.divide(buf, n, out=buf),
        "np.multiply(buf, 1/N)": lambda: np.multiply(buf, 1.0 / n, out=buf),
        "DDP._reduce_rest(average=False)": (_ddp_reset(ddp), lambda: ddp._reduce_rest(False)),
        "DDP._reduce_rest()": (_ddp_reset(ddp), ddp._reduce_rest),
    }
    wall, _ = _interleaved(pieces, repeat, buf, saved, comm)
    return {k: [median_ms(v), float(np.percentile(v, 10)) * 1e3] for k, v in wall.items()}


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


def _interleaved(pieces: dict, repeat: int, buf: np.ndarray, saved: np.ndarray, comm) -> tuple:
    """``repeat`` rounds of every piece once, in a shuffled order (the same on every rank; no piece
    always follows the same one), each on the buffer restored and after a barrier (a piece given as
    ``(setup, call)`` runs ``setup`` before the barrier, untimed). Returns, per
    piece, the wall time of each round (the slower rank's) and the CPU time of the calling thread
    (the mean of the ranks'), as arrays over the rounds; two rounds more run first, as warm-up."""
    wall: dict = {k: [] for k in pieces}
    cpu: dict = {k: [] for k in pieces}
    for k in range(-2, repeat):
        order = list(pieces)
        random.Random(k).shuffle(order)
        for key in order:
            call = pieces[key]
            if isinstance(call, tuple):
                call[0]()
                call = call[1]
            buf[...] = saved
            comm.Barrier()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            call()
            t1 = time.perf_counter()
            if k >= 0:
                wall[key].append(t1 - t0)
                cpu[key].append(time.thread_time() - c0)
    every = comm.allgather((wall, cpu))
    return ({k: np.max([w[k] for w, _ in every], axis=0) for k in pieces},
            {k: np.mean([c[k] for _, c in every], axis=0) for k in pieces})


def _spin(req) -> None:
    while not req.Test():
        pass


def _pair_text(p: dict) -> str:
    return (f"{p['ratio']:.2f} (per round {p['paired']:.2f}, quartiles {p['q1']:.2f}-{p['q3']:.2f}; "
            f"10th percentiles {p['p10']:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=401, help="interleaved rounds of the throughput pieces")
    ap.add_argument("--steps", type=int, default=21, help="training steps with DDP (and as many under no_sync)")
    ap.add_argument("--models", default="mlp,gpt,mlp10m")
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--components", action="store_true",
                    help="also time the pieces of DDP's path alone (MPI calls, waits, scaling), interleaved")
    args = ap.parse_args()
    dist.init_process_group("mpi")
    rows = [run(m, args.repeat, args.steps, args.bucket_cap_mb, args.components) for m in args.models.split(",")]
    if dist.get_rank() == 0:
        for r in rows:
            print(f"{r['model']:7s} {r['ranks']} ranks {r['params'] / 1e6:6.2f}M params ({r['megabytes']:.1f} MB), "
                  f"{r['buckets']} buckets, {r['repeat']} rounds:\n"
                  f"    avg: bare {r['bare_avg_ms']:.3f} / DDP {r['ddp_avg_ms']:.3f} ms (10th percentiles "
                  f"{r['bare_avg_p10_ms']:.3f} / {r['ddp_avg_p10_ms']:.3f}), ratio {_pair_text(r['avg'])}\n"
                  f"    sum: bare {r['bare_sum_ms']:.3f} ({r['bare_GBps']:.2f} GB/s) / DDP {r['ddp_sum_ms']:.3f} ms "
                  f"({r['bare_sum_p10_ms']:.3f} / {r['ddp_sum_p10_ms']:.3f}), ratio {_pair_text(r['sum'])}\n"
                  f"    DDP avg vs bare sum {_pair_text(r['vs_bare_sum'])}; CPU (mean of ranks) bare/DDP avg "
                  f"{r['bare_avg_cpu_ms']:.3f}/{r['ddp_avg_cpu_ms']:.3f}, sum {r['bare_sum_cpu_ms']:.3f}/"
                  f"{r['ddp_sum_cpu_ms']:.3f} ms; DDP's Python around the requests {r['ddp_python_us']:.1f} us, "
                  f"its bookkeeping per backward {r['ddp_step_us']:.1f} us\n"
                  f"    {r['steps']} steps: {r['step_ddp_ms']:.1f} ms (no_sync {r['step_no_sync_ms']:.1f} ms), "
                  f"wait after backward {r['wait_after_backward_ms']:.3f} ms, hidden {100 * r['hidden_share']:.0f} %, "
                  f"rank skew {r['skew_ms']:.1f} ms, buckets started during backward "
                  f"{r['buckets_started_early']:.0f}/{r['buckets']}")
            if r["components_ms"]:
                print(f"    {'piece (median, 10th percentile of the rounds)':58s}")
                for k, (med, p10) in r["components_ms"].items():
                    print(f"    {k:58s} {med:8.3f} {p10:8.3f} ms")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
