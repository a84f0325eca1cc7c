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
                warmup: int = 2) -> dict[str, float]:
    """Time several contenders in alternation (so machine noise hits them alike); medians in seconds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in samples.items()}
