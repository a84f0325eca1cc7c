"""Scheduling the learning rate: the one entry.

Every learning-rate formula is written once, as a plain function of the step in
``optim.schedules``: a *schedule*, ``step -> lr``. There are three ways to use
one, and they give the same numbers:

1. **``lr=schedule``** (the way to choose in new code). Every optimizer takes a
   schedule as its ``lr``, evaluates it at each step (``group["lr"]`` shows the
   lr of the next step) and saves the step count in its ``state_dict``, so a
   resumed run continues exactly. A schedule can be plotted before training
   (``optim.plot_schedule``)::

       sched = rg.optim.schedules.warmup_cosine(3e-4, warmup_steps=500, total_steps=20_000)
       opt = rg.optim.AdamW(model.parameters(), lr=sched)

2. **A scheduler object** from ``optim.lr_scheduler``: PyTorch's classes
   (``StepLR``, ``CosineAnnealingLR``, ``OneCycleLR``, ``ReduceLROnPlateau`` ...)
   with PyTorch's numbers and state dicts, for code written against
   ``torch.optim.lr_scheduler``; their closed forms are the functions of
   ``optim.schedules``. Call ``scheduler.step()`` after ``optimizer.step()``,
   once per epoch or per batch; ``step_scheduler`` passes the monitored metric
   to the schedulers that need one (``ReduceLROnPlateau``).

3. **By name**, as configs, the CLI and ``tune`` do: ``schedule_names()`` lists
   the names, ``schedule_factory(name)`` gives the function or class,
   ``schedule_defaults`` fills in the peak lr and the length that a run
   implies, and ``scheduled_optimizer`` builds the optimizer with the schedule
   in place (a function becomes its ``lr``; a class is built on it)::

       opt, scheduler = scheduled_optimizer(partial(rg.optim.AdamW, params, weight_decay=0.1),
                                            "warmup_cosine", peak_lr=3e-4, warmup_steps=500,
                                            total_steps=20_000)        # scheduler is None here

Schedulers that need code or other schedulers (``LambdaLR``,
``MultiplicativeLR``, ``SequentialLR``, ``ChainedScheduler``) and
``join_schedules`` have no name: build them in Python.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from . import lr_scheduler, schedules
from .optimizer import Optimizer

__all__ = ["schedule_names", "schedule_factory", "is_schedule_function", "schedule_defaults",
           "scheduled_optimizer", "step_scheduler"]

# the nameable ones: scheduler classes by lower-case name, then the schedule functions
_NEEDS_CODE = {"LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler", "Schedule",
               "join_schedules"}
_BY_NAME: dict[str, Callable] = {
    **{n.lower(): getattr(lr_scheduler, n) for n in lr_scheduler.__all__ if n not in _NEEDS_CODE},
    **{n: getattr(schedules, n) for n in schedules.__all__ if n not in _NEEDS_CODE},
}
# the arguments schedule_defaults fills: a schedule function's peak lr and its length in steps
_LR_ARGS = ("lr", "init_lr", "peak_lr", "max_lr")
_STEP_ARGS = ("steps", "decay_steps", "total_steps")


def schedule_names() -> list[str]:
    """Every name ``schedule_factory`` accepts: the scheduler classes (``StepLR`` ...),
    then the schedule functions (``warmup_cosine`` ...)."""
    return [f.__name__ for f in _BY_NAME.values()]


def schedule_factory(name: str) -> Callable:
    """The ``optim.lr_scheduler`` class or ``optim.schedules`` function called ``name``
    (case-insensitive); ``ValueError`` naming the choices for an unknown name."""
    f = _BY_NAME.get(name.lower())
    if f is None:
        raise ValueError(f"{name!r} is not one of: {', '.join(schedule_names())}")
    return f


def is_schedule_function(f: Callable) -> bool:
    """Whether ``f`` (from ``schedule_factory``) makes a schedule to give as ``lr``
    (True), or is a scheduler class to build on an optimizer (False)."""
    return not isinstance(f, type)


def _required(f: Callable) -> list[str]:
    sig = inspect.signature(f.__init__ if isinstance(f, type) else f)
    return [n for n, p in sig.parameters.items() if n not in ("self", "optimizer")
            and p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def schedule_defaults(name: str, given: dict, *, lr: float, total_steps: int, epochs: int,
                      interval: str = "epoch") -> dict:
    """The arguments of schedule ``name`` that ``given`` lacks and a training run
    implies, in the order to add them: a function's required peak lr (``lr``,
    ``init_lr``, ``peak_lr``, ``max_lr``) is ``lr`` and its required length
    (``steps``, ``decay_steps``, ``total_steps``) is ``total_steps`` (optimizer
    steps in the run); ``CosineAnnealingLR``'s ``T_max`` and ``OneCycleLR``'s
    ``total_steps`` are the number of scheduler steps (``total_steps`` when
    ``interval == "step"``, else ``epochs``), ``OneCycleLR``'s ``max_lr`` is ``lr``."""
    f = schedule_factory(name)
    out: dict = {}
    if is_schedule_function(f):
        for a in _required(f):
            if a not in given and a in _LR_ARGS:
                out[a] = lr
            elif a not in given and a in _STEP_ARGS:
                out[a] = total_steps
        return out
    n = total_steps if interval == "step" else epochs
    if f is lr_scheduler.CosineAnnealingLR and "T_max" not in given:
        out["T_max"] = n
    if f is lr_scheduler.OneCycleLR:
        if "max_lr" not in given:
            out["max_lr"] = lr
        if not {"epochs", "steps_per_epoch", "total_steps"} & set(given):
            out["total_steps"] = n
    return out


def scheduled_optimizer(make_optimizer: Callable[..., Optimizer], name: str, /,
                        **kwargs: Any) -> tuple[Optimizer, Any]:
    """``(optimizer, scheduler)`` with the learning rate scheduled by ``name``.

    A schedule function is built with ``kwargs`` and passed as the lr:
    ``make_optimizer(lr=schedule)`` (``make_optimizer`` is for example a
    ``functools.partial`` of an optimizer class; the keyword overrides its lr),
    and ``scheduler`` is None: the optimizer steps the schedule itself. A
    scheduler class is built on ``make_optimizer()`` with ``kwargs``; step it
    after each optimizer step or epoch (``step_scheduler``). Errors of either
    call propagate unchanged."""
    f = schedule_factory(name)
    if is_schedule_function(f):
        return make_optimizer(lr=f(**kwargs)), None
    optimizer = make_optimizer()
    return optimizer, f(optimizer, **kwargs)


def step_scheduler(scheduler: Any, metric: float | None = None) -> None:
    """One ``scheduler.step()``; a scheduler whose ``step`` takes ``metrics``
    (``ReduceLROnPlateau``, and ``SequentialLR``/``ChainedScheduler``, which pass it
    on) gets ``metric``, the monitored value of the epoch or batch."""
    if _takes_metrics(scheduler.step):
        scheduler.step(metric)
    else:
        scheduler.step()


def _takes_metrics(step: Callable) -> bool:
    try:
        return "metrics" in inspect.signature(step).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): a plain step()
        return False
