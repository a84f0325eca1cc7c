"""A study's four plots as a reader sees them (issue 13 item 12): the colour bar beside the slice
panels, parallel-coordinate tick labels apart and every trial's line readable on white, plain numbers
on log axes, whole-number trial ticks. The study is built from recorded trials (no training)."""
import pathlib
import sys

import matplotlib
import numpy as np
import optuna
import pytest
from matplotlib.colors import to_rgba
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from retrograd.tune import plots as tplots

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "train"))
from figure_checks import (PLAIN, assert_colorbars_clear, assert_contrast, assert_integer_ticks,  # noqa: E402
                           assert_no_overlap, assert_plain_labels, assert_tick_labels_apart, colorbar_axes, draw,
                           numeric_labels, panels)

DISTS = {"optim.lr": FloatDistribution(1e-4, 3e-1, log=True),
         "data.batch_size": CategoricalDistribution([32, 64, 128, 256]),
         "optim.name": CategoricalDistribution(["sgd", "adam", "adamw"]),
         "optim.momentum": FloatDistribution(0.0, 0.95),
         "model.hidden": IntDistribution(8, 64)}
# (value or None when pruned, lr, batch size, optimizer, momentum or None, hidden): the example study's trials
TRIALS = [(0.8255, 0.0081, 32, "adamw", None, 16), (0.726, 0.2243, 64, "sgd", 0.0192, 32),
          (0.6815, 0.0785, 128, "adam", None, 64), (0.84, 0.0168, 64, "adam", None, 8),
          (0.736, 0.0095, 64, "sgd", 0.4152, 16), (0.7965, 0.0267, 128, "adamw", None, 32),
          (0.8355, 0.0096, 64, "adam", None, 48), (0.817, 0.0042, 256, "adamw", None, 64),
          (None, 0.0716, 256, "adam", None, 8), (0.846, 0.00046, 32, "adam", None, 32),
          (0.8335, 0.00076, 32, "adam", None, 24), (None, 0.00013, 64, "adam", None, 16)]


def make_study(direction="maximize"):
    study = optuna.create_study(direction=direction)
    for v, lr, bs, name, mom, hidden in TRIALS:
        params = {"optim.lr": lr, "data.batch_size": bs, "optim.name": name, "model.hidden": hidden}
        if mom is not None:
            params["optim.momentum"] = mom
        study.add_trial(create_trial(state=TrialState.COMPLETE if v is not None else TrialState.PRUNED, value=v,
                                     params=params, distributions={k: DISTS[k] for k in params},
                                     intermediate_values={0: v if v is not None else 0.6}))
    return study


@pytest.fixture(scope="module")
def study():
    return make_study()


