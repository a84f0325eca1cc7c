"""The crash test (issue 12, "Done when"): ``retrograd train`` killed with SIGKILL at seeded random
points of its checkpointing, then resumed (sometimes killed again while resuming). Every resume
works, ends bit-exact with an uninterrupted run, and leaves no stray copies behind. (That
``retrograd train`` exits non-zero on every failure path: ``test_failures.py``.)"""
import json
import multiprocessing
import os
import pathlib
import random
import shutil
import signal
import sys
import time
import traceback

import pytest

import retrograd as rg
from retrograd import cli

from cli_helpers import DIGITS_MLP, summary

# 1294 training images in batches of 128: 11 steps an epoch; a `last` checkpoint every 2 steps and at
# each epoch's end, a `best` one when val_loss improves: 15 atomic saves in 22 steps
CONFIG = DIGITS_MLP.replace("sizes = [64, 64, 10]", "sizes = [64, 16, 10]") \
    .replace("batch_size = 32", "batch_size = 128").replace("epochs = 2", "epochs = 2\ncheckpoint_every_n_steps = 2")
KILLS = 10            # at most this many runs killed at random points of their file events ...
BUDGET_S = 20         # ... while the test has run less than this (the first four always run)
SEED = 20261206
# what an atomic checkpoint save (and the metrics rewrite) does to files: each call is an event
EVENTS = ((os, "rename"), (os, "replace"), (os, "fsync"), (shutil, "rmtree"))


def _child(argv, kill_at, before, events_out, log):
    """In the forked process: count the file events, SIGKILL itself at event ``kill_at`` (before or
    after the real call; nothing is cleaned up, as with ``kill -9``), run ``retrograd ARGV``."""
    sys.stdout = sys.stderr = open(log, "w", buffering=1)
    events = []

    def instrument(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            events.append(f"{name} {args[0] if args else ''}")
            if len(events) == kill_at and before:
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args, **kwargs)
            if len(events) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        setattr(module, name, wrapper)

    for module, name in EVENTS:
        instrument(module, name)
    rg.train.plots.plot_run = lambda run_dir, path=None: []  # half a run's time, and no file events of interest
    try:
        rc = cli.main([str(a) for a in argv])
    except BaseException:  # noqa: BLE001 - report it as a process would
        traceback.print_exc()
        rc = 1
    if events_out:
        pathlib.Path(events_out).write_text("\n".join(events) + "\n")
    sys.stdout.flush()
    os._exit(rc)


class Runner:
    """``retrograd ARGV`` in a forked process (the parent has imported everything once, so a run
    costs its training, not Python's start-up), killed at a file event or by the clock."""

    def __init__(self, tmp_path):
        self.tmp, self.n = tmp_path, 0

    def __call__(self, argv, kill_at=0, when="before", events_out=None, kill_after_s=None):
        self.n += 1
        log = self.tmp / f"log{self.n}.txt"
        p = multiprocessing.get_context("fork").Process(target=_child,
                                                        args=(argv, kill_at, when == "before", events_out, log))
        p.start()
        if kill_after_s is not None:   # SIGKILL from outside, some time after the first checkpoint appeared
            last = self.tmp / "runs" / argv[argv.index("--set") + 1].split("=")[1] / "checkpoints" / "last"
            deadline = time.monotonic() + 120
            while not last.is_dir() and p.is_alive() and time.monotonic() < deadline:
                time.sleep(0.002)
            p.join(kill_after_s)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
        p.join(180)
        assert p.exitcode is not None, f"retrograd {argv} hung"
        return p.exitcode, log.read_text()


def _weights(run):
    """Parameters and optimizer state of the last checkpoint, bit for bit (the safetensors header's
    metadata order varies between processes: the Rust writer keeps it in a hash map)."""
    last = run / "checkpoints" / "last"
    return {f"{f}:{k}": (a.dtype.str, a.shape, a.tobytes())
            for f in ("model.safetensors", "optimizer.safetensors")
            for k, a in rg.io.load_safetensors(last / f).items()}


