"""The run, comparison, gradient-flow, sweep and LR-finder figures as a reader sees them (issue 13
item 12): whole-number epoch ticks on short runs, one y axis per metric, plain-number log ticks,
colour bars and legends beside the panels, no overlapping tick labels, heatmap cells equal to the data."""
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from figure_checks import (PLAIN, assert_colorbars_clear, assert_contrast, assert_integer_ticks,
                           assert_plain_labels, assert_tick_labels_apart, colorbar_axes, draw,
                           numeric_labels, panels, shown_labels)

from matplotlib.colors import to_rgba

import retrograd as rg
from retrograd.optim.plotting import plain_number
from retrograd.train import plots

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write_run(run_dir, epochs, *, steps_per_epoch=12, loss=lambda s: 2.3 * 0.97 ** s, metrics=("accuracy",)):
    """A ``metrics.jsonl`` as MetricLogger writes it: one step row per batch, one epoch row per epoch."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in range(epochs):
        for b in range(steps_per_epoch):
            s = e * steps_per_epoch + b + 1
            rows.append({"kind": "step", "epoch": e, "batch": b, "step": s, "loss": loss(s), "lr": 1e-3 * (1 - s / 100)})
        s = (e + 1) * steps_per_epoch
        row = {"kind": "epoch", "epoch": e, "train_loss": loss(s) * 1.05, "val_loss": loss(s) * 1.1, "lr": 1e-3,
               "step": s}
        if "accuracy" in metrics:
            row["val_accuracy"] = 0.5 + 0.1 * e
        if "perplexity" in metrics:
            row["val_perplexity"] = math.exp(loss(s) * 1.1)
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def by_title(fig):
    return {ax.get_title(): ax for ax in panels(fig)}


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_short_runs_get_whole_epoch_ticks(tmp_path, epochs):
    write_run(tmp_path, epochs)
    fig = plots.run_figure(tmp_path)
    renderer = draw(fig)
    epoch_axes = [ax for ax in panels(fig) if ax.get_xlabel() == "epoch"]
    for ax in epoch_axes:
        assert_integer_ticks(ax.xaxis)
        assert [v for v, _ in shown_labels(ax.xaxis)] == list(range(1, epochs + 1))
    assert [ax.get_title() for ax in epoch_axes] == ["val_accuracy"]
    for ax in panels(fig):
        assert_integer_ticks(ax.xaxis)        # optimizer steps are whole numbers too
    assert_plain_labels(fig)
    assert_tick_labels_apart(fig, renderer)


def test_accuracy_and_perplexity_get_their_own_axes(tmp_path):
    rows = write_run(tmp_path, 3, metrics=("accuracy", "perplexity"))
    fig = plots.run_figure(tmp_path)
    renderer = draw(fig)
    axes = by_title(fig)
    assert list(axes) == ["loss", "val_accuracy", "val_perplexity", "learning rate"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    for key in ("val_accuracy", "val_perplexity"):
        ax = axes[key]
        (line,) = ax.get_lines()               # one metric per axes
        assert list(line.get_xdata()) == [1, 2, 3]
        assert list(line.get_ydata()) == [r[key] for r in epochs]
        assert ax.get_ylabel() == key.removeprefix("val_")
        lo, hi = ax.get_ylim()                 # the axis spans its own metric, not the other's
        assert lo <= min(r[key] for r in epochs) and max(r[key] for r in epochs) <= hi
    assert axes["val_accuracy"].get_ylim()[1] < 1.0 < min(r["val_perplexity"] for r in epochs)
    assert axes["val_accuracy"] is not axes["val_perplexity"]
    assert not axes["val_accuracy"].get_shared_y_axes().joined(axes["val_accuracy"], axes["val_perplexity"])
    assert_tick_labels_apart(fig, renderer)


def test_log_axes_read_as_plain_numbers(tmp_path):
    write_run(tmp_path, 4, loss=lambda s: 2.3 * 0.93 ** s)    # 2.3 .. 0.07: a log axis
    fig = plots.run_figure(tmp_path)
    renderer = draw(fig)
    ax = by_title(fig)["loss"]
    assert ax.get_yscale() == "log"
    labels = numeric_labels(ax.yaxis) + numeric_labels(ax.yaxis, minor=True)
    assert labels and all(PLAIN.match(t) for t in labels), labels
    assert {"0.1", "1"} <= set(labels)
    assert_plain_labels(fig)
    assert_tick_labels_apart(fig, renderer)
    # 2.28 .. 2.34 on a log axis read "2.28×10^0": a range that narrow gets a linear axis
    write_run(tmp_path / "flat", 2, loss=lambda s: 2.34 - 0.0025 * s)
    fig = plots.run_figure(tmp_path / "flat")
    draw(fig)
    ax = by_title(fig)["loss"]
    assert ax.get_yscale() == "linear"
    assert all(PLAIN.match(t) for t in numeric_labels(ax.yaxis))
    assert_plain_labels(fig)


def test_learning_rate_axis_has_no_offset_or_multiplier(tmp_path):
    write_run(tmp_path, 2)
    fig = plots.run_figure(tmp_path)
    draw(fig)
    ax = by_title(fig)["learning rate"]
    labels = numeric_labels(ax.yaxis)
    assert all(PLAIN.match(t) for t in labels) and "0.001" in [t.rstrip("0") for t in labels], labels
    assert ax.yaxis.get_offset_text().get_text() == ""


def test_comparison_has_one_legend_beside_the_panels(tmp_path):
    hist = {f"run {i}": {"train_loss": [1.0 - 0.1 * i, 0.8 - 0.1 * i], "val_loss": [1.1 - 0.1 * i, 0.9 - 0.1 * i],
                         "val_accuracy": [0.6 + 0.01 * i, 0.7 + 0.01 * i]} for i in range(9)}
    fig = plots.comparison_figure(hist)
    renderer = draw(fig)
    assert [ax.get_title() for ax in panels(fig)] == ["train_loss", "val_loss", "val_accuracy"]
    assert all(ax.get_legend() is None for ax in panels(fig))      # no legend on the curves
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == list(hist)
    box = legend.get_window_extent(renderer)
    for ax in panels(fig):
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
        assert_integer_ticks(ax.xaxis)
        assert [v for v, _ in shown_labels(ax.xaxis)] == [1, 2]
        assert [list(ln.get_ydata()) for ln in ax.get_lines()] == [h[ax.get_title()] for h in hist.values()]
    colours = [ln.get_color() for ln in panels(fig)[0].get_lines()]
    assert len(set(colours)) == 9                                   # nine runs, nine colours
    assert_plain_labels(fig)
    assert_tick_labels_apart(fig, renderer)
    out = plots.plot_comparison(hist, tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradient_flow_heatmap(tmp_path):
    layers = [f"blocks.{i}.mlp.fc" for i in range(5)]
    records = [{"step": 10 * j, "layers": {n: {"grad_norm": 10.0 ** (-i - j / 10), "update_ratio": 10.0 ** (-3 - i)}
                                           for i, n in enumerate(layers)}} for j in range(23)]
    fig = plots.gradient_flow_figure(records)
    renderer = draw(fig)
    assert len(panels(fig)) == 2 and len(colorbar_axes(fig)) == 2
    assert_colorbars_clear(fig, renderer)
    for ax in panels(fig):
        img = ax.get_images()[0].get_array()
        assert img.shape == (5, 23)
        ticks = list(ax.get_xticks())
        assert len(set(np.diff(ticks))) == 1 and len(ticks) <= 8      # evenly spaced
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(records[int(t)]["step"]) for t in ticks]
    left, right = panels(fig)
    assert [t.get_text() for t in left.get_yticklabels()] == layers
    assert not any(t.get_visible() for t in right.get_yticklabels())      # the names once, on the left
    np.testing.assert_allclose(panels(fig)[0].get_images()[0].get_array()[2, 4], -2.4)
    assert_tick_labels_apart(fig, renderer)
    assert_plain_labels(fig)


SWEEP = [{"batch_size": bs, "lr": lr, "train_loss": 0.5 + i / 10 + j / 100, "val_loss": 0.6 + i / 10 + j / 100,
          "val_accuracy": 0.9 - i / 20 - j / 50, "samples_per_sec": 1000, "time_s": 1.0}
         for i, bs in enumerate((32, 128, 512)) for j, lr in enumerate((3e-4, 1e-3, 3e-3))]


def test_sweep_heatmap_cells_equal_the_data(tmp_path):
    fig = plots.sweep_figure(SWEEP)
    renderer = draw(fig)
    axes = panels(fig)
    assert [ax.get_title().split(" (")[0] for ax in axes] == ["final train_loss", "final val_loss",
                                                              "final val_accuracy"]
    assert_colorbars_clear(fig, renderer)
    for ax, m in zip(axes, ("train_loss", "val_loss", "val_accuracy")):
        img = ax.get_images()[0]
        grid = np.asarray(img.get_array())
        assert grid.shape == (3, 3)
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
        assert len(texts) == 9
        for r in SWEEP:
            i, j = (32, 128, 512).index(r["batch_size"]), (3e-4, 1e-3, 3e-3).index(r["lr"])
            assert grid[i, j] == r[m]
            assert texts[i, j].get_text() == f"{r[m]:.4f}"
            assert_contrast(to_rgba(texts[i, j].get_color()), img.cmap(img.norm(r[m])), 4.5)
        best = min(SWEEP, key=lambda r: r[m]) if "loss" in m else max(SWEEP, key=lambda r: r[m])
        bold = [k for k, t in texts.items() if t.get_fontweight() == "bold"]
        assert bold == [((32, 128, 512).index(best["batch_size"]), (3e-4, 1e-3, 3e-3).index(best["lr"]))]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0003", "0.001", "0.003"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["32", "128", "512"]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("lr", "batch_size")
    assert_tick_labels_apart(fig, renderer)
    with pytest.raises(ValueError, match=r"plot_sweep: two rows for batch_size=32, lr=0.0003"):
        plots.sweep_figure(SWEEP + SWEEP[:1])
    with pytest.raises(ValueError, match=r"plot_sweep: every row needs 'lr'"):
        plots.sweep_figure([{"batch_size": 1, "val_loss": 1.0}])
    with pytest.raises(ValueError, match="plot_sweep: no rows given"):
        plots.sweep_figure([])


def test_sweep_example_draws_the_heatmap(tmp_path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('[model]\nname = "mlp"\nsizes = [64, 16, 10]\n[data]\nname = "digits"\nbatch_size = 32\n'
                   '[optim]\nname = "adam"\nlr = 0.003\n[train]\nepochs = 1\nseed = 0\nprogress = false\n'
                   f'[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sweep_batch_lr.py"), str(cfg),
                           "--batch-sizes", "32,128", "--lrs", "1e-3,1e-2"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "d-sweep"
    rows = json.loads((out / "sweep.json").read_text())
    assert [(r["batch_size"], r["lr"]) for r in rows] == [(32, 1e-3), (32, 1e-2), (128, 1e-3), (128, 1e-2)]
    for name in ("sweep.png", "sweep_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    fig = plots.sweep_figure(rows)
    draw(fig)
    acc = next(ax for ax in panels(fig) if "val_accuracy" in ax.get_title())
    assert np.asarray(acc.get_images()[0].get_array()).tolist() == \
        [[rows[0]["val_accuracy"], rows[1]["val_accuracy"]], [rows[2]["val_accuracy"], rows[3]["val_accuracy"]]]


def test_lr_finder_plot_reads_plain_numbers(tmp_path):
    rg.manual_seed(0)
    model = rg.nn.Sequential(rg.nn.Linear(8, 16), rg.nn.ReLU(), rg.nn.Linear(16, 3))
    x = rg.randn(64, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    finder = rg.train.LRFinder(model, rg.optim.SGD(model.parameters(), lr=1e-4), rg.nn.CrossEntropyLoss())
    finder.range_test([(x, y)], start_lr=1e-4, end_lr=10, num_iter=50)
    ax = finder.plot(path=str(tmp_path / "f.png"), skip_start=2, skip_end=2)
    renderer = draw(ax.figure)
    assert ax.get_xscale() == "log"
    labels = numeric_labels(ax.xaxis)
    assert {"0.001", "0.01", "0.1", "1"} <= set(labels) and all(PLAIN.match(t) for t in labels), labels
    assert_plain_labels(ax.figure)
    assert_tick_labels_apart(ax.figure, renderer)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"suggested lr {plain_number(finder.suggestion(2, 2))}"]
    assert "e" not in legend[0].removeprefix("suggested lr ")


@pytest.mark.parametrize("x, text", [(0.3, "0.3"), (2.28, "2.28"), (1e-4, "0.0001"), (0.00046170180632098824,
                                     "0.000462"), (120.0, "120"), (2.0, "2"), (1e-6, "1e-6"), (3e6, "3e+6"),
                                     (0.0, "0"), (-0.05, "-0.05")])
def test_plain_number(x, text):
    assert plain_number(x) == text


def test_plot_run_writes_the_png(tmp_path):
    write_run(tmp_path, 2)
    out = plots.plot_run(tmp_path)
    assert out == tmp_path / "run.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_schedule_log_axis_reads_plain_numbers(tmp_path):
    from retrograd.optim.plotting import plot_schedule
    from retrograd.optim.schedules import exponential_decay

    ax = plot_schedule(exponential_decay(1.0, 0.9), 60, path=str(tmp_path / "s.png"), log_scale=True)
    renderer = draw(ax.figure)
    labels = numeric_labels(ax.yaxis) + numeric_labels(ax.yaxis, minor=True)
    assert ax.get_yscale() == "log" and {"0.01", "0.1", "1"} <= set(labels), labels
    assert all(PLAIN.match(t) for t in labels), labels
    assert_plain_labels(ax.figure)
    assert_tick_labels_apart(ax.figure, renderer)


def test_sweep_cell_without_a_value_reads_as_a_dash():
    rows = [dict(r) for r in SWEEP]
    rows[4]["val_accuracy"] = None          # a run that diverged before its first validation
    fig = plots.sweep_figure(rows, metrics=["val_accuracy"])
    draw(fig)
    (ax,) = panels(fig)
    cell = next(t for t in ax.texts if t.get_position() == (1, 1))
    assert cell.get_text() == "-"
    assert np.isnan(np.asarray(ax.get_images()[0].get_array(), dtype=float)[1, 1])
    assert_contrast(to_rgba(cell.get_color()), to_rgba(ax.get_facecolor()), 4.5)
