"""What `retrograd train` costs per batch beyond the model step, measured in one process so that a
busy machine's swings hit both sides alike.

    python bench/trainer_overhead.py [--config examples/fashion_cnn.toml] [--rounds 15] [--batches 25]
                                     [--threads default|N]
    python bench/trainer_overhead.py --hooks [--batches 200]     # each callback's cost in a running fit

The run is built as the CLI builds it (``recipe.prepare``, ``recipe.make_trainer`` with its
callbacks: metrics log with TensorBoard files, checkpoints, LR monitor, NaN guard; the progress bar
off as under ``--quiet``). Rounds alternate two blocks on the same model, data and optimizer:

- ``trainer``: one more epoch of ``Trainer.fit`` (``--batches`` batches of the training set, no
  validation): the data loader of the run, the callbacks, the Trainer's bookkeeping, the step;
- ``loop``: the same number of batches through the loop a user writes (``DataLoader(TensorDataset)``
  of the same images as float32, shuffled; ``zero_grad``, forward, ``cross_entropy``, ``backward``,
  ``step``, ``loss.item()``).

Per batch, within each block (the first batch of a block left out: an epoch's start), the calling
thread's CPU time (``time.thread_time``: what the Trainer adds runs there) and the wall time are
taken; a block's figure is its median batch, and the table gives the median over rounds of each
and of the per-round differences trainer - loop.

``--hooks``: one epoch of ``--batches`` batches of the run as the CLI builds it (its metrics log,
TensorBoard file, checkpoints, LR monitor, NaN guard; the progress bar off a terminal), every
callback hook the run calls per batch and the loader's ``get_batch`` timed by the calling thread's
CPU time; per hook the median call over the batches from the 20th on, and their sum: what the
callbacks add to a batch among the step's own work (in a running fit the interpreter's code and
data are out of the caches: 3-7x a hot loop's figure).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "examples" / "fashion_cnn.toml"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batches", type=int, default=25)
    ap.add_argument("--threads", default="default")
    ap.add_argument("--hooks", action="store_true", help="each callback hook's CPU time a batch in one fit")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    import retrograd as rg
    from retrograd.data import DataLoader, TensorDataset
    from retrograd.train import Callback
    from retrograd.train import config as rgconfig
    from retrograd.train import recipe

    if args.threads != "default":
        rg.set_num_threads(int(args.threads))
    config = pathlib.Path(args.config)
    cfg = rgconfig.validate(rgconfig.apply_overrides(rgconfig.load_config(config), [
        f"data.train_samples={args.batches * 64}", "data.batch_size=64", "data.val_samples=64"]), config_path=config)
    setup = recipe.prepare(cfg, config_path=str(config))
    if args.hooks:
        hooks(setup, args.batches)
        return
    marks: list = []

    class Clock(Callback):
        def on_batch_end(self, trainer, batch_idx, logs):
            marks.append((time.thread_time(), time.perf_counter()))

    with tempfile.TemporaryDirectory() as tmp:
        trainer = recipe.make_trainer(setup, pathlib.Path(tmp) / "run", quiet=True, extra_callbacks=[Clock()])
        x, y = (np.asarray(a) for a in setup.data.train.arrays)
        loader = DataLoader(TensorDataset(rg.from_numpy(np.ascontiguousarray(x)), rg.from_numpy(y)), batch_size=64,
                            shuffle=True)
        model, opt, F = setup.model, setup.optimizer, rg.nn.functional

        def loop_block() -> list:
            out = []
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                loss.item()
                out.append((time.thread_time(), time.perf_counter()))
            return out

        def per_batch(stamps: list) -> tuple[float, float]:
            cpu = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
            wall = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
            return statistics.median(cpu), statistics.median(wall)

        rows = []
        loop_block()  # warm-up (compiles, first-touch allocations)
        for r in range(args.rounds):
            marks.clear()
            trainer.fit(setup.train_loader, None, epochs=r + 1)
            t = per_batch(marks)
            lp = per_batch(loop_block())
            rows.append((*t, *lp))
            print(f"round {r + 1}: trainer cpu {t[0] * 1e3:.2f} wall {t[1] * 1e3:.2f} | loop cpu {lp[0] * 1e3:.2f} "
                  f"wall {lp[1] * 1e3:.2f} ms/batch", flush=True)
    med = [statistics.median(c) * 1e3 for c in zip(*rows)]
    dcpu = statistics.median(r[0] - r[2] for r in rows) * 1e3
    dwall = statistics.median(r[1] - r[3] for r in rows) * 1e3
    print(f"{config.name}, {args.threads} threads, median of {args.rounds} rounds (ms per batch of 64):")
    print(f"  Trainer (the CLI's callbacks): cpu {med[0]:.2f}  wall {med[1]:.2f}")
    print(f"  plain loop                   : cpu {med[2]:.2f}  wall {med[3]:.2f}")
    print(f"  difference (median of rounds): cpu {dcpu:+.2f}  wall {dwall:+.2f}")


def hooks(setup, batches: int) -> None:
    import gc

    import retrograd.train.trainer as trainer_module
    from retrograd.train import Callback, recipe

    calls: dict = {}
    marks: list = []
    step_ns = {"backward": [], "optimizer": []}
    backward_batch, optimizer_step = trainer_module.backward_batch, trainer_module.optimizer_step

    def timed_backward(*a, **k):  # the model's forward, loss and backward
        t = time.thread_time_ns()
        out = backward_batch(*a, **k)
        step_ns["backward"].append(time.thread_time_ns() - t)
        return out

    def timed_step(*a, before_step=None, **k):  # the optimizer's step and zero_grad, not the callbacks before it
        if before_step is not None and not before_step(None):  # timed only without clipping: no norm
            return False
        t = time.thread_time_ns()
        out = optimizer_step(*a, **k)
        step_ns["optimizer"].append(time.thread_time_ns() - t)
        return out

    class Clock(Callback):
        def on_batch_end(self, trainer, batch_idx, logs):
            marks.append(time.thread_time_ns())

    def timed(obj, name: str, key: str) -> None:
        f = getattr(obj, name)
        times = calls.setdefault(key, [])

        def wrapper(*a, **k):
            t = time.thread_time_ns()
            out = f(*a, **k)
            times.append(time.thread_time_ns() - t)
            return out

        setattr(obj, name, wrapper)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = recipe.make_trainer(setup, pathlib.Path(tmp) / "run", quiet=True)
        if setup.cfg["train"]["grad_clip"] is None:  # (with clipping the step's split differs: not timed)
            trainer_module.backward_batch, trainer_module.optimizer_step = timed_backward, timed_step
        for cb in trainer.callbacks:
            for hook in ("on_batch_start", "on_after_backward", "on_before_step", "on_batch_end"):
                if any(hook in vars(k) for k in type(cb).__mro__[:-1] if k.__name__ != "Callback"):
                    timed(cb, hook, f"{type(cb).__name__}.{hook}")
        timed(setup.train_loader.dataset, "get_batch", "loader get_batch")
        trainer.callbacks.append(Clock())
        gc.collect()
        try:
            trainer.fit(setup.train_loader, None, epochs=1)
        finally:
            trainer_module.backward_batch, trainer_module.optimizer_step = backward_batch, optimizer_step
    med = {k: statistics.median(v[20:] or v) / 1e3 for k, v in calls.items()}
    print(f"{batches} batches, thread CPU a call (median from batch 20), us:")
    for k, v in sorted(med.items()):
        print(f"  {k:36s} {v:8.1f}")
    print(f"  {'callbacks, sum':36s} {sum(v for k, v in med.items() if k != 'loader get_batch'):8.1f}")
    if step_ns["backward"] and len(step_ns["optimizer"]) == len(step_ns["backward"]) == len(marks):
        per = [b - a for a, b in zip(marks, marks[1:])][20:]  # per[i]: batch i + 21, from one batch end to the next
        step = [a + b for a, b in zip(step_ns["backward"][21:], step_ns["optimizer"][21:])]
        rest = [p - q for p, q in zip(per, step)]
        print(f"  a batch {statistics.median(per) / 1e3:.0f} us: the step (forward, loss, backward, optimizer) "
              f"{statistics.median(step) / 1e3:.0f}, everything else {statistics.median(rest) / 1e3:.0f} (loader, "
              f"callbacks, Trainer; median of the batches' differences; the hooks' timers included)")


if __name__ == "__main__":
    main()
