"""Shared timing helpers for the benchmarks: interleaved runs, medians, ratios."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], repeat: int, number: int = 1) -> float:
    """Median wall time of ``number`` calls of ``fn`` over ``repeat`` runs, in seconds per call."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], repeat: int, number: int = 1,
                warmup: int = 2, settle: bool = False) -> dict[str, float]:
    """Time several contenders in alternation (so machine noise hits them alike); medians in seconds.
    ``settle``: call each contender once untimed before its timed calls, so the thread pools of
    the one before it (which spin for a while after their work) have gone idle, as when a
    library runs alone."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if settle:
                fn()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in samples.items()}


def run_model_step_bench(step_fns, label: str, target: float, default_repeat: int = 15) -> None:
    """The shared main of the model-step benchmarks: parse ``--repeat``/``--threads``,
    check both libraries give the same loss and gradients, then time them alternately.
    ``step_fns()`` returns ``(rg_step, torch_step, rg_model, torch_model)``."""
    import argparse

    import numpy as np
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=default_repeat)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch's and retrograd's kernel threads (0: leave the defaults)")
    args = ap.parse_args()
    import retrograd as rg

    if args.threads:
        torch.set_num_threads(args.threads)
        rg.set_num_threads(args.threads)
    rs, ts, rm, tm = step_fns()
    lr, lt = rs().item(), ts().item()
    assert abs(lr - lt) < 1e-4, (lr, lt)  # same model, same numbers
    gr = dict(rm.named_parameters())
    worst = max(float(np.abs(gr[k].grad.numpy() - p.grad.numpy()).max()) for k, p in tm.named_parameters())
    assert worst < 1e-4, worst
    t = interleaved({"retrograd": rs, "torch": ts}, repeat=args.repeat, warmup=2)
    print(f"{label} fwd+bwd: retrograd {t['retrograd'] * 1e3:.1f} ms, torch {t['torch'] * 1e3:.1f} ms, ratio "
          f"{t['retrograd'] / t['torch']:.2f}x (target <= {target}x); torch threads {torch.get_num_threads()}, "
          f"retrograd kernels {'on' if rg.accel.available() else 'off'}")
