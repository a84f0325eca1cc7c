"""Where a bench/programs step spends its time in retrograd: per-op wall time (each Rule's forward and
backward wrapped in a timer), page faults and system time per step, and optionally a cProfile listing.

    python bench/op_profile.py [--program gpt.py] [--threads 2] [--steps 20] [--cpu] [--cprofile] [-- program args]
    python bench/op_profile.py -- --gelu none

The program runs as bench/users.py runs it (``import torch`` answered by ``retrograd``). Ops that run
inside another op's rule are counted in both; the sum is the time spent in rules, the rest of the step
is the engine, Python and the optimizer.
"""
from __future__ import annotations

import argparse
import collections
import gc
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import users  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", default="gpt.py", help="a file in bench/programs")
    ap.add_argument("--threads", type=int, default=0, help="rg.set_num_threads (0: the default)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions by own time")
    ap.add_argument("--cpu", action="store_true", help="time the rules by the stepping thread's CPU time "
                    "(time.thread_time: for a busy machine; with --threads 1, where the ops run on that thread)")
    ap.add_argument("program_args", nargs="*")
    a = ap.parse_args()
    sys.meta_path.insert(0, users.TorchAsRetrograd())
    import torch  # retrograd, under torch's name
    import retrograd.ops as O

    if a.threads:
        torch.set_num_threads(a.threads)
    path = os.path.join(users.PROGRAMS, a.program)
    sys.argv = [path, *a.program_args]
    ns = {"__name__": "__bench__", "__file__": path}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), ns)
    step = ns["step"]
    for _ in range(5):
        step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    times.sort()
    n = a.steps
    print(f"{a.program} {' '.join(a.program_args)}: threads {torch.get_num_threads()}, step median "
          f"{1e3 * times[n // 2]:.1f} ms (min {1e3 * times[0]:.1f}); per step: CPU user "
          f"{1e3 * (r1.ru_utime - r0.ru_utime) / n:.1f} ms, system {1e3 * (r1.ru_stime - r0.ru_stime) / n:.1f} ms, "
          f"{(r1.ru_minflt - r0.ru_minflt) / n:.0f} page faults (wall {1e3 * wall / n:.1f} ms)")
    acc: dict = collections.defaultdict(float)
    cnt: collections.Counter = collections.Counter()
    clock = time.thread_time if a.cpu else time.perf_counter

    def wrap(rule, which):
        f = getattr(rule, which)
        if f is None:
            return
        key = f"{rule.name} {which}"

        def timed(*args, _f=f, _k=key):
            t = clock()
            try:
                return _f(*args)
            finally:
                acc[_k] += clock() - t
                cnt[_k] += 1
        setattr(rule, which, timed)
    for rule in [o for o in gc.get_objects() if isinstance(o, O.Rule)]:
        wrap(rule, "forward")
        wrap(rule, "backward")
        # the engine's shortcuts around forward/backward (ufunc calls, passed-through gradients) off, so that
        # every op runs through its timed functions
        rule.array_op = rule.scalar_op = rule.scalar_grad = rule.out_grad = None
        rule.passes_grad = False
    for _ in range(3):
        step()
    acc.clear()
    cnt.clear()
    if a.cprofile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    t0 = clock()
    for _ in range(n):
        step()
    total = (clock() - t0) / n
    if a.cprofile:
        prof.disable()
    print(f"timed step {1e3 * total:.1f} ms{' (CPU time of this thread)' if a.cpu else ''}, in rules "
          f"{1e3 * sum(acc.values()) / n:.1f} ms:")
    for k, v in sorted(acc.items(), key=lambda kv: -kv[1])[:a.top]:
        print(f"  {k:45s} {1e3 * v / n:7.2f} ms  x{cnt[k] // n}")
    if a.cprofile:
        import pstats
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
