"""Benchmarks as users run them: each library in its own process.

Every workload is one PyTorch program in ``bench/programs/`` (written with ``import torch``) that
builds a model, its data and optimizer and defines ``step()``, one training step. The runner runs
each library in processes of its own and never loads both libraries in one process:

- PyTorch's child runs the program as written.
- retrograd's child runs the same file with its imports switched: a finder placed first on
  ``sys.meta_path`` answers ``import torch`` / ``import torch.X`` with ``retrograd`` /
  ``retrograd.X`` (the program's text is not changed; the real torch cannot load in that process,
  and the child reports that no module of torch's is in ``sys.modules``).

Two ways to time them (``--mode``):

- **paired** (the default): per session the parent starts one persistent child per library (still
  each library in its own process), each loads the program and warms up (at least ``--warmup``
  steps and ``--warmup-s`` seconds: lazy allocations, thread start-up, Numba compiling), one
  after the other. Then ``--pairs`` pairs of blocks: the parent writes ``block`` to one child's
  stdin, the child runs ``--pre`` untimed steps (back to a running loop's state after its pause),
  then times a block of consecutive steps (lasting ``--block-s``) and answers on stdout; then the
  other child's block. Torch goes first in even pairs, retrograd in odd ones. The idle child sits
  in a blocking read of its stdin. Before the next block the parent waits until the child that
  just ran has stopped using the CPU (summed over its threads from ``/proc/PID/task/*/schedstat``;
  under 5 % of a core for ``--settle-quiet-s``, at most ``--settle-max-s``): PyTorch's libgomp
  workers keep spinning for 5-25 ms after a block at default threads (GOMP_SPINCOUNT's default),
  and would tax the other library's block. The settle wait and the idle child's CPU time during
  the other's block are recorded per block. ``--rounds`` sessions (fresh processes each) pool
  their pairs.
- **rounds** (``--mode rounds``, the former method): a fresh process per library per round, rounds
  interleaved (torch, retrograd, torch, ...); in each, warm-up, then ``--blocks`` blocks back to
  back. A round lasts seconds, so load and CPU-clock drift between the two libraries' rounds moves
  the ratio (10-30 % on this shared VM).

Figures (per workload, thread setting and library):
- time per step of a block: wall (``perf_counter``) and CPU time of the whole child (user + sys of
  all its threads, ``time.process_time``; ``getrusage``'s split in the JSON);
- paired: a library's time is the **median block** over all pairs with the 10-90 % range; the
  ratio is the **median of the per-pair ratios** (block i of retrograd over torch's block i,
  adjacent in time), with their 10-90 % range; the CPU-time ratio likewise;
- rounds: a round's figure is its median block; the time is the median over rounds (min-max);
  the ratio is that of the two medians, beside it the range of the per-round ratios; the CPU-time
  ratio is that of the medians of the rounds' median CPU blocks;
- memory: the peak resident set while the timed steps run (``VmHWM`` after the mark is reset
  through ``/proc/self/clear_refs`` once warm-up is over; the library's own footprint included, as
  a user sees it), the part of it above the resident level between steps (the step's working
  memory), and ``ru_maxrss`` of the whole child; each child's own, medians over rounds/sessions,
  ratio retrograd / PyTorch.

Thread settings (``--threads default,1``): *default* removes OMP/OPENBLAS/MKL/NUMBA/RETROGRAD
thread variables from the child's environment, so each library starts with its own defaults; *N*
sets them to N and calls ``torch.set_num_threads(N)`` / ``rg.set_num_threads(N)`` in the child.

``fashion_cnn_train`` compares whole-training throughput: ``python -m retrograd train
examples/fashion_cnn.toml`` (one epoch over a subset; time per batch from its metrics.jsonl
timestamps) against the plain PyTorch DataLoader loop of ``programs/fashion_cnn_loop.py`` on
Fashion-MNIST images; the same loop with retrograd is shown as a third contender. Paired, the
three are persistent children whose blocks (``--fashion-block`` batches) rotate: the CLI's child
runs ``retrograd train`` with one callback added after the run's own, which pauses the training
between blocks at a batch's end (``child_cli_serve``), so whole CLI batches (loader, step, every
callback) pair with the loops' blocks; the row also gives the CLI against the same loop run by
retrograd, pair by pair (wall, process CPU and stepping-thread CPU time). In rounds mode the CLI
runs to completion (``child_cli``) and the loops' children train on as many images as it does.

Run: python bench/users.py [--mode paired|rounds] [--threads default,1] [--rounds N] [--pairs 10]
     [--quick] [--workloads a,b,...] [--json bench/users.json] [--markdown FILE]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.abc
import importlib.util
import json
import os
import platform
import re
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from users_stats import (_fmt_ratio, _fmt_t, _med, _mib, pair_ratios, quantile,  # noqa: E402,F401  (re-exported)
                         spread_table, summarize)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROGRAMS = os.path.join(HERE, "programs")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "RETROGRAD_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
FASHION_BATCH = 64
FASHION_SAMPLES = 6912  # the loop's images in paired mode (108 batches), epoch after epoch

# name: program, its arguments, what it is, the target for the time ratio retrograd/torch
WORKLOADS = {
    "gpt_tanh": dict(program="gpt.py", args=["--gelu", "tanh"], target=1.2,
                     what="GPT vocab 65, d 128, 4 heads, 2 layers, seq 64, batch 32, pre-LN, GELU tanh, SDPA "
                          "causal, AdamW"),
    "gpt_exact": dict(program="gpt.py", args=["--gelu", "none"], target=1.2, what="same GPT, exact GELU"),
    "cnn": dict(program="cnn.py", args=[], target=1.0,
                what="CNN conv32-pool-conv64-pool-linear, batch 64, SGD momentum 0.9"),
    "mlp": dict(program="mlp.py", args=["--sizes", "784,512,256,10", "--batch", "128"], target=0.7,
                what="MLP 784-512-256-10, batch 128, Adam"),
    "tiny_mlp": dict(program="mlp.py", args=["--sizes", "32,64,64,2", "--batch", "32"], target=0.35,
                     what="tiny MLP 32-64-64-2, batch 32, Adam"),
    "opchain": dict(program="op_chain.py", args=["--ops", "1000"], target=0.5,
                    what="per-op overhead: chain of 1000 elementwise ops (mul, add, tanh, sub) on 16 float32 "
                         "values with grad, forward + backward"),
    "adam10m": dict(program="adam10m.py", args=["--fused"], target=1.0,
                    what="Adam step alone, 10M float32 params in 50 tensors, torch fused=True "
                         "(retrograd fused=True: its compiled update)"),
    "adam10m_foreach": dict(program="adam10m.py", args=[], target=None,
                            what="same, both with their default implementation (torch: foreach)"),
    "lstm_lm": dict(program="lstm_lm.py", args=[], target=1.5,
                    what="LSTM LM (word_language_model defaults): vocab 10k, emb/hidden 200, 2 layers, seq 35, "
                         "batch 20, clip_grad_norm_ 0.25, SGD"),
    "fashion_cnn_train": dict(program="fashion_cnn_loop.py", args=[], target=1.0, cli="examples/fashion_cnn.toml",
                              what="`retrograd train examples/fashion_cnn.toml` vs a plain PyTorch DataLoader "
                                   "loop, per batch of 64 (target: throughput >= 1.0x)"),
}
DEFAULT_WORKLOADS = ("gpt_tanh", "gpt_exact", "cnn", "mlp", "tiny_mlp", "adam10m", "adam10m_foreach", "lstm_lm",
                     "fashion_cnn_train", "opchain")
MEMORY_TARGET = 0.7
REPLY = "@users-reply "  # the paired child's answers on stdout start with this


# ----------------------------------------------------------------------------- the child process
class TorchAsRetrograd(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import torch[.X]`` gives ``retrograd[.X]`` (the same module objects, not copies)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module("retrograd" + spec.name[len("torch"):])
        spec.loader_state = module.__spec__  # the import system overwrites __spec__; put it back below
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


def torch_modules() -> list[str]:
    """Names of the real torch's modules loaded in this process (aliases to retrograd don't count)."""
    return sorted({getattr(m, "__name__", "") for m in list(sys.modules.values())
                   if getattr(m, "__name__", "").split(".")[0] == "torch"})


def _loaded() -> dict:
    mods = torch_modules()
    return {"torch_modules": len(mods), "torch_modules_first": mods[:3], "retrograd_loaded": "retrograd" in sys.modules}


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak resident set (VmHWM) to now
            f.write("5")
        return True
    except OSError:
        return False


def _set_threads(lib, threads: str) -> None:
    if threads != "default":
        lib.set_num_threads(int(threads))


def _library_info(lib_name: str) -> dict:
    import numpy as np

    info = {"numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception as e:  # noqa: BLE001 - informational only
        info["numpy_blas"] = f"unknown ({type(e).__name__})"
    if lib_name == "torch":
        import torch

        info.update(version=torch.__version__, threads=torch.get_num_threads(),
                    blas=(re.findall(r"BLAS_INFO=(\w+)", torch.__config__.show()) or ["unknown"])[0])
    else:
        import retrograd as rg

        info.update(version=rg.__version__, threads=rg.get_num_threads(), kernels=rg.accel.available(),
                    path=os.path.dirname(rg.__file__))
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [f"{p.get('internal_api')} {p.get('version')} x{p.get('num_threads')} "
                               f"({os.path.basename(p.get('filepath', ''))})" for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def load_step(workload: str, program_args: tuple = ()) -> Callable:
    """Run the workload's program (``import torch`` answers as installed on ``sys.meta_path``) and
    return its ``step``."""
    path = os.path.join(PROGRAMS, WORKLOADS[workload]["program"])
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    sys.argv = [path, *WORKLOADS[workload]["args"], *program_args]
    ns = {"__name__": "__bench__", "__file__": path}
    exec(code, ns)
    return ns["step"]


def _start(args: argparse.Namespace) -> tuple[Callable, dict, int, Callable[[], dict]]:
    """The child's start: the library (torch, or retrograd under its name), the program, the warm-up
    (at least ``--warmup`` steps and ``--warmup-s`` seconds), the steps per block, the peak-RSS mark
    reset. Returns the step, what the start measured, the steps per block and a function giving the
    memory figures since the reset."""
    if args.lib == "retrograd":
        sys.meta_path.insert(0, TorchAsRetrograd())
    lib = __import__("torch")
    _set_threads(lib, args.threads)
    t0 = time.perf_counter()
    step = load_step(args.child, args.program_args)
    setup_s = time.perf_counter() - t0
    warm_times = []
    t_warm = time.perf_counter()
    while len(warm_times) < args.warmup or time.perf_counter() - t_warm < args.warmup_s:
        t = time.perf_counter()
        loss = step()
        warm_times.append(time.perf_counter() - t)
    n = args.block_steps or max(1, round(args.block_s / max(statistics.median(warm_times[-3:]), 1e-9)))
    import gc

    gc.collect()
    rss_between = _status_kb("VmRSS")
    reset = _reset_peak()

    def memory() -> dict:
        peak = _status_kb("VmHWM") if reset else None
        return {"rss_between_steps_kb": rss_between, "peak_rss_kb": peak,
                "step_memory_kb": None if peak is None or rss_between is None else max(peak - rss_between, 0)}

    start = {"pid": os.getpid(), "lib": args.lib, "threads": args.threads, "setup_s": setup_s,
             "warmup_steps": len(warm_times), "first_step_s": warm_times[0], "steps_per_block": n,
             "first_loss": None if loss is None else float(loss)}
    return step, start, n, memory


def _run_block(step: Callable, n: int, pre: int = 0) -> dict:
    """``pre`` untimed steps (back to a running loop's state after a pause), then ``n`` timed steps:
    mean wall and process CPU time (all of the child's threads, user + sys) per step, and the CPU
    time of the stepping thread."""
    for _ in range(pre):
        step()
    r0, c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
    th0 = time.thread_time()
    for _ in range(n):
        loss = step()
    th1 = time.thread_time()
    t1, c1, r1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": (t1 - t0) / n, "cpu_s": (c1 - c0) / n, "thread_s": (th1 - th0) / n,
            "user_s": (r1.ru_utime - r0.ru_utime) / n,
            "sys_s": (r1.ru_stime - r0.ru_stime) / n, "loss": None if loss is None else float(loss)}


def _record(start: dict, blocks: list[dict], memory: dict) -> dict:
    """A child's JSON record: its start, its blocks (wall and CPU time per step), memory, library."""
    walls, cpus = [b["wall_s"] for b in blocks], [b["cpu_s"] for b in blocks]
    return {**start, "blocks": walls, "cpu_blocks": cpus, "thread_blocks": [b["thread_s"] for b in blocks],
            "user_blocks": [b["user_s"] for b in blocks],
            "sys_blocks": [b["sys_s"] for b in blocks], "step_s": statistics.median(walls) if walls else None,
            "cpu_step_s": statistics.median(cpus) if cpus else None,
            "last_loss": blocks[-1]["loss"] if blocks else None, **memory, **_loaded(),
            "info": _library_info(start["lib"])}


def child(args: argparse.Namespace) -> None:
    """The rounds mode's child: run one program with one library, time ``--blocks`` blocks of its step
    back to back, print one JSON line."""
    step, start, n, memory = _start(args)
    blocks = [_run_block(step, n) for _ in range(args.blocks)]
    print(json.dumps(_record(start, blocks, memory())))


def child_serve(args: argparse.Namespace) -> None:
    """The paired mode's child: start like ``child``, say ``ready``, then time one block per ``block``
    line read from stdin (blocked on the read in between, as idle as the library lets it be) and
    answer each on stdout; ``end`` gives the record (memory, library) and exits. Replies are the
    lines starting with ``REPLY`` (anything else a program prints is ignored by the parent)."""
    step, start, n, memory = _start(args)

    def reply(obj):
        sys.stdout.write(REPLY + json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True, "pid": os.getpid(), "steps_per_block": n})
    blocks = []
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "block":
            blocks.append(_run_block(step, n, args.pre))
            reply(blocks[-1])
        elif cmd == "end":
            break
    reply({**_record(start, blocks, memory()), "pre_steps": args.pre})


def _cli_argv(args: argparse.Namespace, tmp: str, n_batches: int) -> list[str]:
    """``retrograd train`` of the workload's config for ``n_batches`` batches of one epoch, its run in ``tmp``."""
    if args.threads != "default":
        import retrograd as rg
        rg.set_num_threads(int(args.threads))
    argv = ["train", os.path.join(ROOT, WORKLOADS[args.child]["cli"]), "--set", f'run.dir="{tmp}"', "--set",
            "train.epochs=1", "--set", f"data.train_samples={n_batches * FASHION_BATCH}", "--set",
            "data.val_samples=256"]
    if args.threads != "default":
        argv += ["--set", f"train.threads={int(args.threads)}"]
    return argv + args.cli_extra.split()


def _jsonl_times(tmp: str, args: argparse.Namespace) -> list[float]:
    """The batch timestamps of the run's metrics.jsonl (``time`` of each ``step`` row)."""
    name = os.path.splitext(os.path.basename(WORKLOADS[args.child]["cli"]))[0]
    with open(os.path.join(tmp, name, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r["time"] for r in rows if r["kind"] == "step"]


def child_cli(args: argparse.Namespace) -> None:
    """``retrograd train CONFIG`` as a user runs it, then the time per batch from its metrics.jsonl."""
    from retrograd import cli

    # the CLI warms up as the loop's child does (at least --warmup batches and --warmup-s seconds
    # after its first batch): it trains enough extra batches to cover that at ~20 ms a batch
    spare = int(args.warmup_s / 0.0125) if args.warmup_s > 0 else 0
    n_batches = args.warmup + spare + args.blocks * args.block_steps
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rc = cli.main(_cli_argv(args, tmp, n_batches))
        wall = time.perf_counter() - t0
        if rc:
            raise SystemExit(f"retrograd train failed with exit code {rc}")
        times = _jsonl_times(tmp, args)
    start = max(args.warmup, 1)  # the first timed batch: past --warmup batches and --warmup-s seconds
    while start < len(times) - args.blocks * args.block_steps and times[start - 1] - times[0] < args.warmup_s:
        start += 1
    gaps = [b - a for a, b in zip(times[start - 1:], times[start:])]  # gap i: batch start+i's time
    k = args.block_steps
    blocks = [sum(gaps[i:i + k]) / k for i in range(0, len(gaps) - k + 1, k)][:args.blocks]
    print(json.dumps({"pid": os.getpid(), "lib": args.lib, "threads": args.threads, "wall_s": wall,
                      "batches": len(times), "warmup_steps": start, "steps_per_block": k, "blocks": blocks,
                      "step_s": statistics.median(blocks), "peak_rss_kb": None, "step_memory_kb": None,
                      **_loaded(),
                      "info": _library_info("retrograd")}))


def child_cli_serve(args: argparse.Namespace) -> None:
    """The paired mode's CLI child: ``retrograd train CONFIG`` as a user runs it, with one callback
    added after the run's own (so a batch's time includes theirs) that serves blocks as
    ``child_serve`` does. At a batch's end it warms up (``--warmup`` batches and ``--warmup-s``
    seconds, then one full collection as the loop's child), says ``ready`` and waits on stdin; each
    ``block`` runs ``--pre`` untimed batches, then ``--block-steps`` timed ones (from the end of the
    last untimed batch to the end of the last timed one; wall and process CPU time, and the stepping
    thread's CPU time) and answers; ``end`` stops the training at that batch (``stop_training``,
    as ``EarlyStopping`` does) and, once ``retrograd train`` has returned, answers with the record:
    its blocks are recomputed from the batch timestamps of the run's metrics.jsonl (as
    ``child_cli``; the callback's own clock readings are ``callback_blocks``). The run trains enough
    batches for the warm-up and ``--pairs`` blocks, with room to spare."""
    import gc

    from retrograd import cli
    from retrograd.train import Callback

    k, pre = args.block_steps, args.pre
    spare = int(args.warmup_s / 0.004) if args.warmup_s > 0 else 0  # warm-up at >= 4 ms a batch
    n_batches = args.warmup + spare + (args.pairs + 1) * (pre + k) + 5

    def reply(obj):
        sys.stdout.write(REPLY + json.dumps(obj) + "\n")
        sys.stdout.flush()

    class Serve(Callback):
        def __init__(self):
            self.batches = self.warmup = 0  # batches ended so far; of them, warm-up
            self.t_first = None
            self.state = "warmup"
            self.todo = 0
            self.mark = None
            self.blocks: list[dict] = []
            self.ranges: list[tuple[int, int]] = []  # (batch index at the block's start mark, at its end)

        def _next(self, trainer) -> None:
            """Blocked on stdin until the next command."""
            line = sys.stdin.readline().strip()
            if line == "block":
                self.state, self.todo = "pre", pre
                if not pre:
                    self._start()
            else:  # "end", or the parent gone
                self.state = "end"
                trainer.stop_training = True

        def _start(self) -> None:
            self.state, self.todo = "timed", k
            self.mark = (self.batches, time.perf_counter(), time.process_time(), time.thread_time())

        def on_batch_end(self, trainer, batch_idx, logs):
            now = time.perf_counter()
            self.batches += 1
            if self.state == "warmup":
                self.t_first = now if self.t_first is None else self.t_first
                if self.batches < args.warmup or now - self.t_first < args.warmup_s:
                    return
                gc.collect()
                self.warmup = self.batches
                reply({"ready": True, "pid": os.getpid(), "steps_per_block": k, "warmup_steps": self.batches})
                self._next(trainer)
            elif self.state == "pre":
                self.todo -= 1
                if not self.todo:
                    self._start()
            elif self.state == "timed":
                self.todo -= 1
                if self.todo:
                    return
                c, th = time.process_time(), time.thread_time()
                b0, t0, c0, th0 = self.mark
                blk = {"wall_s": (now - t0) / k, "cpu_s": (c - c0) / k, "thread_s": (th - th0) / k,
                       "loss": logs["loss"]}
                self.blocks.append(blk)
                self.ranges.append((b0, self.batches))
                reply(blk)
                self._next(trainer)

    serve = Serve()
    with tempfile.TemporaryDirectory() as tmp:
        rc = cli.main(_cli_argv(args, tmp, n_batches), extra_callbacks=[serve])
        if serve.state != "end":  # the epoch ran out (or the run failed) before the parent said "end"
            reply({"error": f"retrograd train ended (exit code {rc}) after {serve.batches} batches, "
                            f"before the parent's end"})
            return
        times = _jsonl_times(tmp, args)
    # metrics.jsonl's stamp of batch b (counted from 1) is times[b - 1]
    cb = serve.blocks
    walls = [(times[b1 - 1] - times[b0 - 1]) / (b1 - b0) for b0, b1 in serve.ranges] if pre else \
        [b["wall_s"] for b in cb]  # without an untimed batch the first stamp comes before the pause
    reply({"pid": os.getpid(), "lib": args.lib, "threads": args.threads, "cli": True, "exit_code": rc,
           "warmup_steps": serve.warmup, "steps_per_block": k, "pre_steps": pre,
           "batches": len(times), "blocks": walls, "callback_blocks": [b["wall_s"] for b in cb],
           "cpu_blocks": [b["cpu_s"] for b in cb], "thread_blocks": [b["thread_s"] for b in cb],
           "step_s": statistics.median(walls) if walls else None,
           "cpu_step_s": statistics.median(b["cpu_s"] for b in cb) if cb else None,
           "last_loss": cb[-1]["loss"] if cb else None, "peak_rss_kb": None, "step_memory_kb": None,
           **_loaded(), "info": _library_info("retrograd")})


# ----------------------------------------------------------------------------- the parent
def contenders(workload: str) -> list[tuple[str, str]]:
    """(label, how) in the order each round runs them; how is "torch", "retrograd" or "cli"."""
    if WORKLOADS[workload].get("cli"):
        return [("torch", "torch"), ("retrograd", "cli"), ("retrograd_loop", "retrograd")]
    return [("torch", "torch"), ("retrograd", "retrograd")]


def child_env(threads: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if threads != "default":
        env.update({k: threads for k in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_child(workload: str, how: str, threads: str, opts: argparse.Namespace) -> dict:
    """Start one child, wait for it (collecting its ru_maxrss), return its JSON record."""
    quick_fashion = ["--samples", str((opts.warmup + opts.blocks * opts.fashion_block) * FASHION_BATCH)]
    cmd = [sys.executable, os.path.abspath(__file__), "--child", workload, "--lib",
           "retrograd" if how == "cli" else how, "--threads", threads, "--warmup", str(opts.warmup),
           "--warmup-s", str(opts.warmup_s), "--blocks", str(opts.blocks), "--block-s", str(opts.block_s)]
    if WORKLOADS[workload].get("cli"):
        cmd += ["--block-steps", str(opts.fashion_block)]
        cmd += ["--cli"] if how == "cli" else ["--", *quick_fashion]
    load = os.getloadavg()[0]  # how busy the machine was as the child started
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=child_env(threads), cwd=ROOT)
        deadline = time.monotonic() + opts.child_timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit code {proc.returncode}"]
        return {"error": tail[0], "stderr": stderr[-4000:], "wall_s": wall, "maxrss_kb": usage.ru_maxrss}
    rec = json.loads(lines[-1])
    rec.update(process_wall_s=wall, maxrss_kb=usage.ru_maxrss, loadavg_1min=load)  # Linux: ru_maxrss in KiB
    return rec


# ----------------------------------------------------------------------------- the paired mode
def cpu_ns(pid: int) -> int | None:
    """CPU time used so far by every thread of process ``pid``, in ns (``/proc/PID/task/*/schedstat``:
    exact, where ``/proc/PID/stat`` counts 10 ms ticks); None where /proc has no such file."""
    total, seen = 0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
                seen = True
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total if seen else None


def settle(pid: int, opts: argparse.Namespace) -> tuple[float, bool]:
    """Wait until process ``pid`` (which just finished a block and is now blocked on its stdin) has
    stopped using the CPU: its worker threads (libgomp's, OpenBLAS's) spin for a while after their
    work before they sleep, and would tax the other library's block. Quiet: under 5 % of one core
    over ``opts.settle_quiet_s``. Returns (seconds waited, whether it went quiet before
    ``opts.settle_max_s``); without /proc, waits ``opts.settle_max_s``."""
    t0 = time.perf_counter()
    time.sleep(opts.settle_min_s)
    poll = 0.005
    last, quiet_since = cpu_ns(pid), None
    if last is None:
        time.sleep(max(opts.settle_max_s - opts.settle_min_s, 0.0))
        return time.perf_counter() - t0, False
    while True:
        t = time.perf_counter()
        if t - t0 > opts.settle_max_s:
            return t - t0, False
        time.sleep(poll)
        now, t_now = cpu_ns(pid), time.perf_counter()
        if now is None:
            return t_now - t0, False
        if now - last < 0.05 * (t_now - t) * 1e9:
            quiet_since = t if quiet_since is None else quiet_since
            if t_now - quiet_since >= opts.settle_quiet_s:
                return t_now - t0, True
        else:
            quiet_since = None
        last = now


class Server:
    """One persistent child of the paired mode (``--serve``): one library, one process."""

    def __init__(self, workload: str, lib: str, threads: str, opts: argparse.Namespace, how: str | None = None,
                 cli_extra: str = ""):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", workload, "--lib",
               "retrograd" if how == "cli" else how or lib, "--threads", threads,
               "--serve", "--warmup", str(opts.warmup), "--warmup-s", str(opts.warmup_s), "--block-s",
               str(opts.block_s), "--pre", str(opts.pre)]
        if WORKLOADS[workload].get("cli"):  # blocks of --fashion-block batches; the CLI trains enough of them
            cmd += ["--block-steps", str(opts.fashion_block), "--pairs", str(opts.pairs)]
            cmd += [f"--cli-extra={cli_extra}", "--cli"] if how == "cli" else ["--", "--samples", str(FASHION_SAMPLES)]
        self.lib, self.timeout, self.err = lib, opts.child_timeout, tempfile.TemporaryFile("w+")
        self.load = os.getloadavg()[0]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     bufsize=1, env=child_env(threads), cwd=ROOT)
        self.ready = self.read()

    def read(self) -> dict:
        """The child's next reply; RuntimeError if it ended or timed out."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"no answer in {self.timeout:.0f} s")
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("child ended")
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])

    def send(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self, error: str | None = None) -> dict:
        """``end``: the child's record with its ru_maxrss, or the error and what it printed."""
        rec = None
        if error is None:
            try:
                rec = self.send("end")
            except (RuntimeError, OSError) as e:
                error = str(e)
        if rec is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)  # not Popen.kill: its poll() would reap it before wait4
            except ProcessLookupError:
                pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            maxrss = usage.ru_maxrss
        except ChildProcessError:
            maxrss = None
        self.err.seek(0)
        stderr = self.err.read()
        self.err.close()
        if rec is None:
            tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:]
            return {"error": tail[0] if tail and error == "child ended" else error, "stderr": stderr[-4000:],
                    "maxrss_kb": maxrss}
        rec.update(maxrss_kb=maxrss, loadavg_1min=self.load)
        return rec


