"""Plots of training runs (matplotlib, PNG files).

``plot_run(run_dir)``: loss curves (per step and per epoch), one panel per
validation metric and the learning-rate schedule from ``run_dir/metrics.jsonl``;
``plot_gradient_flow(records, path)``: heatmaps of log10 gradient norm and
update/weight ratio, layers x recorded steps (``GradientFlow.records`` or a
``gradient_flow.jsonl``); ``plot_comparison(histories, path)``: several runs'
histories (as ``Trainer.fit`` returns them), one panel per key;
``plot_sweep(rows, path)``: a grid search's final metrics as annotated heatmaps
(e.g. batch size x learning rate).

Each ``plot_*`` saves a PNG and returns its path; the matching ``*_figure``
returns the matplotlib ``Figure`` instead (no pyplot state), to change or show.
Epoch axes have integer ticks, log axes plain-number labels (``0.3``, not
``3×10^-1``), and every metric its own y axis.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from ..optim.plotting import plain_log_ticks, plain_number, plain_ticks

__all__ = ["plot_run", "plot_gradient_flow", "plot_comparison", "plot_sweep", "run_figure", "gradient_flow_figure",
           "comparison_figure", "sweep_figure", "read_metrics"]

# a metric whose lower values are better (its heatmap colours run the other way)
_LOWER_IS_BETTER = ("loss", "perplexity", "error", "mse", "mae", "rmse")


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure with constrained layout (colour bars and legends get their own room),
    not registered with pyplot (nothing to close, no GUI backend needed)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("rg.train.plots needs matplotlib: pip install 'retrograd[train]'") from None
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: str | os.PathLike) -> pathlib.Path:
    out = pathlib.Path(path)
    fig.savefig(out, dpi=100)
    return out


def _integer_ticks(axis: Any) -> None:
    """Ticks only at whole numbers (epochs, steps): no ``1.5`` epoch on a two-epoch run."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _scale(ax: Any, values: Sequence[float], *, factor: float = 3.0) -> None:
    """A log y axis (plain-number ticks) where the positive ``values`` span a factor of ``factor`` or
    more; else a linear one (a log axis over 2.28 .. 2.34 only makes the ticks hard to read)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if v and min(v) > 0 and max(v) / min(v) >= factor:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    else:
        plain_ticks(ax.yaxis)


def _lower_is_better(key: str) -> bool:
    return any(w in key.lower() for w in _LOWER_IS_BETTER)


def read_metrics(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``(step_rows, epoch_rows)`` from ``run_dir/metrics.jsonl``."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"plot_run: {path} not found (log the run with rg.train.callbacks.MetricLogger)")
    from .logfiles import read_jsonl
    rows = read_jsonl(path)
    return [r for r in rows if r.get("kind") == "step"], [r for r in rows if r.get("kind") == "epoch"]


def run_figure(run_dir: str | os.PathLike) -> Any:
    """The figure of ``plot_run``: loss, one panel per validation metric (each its own y axis:
    accuracy and perplexity do not share one), learning rate."""
    steps, epochs = read_metrics(run_dir)
    metric_keys = sorted({k for r in epochs for k in r if k.startswith("val_") and k != "val_loss"})
    n = 2 + len(metric_keys)
    fig = _figure(4.3 * n, 3.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    ax = axes[0]
    shown: list[float] = []
    if steps:
        x = [r["step"] for r in steps]
        ax.plot(x, [r["loss"] for r in steps], color="0.6", lw=0.8, label="train loss (batch)")
        shown += [r["loss"] for r in steps]
    if epochs:
        xe = [r["step"] for r in epochs]
        ax.plot(xe, [r["train_loss"] for r in epochs], "o-", label="train loss (epoch)")
        shown += [r["train_loss"] for r in epochs]
        val = [r for r in epochs if "val_loss" in r]
        if val:
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "s-", label="val loss")
            shown += [r["val_loss"] for r in val]
    ax.set_xlabel("optimizer step")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("loss")
    ax.set_title("loss")
    _scale(ax, shown)
    if ax.get_lines():
        ax.legend()
    for ax, k in zip(axes[1:-1], metric_keys):
        rows = [r for r in epochs if k in r]
        ax.plot([r["epoch"] + 1 for r in rows], [r[k] for r in rows], "o-", color="C2")
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(k.removeprefix("val_"))
        ax.set_title(k)
        _scale(ax, [r[k] for r in rows], factor=10.0)
    ax = axes[-1]
    if steps:
        ax.plot([r["step"] for r in steps], [r["lr"] for r in steps])
    elif epochs:
        ax.plot([r["epoch"] + 1 for r in epochs], [r["lr"] for r in epochs], "o-")
    ax.set_xlabel("optimizer step" if steps else "epoch")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("learning rate")
    plain_ticks(ax.yaxis)
    ax.set_title("learning rate")
    return fig


def plot_run(run_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> pathlib.Path:
    """Loss, metrics and lr of a logged run; saved to ``path`` (default ``run_dir/run.png``)."""
    fig = run_figure(run_dir)
    return _save(fig, path if path is not None else pathlib.Path(run_dir) / "run.png")


def gradient_flow_figure(records: Any, layers: Sequence[str] | None = None) -> Any:
    """The figure of ``plot_gradient_flow``."""
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

    fig = _figure(12, 0.4 * len(layers) + 2.5)
    axes = fig.subplots(1, 2, sharey=True)       # the layer names once, on the left
    stride = max(1, math.ceil(len(steps) / 8))   # evenly spaced ticks, every `stride`-th recorded step
    ticks = list(range(0, len(steps), stride))
    for ax, key, title in ((axes[0], "grad_norm", "gradient norm"), (axes[1], "update_ratio", "update / weight")):
        im = ax.imshow(grid(key), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(steps[t]) for t in ticks])
        ax.set_xlabel("optimizer step")
        ax.set_title(f"log10 {title}")
        fig.colorbar(im, ax=ax, label=f"log10 {title}")
    axes[0].set_yticks(range(len(layers)))
    axes[0].set_yticklabels(layers)
    axes[0].set_ylabel("layer")
    return fig


def plot_gradient_flow(records: Any, path: str | os.PathLike, layers: Sequence[str] | None = None
                       ) -> pathlib.Path:
    """Heatmaps (layers x steps) of log10 gradient norm and log10 update/weight ratio.
    ``records``: ``GradientFlow.records``, or a path to ``gradient_flow.jsonl``."""
    return _save(gradient_flow_figure(records, layers), path)


def comparison_figure(histories: dict[str, dict], keys: Sequence[str] | None = None) -> Any:
    """The figure of ``plot_comparison``: one panel per key, one legend (beside the panels, not on the
    curves) naming each run."""
    if not histories:
        raise ValueError("plot_comparison: no histories given")
    if keys is None:
        present = {k for h in histories.values() for k in h}
        keys = [k for k in ("train_loss", "val_loss") if k in present] + \
               sorted(k for k in present if k.startswith("val_") and k != "val_loss")
    if not keys:
        raise ValueError("plot_comparison: the histories have no train_loss/val_* entries")
    fig = _figure(4.3 * len(keys) + 2, 3.8)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    handles: dict[str, Any] = {}
    many = len(histories) > 10          # tab10 repeats after ten runs: vary the marker as well
    for ax, k in zip(axes, keys):
        shown: list[float] = []
        for i, (name, h) in enumerate(histories.items()):
            if k in h and len(h[k]):
                marker = "osD^v<>px*"[i // 10 % 10] if many else "o"
                (line,) = ax.plot(range(1, len(h[k]) + 1), h[k], marker=marker, ls="-", color=f"C{i % 10}",
                                  label=name)
                handles.setdefault(name, line)
                shown += list(h[k])
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(k)
        ax.set_title(k)
        _scale(ax, shown, factor=3.0 if "loss" in k else 10.0)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", title="run")
    return fig


def plot_comparison(histories: dict[str, dict], path: str | os.PathLike,
                    keys: Sequence[str] | None = None) -> pathlib.Path:
    """One panel per history key (default: ``train_loss``, ``val_loss`` and every
    ``val_<metric>`` present), one line per run, against the epoch."""
    return _save(comparison_figure(histories, keys), path)


def _cell_text(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.4f}" if abs(v) < 10 else plain_number(v, 4)


def sweep_figure(rows: Sequence[dict], *, row_key: str = "batch_size", col_key: str = "lr",
                 metrics: Sequence[str] | None = None) -> Any:
    """The figure of ``plot_sweep``."""
    if not rows:
        raise ValueError("plot_sweep: no rows given")
    for k in (row_key, col_key):
        if any(k not in r for r in rows):
            raise ValueError(f"plot_sweep: every row needs {k!r}; got keys {sorted(rows[0])}")
    if metrics is None:
        present = {k for r in rows for k in r}
        metrics = [k for k in ("train_loss", "val_loss") if k in present] + \
                  sorted(k for k in present if k.startswith("val_") and k != "val_loss")
    if not metrics:
        raise ValueError("plot_sweep: the rows have no train_loss/val_* values")
    ys = sorted({r[row_key] for r in rows})
    xs = sorted({r[col_key] for r in rows})
    seen: set = set()
    for r in rows:
        if (r[row_key], r[col_key]) in seen:
            raise ValueError(f"plot_sweep: two rows for {row_key}={r[row_key]}, {col_key}={r[col_key]}")
        seen.add((r[row_key], r[col_key]))
    fig = _figure(max(4.2, 1.1 * len(xs) + 2.2) * len(metrics), max(3.2, 0.6 * len(ys) + 2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        g = np.full((len(ys), len(xs)), np.nan)
        for r in rows:
            v = r.get(m)
            if v is not None:
                g[ys.index(r[row_key]), xs.index(r[col_key])] = float(v)
        cmap = "viridis_r" if _lower_is_better(m) else "viridis"   # the best cell is always yellow
        im = ax.imshow(g, cmap=cmap, aspect="auto", interpolation="nearest")
        best = None
        if np.isfinite(g).any():
            best = np.unravel_index(np.nanargmin(g) if _lower_is_better(m) else np.nanargmax(g), g.shape)
        for i in range(len(ys)):
            for j in range(len(xs)):
                v = g[i, j]
                bg = im.cmap(im.norm(v)) if math.isfinite(v) else ax.get_facecolor()   # a missing cell: none
                colour = "black" if contrast((0, 0, 0), bg) >= contrast((1, 1, 1), bg) else "white"
                ax.text(j, i, _cell_text(v), ha="center", va="center", color=colour, fontsize=10,
                        fontweight="bold" if (i, j) == best else "normal")
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([plain_number(x) if isinstance(x, float) else str(x) for x in xs])
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([plain_number(y) if isinstance(y, float) else str(y) for y in ys])
        ax.set_xlabel(col_key)
        ax.set_ylabel(row_key)
        ax.set_title(f"final {m} ({'lower' if _lower_is_better(m) else 'higher'} is better; best in bold)",
                     fontsize=10)
        fig.colorbar(im, ax=ax, label=m)
    return fig


def plot_sweep(rows: Sequence[dict], path: str | os.PathLike, *, row_key: str = "batch_size", col_key: str = "lr",
               metrics: Sequence[str] | None = None) -> pathlib.Path:
    """A grid search's final values as heatmaps, ``row_key`` down and ``col_key`` across, one panel per
    metric (default ``train_loss``, ``val_loss`` and every ``val_<metric>`` present), each cell annotated
    with its value. ``rows``: one dict per run, e.g. ``{"batch_size": 32, "lr": 1e-3, "val_loss": ...}``."""
    return _save(sweep_figure(rows, row_key=row_key, col_key=col_key, metrics=metrics), path)


def _luminance(rgba: Sequence[float]) -> float:
    """WCAG relative luminance of an RGB(A) colour (0 black .. 1 white)."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(float(c)) for c in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Sequence[float], b: Sequence[float]) -> float:
    """WCAG contrast ratio of two RGB(A) colours (1 .. 21); 3 or more reads as a line or large text."""
    la, lb = sorted((_luminance(a), _luminance(b)))
    return (lb + 0.05) / (la + 0.05)
