"""Data-parallel scaling on paper: step time and efficiency of the GPT and CNN reference models on 2-64
machines of 16 cores, from the all-reduce latency and bandwidth measured here and published interconnect
figures. This 2-core machine cannot show scaling itself; this model says what to expect and where
communication starts to dominate, and which DDP bucket size to pick.

    mpiexec -n 2 python bench/scaling_model.py measure      # -> bench/scaling_measured.json
    python bench/scaling_model.py model [--markdown]        # the tables (bench/RESULTS.md)

**measure** times ``MPI.Allreduce`` (SUM, float32, in place) between 2 local ranks for 4 B .. 64 MiB
(median of repeats) and fits ``t(n) = a + n / b`` by least squares on the small sizes (``a``: latency)
and the large ones (``b``: bandwidth, bytes/s).

**model**, per machine count ``p`` (weak scaling: every rank keeps its batch, the global batch grows):

- A machine runs 16 ranks, one per core, one BLAS thread each; a rank's compute per step ``C`` is the
  reference step measured at 1 thread (bench/RESULTS.md, first section): GPT (vocab 65, d 128, 2 layers,
  seq 64, batch 32) 114.9 ms, CNN (batch 64x1x28x28) 30.4 ms. Backward is 2/3 of ``C``.
- The all-reduce of ``n`` bytes of gradients is hierarchical (what MPICH and Open MPI do on several
  machines): a ring over the 16 local ranks through shared memory, with the latency and bandwidth
  measured here (``2 (k-1) a + 2 (k-1)/k n / b``), and a ring over the ``p`` machines on the interconnect
  (``2 (p-1) a_net + 2 (p-1)/p n / b_net``).
- DDP cuts the flat gradient buffer into buckets of ``bucket`` bytes and starts each all-reduce as soon as
  backward has written it; all but the last bucket overlap backward. Step time
  ``T = C + max(t_last, t_all - B_overlap)``, where ``t_all`` is every bucket's all-reduce (each pays the
  latency terms), ``t_last`` the last bucket's and ``B_overlap`` the backward time left after the first
  bucket is ready. Efficiency ``= C / T`` (1.0: communication fully hidden).

Interconnects (line rates and latencies; the effective MPI bandwidth is taken as 90 % of line rate,
latency is the one-way small-message MPI latency):

- 10/25/100 GbE: IEEE 802.3ae (10 Gb/s), 802.3by (25 Gb/s), 802.3ba (100 Gb/s) line rates; MPI over
  TCP at ~20 us per message on 10 GbE, ~15 us on 25 GbE, ~10 us on 100 GbE (typical kernel-TCP figures;
  RoCE halves them; an assumption, not a measurement).
- InfiniBand HDR: 200 Gb/s per port (InfiniBand Trade Association roadmap; NVIDIA ConnectX-6 product
  brief), MPI latency ~1 us (the ConnectX-6 brief gives sub-600 ns adapter latency; MPI adds some).
"""
from __future__ import annotations

import json
import math
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
MEASURED = HERE / "scaling_measured.json"

# reference compute per rank per step, 1 thread (bench/RESULTS.md, first section) and parameter counts
MODELS = {
    "gpt": {"step_s": 0.1149, "what": "GPT (d 128, 2 layers, seq 64, batch 32)"},
    "cnn": {"step_s": 0.0304, "what": "CNN (conv32-pool-conv64-pool-linear, batch 64)"},
}
NETWORKS = {  # name: (latency s, bandwidth bytes/s at 90 % of line rate)
    "10 GbE": (20e-6, 0.9 * 10e9 / 8),
    "25 GbE": (15e-6, 0.9 * 25e9 / 8),
    "100 GbE": (10e-6, 0.9 * 100e9 / 8),
    "IB HDR": (1e-6, 0.9 * 200e9 / 8),
}
CORES = 16
MACHINES = (2, 4, 8, 16, 32, 64)
BUCKETS_MB = (0.25, 1, 4, 25)


def param_counts() -> dict[str, int]:
    """Parameters of the reference models, built with retrograd from the bench programs."""
    sys.path.insert(0, str(HERE))
    import retrograd as rg
    from retrograd import nn
    import cnn
    import gpt

    return {"gpt": sum(p.numel() for p in gpt.build(nn, nn.functional, rg).parameters()),
            "cnn": sum(p.numel() for p in cnn.build(nn).parameters())}


