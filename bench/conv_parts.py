"""The CNN step's parts (``retrograd.kernels.conv``) against their NumPy twins, and the step itself.

Shapes are those of bench/programs/cnn.py (batch 64 of 1x28x28, Conv2d(1,32,3)-ReLU-MaxPool2d(2)-
Conv2d(32,64,3)-ReLU-MaxPool2d(2)-Flatten-Linear(1600,10)). For each part: the NumPy twin (what runs
without Numba or with RETROGRAD_NO_JIT=1), the compiled kernel on 1 thread and on 2 threads
(``rg.set_num_threads``), medians of interleaved runs, wall and CPU time; then the conv GEMMs on 1 and
2 OpenBLAS threads (threadpoolctl).

``--step`` instead times the whole CNN step (bench/programs/cnn.py's, written with retrograd) and
prints wall and CPU medians: run it with one checkout's ``src`` on PYTHONPATH, then another's, with
``--threads 1`` and ``--threads 2`` (kernels and OpenBLAS), to compare before and after.

Run: python bench/conv_parts.py [--repeat 100] [--backward] | --step [--threads N] [--repeat 30]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from kernels import contenders, timed  # noqa: E402  (bench/kernels.py: twin/1/2-thread runs; medians, interleaved)


def cases(KC, dt):
    """(name, zero-argument function) for each part at the CNN step's sizes."""
    rng = np.random.default_rng(0)
    z = ((0, 0), (0, 0))
    x1 = rng.standard_normal((64, 1, 28, 28)).astype(dt)
    x2 = rng.standard_normal((64, 32, 13, 13)).astype(dt)
    c2 = KC.im2col(x2, (3, 3), (1, 1), z, (1, 1), (11, 11))
    gc2 = rng.standard_normal(c2.shape).astype(dt)
    y1, b1 = rng.standard_normal((64 * 676, 32)).astype(dt), rng.standard_normal(32).astype(dt)
    yc1 = np.ascontiguousarray(y1.T)
    a1 = rng.standard_normal((64, 32, 26, 26)).astype(dt)
    r1 = KC.relu(a1)
    p1, i1 = KC.max_pool2d(r1, (2, 2), (2, 2), (0, 0), (1, 1), (13, 13))
    gp1 = rng.standard_normal(p1.shape).astype(dt)
    return [
        ("im2col conv1 (64x1x28x28, 3x3)", lambda: KC.im2col(x1, (3, 3), (1, 1), z, (1, 1), (26, 26))),
        ("im2col conv2 (64x32x13x13, 3x3)", lambda: KC.im2col(x2, (3, 3), (1, 1), z, (1, 1), (11, 11))),
        ("col2im conv2", lambda: KC.col2im(gc2, x2.shape, (3, 3), (1, 1), z, (1, 1), (11, 11))),
        ("GEMM rows -> NCHW + bias, conv1 (64x32x26x26)", lambda: KC.rows_to_nchw(y1, 64, (26, 26), b1)),
        ("GEMM channels -> NCHW + bias, conv1", lambda: KC.channels_to_nchw(yc1, 64, (26, 26), b1)),
        ("NCHW -> channel rows, conv1", lambda: KC.nchw_to_channels(a1)),
        ("relu forward (64x32x26x26)", lambda: KC.relu(a1)),
        ("relu backward", lambda: KC.relu_backward(a1, r1)),
        ("max_pool2d 2x2 forward (64x32x26x26)", lambda: KC.max_pool2d(r1, (2, 2), (2, 2), (0, 0), (1, 1), (13, 13))),
        ("max_pool2d 2x2 backward", lambda: KC.max_pool2d_backward(gp1, i1, (26, 26), (2, 2), (2, 2), (0, 0), (1, 1))),
        # Sequential's ReLU + MaxPool2d node (F.pool.relu_max_pool2d): in place of the four rows above
        ("relu + max_pool2d 2x2 forward, one node", lambda: KC.max_pool2d(a1, (2, 2), (2, 2), (0, 0), (1, 1), (13, 13),
                                                                           relu=True)),
        ("relu + max_pool2d 2x2 backward, one node", lambda: KC.max_pool2d_backward(
            gp1, i1, (26, 26), (2, 2), (2, 2), (0, 0), (1, 1), relu_out=p1)),
    ]


def parts(repeat: int) -> None:
    import retrograd as rg
    from retrograd import accel
    from retrograd.kernels import conv as KC

    if not accel.available():
        sys.exit("bench/conv_parts.py: Numba is not available (pip install 'retrograd[fast]'), nothing to compare")
    default = accel.get_num_threads()
    print(f"NumPy {np.__version__}, {default} kernel threads by default, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; medians of {repeat} interleaved runs, ms (CPU: summed over threads)")
    print(f"\n{'float32':<48} {'twin':>7} {'1 thr':>7} {'2 thr':>7} | CPU: {'twin':>7} {'1 thr':>7} {'2 thr':>7}")
    for name, fn in cases(KC, np.float32):
        w, c = timed(contenders(fn), repeat)
        print(f"{name:<48} {w['twin'] * 1e3:7.3f} {w['1'] * 1e3:7.3f} {w['2'] * 1e3:7.3f} |      "
              f"{c['twin'] * 1e3:7.3f} {c['1'] * 1e3:7.3f} {c['2'] * 1e3:7.3f}")
    rg.set_num_threads(default)
    backward(repeat)
    rg.set_num_threads(default)
    gemms(repeat)


