"""What a workload's step costs the whole process, threads included: for a loaded machine, and for
thread pools that spin (OpenBLAS's workers busy-wait after each GEMM).

    python bench/step_threads.py cnn                              # retrograd (this checkout's src)
    OPENBLAS_NUM_THREADS=1 python bench/step_threads.py cnn       # OpenBLAS on one thread
    PYTHONPATH=OLD/src python bench/step_threads.py cnn --src ''  # another tree, to compare A/B

Runs the workload's program (bench/users.py's table) with ``import torch`` answered by retrograd
(``--lib torch``: PyTorch itself), warms up, then runs ``--steps`` steps and prints: the process's CPU
time per step (every thread: a spinning BLAS worker shows here, not in ``time.thread_time()``), the
10th/50th/90th percentile of the steps' wall times, minor page faults and voluntary / involuntary
context switches per step, the live thread count and ``ru_maxrss``. Run trees or settings
alternately, several times each, and read the CPU column when the machine is busy.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import users  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(w for w, s in users.WORKLOADS.items() if not s.get("cli")))
    ap.add_argument("--lib", choices=["retrograd", "torch"], default="retrograd")
    ap.add_argument("--src", default=os.path.join(users.ROOT, "src"), help="retrograd tree to put first ('': as found)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    if args.lib == "retrograd":
        sys.meta_path.insert(0, users.TorchAsRetrograd())
    step = users.load_step(args.workload)
    for _ in range(args.warmup):
        step()
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    n = len(times)
    times.sort()
    print(f"{args.workload} ({args.lib}): cpu/step {(c1 - c0) / n * 1e3:.1f} ms  wall ms p10 {times[n // 10]:.1f} "
          f"p50 {times[n // 2]:.1f} p90 {times[9 * n // 10]:.1f}  minflt/step {(r1.ru_minflt - r0.ru_minflt) / n:.1f}  "
          f"vcsw/step {(r1.ru_nvcsw - r0.ru_nvcsw) / n:.1f}  ivcsw/step {(r1.ru_nivcsw - r0.ru_nivcsw) / n:.1f}  "
          f"threads {threading.active_count()}  maxrss {r1.ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
