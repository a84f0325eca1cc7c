"""A batch-size x learning-rate sweep over any training config, with the pieces
the ``retrograd`` command is made of: every run starts from the same initial
weights (``train.seed``), prints one table, draws the final metrics as batch-size
x learning-rate heatmaps (annotated cells) and every run's curves.

    python examples/sweep_batch_lr.py examples/fashion_mlp.toml \
        --batch-sizes 32,128,512 --lrs 3e-4,1e-3,3e-3 --set train.epochs=3 --set data.train_samples=20000

Writes RUN.dir/<config name>-sweep/{sweep.md, sweep.json, sweep.png (heatmaps),
sweep_curves.png} and one run folder per point (metrics, no checkpoints).
"""
from __future__ import annotations

import argparse
import copy
import json
import pathlib
import time

from retrograd.data.presets import build_data
from retrograd.train import config as rgconfig
from retrograd.train import plots, recipe
from retrograd.train.formatting import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--batch-sizes", default="32,128,512")
    ap.add_argument("--lrs", default="3e-4,1e-3,3e-3")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    base = rgconfig.validate(rgconfig.apply_overrides(rgconfig.load_config(args.config), args.set),
                             config_path=args.config)
    data = build_data(base["data"], recipe.data_seed(base))   # loaded once, shared by every run
    out = pathlib.Path(base["run"]["dir"]) / f"{base['run']['name'] or pathlib.Path(args.config).stem}-sweep"
    out.mkdir(parents=True, exist_ok=True)
    rows, histories = [], {}
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        for lr in (float(x) for x in args.lrs.split(",")):
            cfg = copy.deepcopy(base)
            cfg["data"]["batch_size"] = bs
            cfg["optim"]["lr"] = lr
            cfg["train"]["progress"] = False
            setup = recipe.prepare(cfg, data, config_path=args.config)
            name = f"bs{bs}_lr{lr:g}"
            trainer = recipe.make_trainer(setup, out / name, quiet=True, checkpoints=False)
            t0 = time.perf_counter()
            history = trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"])
            row = {"batch_size": bs, "lr": lr, "train_loss": history["train_loss"][-1],
                   **{k: v[-1] for k, v in history.items() if k.startswith("val_")},
                   "samples_per_sec": round(history["samples_per_sec"][-1]),
                   "time_s": round(time.perf_counter() - t0, 1)}
            print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
            rows.append(row)
            histories[name] = history
    table = markdown_table(rows)
    (out / "sweep.md").write_text(table + "\n")
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    plots.plot_sweep(rows, out / "sweep.png", row_key="batch_size", col_key="lr")
    plots.plot_comparison(histories, out / "sweep_curves.png")
    print(table)
    print(f"plots: {out / 'sweep.png'} (final metrics, batch size x lr), {out / 'sweep_curves.png'} (curves)")


if __name__ == "__main__":
    main()