def run_paired(workload: str, threads: str, opts: argparse.Namespace, session: int = 0) -> dict[str, dict]:
    """One session of the paired mode: a persistent child per library, warmed up one after the other
    (in the other order in odd sessions: of two identical children, the one started first ran ~2 %
    slower over 6 sessions of bench/cli_vs_loop.py --control),
    then ``opts.pairs`` pairs of blocks, the two libraries' blocks adjacent (torch first in even
    pairs, retrograd first in odd ones, so going first or second weighs on both alike), the idle
    child blocked on its pipe and the last one's threads settled before the next block starts.
    Returns each library's record: its blocks (wall and CPU time per step, in pair order), the settle
    wait after each block, and the idle child's CPU time during each of the other's blocks."""
    hows = dict(contenders(workload))
    labels = list(hows)
    servers: dict[str, Server] = {}
    errors: dict[str, str] = {}
    for label in (labels if session % 2 == 0 else labels[::-1]):
        try:
            servers[label] = Server(workload, label, threads, opts, hows[label])
        except (RuntimeError, OSError) as e:
            errors[label] = str(e)
    extra = {label: {"settle_s": [], "settled": [], "other_cpu_s": []} for label in labels}
    try:
        for i in range(opts.pairs if not errors else 0):
            for label in (labels if i % 2 == 0 else labels[::-1]):
                others = [s for k, s in servers.items() if k != label]
                before = [cpu_ns(s.proc.pid) for s in others]
                servers[label].send("block")
                after = [cpu_ns(s.proc.pid) for s in others]
                idle = [(b - a) / 1e9 for a, b in zip(before, after) if a is not None and b is not None]
                waited, quiet = settle(servers[label].proc.pid, opts)
                extra[label]["settle_s"].append(waited)
                extra[label]["settled"].append(quiet)
                extra[label]["other_cpu_s"].append(sum(idle) if idle else None)
    except (RuntimeError, OSError) as e:
        errors.setdefault(label, str(e))
    out = {}
    for label in labels:
        if label in servers:
            out[label] = servers[label].close(errors.get(label))
        else:
            out[label] = {"error": errors[label]}
        if "error" not in out[label]:
            out[label].update(extra[label])
        elif label not in errors:
            errors[label] = out[label]["error"]
    if errors:  # a failed child spoils the pairs: report the failure for every library of the session
        for label in labels:
            if "error" not in out[label]:
                out[label] = {"error": f"session failed: {'; '.join(f'{k}: {v}' for k, v in errors.items())}",
                              "maxrss_kb": out[label].get("maxrss_kb")}
    return out


