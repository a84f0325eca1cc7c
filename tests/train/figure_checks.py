"""What a reader of a figure needs, checked on the matplotlib objects after drawing them: whole-number
epoch ticks, tick labels that are plain numbers and do not overlap, colour bars and legends that
cover no panel, colours that stand out from their background. Shared by tests/train and tests/tune."""
import itertools
import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from retrograd.train.plots import contrast

PLAIN = re.compile(r"^-?(\d+(\.\d+)?|\.\d+)(e[-+]?\d+)?$")


def draw(fig):
    """Lay out and render ``fig``; returns its renderer (for text extents)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def panels(fig):
    """The data axes of a figure, without the colour bars' axes."""
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def colorbar_axes(fig):
    return [ax for ax in fig.axes if hasattr(ax, "_colorbar")]


def shown_labels(axis, minor=False):
    """``[(value, text)]`` of the visible, non-empty tick labels of an axis inside its view."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = axis.get_minor_ticks() if minor else axis.get_major_ticks()
    locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
    out = []
    for t, v in zip(ticks, locs):
        for lab in (t.label1, t.label2):          # label2: right or top (a colour bar's ticks)
            text = lab.get_text()
            if lab.get_visible() and text and lo - 1e-9 * abs(lo) <= v <= hi + 1e-9 * abs(hi):
                out.append((float(v), text))
    return out


def assert_integer_ticks(axis):
    vals = [v for v, _ in shown_labels(axis)]
    assert vals, "no tick labels"
    assert all(float(v).is_integer() for v in vals), vals


def assert_plain_labels(fig):
    """Every tick label of every axes reads as a plain number or a word: no mathtext (``10^{-1}``,
    ``2.42\\times10^0``), no offset or multiplier above the axis."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for _, text in shown_labels(axis) + shown_labels(axis, minor=True):
                assert "$" not in text and "times" not in text and "^" not in text, (ax.get_title(), text)
            assert axis.get_offset_text().get_text() == "", (ax.get_title(), axis.get_offset_text().get_text())


def numeric_labels(axis, minor=False):
    return [text.replace("\u2212", "-") for _, text in shown_labels(axis, minor)]


def label_boxes(ax, renderer):
    """Window extents of the visible tick labels (major and minor) of both axes of ``ax``."""
    boxes = []
    for axis in (ax.xaxis, ax.yaxis):
        for minor in (False, True):
            lo, hi = sorted(axis.get_view_interval())
            ticks = axis.get_minor_ticks() if minor else axis.get_major_ticks()
            locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
            for t, v in zip(ticks, locs):
                for lab in (t.label1, t.label2):
                    if lab.get_visible() and lab.get_text() and lo - 1e-9 * abs(lo) <= v <= hi + 1e-9 * abs(hi):
                        boxes.append((lab.get_text(), lab.get_window_extent(renderer)))
    return boxes


def assert_no_overlap(boxes):
    """No two of ``[(name, Bbox)]`` overlap (touching edges allowed)."""
    for (na, a), (nb, b) in itertools.combinations(boxes, 2):
        assert not a.overlaps(b) or min(a.x1, b.x1) - max(a.x0, b.x0) < 0.5 or min(a.y1, b.y1) - max(a.y0, b.y0) < 0.5, \
            f"{na!r} overlaps {nb!r}: {a} / {b}"


def assert_tick_labels_apart(fig, renderer):
    for ax in fig.axes:
        assert_no_overlap(label_boxes(ax, renderer))


def assert_colorbars_clear(fig, renderer):
    """Each colour bar (with its ticks and label) lies beside the panels, never on one."""
    cbs = colorbar_axes(fig)
    assert cbs, "no colour bar"
    for cb in cbs:
        box = cb.get_tightbbox(renderer)
        for ax in panels(fig):
            assert not box.overlaps(ax.get_window_extent(renderer)), (cb.get_ylabel(), ax.get_title())


def assert_contrast(colour, background, at_least):
    c = contrast(colour, background)
    assert c >= at_least, f"contrast {c:.2f} of {np.round(colour, 3)} on {np.round(background, 3)} < {at_least}"
