"""The fused row and elementwise kernels (``retrograd.kernels``) against their NumPy twins.

Shapes are those of the GPT step in bench/gpt.py (batch 32, seq 64, d 128, 4 heads, MLP 512,
vocabulary 65). For each op: the NumPy twin (what runs without Numba or with RETROGRAD_NO_JIT=1),
the compiled kernel on 1 thread and on 2 threads (``rg.set_num_threads``), medians of interleaved
runs. A second table runs the 2-thread kernels while OpenBLAS also has 2 threads and a matmul runs
between calls (as in a training step), to show whether the two pools get in each other's way.

``--step`` instead times the whole GPT step of bench/gpt.py with ``approximate="tanh"`` (forward and
backward, 1 thread for the kernels and OpenBLAS) and prints one median: run it with one checkout's
``src`` on PYTHONPATH, then another's, to compare before and after.

Run: python bench/kernels.py [--repeat 200] [--blas-threads 2] | [--step]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from common import interleaved  # noqa: E402


def cases(K, dt):
    """(name, zero-argument function) for each fused op at the GPT step's sizes."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((32 * 64, 512)).astype(dt)  # MLP hidden: GELU's input
    gh = rng.standard_normal(h.shape).astype(dt)
    y, t = K.gelu_tanh(h)
    x = rng.standard_normal((32 * 64, 128)).astype(dt)  # residual stream: layer norm's input
    w, b = rng.standard_normal(128).astype(dt), rng.standard_normal(128).astype(dt)
    gx = rng.standard_normal(x.shape).astype(dt)
    _, mu, rstd = K.layer_norm(x, w, b, 1e-5)
    s = rng.standard_normal((32, 4, 64, 64)).astype(dt)  # attention scores
    causal = np.where(np.tril(np.ones((64, 64), bool)), 0.0, -np.inf).astype(dt)
    p = K.softmax(s.copy(), 0.125, causal, True)
    gp = rng.standard_normal(s.shape).astype(dt)
    logits = rng.standard_normal((32 * 64, 65)).astype(dt)
    ls = K.log_softmax(logits)
    gl = rng.standard_normal(logits.shape).astype(dt)
    return [
        ("gelu_tanh forward (2048x512)", lambda: K.gelu_tanh(h)),
        ("gelu_tanh backward", lambda: K.gelu_tanh_backward(h, t, gh)),
        ("layer_norm forward (2048x128)", lambda: K.layer_norm(x, w, b, 1e-5)),
        ("layer_norm backward", lambda: K.layer_norm_backward(x, gx, w, mu, rstd, (True, True, True))),
        ("attention softmax+scale+mask (32x4x64x64)", lambda: K.softmax(s, 0.125, causal, True)),
        ("attention softmax backward", lambda: K.softmax_backward(p, gp, 0.125)),
        ("log_softmax forward (2048x65)", lambda: K.log_softmax(logits)),
        ("log_softmax backward", lambda: K.log_softmax_backward(ls, gl)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--blas-threads", type=int, default=2, help="OpenBLAS threads for the second table")
    ap.add_argument("--step", action="store_true", help="time the GPT step (tanh GELU) on 1 thread instead")
    args = ap.parse_args()
    if args.step:
        gpt_step(args.repeat)
        return
    import retrograd as rg
    from retrograd import accel
    from retrograd import kernels as K

    if not accel.available():
        sys.exit("bench/kernels.py: Numba is not available (pip install 'retrograd[fast]'), nothing to compare")
    print(f"NumPy {np.__version__}, {accel.get_num_threads()} kernel threads by default, "
          f"{os.cpu_count()} CPUs; medians of {args.repeat} interleaved runs, ms")
    for dt in (np.float32, np.float64):
        print(f"\n{np.dtype(dt).name:<44} {'twin':>7} {'1 thr':>7} {'2 thr':>7} {'x (1)':>6} {'x (2)':>6}"
              f" | CPU ms: {'twin':>7} {'1 thr':>7} {'x':>6}")
        for name, fn in cases(K, dt):
            w, c = timed(contenders(fn), args.repeat)
            print(f"{name:<44} {w['twin'] * 1e3:7.3f} {w['1'] * 1e3:7.3f} {w['2'] * 1e3:7.3f} "
                  f"{w['twin'] / w['1']:6.2f} {w['twin'] / w['2']:6.2f} |         "
                  f"{c['twin'] * 1e3:7.3f} {c['1'] * 1e3:7.3f} {c['twin'] / c['1']:6.2f}")
    blas_vs_kernels(K, rg, args)


def contenders(fn) -> dict:
    """``fn`` three ways for ``timed``: its NumPy twin (kernels off), and the kernels on 1 and 2 threads."""
    import retrograd as rg
    from retrograd import accel

    def twin():
        accel._state.enabled = False
        try:
            fn()
        finally:
            accel._state.enabled = True

    def threads(n):
        def run():
            rg.set_num_threads(n)
            fn()
        return run
    return {"twin": twin, "1": threads(1), "2": threads(2)}


def timed(fns: dict, repeat: int) -> tuple[dict, dict]:
    """Medians of wall time and of CPU time per call, contenders interleaved. (On a shared machine
    the CPU time of a one-thread contender counts its own work without the waits for a core.)"""
    import statistics
    import time

    for fn in fns.values():
        for _ in range(3):
            fn()
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def blas_vs_kernels(K, rg, args) -> None:
    """A matmul (OpenBLAS, ``--blas-threads``) then a kernel, in turn: the kernels' 1 or 2 threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("\n(threadpoolctl is not installed: the OpenBLAS-sharing table is skipped)")
        return
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2048, 128)).astype(np.float32)
    wm = rng.standard_normal((128, 512)).astype(np.float32)
    print(f"\nfloat32, matmul (2048x128 @ 128x512) on {args.blas_threads} OpenBLAS threads then the kernel, ms"
          f"\n{'':<44} {'matmul':>8} {'+k 1thr':>8} {'+k 2thr':>8}")
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        for name, fn in cases(K, np.float32)[:4]:
            def both(n, fn=fn):
                def run():
                    rg.set_num_threads(n)
                    a @ wm
                    fn()
                return run
            r = interleaved({"mm": lambda: a @ wm, "1": both(1), "2": both(2)}, args.repeat, warmup=3)
            print(f"{name:<44} {r['mm'] * 1e3:8.3f} {r['1'] * 1e3:8.3f} {r['2'] * 1e3:8.3f}")
    rg.set_num_threads(accel_default())


def gpt_step(repeat: int) -> None:
    import functools
    import statistics
    import time

    from threadpoolctl import threadpool_limits

    import gpt
    import retrograd as rg

    rg.set_num_threads(1)
    F = rg.nn.functional
    F.gelu, plain = functools.partial(F.gelu, approximate="tanh"), F.gelu
    try:
        rg_step = gpt.step_fns()[0]
        with threadpool_limits(limits=1, user_api="blas"):
            for _ in range(3):
                rg_step()
            times, cpu = [], []
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                rg_step()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    finally:
        F.gelu = plain
    # CPU time: on a shared machine it counts the step's own work, not the waits for a core
    print(f"GPT step, tanh GELU, 1 thread: median {statistics.median(times) * 1e3:.1f} ms wall, "
          f"{statistics.median(cpu) * 1e3:.1f} ms CPU over {repeat} steps ({os.path.dirname(rg.__file__)})")


def accel_default() -> int:
    from retrograd import accel
    return accel._env_threads()


if __name__ == "__main__":
    main()
