"""`retrograd train examples/fashion_cnn.toml` against the same plain loop in retrograd, each in its own
process as bench/users.py runs them, by CPU time per batch: what the CLI costs beyond the loop on a
busy machine, where wall times say little.

    python bench/cli_vs_loop.py [--rounds 5] [--threads 1] [--batches 108] [--skip 20]
    python bench/cli_vs_loop.py --callgrind [--threads 1]     # instructions per batch, each once
    python bench/cli_vs_loop.py --paired [--rounds 6] [--pairs 8] [--threads default] [--control]
    python bench/cli_vs_loop.py --rounds 2 --detail           # per thread and retrograd's pool, per batch

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

``--paired``: both children persistent (bench/users.py's paired children: the CLI's trains with one
callback that pauses it between blocks), started in turn (the other order in odd sessions), blocks
of ``--block`` batches taking turns; per pair the ratio cli / loop of wall, process CPU and
stepping-thread CPU time a batch; ``--control`` puts a second loop in the CLI's place (how far two
identical processes differ). Time that lasts longer than a pair (the host's neighbours move this
VM's speed by tens of percent for seconds at a time) cancels in the ratios, which rounds of fresh
processes cannot do.

``--detail`` (rounds): per thread of each child, CPU time, run-queue wait, time slices and
context switches a batch (``/proc/self/task/*/schedstat``, ``status``), and retrograd's kernel
pool counted (``accel._Job.run`` patched in the child): split runs, the ranges the calling thread
and the workers ran, and how often and how long the caller waited for ranges others held.

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
import threading
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

    snaps: list = []

    def mark() -> None:
        marks.append((time.thread_time(), time.process_time(), time.perf_counter()))
        if args.detail and len(marks) in (args.skip, args.batches):
            snaps.append({**thread_stats(), "pool": dict(pool)})
        if cg_window and len(marks) in cg_window:
            subprocess.run(["callgrind_control", "-i", "on" if len(marks) == cg_window[0] else "off",
                            str(os.getpid())], capture_output=True)
            if len(marks) == cg_window[1]:
                os._exit(0)  # the count is in; the rest of the run (evaluation, plots) would take long under valgrind

    pool = pool_counters() if args.detail else None
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
    detail = None
    if args.detail and len(snaps) == 2:
        nb = args.batches - args.skip
        detail = {}
        a, b = snaps[0].pop("pool"), snaps[1].pop("pool")
        detail["pool"] = {k: round((b[k] - a.get(k, 0)) / nb, 3) for k in b}
        for tid, b in snaps[1].items():
            a = snaps[0].get(tid, {k: 0 for k in b if k != "name"})
            d = {k: (b[k] - a[k]) / nb for k in b if k != "name"}
            if d["cpu_ms"] > 0.01 or d["vcsw"] or d["ivcsw"]:
                detail[f"{b['name']}:{tid}"] = {k: round(v, 3) for k, v in d.items()}
    per = [tuple(b[k] - a[k] for k in range(3)) for a, b in zip(marks, marks[1:])]  # per[i]: batch i + 1
    th = [p[0] for p in per]
    blocks = [statistics.fmean(th[i:i + 15]) for i in range(2, len(th) - 14, 15)]
    steady = per[args.skip - 1:]
    print(json.dumps({"how": args.child, "thread_ms": statistics.median(p[0] for p in steady) * 1e3,
                      "process_ms": statistics.median(p[1] for p in steady) * 1e3,
                      "wall_ms": statistics.median(p[2] for p in steady) * 1e3,
                      "users_style_ms": statistics.median(blocks) * 1e3 if blocks else None,
                      "first_block_ms": blocks[0] * 1e3 if blocks else None,
                      "gen2": [g for g in gen2 if g[0] >= 1], "load": os.getloadavg()[0], "detail": detail}))


def pool_counters() -> dict:
    """Count what retrograd's kernel pool does (accel._Job.run, patched here): split runs, the ranges
    the calling thread and the workers ran, and the caller's waits for ranges others held (count, ms)."""
    from retrograd import accel

    c = {"jobs": 0, "ranges_caller": 0, "ranges_worker": 0, "caller_waits": 0, "caller_wait_ms": 0.0}
    run = accel._Job.run
    main_id = threading.get_ident()

    class Done:  # the job's lock, timing the caller's wait when it has to block
        __slots__ = ("lock",)

        def __init__(self, lock):
            self.lock = lock

        def acquire(self):
            if self.lock.acquire(False):
                return True
            t = time.perf_counter()
            self.lock.acquire()
            c["caller_waits"] += 1
            c["caller_wait_ms"] += (time.perf_counter() - t) * 1e3
            return True

        def release(self):
            self.lock.release()

    def counted_run(self, helpers: int) -> None:
        c["jobs"] += 1
        piece = self.piece

        def counting(lo, hi):
            c["ranges_caller" if threading.get_ident() == main_id else "ranges_worker"] += 1
            piece(lo, hi)

        self.piece, self.done = counting, Done(self.done)
        return run(self, helpers)

    accel._Job.run = counted_run
    return c


