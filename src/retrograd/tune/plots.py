"""A study's plots (PNG), drawn here with matplotlib rather than by ``optuna.visualization``: its
parallel-coordinate plot overlapped tick labels and drew the worst trial white on grey, its slice plot's
colour bar covered the last panel, and it switches the global matplotlib style to ggplot.

``make_plots(study, study_dir, metric)`` writes ``optimization_history.png``, ``param_importances.png``,
``parallel_coordinate.png`` and ``slice.png``; ``*_figure(study, metric)`` return the matplotlib Figures.
Every colour of a trial has a contrast of 3:1 or more against the white background, colour bars have
their own axes (constrained layout), and numbers on log axes read ``0.001``, not ``10^-3``.
"""
from __future__ import annotations

import importlib.util
import math
import pathlib
import textwrap
import warnings
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from ..optim.plotting import plain_log_ticks, plain_number, plain_ticks
from ..train.plots import _figure, _integer_ticks

__all__ = ["make_plots", "optimization_history_figure", "param_importances_figure", "parallel_coordinate_figure",
           "slice_figure", "trial_cmap"]

# the part of plasma whose colours all keep a 3:1 contrast against white: dark blue .. purple .. pink
_CMAP_RANGE = (0.0, 0.62)


def trial_cmap() -> Any:
    """The colormap for trials: every colour of it has a contrast of 3:1 or more against white (the full
    ``Blues`` or ``viridis`` end in white or yellow, which vanish on a white background)."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["plasma"](np.linspace(*_CMAP_RANGE, 256)), name="plasma_readable")


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]


def _param_names(trials: Sequence[FrozenTrial]) -> list[str]:
    return list(dict.fromkeys(p for t in trials for p in t.params))


def _maximize(study: optuna.Study) -> bool:
    return study.direction == optuna.study.StudyDirection.MAXIMIZE


def _wrap(name: str, width: int = 16) -> str:
    """A long dotted name over two or more lines, broken after a dot (``optim.`` / ``momentum``)."""
    lines, cur = [], ""
    for part in name.split("."):
        if cur and len(cur) + 1 + len(part) > width:
            lines.append(cur + ".")
            cur = part
        else:
            cur = f"{cur}.{part}" if cur else part
    lines.append(cur)
    return "\n".join(textwrap.fill(line, width) for line in lines)


def _label(v: Any) -> str:
    return plain_number(v) if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------- optimization history
def optimization_history_figure(study: optuna.Study, metric: str) -> Any:
    """The metric of every finished trial against its number, the best so far as a step line;
    pruned trials as hollow grey markers at the last value they reported."""
    trials = study.get_trials(deepcopy=False)
    done = _complete(study)
    maximize = _maximize(study)
    fig = _figure(7.5, 4.5)
    ax = fig.subplots()
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                   facecolors="none", edgecolors="0.45", label="pruned (last reported value)", zorder=2)
    ax.scatter([t.number for t in done], [t.value for t in done], color="C0", label="complete", zorder=3)
    if done:
        best, xs, ys = None, [], []
        for t in done:
            if best is None or (t.value > best if maximize else t.value < best):
                best = t.value
            xs.append(t.number)
            ys.append(best)
        last = max(t.number for t in trials)
        if last > xs[-1]:          # trials after the last complete one (pruned, failed) did not change it
            xs.append(last)
            ys.append(best)
        ax.step(xs, ys, where="post", color="C3", label="best so far", zorder=4)
    ax.set_xlabel("trial")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel(metric)
    plain_ticks(ax.yaxis)
    ax.set_title(f"{metric} by trial ({'higher' if maximize else 'lower'} is better)")
    ax.legend(loc="best")
    return fig


# ---------------------------------------------------------------------- importances
def param_importances_figure(study: optuna.Study, metric: str) -> Any:
    """Optuna's fANOVA importance of each parameter, as labelled horizontal bars (largest on top)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = optuna.importance.get_param_importances(study)
    names = list(imp)[::-1]
    vals = [imp[n] for n in names]
    fig = _figure(7.5, max(3.0, 0.55 * len(names) + 1.6))
    ax = fig.subplots()
    ax.barh(range(len(names)), vals, color="C0")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    for i, v in enumerate(vals):
        ax.text(v + 0.01, i, "<0.01" if v < 0.01 else f"{v:.2f}", va="center", ha="left", fontsize=9)
    ax.set_xlim(0, max(1.0, max(vals, default=1.0)) * 1.12)   # room for the label of the longest bar
    ax.set_xlabel(f"importance for {metric} (fANOVA, sums to 1)")
    ax.set_title("parameter importances")
    return fig


