"""MLP forward+backward (784-512-256-10, batch 128, ReLU, cross-entropy):
step time and peak memory, retrograd vs PyTorch eager.

Time: both libraries alternate in one process (median of --repeat runs).
Memory: each library runs in a fresh subprocess (glibc told to give freed
large blocks back to the OS at once); after the model and data exist and one
step has run, we reset the kernel's peak-RSS mark (/proc/self/clear_refs) and
report how far the peak (VmHWM) rises above the resident level between steps:
the working memory of the training step.

Run: python bench/mlp.py [--repeat 30] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

SIZES = (784, 512, 256, 10)
BATCH = 128


def make_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    ws = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(n_in)
        ws.append((rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                   rng.uniform(-bound, bound, n_out).astype(np.float32)))
    return x, y, ws


def rg_step_fn():
    import retrograd as rg

    x, y, ws = make_data()
    params = [(rg.tensor(w, requires_grad=True), rg.tensor(b, requires_grad=True)) for w, b in ws]
    xr, yr = rg.tensor(x), rg.tensor(y)
    F = rg.nn.functional

    def step():
        h = xr
        for i, (w, b) in enumerate(params):
            h = F.linear(h, w, b)
            if i < len(params) - 1:
                h = h.relu()
        loss = F.cross_entropy(h, yr)
        for w, b in params:
            w.grad = b.grad = None
        loss.backward()
        return loss

    step.params = [p for wb in params for p in wb]
    return step


def torch_step_fn():
    import torch
    import torch.nn.functional as F

    x, y, ws = make_data()
    params = [(torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)) for w, b in ws]
    xt, yt = torch.tensor(x), torch.tensor(y)

    def step():
        h = xt
        for i, (w, b) in enumerate(params):
            h = F.linear(h, w, b)
            if i < len(params) - 1:
                h = h.relu()
        loss = F.cross_entropy(h, yt)
        for w, b in params:
            w.grad = b.grad = None
        loss.backward()
        return loss

    step.params = [p for wb in params for p in wb]
    return step


def memory_child(lib: str, steps: int) -> None:
    import gc

    step = rg_step_fn() if lib == "retrograd" else torch_step_fn()
    step()  # first call: lazy allocations of the library itself
    for p in step.params:
        p.grad = None
    gc.collect()
    base = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark (VmHWM) to now
        f.write("5")
    for _ in range(steps):
        step()
    print(json.dumps({"base_kb": base, "peak_kb": _status_kb("VmHWM")}))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_memory(lib: str, threads: int) -> dict:
    # Fixed mmap threshold: every large array is its own mapping, returned to the
    # OS when freed, so the resident set follows live memory for both libraries.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, __file__, "--memory-child", lib], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--memory-child", default=None)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, 20)
        return
    import numpy as np
    import torch

    from common import interleaved

    if args.threads:
        torch.set_num_threads(args.threads)
    rs, ts = rg_step_fn(), torch_step_fn()
    lr, lt = float(rs().item()), float(ts().item())
    assert abs(lr - lt) < 1e-4, (lr, lt)  # same model, same numbers
    t = interleaved({"retrograd": rs, "torch": ts}, repeat=args.repeat, warmup=3)
    print(f"MLP 784-512-256-10 batch {BATCH} fwd+bwd: retrograd {t['retrograd'] * 1e3:.2f} ms, torch "
          f"{t['torch'] * 1e3:.2f} ms, ratio {t['retrograd'] / t['torch']:.2f}x (target <= 1.0x); "
          f"torch threads {torch.get_num_threads()}, numpy {np.__version__}")
    threads = args.threads or torch.get_num_threads()
    mem = {lib: measure_memory(lib, threads) for lib in ("retrograd", "torch")}
    peak = {lib: m["peak_kb"] / 1024 for lib, m in mem.items()}
    grow = {lib: max(m["peak_kb"] - m["base_kb"], 1) / 1024 for lib, m in mem.items()}
    print(f"peak resident memory of the training loop: retrograd {peak['retrograd']:.1f} MiB, torch "
          f"{peak['torch']:.1f} MiB, ratio {peak['retrograd'] / peak['torch']:.2f}x (target <= 0.3x)")
    print(f"working memory of one step (peak above the level between steps, grads included): retrograd "
          f"{grow['retrograd']:.1f} MiB, torch {grow['torch']:.1f} MiB, ratio "
          f"{grow['retrograd'] / grow['torch']:.2f}x")


if __name__ == "__main__":
    main()
