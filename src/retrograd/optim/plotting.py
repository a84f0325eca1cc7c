"""``plot_schedule``: a learning-rate schedule drawn before training (matplotlib, optional)."""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["plot_schedule", "schedule_values"]


def _require_matplotlib(who: str) -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"{who} needs matplotlib, which is not installed: pip install retrograd[plot]") from e
    return matplotlib


def plain_number(x: float, digits: int = 3) -> str:
    """A tick label a reader reads at once: ``0.3``, ``2.28``, ``0.0005``, ``120``; ``1e-6`` or
    ``3e+06`` only outside [1e-4, 1e6); never ``2.42×10^0``."""
    import numpy as np

    x = float(x)
    if x == 0 or not np.isfinite(x):
        return "0" if x == 0 else str(x)
    if 1e-4 <= abs(x) < 1e6:
        return np.format_float_positional(x, precision=digits, fractional=False, trim="-")
    return f"{x:.{digits}g}".replace("e-0", "e-").replace("e+0", "e+")


def plain_log_ticks(axis: Any) -> None:
    """Label a log-scaled matplotlib ``axis`` (``ax.xaxis``/``ax.yaxis``) with plain numbers; minor
    ticks get labels (the ones matplotlib would pick) only where the axis spans few decades."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return plain_number(x)

    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def plain_ticks(axis: Any) -> None:
    """Plain-number labels on a linear ``axis`` (``0.0005``): no offset (``+1e-3``) or ``×10^k`` above it."""
    from matplotlib.ticker import ScalarFormatter

    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    axis.set_major_formatter(fmt)


def _momentum(group: dict) -> float | None:
    if "betas" in group:
        return float(group["betas"][0])
    if "momentum" in group:
        return float(group["momentum"])
    return None


def schedule_values(schedule_or_scheduler_factory: Callable, steps: int) -> tuple[list[float], list | None]:
    """The lrs of steps ``0 .. steps - 1`` (of the first param group), and the
    momenta (``betas[0]`` for Adam-like optimizers) when a scheduler cycles them
    (else None).

    ``schedule_or_scheduler_factory`` is a schedule (``step -> lr``, as in
    ``optim.schedules``) or a function of no arguments that builds a scheduler
    on a fresh optimizer, e.g. ``lambda: OneCycleLR(SGD([w], lr=0.1, momentum=0.9),
    max_lr=0.1, total_steps=1000)``; that scheduler is stepped ``steps`` times
    (the optimizer's ``step`` runs too, with no gradients: no update).
    """
    from .lr_scheduler import LRScheduler, ReduceLROnPlateau

    fn = schedule_or_scheduler_factory
    if isinstance(fn, LRScheduler):
        raise TypeError("plot_schedule: pass a factory that builds the scheduler (lambda: Scheduler(optimizer, ...)),"
                        " not a scheduler: plotting steps it through the whole schedule")
    if not callable(fn):
        raise TypeError(f"plot_schedule: expected a schedule (step -> lr) or a scheduler factory, got "
                        f"{type(fn).__name__}")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"plot_schedule: steps must be a positive integer, got {steps!r}")
    if _takes_no_argument(fn):
        sched = fn()
        if isinstance(sched, ReduceLROnPlateau):
            raise TypeError("plot_schedule: ReduceLROnPlateau follows a metric measured in training; it has no "
                            "schedule to plot in advance")
        if not hasattr(sched, "optimizer") or not hasattr(sched, "step"):
            raise TypeError(f"plot_schedule: the factory returned {type(sched).__name__}, not a scheduler")
        group = sched.optimizer.param_groups[0]
        lrs, moms = [], []
        for _ in range(steps):
            lrs.append(float(group["lr"]))
            moms.append(_momentum(group))
            sched.optimizer.step()
            sched.step()
            group = sched.optimizer.param_groups[0]
        cycled = moms[0] is not None and any(m != moms[0] for m in moms)
        return lrs, (moms if cycled else None)
    return [float(fn(t)) for t in range(steps)], None


def _takes_no_argument(fn: Callable) -> bool:
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                   for p in sig.parameters.values())


def plot_schedule(schedule_or_scheduler_factory: Callable, steps: int, ax: Any = None, path: str | None = None,
                  *, log_scale: bool = False) -> Any:
    """Plot lr versus step for steps ``0 .. steps - 1`` (see ``schedule_values`` for
    what to pass), with the momentum on a second y axis when it cycles.

    ``ax``: a matplotlib Axes to draw on (else a new figure); ``path``: save the
    figure there (PNG, PDF, ... by extension). Returns the Axes: its first line
    is the lr, and ``ax.momentum_ax`` (when the momentum cycles) holds the
    momentum line. Needs matplotlib (``pip install retrograd[plot]``).
    """
    _require_matplotlib("plot_schedule")
    lrs, moms = schedule_values(schedule_or_scheduler_factory, steps)
    if ax is None:
        if path is not None:  # no global pyplot state for a figure that only goes to a file
            from matplotlib.figure import Figure
            ax = Figure(figsize=(6, 4)).add_subplot()
        else:
            import matplotlib.pyplot as plt
            _, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(steps), lrs, color="C0", label="lr")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    if log_scale:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    else:
        plain_ticks(ax.yaxis)
    name = getattr(schedule_or_scheduler_factory, "__name__", "")
    if name and name != "<lambda>":
        ax.set_title(name)
    if moms is not None:
        ax2 = ax.twinx()
        ax2.plot(range(steps), moms, color="C1", label="momentum")
        ax2.set_ylabel("momentum", color="C1")
        ax.momentum_ax = ax2
    if path is not None:
        ax.figure.savefig(path, bbox_inches="tight")
    return ax