# ---------------------------------------------------------------------- parallel coordinates
class _Dim:
    """One vertical axis: the trials' positions on it (0 .. 1, ``nan`` where the parameter was not set,
    drawn at ``_MISSING`` below the axis) and its ticks ``[(position, label)]``."""

    def __init__(self, name: str, values: list, dist: Any) -> None:
        self.name = name
        present = [v for v in values if v is not None]
        self.has_missing = len(present) < len(values)
        if isinstance(dist, CategoricalDistribution):
            choices = [c for c in dist.choices if c in present] or list(dict.fromkeys(present))
            k = len(choices)
            pos = {c: (i / (k - 1) if k > 1 else 0.5) for i, c in enumerate(choices)}
            self.pos = [pos[v] if v is not None else math.nan for v in values]
            self.ticks = [(pos[c], _label(c)) for c in choices]
            return
        log = bool(getattr(dist, "log", False)) and min(present, default=1) > 0
        f = (lambda v: math.log10(v)) if log else (lambda v: float(v))
        lo, hi = (min(map(f, present)), max(map(f, present))) if present else (0.0, 1.0)
        span = hi - lo
        self.pos = [((f(v) - lo) / span if span else 0.5) if v is not None else math.nan for v in values]
        self.ticks = [((f(t) - lo) / span if span else 0.5, plain_number(t)) for t in _nice_ticks(lo, hi, log)]


_MISSING = -0.14     # where a trial that has no value for a (conditional) parameter meets that axis