# ---------------------------------------------------------------------- measuring (under mpiexec -n 2)
def measure() -> None:
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    for exp in range(0, 25, 2):  # 1 .. 16M float32 = 4 B .. 64 MiB
        n = 1 << exp
        buf = np.ones(n, dtype=np.float32)
        repeat = 200 if n < 1 << 14 else 30 if n < 1 << 20 else 8
        times = []
        for _ in range(repeat):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        t = sorted(comm.allgather(sorted(times)[len(times) // 2]))[-1]
        rows.append({"bytes": 4 * n, "median_s": t})
    if comm.rank == 0:
        small = [r for r in rows if r["bytes"] <= 4096]
        large = [r for r in rows if r["bytes"] >= 1 << 22]
        a = sorted(r["median_s"] for r in small)[len(small) // 2]
        b = _slope_fit(large)
        out = {"ranks": 2, "latency_s": a, "bandwidth_Bps": b, "rows": rows,
               "mpi": MPI.Get_library_version().splitlines()[0].strip()}
        MEASURED.write_text(json.dumps(out, indent=1) + "\n")
        print(f"latency {a * 1e6:.1f} us, bandwidth {b / 1e9:.2f} GB/s ({out['mpi']}) -> {MEASURED}")


def _slope_fit(rows: list[dict]) -> float:
    """Bytes per second from a least-squares line through (bytes, seconds)."""
    xs = [r["bytes"] for r in rows]
    ys = [r["median_s"] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return 1.0 / slope


# ---------------------------------------------------------------------- the model
def ring(n: float, k: int, a: float, b: float) -> float:
    """Ring all-reduce of ``n`` bytes over ``k`` participants, latency ``a`` s, bandwidth ``b`` bytes/s."""
    if k <= 1:
        return 0.0
    return 2 * (k - 1) * a + 2 * (k - 1) / k * n / b


def allreduce(n: float, p: int, local: tuple, net: tuple) -> float:
    return ring(n, CORES, *local) + ring(n, p, *net)


def step(model: str, params: int, p: int, local: tuple, net: tuple, bucket_mb: float) -> dict:
    c = MODELS[model]["step_s"]
    nbytes = 4 * params
    bucket = min(nbytes, bucket_mb * 2**20)
    k = math.ceil(nbytes / bucket)
    t_bucket = allreduce(bucket, p, local, net)
    t_last = allreduce(nbytes - (k - 1) * bucket, p, local, net)
    t_all = (k - 1) * t_bucket + t_last
    backward = 2 / 3 * c
    overlap = backward * (k - 1) / k  # backward left after the first bucket is written
    t = c + max(t_last, t_all - overlap)
    return {"step_s": t, "comm_s": t_all, "efficiency": c / t, "buckets": k}


def model(markdown: bool) -> None:
    m = json.loads(MEASURED.read_text())
    local = (m["latency_s"], m["bandwidth_Bps"])
    counts = param_counts()
    print(f"measured here (2 local ranks, {m['mpi']}): all-reduce latency {local[0] * 1e6:.1f} us, "
          f"bandwidth {local[1] / 1e9:.2f} GB/s")
    for name in MODELS:
        params = counts[name]
        print(f"\n{MODELS[name]['what']}: {params:,} parameters ({4 * params / 2**20:.2f} MiB of float32 gradients), "
              f"compute {MODELS[name]['step_s'] * 1e3:.1f} ms per rank and step, {CORES} ranks per machine")
        best = _best_bucket(name, params, local)
        print(f"bucket: {best} MiB (of {', '.join(map(str, BUCKETS_MB))}: the shortest step at 64 machines "
              f"on 10 GbE)")
        head = ["network"] + [f"{p} machines" for p in MACHINES]
        rows = []
        for net_name, net in NETWORKS.items():
            cells = []
            for p in MACHINES:
                s = step(name, params, p, local, net, best)
                cells.append(f"{s['step_s'] * 1e3:.1f} ms ({s['efficiency']:.0%})")
            rows.append([net_name] + cells)
        _table(head, rows, markdown)
        print("\nbucket size at 64 machines (step time, efficiency):")
        head = ["network"] + [f"{b} MiB" for b in BUCKETS_MB]
        rows = []
        for net_name, net in NETWORKS.items():
            rows.append([net_name] + [
                f"{s['step_s'] * 1e3:.1f} ms ({s['efficiency']:.0%}, {s['buckets']} buckets)"
                for s in (step(name, params, 64, local, net, b) for b in BUCKETS_MB)])
        _table(head, rows, markdown)
    # where communication dominates: the gradient size at which all-reduce time equals compute
    print("\ngradient size (float32 parameters) at which one all-reduce takes as long as the GPT step's backward, "
          "64 machines:")
    for net_name, net in NETWORKS.items():
        lo, hi = 1.0, 1e12
        target = 2 / 3 * MODELS["gpt"]["step_s"]
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if allreduce(4 * mid, 64, local, net) < target else (lo, mid)
        print(f"  {net_name}: {lo / 1e6:.1f} M parameters")


def _best_bucket(name: str, params: int, local: tuple) -> float:
    return min(BUCKETS_MB, key=lambda b: step(name, params, 64, local, NETWORKS["10 GbE"], b)["step_s"])


def _table(head: list, rows: list, markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        for r in [head, *rows]:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "model"
    if what == "measure":
        measure()
    elif what == "model":
        model("--markdown" in sys.argv)
    else:
        sys.exit(f"usage: {sys.argv[0]} measure|model [--markdown]")