def markdown(results: list[dict]) -> str:
    """The table: one row per workload, thread setting and contender other than PyTorch."""
    head = ("| workload | threads | PyTorch | retrograd | ratio rg/torch | CPU-time ratio | target | "
            "peak RSS MiB torch / rg (ratio) | step memory MiB torch / rg |\n|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for res in results:
        s = res["summary"]
        method = s.get("method", "rounds")
        t = s["libs"].get("torch")
        for label, _how in contenders(res["workload"])[1:]:
            r = s["libs"].get(label)
            q = s["ratios"].get(label)
            name = res["workload"] + (" (same loop in retrograd)" if label == "retrograd_loop" else "")
            if res["workload"] == "fashion_cnn_train" and t and r:
                thr = f"; {FASHION_BATCH / r['median_s']:,.0f} vs {FASHION_BATCH / t['median_s']:,.0f} samples/s"
            else:
                thr = ""
            if q:
                ratio, cpu = _fmt_ratio(q, method)
                vs = s.get("cli_vs_loop") or {}
                if label == "retrograd" and vs.get("time"):
                    thr += (f"; against the same loop in retrograd {vs['time']:.3f}x ({vs['time_p10']:.2f}-"
                            f"{vs['time_p90']:.2f}), CPU {vs['cpu']:.3f}x, stepping thread {vs['thread']:.3f}x")
                ratio += thr + (f"; {res['note']}" if res.get("note") else "")
                mem = (f"{_mib(t['peak_rss_kb'])} / {_mib(r['peak_rss_kb'])} "
                       f"({q['peak_rss_kb']:.2f}x)" if q["peak_rss_kb"] else
                       f"maxrss {_mib(t['maxrss_kb'])} / {_mib(r['maxrss_kb'])} "
                       f"({q['maxrss_kb']:.2f}x)" if q["maxrss_kb"] else "n/a")
                work = f"{_mib(t['step_memory_kb'])} / {_mib(r['step_memory_kb'])}"
            else:
                err = s["errors"].get(label) or s["errors"].get("torch") or "no result"
                ratio, cpu, mem, work = f"failed: {err[:120]}", "", "", ""
            target = res["target"]
            rows.append(f"| {name} | {res['threads']} | {_fmt_t(t)} | {_fmt_t(r)} | {ratio} | {cpu} | "
                        f"{'' if target is None else f'<= {target}x'} | {mem} | {work} |")
    return head + "\n".join(rows) + "\n"


def machine_info() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "mem_mib": mem, "loadavg_start": list(os.getloadavg())}


