"""CPU time of a workload's step in one library: for a loaded machine, where wall times mean little.

    python bench/cpu_time.py tiny_mlp                 # retrograd (this checkout's src), default threads
    python bench/cpu_time.py tiny_mlp --lib torch
    PYTHONPATH=OLD/src python bench/cpu_time.py tiny_mlp --src ''   # another tree, to compare A/B

Runs the workload's program (bench/users.py's table) as bench/users.py does, warms up, then times
blocks of steps with ``time.thread_time()`` (CPU time of the stepping thread: time the scheduler
takes away is not counted; work on other threads is not counted either, so use it for steps that run
on the calling thread, e.g. the tiny MLP) and prints the median and minimum per step in microseconds.
Compare trees by running them alternately, several times each.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import users  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(users.WORKLOADS))
    ap.add_argument("--lib", choices=["retrograd", "torch"], default="retrograd")
    ap.add_argument("--src", default=os.path.join(users.ROOT, "src"), help="retrograd tree to put first ('': as found)")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100, help="steps per block")
    ap.add_argument("--warmup", type=int, default=300)
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    if args.lib == "retrograd":
        sys.meta_path.insert(0, users.TorchAsRetrograd())
    spec = users.WORKLOADS[args.workload]
    path = os.path.join(users.PROGRAMS, spec["program"])
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    sys.argv = [path, *spec["args"]]
    ns = {"__name__": "__bench__", "__file__": path}
    exec(code, ns)
    step = ns["step"]
    for _ in range(args.warmup):
        step()
    per = []
    for _ in range(args.blocks):
        t = time.thread_time()
        for _ in range(args.steps):
            step()
        per.append((time.thread_time() - t) / args.steps * 1e6)
    lib = __import__("torch")
    print(f"{args.workload} {args.lib} ({os.path.dirname(lib.__file__)}): CPU time per step median "
          f"{statistics.median(per):.1f} us, min {min(per):.1f} us over {args.blocks} blocks of {args.steps}")


if __name__ == "__main__":
    main()
