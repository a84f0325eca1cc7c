"""Learning-rate schedules as plain functions of the step (Optax, MLX style):
the one place each formula is written (``optim.scheduling`` says how to use them).

Each function here returns a schedule: a callable ``step -> lr`` (``step`` an
int counting optimizer steps from 0, the result a Python float). A schedule is
pure, so it can be evaluated, tested and plotted (``optim.plot_schedule``)
before training, and it is usable as the ``lr`` of any retrograd optimizer::

    sched = rg.optim.schedules.warmup_cosine(1e-3, warmup_steps=500, total_steps=10_000)
    opt = rg.optim.AdamW(model.parameters(), lr=sched)

The optimizer evaluates the schedule at every step (``group["lr"]`` is the lr
the next step uses, ``group["schedule_step"]`` the step count, which the
optimizer's ``state_dict`` saves so that a resumed run continues exactly).

The formulas use the same floating-point operations as the closed forms of the
``torch.optim.lr_scheduler`` classes they correspond to, and
``optim.lr_scheduler`` builds its scheduler objects on them where PyTorch's
numbers allow (PyTorch's chainable schedulers update the lr recursively and
are reproduced as such there).

Every schedule holds its value after its last transition (``cosine_decay``
stays at ``final_lr`` after ``decay_steps``), unlike ``CosineAnnealingLR``
which rises again after ``T_max``.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Callable, Sequence

__all__ = ["Schedule", "constant", "linear_warmup", "linear", "cosine_decay", "warmup_cosine",
           "exponential_decay", "step_decay", "polynomial_decay", "cyclic", "cosine_restarts",
           "linear_onecycle", "cosine_onecycle", "join_schedules"]

Schedule = Callable[[int], float]


def _check_steps(name: str, what: str, n: int, allow_zero: bool = False) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or (n == 0 and not allow_zero):
        need = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name}: {what} must be {need} integer, got {n!r}")


def _named(fn: Schedule, text: str) -> Schedule:
    fn.__qualname__ = fn.__name__ = text.split("(", 1)[0]
    fn.__doc__ = text
    return fn


def constant(lr: float) -> Schedule:
    """``lr`` at every step."""
    lr = float(lr)
    return _named(lambda step: lr, f"constant(lr={lr})")


def linear(start_lr: float, end_lr: float, steps: int) -> Schedule:
    """From ``start_lr`` at step 0 linearly to ``end_lr`` at step ``steps``, then ``end_lr``::

        lr(t) = start_lr + (end_lr - start_lr) * min(t, steps) / steps
    """
    _check_steps("linear", "steps", steps)
    start_lr, end_lr = float(start_lr), float(end_lr)

    def schedule(step: int) -> float:
        return start_lr + (end_lr - start_lr) * min(step, steps) / steps

    return _named(schedule, f"linear(start_lr={start_lr}, end_lr={end_lr}, steps={steps})")


def linear_warmup(peak_lr: float, warmup_steps: int, *, start_lr: float = 0.0) -> Schedule:
    """Linear warmup from ``start_lr`` to ``peak_lr`` over ``warmup_steps``, then ``peak_lr``
    (``LinearLR(start_factor=start_lr / peak_lr, total_iters=warmup_steps)``)."""
    _check_steps("linear_warmup", "warmup_steps", warmup_steps, allow_zero=True)
    if warmup_steps == 0:
        return constant(peak_lr)
    return _named(linear(start_lr, peak_lr, warmup_steps),
                  f"linear_warmup(peak_lr={peak_lr}, warmup_steps={warmup_steps}, start_lr={start_lr})")


def _cosine_value(init_lr: float, final_lr: float, step: float, steps: float) -> float:
    # PyTorch's CosineAnnealingLR closed form, operation for operation
    return final_lr + (init_lr - final_lr) * (1 + math.cos(math.pi * step / steps)) / 2


def cosine_decay(init_lr: float, decay_steps: int, *, final_lr: float = 0.0) -> Schedule:
    """Half a cosine from ``init_lr`` to ``final_lr`` over ``decay_steps``, then ``final_lr``
    (Loshchilov & Hutter, SGDR, 2017; ``CosineAnnealingLR(T_max=decay_steps, eta_min=final_lr)``
    for the first ``decay_steps`` steps)::

        lr(t) = final_lr + (init_lr - final_lr) * (1 + cos(pi * min(t, T) / T)) / 2
    """
    _check_steps("cosine_decay", "decay_steps", decay_steps)
    init_lr, final_lr = float(init_lr), float(final_lr)

    def schedule(step: int) -> float:
        return _cosine_value(init_lr, final_lr, min(step, decay_steps), decay_steps)

    return _named(schedule, f"cosine_decay(init_lr={init_lr}, decay_steps={decay_steps}, final_lr={final_lr})")


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int, *, start_lr: float = 0.0,
                  final_lr: float = 0.0) -> Schedule:
    """Linear warmup from ``start_lr`` to ``peak_lr`` over ``warmup_steps``, then a cosine
    decay to ``final_lr`` at ``total_steps`` (counted from step 0, warmup included),
    then ``final_lr``. As ``SequentialLR([LinearLR, CosineAnnealingLR], [warmup_steps])``."""
    _check_steps("warmup_cosine", "warmup_steps", warmup_steps, allow_zero=True)
    _check_steps("warmup_cosine", "total_steps", total_steps)
    if total_steps <= warmup_steps:
        raise ValueError(f"warmup_cosine: total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    decay = cosine_decay(peak_lr, total_steps - warmup_steps, final_lr=final_lr)
    if warmup_steps == 0:
        return decay
    out = join_schedules([linear(start_lr, peak_lr, warmup_steps), decay], [warmup_steps])
    return _named(out, f"warmup_cosine(peak_lr={peak_lr}, warmup_steps={warmup_steps}, "
                       f"total_steps={total_steps}, start_lr={start_lr}, final_lr={final_lr})")


def exponential_decay(init_lr: float, decay_rate: float, *, transition_steps: int = 1, staircase: bool = False,
                      final_lr: float | None = None) -> Schedule:
    """``init_lr * decay_rate ** (t / transition_steps)`` (``t // transition_steps`` when
    ``staircase``), bounded by ``final_lr`` when given (below it for a decay, above
    for growth). ``ExponentialLR(gamma=decay_rate)`` is ``transition_steps=1``."""
    _check_steps("exponential_decay", "transition_steps", transition_steps)
    if decay_rate <= 0:
        raise ValueError(f"exponential_decay: decay_rate must be positive, got {decay_rate}")
    init_lr, decay_rate = float(init_lr), float(decay_rate)

    def schedule(step: int) -> float:
        if transition_steps == 1:
            e = step
        else:
            e = step // transition_steps if staircase else step / transition_steps
        lr = init_lr * decay_rate ** e
        if final_lr is not None:
            lr = max(lr, final_lr) if decay_rate < 1 else min(lr, final_lr)
        return lr

    return _named(schedule, f"exponential_decay(init_lr={init_lr}, decay_rate={decay_rate}, "
                            f"transition_steps={transition_steps}, staircase={staircase}, final_lr={final_lr})")


def step_decay(init_lr: float, *, step_size: int | None = None, milestones: Sequence[int] | None = None,
               gamma: float = 0.1) -> Schedule:
    """Multiply by ``gamma`` every ``step_size`` steps (``StepLR``) or at each of
    ``milestones`` (``MultiStepLR``; a milestone given twice counts twice)::

        lr(t) = init_lr * gamma ** (t // step_size)
        lr(t) = init_lr * gamma ** (number of milestones <= t)
    """
    if (step_size is None) == (milestones is None):
        raise ValueError("step_decay: give exactly one of step_size and milestones")
    init_lr, gamma = float(init_lr), float(gamma)
    if step_size is not None:
        _check_steps("step_decay", "step_size", step_size)

        def schedule(step: int) -> float:
            return init_lr * gamma ** (step // step_size)

        return _named(schedule, f"step_decay(init_lr={init_lr}, step_size={step_size}, gamma={gamma})")
    ms = sorted(int(m) for m in milestones)

    def schedule(step: int) -> float:
        return init_lr * gamma ** bisect_right(ms, step)

    return _named(schedule, f"step_decay(init_lr={init_lr}, milestones={ms}, gamma={gamma})")


def polynomial_decay(init_lr: float, decay_steps: int, *, final_lr: float = 0.0, power: float = 1.0) -> Schedule:
    """``(init_lr - final_lr) * (1 - min(t, T) / T) ** power + final_lr`` with ``T = decay_steps``
    (``PolynomialLR(total_iters=T, power=power)`` when ``final_lr = 0``)."""
    _check_steps("polynomial_decay", "decay_steps", decay_steps)
    init_lr, final_lr, power = float(init_lr), float(final_lr), float(power)

    def schedule(step: int) -> float:
        return (init_lr - final_lr) * (1.0 - min(decay_steps, step) / decay_steps) ** power + final_lr

    return _named(schedule, f"polynomial_decay(init_lr={init_lr}, decay_steps={decay_steps}, "
                            f"final_lr={final_lr}, power={power})")


# ----------------------------------------------------------------------------- cyclic
def _cyclic_position(step: float, total_size: float, step_ratio: float) -> tuple[int, float]:
    """``(cycle, scale_factor)`` of CyclicLR: the cycle number (from 1) and where in
    the triangle the step is (0 at the base, 1 at the peak)."""
    cycle = math.floor(1 + step / total_size)
    x = 1.0 + step / total_size - cycle
    if x <= step_ratio:
        return cycle, x / step_ratio
    return cycle, (x - 1) / (step_ratio - 1)


def _cyclic_scale_fn(mode: str, gamma: float) -> tuple[Callable[[float], float], str]:
    if mode == "triangular":
        return (lambda x: 1.0), "cycle"
    if mode == "triangular2":
        return (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
    if mode == "exp_range":
        return (lambda x: gamma ** x), "iterations"
    raise ValueError(f"cyclic: mode must be 'triangular', 'triangular2' or 'exp_range', got {mode!r}")


def cyclic(base_lr: float, max_lr: float, step_size_up: int = 2000, step_size_down: int | None = None, *,
           mode: str = "triangular", gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None,
           scale_mode: str = "cycle") -> Schedule:
    """Cyclical learning rate (Smith, "Cyclical Learning Rates for Training Neural
    Networks", WACV 2017), as ``CyclicLR``: a triangle between ``base_lr`` and
    ``max_lr`` rising for ``step_size_up`` steps and falling for ``step_size_down``
    (default: the same), its height scaled by ``scale_fn(cycle)`` or
    ``scale_fn(step)`` (``scale_mode``); ``mode`` picks a built-in ``scale_fn``:
    ``triangular`` (1), ``triangular2`` (halved each cycle), ``exp_range`` (``gamma ** step``)."""
    up = float(step_size_up)
    down = float(step_size_down) if step_size_down is not None else up
    total, ratio = up + down, up / (up + down)
    if scale_fn is None:
        scale_fn, scale_mode = _cyclic_scale_fn(mode, gamma)
    elif scale_mode not in ("cycle", "iterations"):
        raise ValueError(f"cyclic: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
    base_lr, max_lr = float(base_lr), float(max_lr)

    def schedule(step: int) -> float:
        cycle, factor = _cyclic_position(step, total, ratio)
        base_height = (max_lr - base_lr) * factor
        return base_lr + base_height * scale_fn(cycle if scale_mode == "cycle" else step)

    return _named(schedule, f"cyclic(base_lr={base_lr}, max_lr={max_lr}, step_size_up={step_size_up}, "
                            f"step_size_down={step_size_down}, mode={mode!r})")


def _restart_position(step: int, T_0: int, T_mult: int) -> tuple[int, int]:
    """``(T_cur, T_i)`` of SGDR at integer ``step``: steps since the last restart and
    the current period (exact integer arithmetic)."""
    T_i = T_0
    while step >= T_i:
        step -= T_i
        T_i *= T_mult
    return step, T_i


def cosine_restarts(init_lr: float, T_0: int, *, T_mult: int = 1, final_lr: float = 0.0) -> Schedule:
    """Cosine annealing with warm restarts (SGDR; ``CosineAnnealingWarmRestarts``): a
    cosine from ``init_lr`` to ``final_lr`` over ``T_0`` steps, restarted at
    ``init_lr``, each period ``T_mult`` times the previous."""
    _check_steps("cosine_restarts", "T_0", T_0)
    if not isinstance(T_mult, int) or T_mult < 1:
        raise ValueError(f"cosine_restarts: T_mult must be an integer >= 1, got {T_mult!r}")
    init_lr, final_lr = float(init_lr), float(final_lr)

    def schedule(step: int) -> float:
        T_cur, T_i = _restart_position(step, T_0, T_mult)
        return _cosine_value(init_lr, final_lr, T_cur, T_i)

    return _named(schedule, f"cosine_restarts(init_lr={init_lr}, T_0={T_0}, T_mult={T_mult}, final_lr={final_lr})")


# ----------------------------------------------------------------------------- one cycle
def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


_ANNEAL = {"cos": _anneal_cos, "linear": _anneal_linear}


def _onecycle_phases(total_steps: int, pct_start: float, three_phase: bool) -> list[dict]:
    """OneCycleLR's phases, in PyTorch's layout (so its state dicts load): each
    names the end step and the keys of the values it anneals between."""
    up = {"end_step": float(pct_start * total_steps) - 1, "start_lr": "initial_lr", "end_lr": "max_lr",
          "start_momentum": "max_momentum", "end_momentum": "base_momentum"}
    if three_phase:
        return [up,
                {"end_step": float(2 * pct_start * total_steps) - 2, "start_lr": "max_lr", "end_lr": "initial_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
                {"end_step": total_steps - 1, "start_lr": "initial_lr", "end_lr": "min_lr",
                 "start_momentum": "max_momentum", "end_momentum": "max_momentum"}]
    return [up, {"end_step": total_steps - 1, "start_lr": "max_lr", "end_lr": "min_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"}]


def _onecycle_value(step: float, phases: list, values: dict, anneal: Callable, which: str = "lr") -> float:
    """The one-cycle lr (``which="lr"``) or momentum at ``step``; ``values`` maps the
    phases' keys (``initial_lr``, ``max_lr``, ``min_lr``, ``max_momentum``,
    ``base_momentum``) to numbers."""
    start_step = 0.0
    for i, phase in enumerate(phases):
        end_step = phase["end_step"]
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return anneal(values[phase["start_" + which]], values[phase["end_" + which]], pct)
        start_step = end_step
    raise AssertionError("unreachable")


def _onecycle(name: str, anneal: str, max_lr: float, total_steps: int, pct_start: float, div_factor: float,
              final_div_factor: float, three_phase: bool) -> Schedule:
    _check_steps(name, "total_steps", total_steps)
    if not 0 <= pct_start <= 1:
        raise ValueError(f"{name}: pct_start must lie in [0, 1], got {pct_start}")
    initial = max_lr / div_factor
    values = {"initial_lr": initial, "max_lr": max_lr, "min_lr": initial / final_div_factor}
    phases = _onecycle_phases(total_steps, pct_start, three_phase)
    fn = _ANNEAL[anneal]

    def schedule(step: int) -> float:
        return _onecycle_value(min(step, total_steps - 1), phases, values, fn)

    return _named(schedule, f"{name}(max_lr={max_lr}, total_steps={total_steps}, pct_start={pct_start}, "
                            f"div_factor={div_factor}, final_div_factor={final_div_factor}, "
                            f"three_phase={three_phase})")


def cosine_onecycle(max_lr: float, total_steps: int, *, pct_start: float = 0.3, div_factor: float = 25.0,
                    final_div_factor: float = 1e4, three_phase: bool = False) -> Schedule:
    """The 1cycle policy (Smith & Topin, "Super-Convergence", 2018) with cosine
    annealing, as ``OneCycleLR(anneal_strategy="cos")``: from ``max_lr / div_factor``
    up to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then down to
    ``max_lr / div_factor / final_div_factor`` at step ``total_steps - 1``
    (``three_phase``: back to the initial lr first, symmetrically, then down)."""
    return _onecycle("cosine_onecycle", "cos", max_lr, total_steps, pct_start, div_factor, final_div_factor,
                     three_phase)


def linear_onecycle(max_lr: float, total_steps: int, *, pct_start: float = 0.3, div_factor: float = 25.0,
                    final_div_factor: float = 1e4, three_phase: bool = False) -> Schedule:
    """The 1cycle policy with linear annealing, as ``OneCycleLR(anneal_strategy="linear")``
    (see ``cosine_onecycle``)."""
    return _onecycle("linear_onecycle", "linear", max_lr, total_steps, pct_start, div_factor, final_div_factor,
                     three_phase)


# ----------------------------------------------------------------------------- composition
def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]`` restarted at step 0,
    and so on (Optax's ``join_schedules``; ``SequentialLR``'s milestones)::

        lr(t) = schedules[i](t - boundaries[i - 1])   for boundaries[i - 1] <= t < boundaries[i]
    """
    schedules, boundaries = list(schedules), [int(b) for b in boundaries]
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join_schedules: expected one more schedule than boundaries, got {len(schedules)} "
                         f"schedules and {len(boundaries)} boundaries")
    if any(b1 > b2 for b1, b2 in zip(boundaries, boundaries[1:])):
        raise ValueError(f"join_schedules: boundaries must be non-decreasing, got {boundaries}")
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(f"join_schedules: schedules[{i}] is {type(s).__name__}, not a callable step -> lr")
    starts = [0] + boundaries

    def schedule(step: int) -> float:
        i = bisect_right(boundaries, step)
        return float(schedules[i](step - starts[i]))

    return _named(schedule, f"join_schedules(schedules={[getattr(s, '__name__', s) for s in schedules]}, "
                            f"boundaries={boundaries})")
