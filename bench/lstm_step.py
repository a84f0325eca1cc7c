"""In-process timings of the LSTM language-model step (``bench/programs/lstm_lm.py``) and of its
2-layer ``nn.LSTM`` alone (forward + backward at the same sizes), for one library per process:

    python bench/lstm_step.py --lib retrograd --threads 1
    python bench/lstm_step.py --lib torch --threads 2 --steps 30
    python bench/lstm_step.py --lib retrograd --src /path/to/other/tree/src   # A/B against another tree

Prints the median and minimum per step of wall time and of process CPU time (CPU time is the
steadier figure on a loaded machine: with 1 thread it excludes the time spent waiting for a core).
Run A and B alternately, several times; ``bench/users.py`` is the reference measurement.

    python bench/lstm_step.py --threads 2 --rules     # retrograd: where the LM step's time goes, per rule

``--rules`` (retrograd only) times each rule's forward and backward in the LM step: wall time, CPU
time of the calling thread, and CPU time that OpenBLAS's own worker threads (native threads that
are not Python's) used meanwhile: a worker busy-waiting after a threaded GEMM shows there.
"""
from __future__ import annotations

import argparse
import collections
import gc
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _timed(fn, steps: int) -> tuple:
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return [f"{statistics.median(v) * 1e3:.1f} ms (min {min(v) * 1e3:.1f})" for v in (wall, cpu)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", choices=["retrograd", "torch"], default="retrograd")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "src"), help="retrograd's source tree")
    ap.add_argument("--rules", action="store_true", help="retrograd: per-rule wall / thread CPU / OpenBLAS workers' CPU")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RETROGRAD_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads OpenBLAS
    if args.lib == "retrograd":
        sys.path.insert(0, args.src)
        sys.path.insert(0, HERE)
        import users
        sys.meta_path.insert(0, users.TorchAsRetrograd())
    torch = __import__("torch")
    torch.set_num_threads(args.threads)
    path = os.path.join(HERE, "programs", "lstm_lm.py")
    ns = {"__name__": "__bench__", "__file__": path}
    sys.argv = [path]
    exec(compile(open(path).read(), path, "exec"), ns)
    if args.rules:
        if args.lib != "retrograd":
            ap.error("--rules times retrograd's rules")
        _rules(ns["step"], args.steps)
        return
    lstm, x = ns["model"].rnn, torch.randn(ns["bptt"], ns["batch_size"], ns["emsize"], requires_grad=True)

    def layer() -> None:
        out, _ = lstm(x)
        out.sum().backward()
    for name, fn in (("LM step", ns["step"]), ("nn.LSTM fwd+bwd", layer)):
        for _ in range(3):
            fn()
        wall, cpu = _timed(fn, args.steps)
        print(f"{args.lib} threads={args.threads} {name}: wall {wall}, cpu {cpu}")


def _native_threads() -> list:
    """Thread ids of this process that are not Python threads (OpenBLAS's workers)."""
    py = {t.native_id for t in threading.enumerate()} | {os.getpid()}
    return [int(t) for t in os.listdir("/proc/self/task") if int(t) not in py]


def _cpu_of(tids: list) -> float:
    total = 0
    for t in tids:
        try:
            with open(f"/proc/self/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])  # ns on a CPU
        except OSError:
            pass
    return total / 1e9


def _rules(step, steps: int) -> None:
    import retrograd.ops as O

    wall, cpu, blas, count = (collections.defaultdict(float), collections.defaultdict(float),
                              collections.defaultdict(float), collections.Counter())
    tids: list = []

    def wrap(rule, which):
        f = getattr(rule, which)
        if f is None:
            return
        key = f"{rule.name} {which}"

        def timed(*a, _f=f, _k=key):
            b, w, c = _cpu_of(tids), time.perf_counter(), time.thread_time()
            try:
                return _f(*a)
            finally:
                wall[_k] += time.perf_counter() - w
                cpu[_k] += time.thread_time() - c
                blas[_k] += _cpu_of(tids) - b
                count[_k] += 1
        setattr(rule, which, timed)
    for _ in range(3):
        step()
    tids[:] = _native_threads()
    for rule in [o for o in gc.get_objects() if isinstance(o, O.Rule)]:
        wrap(rule, "forward")
        wrap(rule, "backward")
        rule.array_op = rule.scalar_op = rule.scalar_grad = None  # every op through its timed functions
        rule.passes_grad = False
    step()
    for d in (wall, cpu, blas, count):
        d.clear()
    b0, w0, c0, p0 = _cpu_of(tids), time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(steps):
        step()
    n = steps
    print(f"LM step: wall {(time.perf_counter() - w0) / n * 1e3:.1f} ms, process CPU "
          f"{(time.process_time() - p0) / n * 1e3:.1f}, calling thread {(time.thread_time() - c0) / n * 1e3:.1f}, "
          f"OpenBLAS workers ({len(tids)}) {(_cpu_of(tids) - b0) / n * 1e3:.1f} ms per step")
    print(f"  {'rule':32s} {'wall':>8s} {'thread':>8s} {'OpenBLAS':>9s}  (ms per step)")
    for k, v in sorted(wall.items(), key=lambda kv: -kv[1])[:16]:
        print(f"  {k:32s} {v / n * 1e3:8.2f} {cpu[k] / n * 1e3:8.2f} {blas[k] / n * 1e3:9.2f}  x{count[k] // n}")


if __name__ == "__main__":
    main()
