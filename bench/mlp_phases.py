"""Where an MLP step's time goes, phase by phase: for a loaded machine (CPU time, not wall).

    python bench/mlp_phases.py mlp                       # retrograd (this checkout's src), default threads
    python bench/mlp_phases.py tiny_mlp --lib torch
    RETROGRAD_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/mlp_phases.py mlp
    PYTHONPATH=OLD/src python bench/mlp_phases.py mlp --src ''    # another tree, to compare A/B

Runs ``bench/programs/mlp.py`` with the workload's arguments (bench/users.py's table; ``import torch``
answered by retrograd unless ``--lib torch``), warms up, then times each phase of the step the program
defines (``zero_grad``, ``model(x)``, ``cross_entropy``, ``backward``, ``optimizer.step``) over
``--steps`` steps with ``time.thread_time()`` (the stepping thread's CPU time: work on pool threads is
not counted, so compare at one thread or read ``--clock process``, every thread's CPU time) and prints
the mean per step of each phase in microseconds, their sum, and the mean wall time of a step.
``--hash N`` instead runs N steps from the start and prints a SHA-256 of the losses, parameters,
gradients and optimizer state (the same bits before and after a change: compare two trees' hashes).
``--callgrind N`` runs N steps after the warm-up with each phase called through its own C function,
for callgrind's instruction count per phase (the step's Python frames all look alike to it)::

    valgrind --tool=callgrind --callgrind-out-file=cg.out --collect-atstart=no \
        --toggle-collect=starmap_next --toggle-collect=filter_next --toggle-collect=_operator_call \
        --toggle-collect=functools_reduce --toggle-collect=takewhile_next \
        python bench/mlp_phases.py tiny_mlp --warmup 50 --callgrind 200
    callgrind_annotate --inclusive=yes cg.out \
        | grep -E 'starmap_next|filter_next|_operator_call|functools_reduce|takewhile_next|TOTALS'

(zero_grad: ``itertools.starmap``, forward: ``filter``, loss: ``operator.call``, backward: ``functools.reduce``,
step: ``itertools.takewhile``; divide each inclusive count by N).
"""
from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import itertools
import operator
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import users  # noqa: E402

PHASES = ("zero_grad", "forward", "loss", "backward", "step")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=[w for w, s in users.WORKLOADS.items() if s.get("program") == "mlp.py"])
    ap.add_argument("--lib", choices=["retrograd", "torch"], default="retrograd")
    ap.add_argument("--src", default=os.path.join(users.ROOT, "src"), help="retrograd tree to put first ('': as found)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--clock", choices=["thread", "process"], default="thread")
    ap.add_argument("--hash", type=int, default=0, metavar="N", help="hash the state after N steps instead")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="N steps, each phase through its own C function, for callgrind (see above)")
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    if args.lib == "retrograd":
        sys.meta_path.insert(0, users.TorchAsRetrograd())
    ns = users.load_step(args.workload).__globals__  # the program's namespace: its model, optimizer, data
    opt, model, x, y, F = ns["optimizer"], ns["model"], ns["x"], ns["y"], ns["F"]
    if args.hash:
        h = hashlib.sha256()
        for _ in range(args.hash):
            h.update(ns["step"]().detach().numpy().tobytes())
        for p in model.parameters():
            h.update(p.detach().numpy().tobytes())
            h.update(p.grad.numpy().tobytes())
        for st in opt.state.values():
            for v in st.values():
                h.update(v.numpy().tobytes())
        print(f"{args.workload} {args.lib}: {h.hexdigest()[:16]} after {args.hash} steps")
        return
    if args.callgrind:
        _phases_for_callgrind(ns, args.warmup, args.callgrind)
        return
    clock = time.thread_time if args.clock == "thread" else time.process_time
    total = dict.fromkeys(PHASES, 0.0)
    wall = 0.0
    for i in range(args.warmup + args.steps):
        w = time.perf_counter()
        t0 = clock()
        opt.zero_grad()
        t1 = clock()
        out = model(x)
        t2 = clock()
        loss = F.cross_entropy(out, y)
        t3 = clock()
        loss.backward()
        t4 = clock()
        opt.step()
        t5 = clock()
        if i >= args.warmup:
            wall += time.perf_counter() - w
            for name, a, b in zip(PHASES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
                total[name] += b - a
    n = args.steps
    lib = __import__("torch")
    parts = "  ".join(f"{k} {v / n * 1e6:.1f}" for k, v in total.items())
    print(f"{args.workload} {args.lib} ({os.path.dirname(lib.__file__)}), {args.clock} CPU us per step: {parts}  "
          f"sum {sum(total.values()) / n * 1e6:.1f}  (wall {wall / n * 1e6:.1f})")


def _phases_for_callgrind(ns: dict, warmup: int, steps: int) -> None:
    """``steps`` steps after ``warmup``, each phase run by a C function of its own (the module docstring)."""
    opt, model, x, y, F = ns["optimizer"], ns["model"], ns["x"], ns["y"], ns["F"]
    for _ in range(warmup):
        ns["step"]()
    gc.collect()
    held = {}

    def zero_grad() -> None:
        opt.zero_grad()

    def forward(_: object) -> bool:
        held["out"] = model(x)
        return False

    def loss() -> None:
        held["loss"] = F.cross_entropy(held["out"], y)

    def backward(a: object, b: object) -> None:
        held["loss"].backward()

    def step(_: object) -> bool:
        opt.step()
        return False

    for _ in range(steps):
        for _ in itertools.starmap(zero_grad, ((),)):
            pass
        for _ in filter(forward, (0,)):
            pass
        operator.call(loss)
        functools.reduce(backward, (0, 0))
        for _ in itertools.takewhile(step, (0,)):
            pass
    print(f"{steps} steps, phases through starmap_next, filter_next, _operator_call, functools_reduce, takewhile_next")


if __name__ == "__main__":
    main()