def git_commit() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="PyTorch and retrograd, each in its own process.")
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    ap.add_argument("--threads", default="default,1", help="comma-separated: default and/or thread counts")
    ap.add_argument("--mode", choices=("paired", "rounds"), default="paired",
                    help="paired (default): a persistent process per library, short blocks alternating, ratio per "
                         "pair of adjacent blocks; rounds: a fresh process per library per round, rounds alternating")
    ap.add_argument("--rounds", type=int, default=None, help="rounds: processes per library (default 5); paired: "
                    "sessions, each with fresh processes (default 3); --quick 1")
    ap.add_argument("--pairs", type=int, default=None, help="paired: pairs of blocks per session (default 10)")
    ap.add_argument("--pre", type=int, default=None, help="paired: untimed steps before each block (default 1)")
    ap.add_argument("--settle-min-s", type=float, default=0.01, help="paired: least pause after a block")
    ap.add_argument("--settle-quiet-s", type=float, default=0.05,
                    help="paired: the last block's process must stay under 5%% of a core this long (default 0.05)")
    ap.add_argument("--settle-max-s", type=float, default=1.0, help="paired: longest wait for it (default 1.0)")
    ap.add_argument("--quick", action="store_true", help="1 round, 1 warm-up step, 2 short blocks: a smoke test")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps at least (default 3)")
    ap.add_argument("--warmup-s", type=float, default=None, help="warm-up seconds at least (default 1.0)")
    ap.add_argument("--blocks", type=int, default=None, help="timed blocks per process (default 7)")
    ap.add_argument("--block-s", type=float, default=None, help="seconds per block (default 0.3)")
    ap.add_argument("--fashion-block", type=int, default=None, help="batches per block in fashion_cnn_train "
                    "(default 15)")
    ap.add_argument("--child-timeout", type=float, default=900.0, help="seconds before a child is killed")
    ap.add_argument("--json", default=os.path.join(HERE, "users.json"), help="where the JSON goes")
    ap.add_argument("--markdown", default=None, help="also write the markdown table to this file")
    ap.add_argument("--spread", nargs="+", metavar="JSON", default=None,
                    help="print how the ratios of these runs' JSON files spread (repeated runs, either mode); "
                         "runs nothing")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lib", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cli", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cli-extra", default="", help=argparse.SUPPRESS)  # more arguments for the CLI child
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--block-steps", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("program_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = dict(rounds=1, warmup=1, warmup_s=0.0, blocks=2, block_s=0.02, fashion_block=2, pairs=2, pre=1)
    full = dict(rounds=3 if args.mode == "paired" else 5, warmup=3, warmup_s=1.0, blocks=7, block_s=0.3,
                fashion_block=15, pairs=10, pre=1)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.spread:
        print(spread_table(args.spread), end="")
        return 0
    if args.child:
        if args.cli:
            (child_cli_serve if args.serve else child_cli)(args)
        else:
            (child_serve if args.serve else child)(args)
        return 0
    names = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        print(f"users.py: error: unknown workload {unknown[0]!r}; expected some of {', '.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    threads = [t.strip() for t in args.threads.split(",") if t.strip()]
    bad = [t for t in threads if t != "default" and not (t.isdigit() and int(t) > 0)]
    if bad or not threads:
        print(f"users.py: error: --threads: expected 'default' or positive integers, got {args.threads!r}",
              file=sys.stderr)
        return 2
    started = time.time()
    report = {"command": [os.path.relpath(sys.argv[0], ROOT) if sys.argv[0] else "", *(argv or sys.argv[1:])],
              "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info(), **git_commit(),
              "settings": {k: getattr(args, k) for k in ("rounds", "warmup", "warmup_s", "blocks", "block_s",
                                                          "fashion_block", "quick", "mode", "pairs", "pre",
                                                          "settle_min_s", "settle_quiet_s", "settle_max_s")},
              "libraries": {}, "results": []}
    for w in names:
        for th in threads:
            records: dict[str, list[dict]] = {label: [] for label, _ in contenders(w)}
            paired = args.mode == "paired"
            for r in range(args.rounds):
                session = run_paired(w, th, args, r) if paired else {label: run_child(w, how, th, args)
                                                                  for label, how in contenders(w)}
                for label, rec in session.items():
                    records[label].append(rec)
                    if "info" in rec:
                        report["libraries"].setdefault(rec["lib"], rec["info"] if th == "default" else
                                                       {**rec["info"], "threads": None})
            res = {"workload": w, "threads": th, "what": WORKLOADS[w]["what"], "target": WORKLOADS[w]["target"],
                   "program": f"bench/programs/{WORKLOADS[w]['program']}", "args": WORKLOADS[w]["args"],
                   "method": "paired" if paired else "rounds", "records": records,
                   "summary": summarize(records, paired=paired)}
            report["results"].append(res)
            print("\n".join(markdown([res]).splitlines()[2:]), file=sys.stderr, flush=True)  # progress
            report["wall_s"] = time.time() - started
            report["machine"]["loadavg_end"] = list(os.getloadavg())
            table = report["markdown"] = markdown(report["results"])
            with open(args.json, "w") as f:  # after every workload: a long run that stops keeps what it measured
                json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    print(table)
    print(f"memory target: peak RSS <= {MEMORY_TARGET}x PyTorch's; {len(names)} workloads x {len(threads)} thread "
          f"settings x {args.rounds} {'sessions of ' + str(args.pairs) + ' block pairs' if args.mode == 'paired' else 'rounds'}"
          f" ({args.mode}) in {report['wall_s']:.0f} s; load {report['machine']['loadavg_start'][0]:.2f} at the start, "
          f"{report['machine']['loadavg_end'][0]:.2f} at the end; JSON: {args.json}")
    failed = [(r["workload"], r["threads"], k, v) for r in report["results"] for k, v in r["summary"]["errors"].items()]
    for w, th, label, err in failed:
        print(f"failed: {w} ({th} threads) {label}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