def thread_stats() -> dict:
    """Per thread of this process: CPU time and run-queue wait (ms, /proc schedstat), time slices,
    voluntary and involuntary context switches."""
    out = {}
    py = {str(t.native_id): t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        base = f"/proc/self/task/{tid}/"
        try:
            with open(base + "schedstat") as f:
                run, wait, slices = (int(v) for v in f.read().split())
            with open(base + "comm") as f:
                name = f.read().strip()
            with open(base + "status") as f:
                st = dict(line.split(":", 1) for line in f if "ctxt_switches" in line)
        except OSError:
            continue
        out[tid] = {"name": py.get(tid, "native " + name), "cpu_ms": run / 1e6, "wait_ms": wait / 1e6, "slices": slices,
                    "vcsw": int(st["voluntary_ctxt_switches"]), "ivcsw": int(st["nonvoluntary_ctxt_switches"])}
    return out


def run(how: str, args: argparse.Namespace) -> dict:
    how, _, extra = how.partition(" ")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", how, "--threads", args.threads,
           "--batches", str(args.batches), "--skip", str(args.skip), f"--cli-args={extra}"]
    cmd += ["--detail"] if args.detail else []
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


def paired(args: argparse.Namespace) -> None:
    """Sessions of persistent children (bench/users.py's paired mode: the loop's child and the CLI's,
    which serves blocks from a callback), started in turn (the other order in odd sessions), blocks of
    ``--block`` batches alternating (the loop first in even pairs); per pair the ratio cli / loop of
    wall, process CPU and stepping-thread CPU time per batch."""
    opts = users.parse_args(["--pairs", str(args.pairs), "--fashion-block", str(args.block)])
    hows = [("loop", "retrograd", ""), ("cli", "cli", "")]
    hows += [("variant", "cli", args.variant)] if args.variant else []
    if args.control:  # a second loop process in the CLI's place: how far two identical processes differ
        hows[1] = ("loop2", "retrograd", "")
    keys = (("wall_s", "wall"), ("cpu_s", "process"), ("thread_s", "thread"))
    ratios: dict = {}
    for r in range(args.rounds):
        # the children start (load, warm up) in turn, the other order in odd sessions: the first one started
        # ran ~2 % slower in a control's 6 sessions that always started the same one first
        started = {name: users.Server("fashion_cnn_train", name, args.threads, opts, how, extra)
                   for name, how, extra in (hows if r % 2 == 0 else hows[::-1])}
        servers = {name: started[name] for name, _, _ in hows}
        blocks: dict = {name: [] for name in servers}
        try:
            for i in range(args.pairs):
                order = list(servers) if i % 2 == 0 else list(servers)[::-1]
                for name in order:
                    rep = servers[name].send("block")
                    if "error" in rep:
                        raise SystemExit(f"{name}: {rep['error']}")
                    blocks[name].append(rep)
                    users.settle(servers[name].proc.pid, opts)
        finally:
            for sv in servers.values():
                sv.close()
        line = []
        for name in servers:
            if name == "loop":
                continue
            for key, label in keys:
                rs = [a[key] / b[key] for a, b in zip(blocks[name], blocks["loop"])]
                ratios.setdefault((name, label), []).extend(rs)
                line.append(f"{name} {label} {statistics.median(rs):.3f}")
        ms = {name: statistics.median(b["thread_s"] for b in bl) * 1e3 for name, bl in blocks.items()}
        print(f"session {r + 1} (load {os.getloadavg()[0]:.1f}): " + ", ".join(line) + " | thread ms "
              + ", ".join(f"{n} {v:.2f}" for n, v in ms.items()), flush=True)
    print(f"fashion_cnn, {args.threads} threads, paired: {args.rounds} sessions x {args.pairs} pairs of "
          f"{args.block}-batch blocks; per-pair ratio cli / loop, median (10-90 %):")
    for (name, label), rs in ratios.items():
        print(f"  {name:8s} {label:8s} {statistics.median(rs):.3f} ({users.quantile(rs, 0.1):.3f}-"
              f"{users.quantile(rs, 0.9):.3f}, {len(rs)} pairs)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1", help="'default' or a count (as bench/users.py's --threads)")
    ap.add_argument("--batches", type=int, default=108, help="batches per child (users.py: 3 + 7 x 15)")
    ap.add_argument("--skip", type=int, default=20, help="batches left out at the start")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--paired", action="store_true", help="persistent children, blocks alternating (see paired())")
    ap.add_argument("--control", action="store_true", help="--paired: a second loop process instead of the CLI")
    ap.add_argument("--pairs", type=int, default=10, help="--paired: pairs of blocks per session")
    ap.add_argument("--block", type=int, default=15, help="--paired: batches per block")
    ap.add_argument("--detail", action="store_true", help="per thread, batches --skip on: CPU and run-queue "
                    "wait ms, time slices and context switches a batch (/proc schedstat)")
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
    if args.paired:
        paired(args)
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
        for how, d in pair.items():
            for name, t in (d.get("detail") or {}).items():
                print(f"   {how:5s} {name:28s} " + " ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
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