def backward(repeat: int) -> None:
    """conv2d's backward rule on arrays (the CNN step's two convolutions): the gradients one after the
    other (``_conv_dx`` then ``_conv_dw``, each GEMM cut into blocks: before session 11) against
    ``kernels.conv.input_weight_grads`` (the weight gradient whole on one thread beside the input
    gradient's blocks), on 1 and 2 threads."""
    import retrograd as rg
    from retrograd.kernels import conv as KC
    from retrograd.nn.functional import conv as C

    rng = np.random.default_rng(2)
    z = ((0, 0), (0, 0))
    kw = {"stride": (1, 1), "padding": z, "dilation": (1, 1), "groups": 1}
    rows = []
    for name, xs, ws, needs in (("conv2 (64x32x13x13, 64x32x3x3): dx, dw, db", (64, 32, 13, 13), (64, 32, 3, 3),
                                 (True, True, True)),
                                ("conv1 (64x1x28x28, 32x1x3x3): dw, db", (64, 1, 28, 28), (32, 1, 3, 3),
                                 (False, True, True))):
        x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
        oh, ow = xs[2] - 2, xs[3] - 2
        g = rng.standard_normal((xs[0], ws[0], oh, ow)).astype(np.float32)
        ins = (x, w, np.zeros(ws[0], np.float32))
        cols = KC.im2col(x, (3, 3), (1, 1), z, (1, 1), (oh, ow))

        def run(side: bool, threads: int, ins=ins, g=g, cols=cols, needs=needs):
            rg.set_num_threads(threads)
            real = C._side_by_side
            C._side_by_side = real if side else (lambda *a: False)
            try:
                C._conv2d_b(g, None, ins, dict(kw, cols=cols), needs)
            finally:
                C._side_by_side = real
        fns = {f"{mode} {t}": (lambda m=mode, t=t: run(m == "side", t)) for mode in ("split", "side") for t in (1, 2)}
        rows.append((name, timed(fns, repeat)))
    print(f"\nconv2d backward rule, ms{'':<24} {'split 1':>8} {'side 1':>8} {'split 2':>8} {'side 2':>8} | CPU: "
          f"{'split 1':>8} {'side 1':>8} {'split 2':>8} {'side 2':>8}")
    order = ("split 1", "side 1", "split 2", "side 2")
    for name, (w_, c_) in rows:
        print(f"{name:<48} " + " ".join(f"{w_[k] * 1e3:8.3f}" for k in order) + " |      "
              + " ".join(f"{c_[k] * 1e3:8.3f}" for k in order))


def gemms(repeat: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("\n(threadpoolctl is not installed: the GEMM table is skipped)")
        return
    rng = np.random.default_rng(1)
    cols = rng.standard_normal((64 * 121, 288)).astype(np.float32)
    w = rng.standard_normal((64, 288)).astype(np.float32)
    g2 = rng.standard_normal((64, 64 * 121)).astype(np.float32)
    cases_ = {"forward  cols @ w.T (7744x288 @ 288x64)": lambda: cols @ w.T,
              "weight   g2 @ cols (64x7744 @ 7744x288)": lambda: g2 @ cols,
              "input    g2.T @ w (7744x64 @ 64x288)": lambda: g2.T @ w}
    print(f"\nconv2's GEMMs, float32, ms {'1 thr':>7} {'2 thr':>7}")
    for name, fn in cases_.items():
        res = {}
        for n in (1, 2):
            with threadpool_limits(limits=n, user_api="blas"):
                res[n] = timed({"f": fn}, repeat)[0]["f"]
        print(f"{name:<40} {res[1] * 1e3:7.3f} {res[2] * 1e3:7.3f}")


def step(threads: int, repeat: int) -> None:
    """Wall and CPU medians of blocks of 10 CNN steps on ``threads`` threads (kernels and OpenBLAS)."""
    import retrograd as rg
    import retrograd.nn as nn
    import retrograd.nn.functional as F

    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        limit = None
    rg.set_num_threads(threads)
    rg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 10))
    opt = rg.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rg.from_numpy(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    y = rg.from_numpy(rng.integers(0, 10, 64))

    def one():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(10):
        one()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(10):
            one()
        wall.append((time.perf_counter() - t0) / 10)
        cpu.append((time.process_time() - c0) / 10)
    print(f"CNN step, {threads} thread(s): wall median {statistics.median(wall) * 1e3:.1f} ms (min "
          f"{min(wall) * 1e3:.1f}), CPU median {statistics.median(cpu) * 1e3:.1f} ms; load average "
          f"{os.getloadavg()[0]:.1f}")
    if limit is not None:
        limit.restore_original_limits()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--step", action="store_true", help="time the whole CNN step instead")
    ap.add_argument("--backward", action="store_true", help="only the conv2d backward rule's table")
    ap.add_argument("--threads", type=int, default=1, help="threads for --step (kernels and OpenBLAS)")
    args = ap.parse_args()
    if args.step:
        step(args.threads, args.repeat or 30)
    elif args.backward:
        backward(args.repeat or 100)
    else:
        parts(args.repeat or 100)


if __name__ == "__main__":
    main()