def _nice_ticks(lo: float, hi: float, log: bool) -> list[float]:
    """At most 6 readable tick values in [lo, hi] (lo, hi in log10 units where ``log``), no two closer
    than a tenth of the axis."""
    from matplotlib.ticker import MaxNLocator

    if hi == lo:
        return [10 ** lo if log else lo]
    if log:
        cands = [m * 10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
        cands = [c for c in cands if lo - 1e-9 <= math.log10(c) <= hi + 1e-9]
        if len(cands) < 2:
            cands = sorted(set(cands) | {10 ** lo, 10 ** hi})
        pos = lambda c: (math.log10(c) - lo) / (hi - lo)  # noqa: E731
    else:
        cands = [c for c in MaxNLocator(5).tick_values(lo, hi) if lo - 1e-12 <= c <= hi + 1e-12]
        pos = lambda c: (c - lo) / (hi - lo)  # noqa: E731
    kept: list[float] = []
    for c in cands:
        if all(abs(pos(c) - pos(k)) >= 0.1 for k in kept):
            kept.append(c)
    step = math.ceil(len(kept) / 6)
    return kept[::step]


def parallel_coordinate_figure(study: optuna.Study, metric: str) -> Any:
    """One vertical axis for the metric and one per parameter; one line per complete trial, coloured by
    its metric (dark blue best .. pink worst, all readable on white), the best trials drawn on top."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    done = _complete(study)
    if not done:
        raise ValueError("parallel_coordinate: no completed trials")
    maximize = _maximize(study)
    names = _param_names(done)
    dists = {}
    for t in done:
        for n, d in t.distributions.items():
            dists.setdefault(n, d)
    values = [t.value for t in done]
    dims = [_Dim(metric, values, None)] + [_Dim(n, [t.params.get(n) for t in done], dists[n]) for n in names]
    n = len(dims)
    fig = _figure(max(7.0, 1.9 * n + 1.8), 5.0)
    ax = fig.subplots()
    cmap = trial_cmap()
    lo, hi = min(values), max(values)
    # the colour runs from the best (0: dark blue) to the worst (1: pink)
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    order = sorted(range(len(done)), key=lambda i: values[i], reverse=not maximize)   # worst first, best last
    segs, colours, widths = [], [], []
    for rank, i in enumerate(order):
        ys = [d.pos[i] if math.isfinite(d.pos[i]) else _MISSING for d in dims]
        segs.append(np.column_stack([np.arange(n), ys]))
        c = norm(values[i])
        colours.append(cmap(1 - c if maximize else c))
        widths.append(2.6 if rank == len(order) - 1 else 1.4)
    ax.add_collection(LineCollection(segs, colors=colours, linewidths=widths, alpha=0.9, zorder=2))
    for j, d in enumerate(dims):
        ax.plot([j, j], [0, 1], color="0.2", lw=1.0, zorder=1)
        for p, text in d.ticks:
            ax.plot([j - 0.025, j], [p, p], color="0.2", lw=1.0, zorder=1)
            ax.text(j + 0.04, p, text, va="center", ha="left", fontsize=8, zorder=3,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        if d.has_missing:
            ax.text(j + 0.04, _MISSING, "not set", va="center", ha="left", fontsize=8, style="italic", zorder=3,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    ax.set_xlim(-0.15, n - 1 + 0.55)
    ax.set_ylim(_MISSING - 0.06 if any(d.has_missing for d in dims) else -0.05, 1.05)
    ax.set_xticks(range(n))
    ax.set_xticklabels([_wrap(d.name) for d in dims], fontsize=9)
    ax.set_yticks([])
    for s in ("left", "right", "top"):
        ax.spines[s].set_visible(False)
    best = done[order[-1]]
    ax.set_title(f"parallel coordinates of {len(done)} complete trials; thick line: best, trial {best.number} "
                 f"({metric} {plain_number(best.value, 4)})", fontsize=10)
    # the colour bar shows the metric, best at the top
    sm = ScalarMappable(norm=Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1),
                        cmap=cmap.reversed() if maximize else cmap)
    fig.colorbar(sm, ax=ax, label=metric, fraction=0.04, pad=0.02)
    return fig


# ---------------------------------------------------------------------- slices
def slice_figure(study: optuna.Study, metric: str) -> Any:
    """One panel per parameter: the metric of each complete trial against the parameter's value
    (log axis for log-scale parameters), coloured by trial number; the colour bar beside the panels."""
    from matplotlib.colors import Normalize

    done = _complete(study)
    if not done:
        raise ValueError("slice: no completed trials")
    names = _param_names(done)
    dists = {}
    for t in done:
        for n, d in t.distributions.items():
            dists.setdefault(n, d)
    fig = _figure(max(6.0, 3.3 * len(names) + 1.5), 4.2)
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    cmap = trial_cmap().reversed()          # early trials pink, late ones dark blue
    norm = Normalize(vmin=0, vmax=max(t.number for t in done) or 1)
    sc = None
    for ax, name in zip(axes, names):
        ts = [t for t in done if name in t.params]
        d = dists[name]
        if isinstance(d, CategoricalDistribution):
            choices = [c for c in d.choices if any(t.params[name] == c for t in ts)]
            xs = [choices.index(t.params[name]) for t in ts]
            ax.set_xticks(range(len(choices)))
            ax.set_xticklabels([_label(c) for c in choices])
            ax.set_xlim(-0.5, len(choices) - 0.5)
        else:
            xs = [t.params[name] for t in ts]
            if getattr(d, "log", False):
                ax.set_xscale("log")
                plain_log_ticks(ax.xaxis)
            else:
                plain_ticks(ax.xaxis)
        sc = ax.scatter(xs, [t.value for t in ts], c=[t.number for t in ts], cmap=cmap, norm=norm,
                        edgecolors="0.2", linewidths=0.5, s=36, zorder=3)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
        if len(ts) < len(done):
            ax.set_title(f"set in {len(ts)} of {len(done)} trials", fontsize=9)
    axes[0].set_ylabel(metric)
    plain_ticks(axes[0].yaxis)
    cb = fig.colorbar(sc, ax=list(axes), label="trial", pad=0.02)
    _integer_ticks(cb.ax.yaxis)
    fig.suptitle(f"{metric} against each parameter ({len(done)} complete trials)")
    return fig


# ---------------------------------------------------------------------- all of them
_FIGURES = {"optimization_history": optimization_history_figure, "param_importances": param_importances_figure,
            "parallel_coordinate": parallel_coordinate_figure, "slice": slice_figure}


def make_plots(study: optuna.Study, study_dir: pathlib.Path, metric: str) -> tuple[dict, dict]:
    """PNG plots in ``study_dir``: ``({name: path}, {name: why it was skipped})``."""
    if importlib.util.find_spec("matplotlib") is None:
        return {}, {"all": "matplotlib is not installed (pip install 'retrograd[tune]')"}
    complete = _complete(study)
    n_params = len(_param_names(complete))
    made, skipped = {}, {}
    for name, fn in _FIGURES.items():
        if not complete:
            skipped[name] = "no completed trials"
            continue
        if name == "param_importances" and (n_params < 2 or len(complete) < 4):
            skipped[name] = f"needs >= 2 parameters and >= 4 completed trials (have {n_params} and {len(complete)})"
            continue
        if name in ("parallel_coordinate", "slice") and n_params == 0:
            skipped[name] = "the trials have no parameters"
            continue
        try:
            fig = fn(study, metric)
            path = pathlib.Path(study_dir) / f"{name}.png"
            fig.savefig(path, dpi=100)
            made[name] = str(path)
        except Exception as e:  # noqa: BLE001 - one plot failing must not lose the others; the reason is shown
            skipped[name] = f"{type(e).__name__}: {e}"
    return made, skipped
