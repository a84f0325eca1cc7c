"""retrograd against retrograd: the same benchmarks run on two source trees (before and after a
refactor), each run in its own process, trees interleaved round by round, medians reported.

Run: python bench/trees.py OLD_SRC NEW_SRC [--rounds 5] [--repeat 15] [--threads 1] [--only op,mlp,cnn,gpt]
(OLD_SRC/NEW_SRC are folders holding the `retrograd` package, e.g. a `git worktree`'s src/).
Ratios are NEW / OLD: 1.00 means no change.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BENCHES = ("op", "mlp", "cnn", "gpt")


def _child(which: str, repeat: int) -> float:
    """Median seconds of one retrograd step of ``which`` (this process imports one tree only)."""
    from common import median_time

    import numpy as np

    import retrograd as rg

    if which == "op":
        from op_overhead import chain
        x = rg.tensor(np.random.default_rng(0).standard_normal(16).astype(np.float32), requires_grad=True)

        def step():
            chain(x).sum().backward()
    elif which == "mlp":
        from mlp import rg_step_fn
        step = rg_step_fn()
    else:
        step = __import__(which).step_fns()[0]
    for _ in range(3):
        step()
    return median_time(step, repeat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="retrograd and BLAS threads (0: defaults)")
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.threads:
            import retrograd as rg
            rg.set_num_threads(args.threads)
        print(json.dumps(_child(args.child, args.repeat)))
        return
    env = dict(os.environ)
    if args.threads:
        env.update(OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    for which in args.only.split(","):
        if which not in BENCHES:
            raise SystemExit(f"--only: unknown benchmark {which!r}; expected some of {', '.join(BENCHES)}")
        times: dict[str, list[float]] = {k: [] for k in trees}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))  # alternate who goes first
            for name in order:
                out = subprocess.run([sys.executable, __file__, "x", "x", "--child", which, "--repeat",
                                      str(args.repeat), "--threads", str(args.threads)],
                                     env={**env, "PYTHONPATH": trees[name]}, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"{which} on {trees[name]} failed:\n{out.stderr}")
                times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: f"{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}" for k, v in times.items()}
        print(f"{which}: old {med['old'] * 1e3:.2f} ms ({spread['old']}), new {med['new'] * 1e3:.2f} ms "
              f"({spread['new']}), new/old {med['new'] / med['old']:.3f}  [{args.rounds} rounds x {args.repeat}]",
              flush=True)


if __name__ == "__main__":
    main()
