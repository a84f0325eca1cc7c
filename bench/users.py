"""Benchmarks as users run them: each library in its own process.

Every workload is one PyTorch program in ``bench/programs/`` (written with ``import torch``) that
builds a model, its data and optimizer and defines ``step()``, one training step. The runner starts
a fresh Python process per library per round and never loads both libraries in one process:

- PyTorch's child runs the program as written.
- retrograd's child runs the same file with its imports switched: a finder placed first on
  ``sys.meta_path`` answers ``import torch`` / ``import torch.X`` with ``retrograd`` /
  ``retrograd.X`` (the program's text is not changed; the real torch cannot load in that process,
  and the child reports that no module of torch's is in ``sys.modules``).

Rounds interleave the libraries (torch, retrograd, torch, retrograd, ...). In each child the first
steps are warm-up and discarded (at least ``--warmup`` steps and ``--warmup-s`` seconds: lazy
allocations, thread start-up, Numba compiling), then ``--blocks`` blocks of consecutive steps are
timed, each block as a whole (steps per block chosen so a block lasts ``--block-s`` seconds).

Figures (per workload, thread setting and library):
- a round's figure is the **median block** (mean step time within a block; the median over blocks
  keeps the quiet blocks and drops the ones another process disturbed);
- the reported time is the **median over rounds** of those figures, with their min-max spread;
- the ratio is retrograd / PyTorch of the two medians (below 1: retrograd faster); the spread of
  the per-round ratios (round i of one against round i of the other) is reported too.
- memory: the peak resident set while the timed steps run (``VmHWM`` after the mark is reset
  through ``/proc/self/clear_refs`` once warm-up is over; the library's own footprint included, as
  a user sees it), the part of it above the resident level between steps (the step's working
  memory), and ``ru_maxrss`` of the whole child; medians over rounds, ratio retrograd / PyTorch.

Thread settings (``--threads default,1``): *default* removes OMP/OPENBLAS/MKL/NUMBA/RETROGRAD
thread variables from the child's environment, so each library starts with its own defaults; *N*
sets them to N and calls ``torch.set_num_threads(N)`` / ``rg.set_num_threads(N)`` in the child.

``fashion_cnn_train`` compares whole-training throughput: ``python -m retrograd train
examples/fashion_cnn.toml`` (one epoch over a subset; time per batch from its metrics.jsonl
timestamps) against the plain PyTorch DataLoader loop of ``programs/fashion_cnn_loop.py`` on the
same number of Fashion-MNIST images; the same loop with retrograd is shown as a third contender.

Run: python bench/users.py [--threads default,1] [--rounds 5] [--quick] [--workloads a,b,...]
     [--json bench/users.json] [--markdown FILE]
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
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROGRAMS = os.path.join(HERE, "programs")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "RETROGRAD_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
FASHION_BATCH = 64

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


def child(args: argparse.Namespace) -> None:
    """Run one program with one library, time its step, print one JSON line."""
    if args.lib == "retrograd":
        sys.meta_path.insert(0, TorchAsRetrograd())
    lib = __import__("torch")  # torch, or retrograd under its name
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
    first_loss = None if loss is None else float(loss)
    per_step = statistics.median(warm_times[-3:])
    n = args.block_steps or max(1, round(args.block_s / max(per_step, 1e-9)))
    import gc

    gc.collect()
    rss_between = _status_kb("VmRSS")
    reset = _reset_peak()
    blocks = []
    for _ in range(args.blocks):
        t = time.perf_counter()
        for _ in range(n):
            loss = step()
        blocks.append((time.perf_counter() - t) / n)
    peak = _status_kb("VmHWM") if reset else None
    out = {"pid": os.getpid(), "lib": args.lib, "threads": args.threads, "setup_s": setup_s,
           "warmup_steps": len(warm_times), "first_step_s": warm_times[0], "steps_per_block": n, "blocks": blocks,
           "step_s": statistics.median(blocks), "first_loss": first_loss,
           "last_loss": None if loss is None else float(loss),
           "rss_between_steps_kb": rss_between, "peak_rss_kb": peak,
           "step_memory_kb": None if peak is None or rss_between is None else max(peak - rss_between, 0),
           **_loaded(),
           "info": _library_info(args.lib)}
    print(json.dumps(out))


def child_cli(args: argparse.Namespace) -> None:
    """``retrograd train CONFIG`` as a user runs it, then the time per batch from its metrics.jsonl."""
    from retrograd import cli

    if args.threads != "default":
        import retrograd as rg
        rg.set_num_threads(int(args.threads))
    spec = WORKLOADS[args.child]
    n_batches = args.warmup + args.blocks * args.block_steps
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", os.path.join(ROOT, spec["cli"]), "--set", f'run.dir="{tmp}"', "--set", "train.epochs=1",
                "--set", f"data.train_samples={n_batches * FASHION_BATCH}", "--set", "data.val_samples=256"]
        if args.threads != "default":
            argv += ["--set", f"train.threads={int(args.threads)}"]
        t0 = time.perf_counter()
        rc = cli.main(argv)
        wall = time.perf_counter() - t0
        if rc:
            raise SystemExit(f"retrograd train failed with exit code {rc}")
        name = os.path.splitext(os.path.basename(spec["cli"]))[0]
        with open(os.path.join(tmp, name, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f]
    times = [r["time"] for r in rows if r["kind"] == "step"]
    gaps = [b - a for a, b in zip(times, times[1:])][args.warmup - 1:]  # gap i: batch i+1's time
    k = args.block_steps
    blocks = [sum(gaps[i:i + k]) / k for i in range(0, len(gaps) - k + 1, k)]
    print(json.dumps({"pid": os.getpid(), "lib": args.lib, "threads": args.threads, "wall_s": wall,
                      "batches": len(times), "steps_per_block": k, "blocks": blocks,
                      "step_s": statistics.median(blocks), "peak_rss_kb": None, "step_memory_kb": None,
                      **_loaded(),
                      "info": _library_info("retrograd")}))


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


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records: dict[str, list[dict]]) -> dict:
    """Per contender: median over rounds of the round figures (and spread), memory medians;
    ratios of each contender other than torch against torch."""
    out: dict = {"libs": {}, "errors": {}}
    for label, recs in records.items():
        ok = [r for r in recs if "error" not in r]
        if len(ok) < len(recs):
            out["errors"][label] = next(r["error"] for r in recs if "error" in r)
        if not ok:
            continue
        steps = [r["step_s"] for r in ok]
        out["libs"][label] = {"median_s": statistics.median(steps), "min_s": min(steps), "max_s": max(steps),
                              "rounds": len(ok), "peak_rss_kb": _med(r.get("peak_rss_kb") for r in ok),
                              "step_memory_kb": _med(r.get("step_memory_kb") for r in ok),
                              "maxrss_kb": _med(r.get("maxrss_kb") for r in ok)}
    base = out["libs"].get("torch")
    out["ratios"] = {}
    for label, s in out["libs"].items():
        if label == "torch" or base is None:
            continue
        pairs = [a["step_s"] / b["step_s"] for a, b in zip(records[label], records["torch"])
                 if "error" not in a and "error" not in b]
        mem = {k: (s[k] / base[k] if s[k] and base[k] else None) for k in ("peak_rss_kb", "step_memory_kb",
                                                                             "maxrss_kb")}
        out["ratios"][label] = {"time": s["median_s"] / base["median_s"],
                                "time_rounds_min": min(pairs) if pairs else None,
                                "time_rounds_max": max(pairs) if pairs else None, **mem}
    return out


def _fmt_t(s: dict | None) -> str:
    if s is None:
        return "failed"
    m = s["median_s"] * 1e3
    digits = 2 if m < 10 else 1
    return f"{m:.{digits}f} ms ({s['min_s'] * 1e3:.{digits}f}-{s['max_s'] * 1e3:.{digits}f})"


def _mib(kb) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def markdown(results: list[dict]) -> str:
    """The table: one row per workload, thread setting and contender other than PyTorch."""
    head = ("| workload | threads | PyTorch | retrograd | ratio rg/torch (round ratios) | target | "
            "peak RSS MiB torch / rg (ratio) | step memory MiB torch / rg |\n|---|---|---|---|---|---|---|---|\n")
    rows = []
    for res in results:
        s = res["summary"]
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
                ratio = f"**{q['time']:.2f}x** ({q['time_rounds_min']:.2f}-{q['time_rounds_max']:.2f}){thr}"
                mem = (f"{_mib(t['peak_rss_kb'])} / {_mib(r['peak_rss_kb'])} "
                       f"({q['peak_rss_kb']:.2f}x)" if q["peak_rss_kb"] else
                       f"maxrss {_mib(t['maxrss_kb'])} / {_mib(r['maxrss_kb'])} "
                       f"({q['maxrss_kb']:.2f}x)" if q["maxrss_kb"] else "n/a")
                work = f"{_mib(t['step_memory_kb'])} / {_mib(r['step_memory_kb'])}"
            else:
                err = s["errors"].get(label) or s["errors"].get("torch") or "no result"
                ratio, mem, work = f"failed: {err[:120]}", "", ""
            target = res["target"]
            rows.append(f"| {name} | {res['threads']} | {_fmt_t(t)} | {_fmt_t(r)} | {ratio} | "
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
    ap.add_argument("--rounds", type=int, default=None, help="processes per library (default 5; --quick 1)")
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
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lib", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cli", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--block-steps", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("program_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = dict(rounds=1, warmup=1, warmup_s=0.0, blocks=2, block_s=0.02, fashion_block=2)
    full = dict(rounds=5, warmup=3, warmup_s=1.0, blocks=7, block_s=0.3, fashion_block=15)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        (child_cli if args.cli else child)(args)
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
                                                          "fashion_block", "quick")},
              "libraries": {}, "results": []}
    for w in names:
        for th in threads:
            records: dict[str, list[dict]] = {label: [] for label, _ in contenders(w)}
            for _ in range(args.rounds):
                for label, how in contenders(w):
                    rec = run_child(w, how, th, args)
                    records[label].append(rec)
                    if "info" in rec:
                        report["libraries"].setdefault(rec["lib"], rec["info"] if th == "default" else
                                                       {**rec["info"], "threads": None})
            res = {"workload": w, "threads": th, "what": WORKLOADS[w]["what"], "target": WORKLOADS[w]["target"],
                   "program": f"bench/programs/{WORKLOADS[w]['program']}", "args": WORKLOADS[w]["args"],
                   "records": records, "summary": summarize(records)}
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
          f"settings x {args.rounds} rounds in {report['wall_s']:.0f} s; JSON: {args.json}")
    failed = [(r["workload"], r["threads"], k, v) for r in report["results"] for k, v in r["summary"]["errors"].items()]
    for w, th, label, err in failed:
        print(f"failed: {w} ({th} threads) {label}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
