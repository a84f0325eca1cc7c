"""Plots of training runs (matplotlib, Agg backend, PNG files).

``plot_run(run_dir)``: loss curves (per step and per epoch), validation metrics
and the learning-rate schedule from ``run_dir/metrics.jsonl``;
``plot_gradient_flow(records, path)``: heatmaps of log10 gradient norm and
update/weight ratio, layers x recorded steps (``GradientFlow.records`` or a
``gradient_flow.jsonl``); ``plot_comparison(histories, path)``: several runs'
histories (as ``Trainer.fit`` returns them) on shared axes.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

__all__ = ["plot_run", "plot_gradient_flow", "plot_comparison", "read_metrics"]


def _plt():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover
        raise ImportError("rg.train.plots needs matplotlib: pip install 'retrograd[train]'") from None
    matplotlib.use("Agg", force=False) if matplotlib.get_backend().lower() != "agg" else None
    import matplotlib.pyplot as plt
    return plt


def read_metrics(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``(step_rows, epoch_rows)`` from ``run_dir/metrics.jsonl``."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"plot_run: {path} not found (log the run with rg.train.callbacks.MetricLogger)")
    from .logfiles import read_jsonl
    rows = read_jsonl(path)
    return [r for r in rows if r.get("kind") == "step"], [r for r in rows if r.get("kind") == "epoch"]


def plot_run(run_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> pathlib.Path:
    """Loss, metrics and lr of a logged run; saved to ``path`` (default ``run_dir/run.png``)."""
    plt = _plt()
    steps, epochs = read_metrics(run_dir)
    out = pathlib.Path(path) if path is not None else pathlib.Path(run_dir) / "run.png"
    metric_keys = sorted({k for r in epochs for k in r if k.startswith("val_") and k != "val_loss"})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if steps:
        x = [r["step"] for r in steps]
        ax.plot(x, [r["loss"] for r in steps], color="0.7", lw=0.8, label="train loss (batch)")
    if epochs:
        xe = [r["step"] for r in epochs]
        ax.plot(xe, [r["train_loss"] for r in epochs], "o-", label="train loss (epoch)")
        if any("val_loss" in r for r in epochs):
            ax.plot([r["step"] for r in epochs if "val_loss" in r], [r["val_loss"] for r in epochs if "val_loss" in r],
                    "s-", label="val loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    if steps and min(r["loss"] for r in steps) > 0:
        ax.set_yscale("log")
    ax.legend()
    ax = axes[1]
    for k in metric_keys:
        ax.plot([r["epoch"] + 1 for r in epochs if k in r], [r[k] for r in epochs if k in r], "o-", label=k)
    ax.set_xlabel("epoch")
    ax.set_title("validation metrics")
    if metric_keys:
        ax.legend()
    ax = axes[2]
    if steps:
        ax.plot([r["step"] for r in steps], [r["lr"] for r in steps])
    elif epochs:
        ax.plot([r["epoch"] + 1 for r in epochs], [r["lr"] for r in epochs], "o-")
    ax.set_xlabel("optimizer step" if steps else "epoch")
    ax.set_title("learning rate")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_gradient_flow(records: Any, path: str | os.PathLike, layers: Sequence[str] | None = None
                       ) -> pathlib.Path:
    """Heatmaps (layers x steps) of log10 gradient norm and log10 update/weight ratio.
    ``records``: ``GradientFlow.records``, or a path to ``gradient_flow.jsonl``."""
    plt = _plt()
    if isinstance(records, (str, os.PathLike)):
        records = [json.loads(x) for x in pathlib.Path(records).read_text().splitlines() if x.strip()]
    if not records:
        raise ValueError("plot_gradient_flow: no records to plot")
    if layers is None:
        layers = list(records[0]["layers"])
    steps = [r["step"] for r in records]

    def grid(key: str) -> np.ndarray:
        g = np.full((len(layers), len(records)), np.nan)
        for j, r in enumerate(records):
            for i, n in enumerate(layers):
                v = r["layers"].get(n, {}).get(key)
                if v is not None and v > 0 and math.isfinite(v):
                    g[i, j] = math.log10(v)
        return g

    fig, axes = plt.subplots(1, 2, figsize=(12, 0.4 * len(layers) + 2.5))
    for ax, key, title in ((axes[0], "grad_norm", "log10 gradient norm"),
                           (axes[1], "update_ratio", "log10 update / weight")):
        im = ax.imshow(grid(key), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(layers)
        ticks = np.linspace(0, len(steps) - 1, min(len(steps), 8)).astype(int)
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(steps[t]) for t in ticks])
        ax.set_xlabel("step")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    out = pathlib.Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_comparison(histories: dict[str, dict], path: str | os.PathLike,
                    keys: Sequence[str] | None = None) -> pathlib.Path:
    """One panel per history key (default: ``train_loss``, ``val_loss`` and every
    ``val_<metric>`` present), one line per run, against the epoch."""
    plt = _plt()
    if not histories:
        raise ValueError("plot_comparison: no histories given")
    if keys is None:
        present = {k for h in histories.values() for k in h}
        keys = [k for k in ("train_loss", "val_loss") if k in present] + \
               sorted(k for k in present if k.startswith("val_") and k != "val_loss")
    if not keys:
        raise ValueError("plot_comparison: the histories have no train_loss/val_* entries")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for name, h in histories.items():
            if k in h and len(h[k]):
                ax.plot(range(1, len(h[k]) + 1), h[k], "o-", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.legend()
    fig.tight_layout()
    out = pathlib.Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
