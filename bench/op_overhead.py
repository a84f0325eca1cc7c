"""Per-op overhead: a chain of 1000 elementwise ops on a 16-element float32
tensor with grad, forward + backward, retrograd vs PyTorch eager (1 thread).

Run: python bench/op_overhead.py [--repeat 15] [--clock wall|cpu] [--parts]

``--clock cpu`` times with ``time.thread_time`` (CPU time of this thread: on a loaded machine the time the
scheduler gives to other processes is not counted; both libraries run on this thread here).
``--parts`` also splits retrograd's figure into forward with grad, backward and freeing the graph, and
times forward without grad and plain NumPy. The same chain as users run it, each library in its own
process: ``python bench/users.py --workloads opchain --threads 1``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402

import retrograd as rg  # noqa: E402

N_OPS = 1000


def chain(x):
    y = x
    for i in range(N_OPS // 4):  # a mix of scalar and tensor-tensor ops
        y = y * 1.0001
        y = y + x
        y = y.tanh()
        y = y - 0.001
    return y


def interleaved(fns: dict, repeat: int, clock, warmup: int = 2) -> dict:
    """common.interleaved with a choice of clock: the contenders in alternation, medians in seconds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            samples[name].append(clock() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def _parts(xr, repeat: int, clock) -> dict:
    """Retrograd's fwd+bwd cut in pieces, each timed on its own (medians over ``repeat`` runs, seconds)."""
    out = {"forward (grad)": [], "backward": [], "free graph": []}
    for _ in range(repeat):
        t0 = clock()
        s = chain(xr).sum()
        t1 = clock()
        s.backward()
        t2 = clock()
        del s
        t3 = clock()
        out["forward (grad)"].append(t1 - t0)
        out["backward"].append(t2 - t1)
        out["free graph"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: perf_counter; cpu: thread_time (steadier on a loaded machine)")
    ap.add_argument("--parts", action="store_true", help="also time retrograd's forward, backward and freeing apart")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    data = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    xr = rg.tensor(data, requires_grad=True)
    xt = torch.tensor(data, requires_grad=True)

    def run_rg():
        chain(xr).sum().backward()

    def run_torch():
        chain(xt).sum().backward()

    def fwd_rg():
        with rg.no_grad():
            chain(xr)

    def fwd_np():
        y = data
        for _ in range(N_OPS // 4):
            y = np.tanh(y * np.float32(1.0001) + data) - np.float32(0.001)

    t = interleaved({"retrograd": run_rg, "torch": run_torch, "retrograd_fwd_nograd": fwd_rg, "numpy_fwd": fwd_np},
                    repeat=args.repeat, clock=clock)
    per = {k: v / N_OPS * 1e6 for k, v in t.items()}
    print(f"per-op forward+backward ({args.clock} clock): retrograd {per['retrograd']:.2f} us, torch "
          f"{per['torch']:.2f} us, ratio {per['retrograd'] / per['torch']:.2f}x (target <= 0.5x)")
    print(f"forward only, no grad: retrograd {per['retrograd_fwd_nograd']:.2f} us/op; plain numpy "
          f"{per['numpy_fwd']:.2f} us/op")
    if args.parts:
        parts = _parts(xr, args.repeat, clock)
        print("retrograd's parts: " + ", ".join(f"{k} {v / N_OPS * 1e6:.2f} us/op" for k, v in parts.items()))


if __name__ == "__main__":
    main()
