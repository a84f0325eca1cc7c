"""optim.scheduling: schedules by name, the defaults a run implies, an optimizer
built with its schedule, and the scheduler step that passes a metric."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import retrograd as rg
from retrograd.optim import lr_scheduler, schedules, scheduling


def _params():
    return [rg.tensor(np.ones(3), requires_grad=True)]


def test_names_classes_first_then_functions_case_insensitive():
    names = scheduling.schedule_names()
    assert names[:2] == ["StepLR", "MultiStepLR"] and "OneCycleLR" in names
    assert names.index("warmup_cosine") > names.index("OneCycleLR")
    assert not {"LambdaLR", "SequentialLR", "ChainedScheduler", "join_schedules"} & set(names)
    assert scheduling.schedule_factory("steplr") is lr_scheduler.StepLR
    assert scheduling.schedule_factory("Warmup_Cosine") is schedules.warmup_cosine
    assert scheduling.is_schedule_function(schedules.warmup_cosine)
    assert not scheduling.is_schedule_function(lr_scheduler.StepLR)
    with pytest.raises(ValueError, match="'cosine' is not one of: StepLR, MultiStepLR, "):
        scheduling.schedule_factory("cosine")


def test_defaults_a_run_implies():
    d = functools.partial(scheduling.schedule_defaults, lr=0.1, total_steps=120, epochs=4)
    assert d("warmup_cosine", {"warmup_steps": 10}) == {"peak_lr": 0.1, "total_steps": 120}
    assert d("cosine_decay", {"init_lr": 0.5}) == {"decay_steps": 120}
    assert d("step_decay", {}) == {"init_lr": 0.1}
    assert d("CosineAnnealingLR", {}) == {"T_max": 4}
    assert d("CosineAnnealingLR", {}, interval="step") == {"T_max": 120}
    assert d("OneCycleLR", {}) == {"max_lr": 0.1, "total_steps": 4}
    assert d("OneCycleLR", {"epochs": 2, "steps_per_epoch": 3}) == {"max_lr": 0.1}
    assert d("StepLR", {}) == {}  # step_size has no default a run implies


def _lrs(opt, scheduler, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.param_groups[0]["params"][0].grad = rg.tensor(np.ones(3))
        opt.step()
        if scheduler is not None:
            scheduling.step_scheduler(scheduler, 1.0)
    return out


def test_a_function_becomes_the_lr_and_a_class_is_built_on_the_optimizer():
    kw = dict(peak_lr=0.1, warmup_steps=3, total_steps=10)
    opt, sched = scheduling.scheduled_optimizer(functools.partial(rg.optim.SGD, _params(), lr=5.0),
                                                "warmup_cosine", **kw)
    assert sched is None and opt.param_groups[0]["lr_schedule"] is not None
    ref = schedules.warmup_cosine(**kw)
    assert _lrs(opt, None, 12) == [ref(t) for t in range(12)]

    opt, sched = scheduling.scheduled_optimizer(functools.partial(rg.optim.SGD, _params(), lr=0.1),
                                                "StepLR", step_size=2, gamma=0.5)
    assert isinstance(sched, lr_scheduler.StepLR) and sched.optimizer is opt
    expect = rg.optim.SGD(_params(), lr=0.1)
    assert _lrs(opt, sched, 6) == _lrs(expect, lr_scheduler.StepLR(expect, step_size=2, gamma=0.5), 6)


def test_step_scheduler_passes_the_metric_where_it_is_wanted():
    opt = rg.optim.SGD(_params(), lr=1.0)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    for metric in (3.0, 3.0, 3.0):
        scheduling.step_scheduler(plateau, metric)
    assert opt.param_groups[0]["lr"] == 0.25  # two epochs without improvement
    opt = rg.optim.SGD(_params(), lr=1.0)
    step = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    scheduling.step_scheduler(step, 123.0)  # no metric wanted: plain step()
    assert opt.param_groups[0]["lr"] == 0.5
