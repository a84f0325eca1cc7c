"""What `retrograd train` costs per batch beyond the model step, measured in one process so that a
busy machine's swings hit both sides alike.

    python bench/trainer_overhead.py [--config examples/fashion_cnn.toml] [--rounds 15] [--batches 25]
                                     [--threads default|N]

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


if __name__ == "__main__":
    main()
