"""`retrograd train examples/fashion_cnn.toml` against the same plain loop in retrograd, each in its own
process as bench/users.py runs them, by CPU time per batch: what the CLI costs beyond the loop on a
busy machine, where wall times say little.

    python bench/cli_vs_loop.py [--rounds 5] [--threads 1] [--batches 108] [--skip 20]
    python bench/cli_vs_loop.py --callgrind [--threads 1]     # instructions per batch, each once

Rounds alternate two children on this checkout's src:

- ``cli``: ``retrograd.cli.main(["train", "examples/fashion_cnn.toml", ...])`` as bench/users.py's
  ``fashion_cnn_train`` runs it (one epoch of ``--batches`` batches, 256 validation images; at N
  threads ``rg.set_num_threads(N)`` and ``train.threads=N``), with one callback that reads the
  clocks at each batch's end (where ``MetricLogger`` stamps ``metrics.jsonl``);
- ``loop``: bench/programs/fashion_cnn_loop.py with ``import torch`` answered by retrograd (bench/users.py's
  ``retrograd_loop``), ``step()`` called ``--batches`` times with the clocks read after each.

Per batch, from batch ``--skip`` on: CPU time of the stepping thread (``time.thread_time``), of the
whole process (``time.process_time``: the pool's and OpenBLAS's workers too) and wall time; a
child's figure is the median batch; the table gives the median over rounds and the median of the
per-round differences cli - loop. ``users.py style`` is what bench/users.py makes of the same
stamps for the CLI (blocks of 15 batches from batch 3, median block), here from thread CPU time, so
that a slow start shows. ``gen2`` lists the full collections among the batches (batch, ms).

``--callgrind``: each child once under ``valgrind --tool=callgrind``, instrumentation on for 10
batches after 5 (``callgrind_control -i on/off``): instructions per batch, load-independent (slow:
~20-30 minutes each on a loaded 2-core machine; the two run side by side).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import users  # noqa: E402  (its child environment and its torch-as-retrograd import finder)


def child(args: argparse.Namespace) -> None:
    marks: list = []
    gen2: list = []
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started[0] = time.thread_time()
            else:
                gen2.append((len(marks), round((time.thread_time() - started[0]) * 1e3, 1)))

    gc.callbacks.append(on_gc)
    cg_window = (5, 15) if args.callgrind_child else None

    def mark() -> None:
        marks.append((time.thread_time(), time.process_time(), time.perf_counter()))
        if cg_window and len(marks) in cg_window:
            subprocess.run(["callgrind_control", "-i", "on" if len(marks) == cg_window[0] else "off",
                            str(os.getpid())], capture_output=True)
            if len(marks) == cg_window[1]:
                os._exit(0)  # the count is in; the rest of the run (evaluation, plots) would take long under valgrind

    n = args.batches
    if args.child == "cli":
        import retrograd as rg
        from retrograd import cli
        from retrograd.train import Callback

        if args.threads != "default":
            rg.set_num_threads(int(args.threads))

        class Clock(Callback):
            def on_batch_end(self, trainer, batch_idx, logs):
                mark()

        with tempfile.TemporaryDirectory() as tmp:
            argv = ["train", os.path.join(ROOT, "examples", "fashion_cnn.toml"), "--set", f'run.dir="{tmp}"',
                    "--set", "train.epochs=1", "--set", f"data.train_samples={n * 64}", "--set",
                    "data.val_samples=256"]
            if args.threads != "default":
                argv += ["--set", f"train.threads={int(args.threads)}"]
            argv += args.cli_args.split()
            if cli.main(argv, extra_callbacks=[Clock()]):
                raise SystemExit("retrograd train failed")
    else:
        sys.meta_path.insert(0, users.TorchAsRetrograd())
        lib = __import__("torch")
        if args.threads != "default":
            lib.set_num_threads(int(args.threads))
        step = users.load_step("fashion_cnn_train", ("--samples", str(n * 64)))
        for _ in range(n):
            step()
            mark()
    per = [tuple(b[k] - a[k] for k in range(3)) for a, b in zip(marks, marks[1:])]  # per[i]: batch i + 1
    th = [p[0] for p in per]
    blocks = [statistics.fmean(th[i:i + 15]) for i in range(2, len(th) - 14, 15)]
    steady = per[args.skip - 1:]
    print(json.dumps({"how": args.child, "thread_ms": statistics.median(p[0] for p in steady) * 1e3,
                      "process_ms": statistics.median(p[1] for p in steady) * 1e3,
                      "wall_ms": statistics.median(p[2] for p in steady) * 1e3,
                      "users_style_ms": statistics.median(blocks) * 1e3 if blocks else None,
                      "first_block_ms": blocks[0] * 1e3 if blocks else None,
                      "gen2": [g for g in gen2 if g[0] >= 1], "load": os.getloadavg()[0]}))


def run(how: str, args: argparse.Namespace) -> dict:
    how, _, extra = how.partition(" ")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", how, "--threads", args.threads,
           "--batches", str(args.batches), "--skip", str(args.skip), f"--cli-args={extra}"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=users.child_env(args.threads), cwd=ROOT)
    if p.returncode:
        raise SystemExit(f"{how} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def callgrind(args: argparse.Namespace) -> None:
    procs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("loop", "cli"):
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={os.path.join(tmp, 'cg.' + how)}", sys.executable,
                   os.path.abspath(__file__), "--child", how, "--callgrind-child", "--threads", args.threads,
                   "--batches", "20", "--skip", "2"]
            procs[how] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=users.child_env(args.threads), cwd=ROOT)
        counts = {}
        for how, p in procs.items():
            _, err = p.communicate()
            m = re.search(r"Collected : (\d+)", err)
            if m is None:
                raise SystemExit(f"callgrind gave no count for {how}:\n{err[-2000:]}")
            counts[how] = int(m.group(1)) / 10
    print(f"instructions per batch ({args.threads} threads; all threads, 10 batches after 5): loop "
          f"{counts['loop'] / 1e6:.1f} M, cli {counts['cli'] / 1e6:.1f} M "
          f"({(counts['cli'] / counts['loop'] - 1) * 100:+.2f} %)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1", help="'default' or a count (as bench/users.py's --threads)")
    ap.add_argument("--batches", type=int, default=108, help="batches per child (users.py: 3 + 7 x 15)")
    ap.add_argument("--skip", type=int, default=20, help="batches left out at the start")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--variant", default=None, help="also a third child: the CLI with these arguments "
                    "(e.g. '--quiet' or '--set train.nan_guard=false')")
    ap.add_argument("--cli-args", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=("cli", "loop"), help=argparse.SUPPRESS)
    ap.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.callgrind:
        callgrind(args)
        return
    rows = []
    for r in range(args.rounds):
        hows = ("loop", "cli") + ((f"cli {args.variant}",) if args.variant else ())
        pair = {how: run(how, args) for how in hows}
        rows.append(pair)
        print(f"round {r + 1}: " + " | ".join(
            f"{how} thread {d['thread_ms']:.2f} process {d['process_ms']:.2f} wall {d['wall_ms']:.2f} "
            f"(users.py style {d['users_style_ms']:.2f}, first block {d['first_block_ms']:.2f}, gen2 {d['gen2']}, "
            f"load {d['load']:.1f})" for how, d in pair.items()), flush=True)
    print(f"fashion_cnn, {args.threads} threads, median of {args.rounds} rounds (ms per batch of 64, batches "
          f"{args.skip}-{args.batches - 1}):")
    for how in rows[0]:
        if how == "loop":
            continue
        print(f" {how}:")
        for key in ("thread_ms", "process_ms", "wall_ms", "users_style_ms"):
            lp = statistics.median(p["loop"][key] for p in rows)
            cl = statistics.median(p[how][key] for p in rows)
            d = statistics.median(p[how][key] - p["loop"][key] for p in rows)
            print(f"  {key:15s} loop {lp:7.2f}  cli {cl:7.2f}  cli - loop {d:+.2f} ({d / lp * 100:+.1f} %)")


if __name__ == "__main__":
    main()
