"""Per-op overhead in instructions (callgrind) and cyclic-GC collections: figures that load does not move.

    python bench/op_instructions.py                      # this checkout's src
    python bench/op_instructions.py --src /work/main/src # another tree, to compare A/B

The chain is bench/op_overhead.py's (1000 elementwise ops on 16 float32 values with grad). Each mode runs
in its own process under ``valgrind --tool=callgrind --instr-atstart=no`` with instrumentation switched on
(``callgrind_control -i on``) after 5 warm-up runs, for ``--runs`` runs, with ``RETROGRAD_NO_JIT=1`` (the
chain calls no kernel; Numba's import under valgrind takes minutes). Modes: ``fwd`` forward without grad,
``grad`` forward with grad (the graph freed unused), ``full`` forward + ``.sum().backward()``, ``nogc`` the
same with ``gc.disable()``. Then, without valgrind, the cyclic GC's collections per chain by generation
(``gc.callbacks``, 400 chains of ``full``).
"""
from __future__ import annotations

import argparse
import collections
import gc
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("fwd", "grad", "full", "nogc")


def chain(rg, x):
    y = x
    for _ in range(250):
        y = y * 1.0001
        y = y + x
        y = y.tanh()
        y = y - 0.001
    return y


def child(mode: str, runs: int, gc_counts: bool) -> None:
    import numpy as np

    import retrograd as rg

    x = rg.tensor(np.random.default_rng(0).standard_normal(16).astype(np.float32), requires_grad=True)

    def one():
        if mode == "fwd":
            with rg.no_grad():
                chain(rg, x)
        elif mode == "grad":
            chain(rg, x)
        else:
            chain(rg, x).sum().backward()

    if mode == "nogc":
        gc.disable()
    for _ in range(5):
        one()
    if gc_counts:
        n = collections.Counter()
        gc.callbacks.append(lambda phase, info: n.update([info["generation"]]) if phase == "stop" else None)
        for _ in range(runs):
            one()
        print(" / ".join(f"{n[g] / runs:.3f}" for g in range(3)))
        return
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True)
    for _ in range(runs):
        one()
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "src"), help="retrograd tree to import")
    ap.add_argument("--runs", type=int, default=20, help="chains under callgrind per mode")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--gc-counts", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.runs, args.gc_counts)
        return
    env = dict(os.environ, PYTHONPATH=args.src, RETROGRAD_NO_JIT="1")
    me = [sys.executable, os.path.abspath(__file__), "--src", args.src]
    per = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            out = os.path.join(tmp, f"cg.{mode}")
            p = subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                                *me, "--child", mode, "--runs", str(args.runs)], env=env, capture_output=True, text=True)
            m = re.search(r"Collected : (\d+)", p.stderr)
            if m is None:
                raise SystemExit(f"callgrind gave no count for {mode}:\n{p.stderr[-2000:]}")
            per[mode] = int(m.group(1)) / (args.runs * 1000)
    print(f"instructions per op ({args.src}): forward without grad {per['fwd']:,.0f}; forward with grad "
          f"{per['grad']:,.0f}; backward {per['full'] - per['grad']:,.0f}; fwd+bwd {per['full']:,.0f}, of which "
          f"the cyclic GC {per['full'] - per['nogc']:,.0f}")
    p = subprocess.run([*me, "--child", "full", "--runs", "400", "--gc-counts"], env=env, capture_output=True,
                       text=True, check=True)
    print(f"GC collections per chain, generation 0 / 1 / 2: {p.stdout.strip()}")


if __name__ == "__main__":
    main()