def test_slice_colour_bar_covers_no_panel(study):
    fig = tplots.slice_figure(study, "val_accuracy")
    renderer = draw(fig)
    axes = panels(fig)
    assert [ax.get_xlabel() for ax in axes] == ["optim.lr", "data.batch_size", "optim.name", "model.hidden",
                                               "optim.momentum"]
    (cb,) = colorbar_axes(fig)
    assert cb.get_ylabel() == "trial"
    assert_colorbars_clear(fig, renderer)
    right = max(ax.get_window_extent(renderer).x1 for ax in axes)
    assert cb.get_window_extent(renderer).x0 > right            # a dedicated place right of every panel
    assert_integer_ticks(cb.yaxis)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    lr = axes[0]
    assert lr.get_xscale() == "log"
    np.testing.assert_allclose(lr.collections[0].get_offsets(), [[t.params["optim.lr"], t.value] for t in done])
    labels = numeric_labels(lr.xaxis) + numeric_labels(lr.xaxis, minor=True)
    assert labels and all(PLAIN.match(t) for t in labels), labels
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["sgd", "adam", "adamw"]
    assert axes[4].get_title() == "set in 2 of 10 trials"
    assert_plain_labels(fig)
    assert_tick_labels_apart(fig, renderer)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_parallel_coordinates_readable(direction):
    study = make_study(direction)
    fig = tplots.parallel_coordinate_figure(study, "val_accuracy")
    renderer = draw(fig)
    (ax,) = panels(fig)
    assert_colorbars_clear(fig, renderer)
    # every trial's line, the worst one included, stands out from the white background
    (lines,) = ax.collections
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    colours = lines.get_colors()
    assert len(colours) == len(done) == 10
    bg = to_rgba(ax.get_facecolor())
    for c in colours:
        assert_contrast(c, bg, 3.0)
    # drawn worst first, best last (on top), the best thickest; the metric axis holds each trial's value
    values = sorted((t.value for t in done), reverse=direction == "minimize")
    lo, hi = min(values), max(values)
    ys = [seg[0][1] for seg in lines.get_segments()]
    np.testing.assert_allclose(ys, [(v - lo) / (hi - lo) for v in values])
    widths = lines.get_linewidths()
    assert widths[-1] > max(widths[:-1])
    best = done[int(np.argmax([t.value for t in done]) if direction == "maximize" else np.argmin(
        [t.value for t in done]))]
    assert f"best, trial {best.number}" in ax.get_title()
    # the darkest colour marks the best trial
    from retrograd.train.plots import contrast
    assert contrast(colours[-1], bg) == max(contrast(c, bg) for c in colours)
    # tick labels of all axes (texts beside the vertical axes, names below them) do not overlap
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts]
    names = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.get_xticklabels()]
    assert [n for n, _ in names] == ["val_accuracy", "optim.lr", "data.batch_size", "optim.name", "model.hidden",
                                    "optim.momentum"]
    assert_no_overlap(texts + names)
    assert "not set" in [n for n, _ in texts]
    assert {"32", "64", "128", "256", "sgd", "adam", "adamw"} <= {n for n, _ in texts}
    assert all(PLAIN.match(n) for n, _ in texts if n[0].isdigit())


def test_optimization_history_and_importances(study):
    fig = tplots.optimization_history_figure(study, "val_accuracy")
    renderer = draw(fig)
    (ax,) = panels(fig)
    assert ax.get_xlabel() == "trial"
    assert_integer_ticks(ax.xaxis)
    (best,) = ax.get_lines()
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert list(best.get_ydata()) == list(np.maximum.accumulate([t.value for t in done])) + [0.846]
    assert best.get_xdata()[-1] == len(TRIALS) - 1                 # up to the last trial, a pruned one
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pruned (last reported value)", "complete",
                                                                    "best so far"]
    assert_plain_labels(fig)
    assert_tick_labels_apart(fig, renderer)
    fig = tplots.param_importances_figure(study, "val_accuracy")
    renderer = draw(fig)
    (ax,) = panels(fig)
    imp = optuna.importance.get_param_importances(study)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(imp)[::-1]
    box = ax.get_window_extent(renderer)
    for t in ax.texts:                                              # every value label inside the axes
        b = t.get_window_extent(renderer)
        assert box.x0 <= b.x0 and b.x1 <= box.x1, t.get_text()
    assert_tick_labels_apart(fig, renderer)


def test_make_plots_writes_all_four_and_keeps_the_global_style(study, tmp_path):
    before = dict(matplotlib.rcParams)
    made, skipped = tplots.make_plots(study, tmp_path, "val_accuracy")
    assert skipped == {} and sorted(made) == ["optimization_history", "parallel_coordinate", "param_importances",
                                              "slice"]
    for path in made.values():
        assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {k: v for k, v in matplotlib.rcParams.items() if k in ("axes.facecolor", "axes.grid")} == \
        {k: before[k] for k in ("axes.facecolor", "axes.grid")}      # no ggplot switched on for later plots
    empty = optuna.create_study()
    made, skipped = tplots.make_plots(empty, tmp_path, "val_accuracy")
    assert made == {} and set(skipped.values()) == {"no completed trials"}