def _strays(run):
    found = [p for p in run.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    return sorted(str(p.relative_to(run)) for p in found)


def _step_rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["epoch"], r.get("batch"), r["step"], r.get("loss"), r.get("val_loss")) for r in rows]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash test forks its runs (POSIX only)")
def test_kill_9_during_checkpointing_then_resume_is_exact_and_clean(tmp_path):
    import sklearn.datasets  # noqa: F401 - imported once here, not in every forked run

    run_cli = Runner(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG + f'\n[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
    t0 = time.perf_counter()
    rc, log = run_cli(["train", cfg, "--quiet", "--set", "run.name=full"], events_out=tmp_path / "events")
    assert rc == 0, log
    full = tmp_path / "runs" / "full"
    events = (tmp_path / "events").read_text().splitlines()   # event k (1-based) is events[k - 1]
    ref, ref_summary, ref_rows = _weights(full), summary(full), _step_rows(full)
    assert _strays(full) == []
    last = str(full / "checkpoints" / "last")
    # rename(.last.tmp-*, last) of the first save: before it, there is no checkpoint to resume
    first_done = next(k for k, e in enumerate(events, 1) if e.startswith(f"rename {full / 'checkpoints' / '.last.tmp-'}"))
    moved_aside = [k for k, e in enumerate(events, 1) if e == f"rename {last}"]     # rename(last, .last.old-*)
    removed_old = [k for k, e in enumerate(events, 1) if e.startswith(f"rmtree {full / 'checkpoints' / '.last.old-'}")]
    # 13 saves of `last` (steps 2, 4, ..., 22 and each epoch's end), the first with nothing to move aside
    assert len(moved_aside) == len(removed_old) == 12
    # a kill inside the first save leaves no checkpoint to resume: `resume` says so, without a traceback
    rc, _ = run_cli(["train", cfg, "--quiet", "--set", "run.name=first"], kill_at=first_done)
    assert rc == -signal.SIGKILL
    rc, log = run_cli(["resume", tmp_path / "runs" / "first"])
    assert rc == 2 and "no checkpoint 'last'" in log and "Traceback" not in log

    rng = random.Random(SEED)
    plans = [(moved_aside[rng.randrange(12)], "after", None),     # between the two renames
             (removed_old[rng.randrange(12)], "before", 5),       # the old copy not yet deleted; resume killed too
             ("clock", None, None)]                               # kill -9 from outside, at a seeded time
    plans += [(rng.randint(first_done + 1, len(events)), rng.choice(["before", "after"]),
               rng.randint(1, 60) if i % 2 else None) for i in range(KILLS - 3)]
    kinds, done = set(), 0
    for i, (at, when, again) in enumerate(plans):
        if i >= 4 and time.perf_counter() - t0 > BUDGET_S:
            break
        done += 1
        name = f"k{i}"
        run = tmp_path / "runs" / name
        train = ["train", cfg, "--quiet", "--set", f"run.name={name}"]
        if at == "clock":
            rc, log = run_cli(train, kill_after_s=rng.random() * 0.3)
            assert rc in (0, -signal.SIGKILL), log            # 0: the clock came after the end
        else:
            rc, log = run_cli(train, kill_at=at, when=when)
            assert rc == -signal.SIGKILL, (at, when, log)
        ckpts = run / "checkpoints"
        kinds.add("between renames" if ckpts.is_dir() and not (ckpts / "last").exists() and
                  any(p.name.startswith(".last.old-") for p in ckpts.iterdir()) else
                  "left copies" if _strays(run) else "clean")
        if again is not None:                                 # killed again, while resuming
            rc, log = run_cli(["resume", run, "--quiet"], kill_at=again)
            assert rc in (0, -signal.SIGKILL), log
        rc, log = run_cli(["resume", run, "--quiet"])
        assert rc == 0, (at, when, again, log)                # every resume works
        assert _weights(run) == ref, (at, when, again)         # bit-exact
        s = summary(run)
        assert (s["final"], s["test"], s["epochs"], s["status"]) == \
            (ref_summary["final"], ref_summary["test"], 2, "completed"), (at, when, again)
        assert _step_rows(run) == ref_rows, (at, when, again)
        assert _strays(run) == [], (at, when, again)           # no stray copies
    assert {"between renames", "left copies"} <= kinds, kinds
    print(f"crash test: {done} killed runs of {len(plans)} planned, {len(events)} file events a run, "
          f"kinds {sorted(kinds)}, {time.perf_counter() - t0:.1f} s")
