"""Grad mode and anomaly mode: the switches the engine and every op read (``state``).

``state`` holds grad mode (``no_grad``, ``enable_grad``, ``set_grad_enabled``), anomaly mode
(``detect_anomaly``) and the hooks the layers above register (the Tensor class, view history, gradient
observers, final callbacks). ``creation_site`` names the line of user code that created an op, for
anomaly mode's messages. ``engine`` re-exports all of it: import it from there.

Plain Python, no retrograd import: below ``engine``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import traceback
from typing import Any, Callable

class _State:
    """Grad mode and anomaly mode: one object instead of module globals."""

    __slots__ = ("enabled", "anomaly", "tensor_type", "view_history", "grad_observers", "final_callbacks")

    def __init__(self) -> None:
        self.enabled = True
        self.anomaly = False
        self.tensor_type: Any = None  # set by tensor.py
        # set by tensor_inplace.py: (input, gradient, consumer seq) -> (node, gradient), for inputs
        # whose storage's history changed in place (a view whose base was rebased)
        self.view_history: Any = None
        # data-parallel training (nn.parallel): id(leaf) -> callable(leaf), called each time backward has
        # accumulated a gradient into that leaf's .grad; and callables run once when the backward that
        # queued them (``queue_callback``) has finished. None/empty costs nothing.
        self.grad_observers: dict | None = None
        self.final_callbacks: list = []


state = _State()


# --------------------------------------------------------------------------- modes
class _GradModeContext(contextlib.ContextDecorator):
    """Base of ``no_grad``/``enable_grad``: context manager and decorator."""

    mode = True

    def __enter__(self) -> None:
        self._prev = state.enabled
        state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        state.enabled = self._prev

    def __call__(self, func: Callable) -> Callable:  # decorator; a fresh context per call
        mode = self.mode

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            prev = state.enabled
            state.enabled = mode
            try:
                return func(*args, **kwargs)
            finally:
                state.enabled = prev

        return wrapper


class no_grad(_GradModeContext):
    """Disable graph recording: ``with rg.no_grad(): ...`` or ``@rg.no_grad()``."""

    mode = False


class enable_grad(_GradModeContext):
    """Enable graph recording inside a ``no_grad`` region."""

    mode = True


class set_grad_enabled(_GradModeContext):
    """``set_grad_enabled(False)`` works as a call, a context manager or a decorator."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self._prev = state.enabled
        state.enabled = self.mode  # takes effect as a plain call too, like PyTorch

    def __enter__(self) -> None:  # already applied in __init__
        pass


def is_grad_enabled() -> bool:
    return state.enabled


class AnomalyError(RuntimeError):
    """Raised in anomaly mode by the first op producing NaN (forward or backward) or, in the
    forward only, an inf that is not a mask (see ``detect_anomaly``)."""


class detect_anomaly(contextlib.ContextDecorator):
    """Record where each op was created and raise at the first NaN produced by a
    forward or a backward, naming the op, its input shapes and the line of user
    code that created it.

    As PyTorch, the backward check flags NaN only. The forward check (retrograd's
    own) also flags an inf that an op created from finite inputs; an inf carried
    in from an input (an additive ``-inf`` attention mask) or written by
    ``masked_fill(mask, -inf)`` is a mask, not an anomaly, and a ``-inf`` that
    ``softmax`` turns into an exact 0 is healthy."""

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan

    def __enter__(self) -> None:
        self._prev = state.anomaly
        state.anomaly = self.check_nan

    def __exit__(self, *exc: object) -> None:
        state.anomaly = self._prev


def is_anomaly_enabled() -> bool:
    return state.anomaly


def creation_site() -> str:
    """The innermost stack frame outside retrograd's own code, as 'file:line in fn: code'; the
    built-in models (``retrograd/models``, what ``retrograd train`` runs) count as model code."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        path = os.path.abspath(frame.filename)
        if not path.startswith(_PACKAGE_DIR) or path.startswith(_MODELS_DIR):
            return f'File "{frame.filename}", line {frame.lineno}, in {frame.name}: {frame.line}'
    return "<unknown>"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_MODELS_DIR = os.path.join(_PACKAGE_DIR, "models") + os.sep
