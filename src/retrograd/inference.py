"""``rg.inference_mode()``: ``no_grad`` for inference, as PyTorch's ``torch.inference_mode``.

A context manager and a decorator (``@rg.inference_mode()`` or bare ``@rg.inference_mode``);
``inference_mode(False)`` turns grad mode on, as PyTorch's does. Inside, no graph is recorded and
``is_inference_mode_enabled()`` is True. Unlike PyTorch, tensors made inside are ordinary tensors
(no "inference tensor" flag): retrograd only skips the recording, which is where the speed comes from."""
from __future__ import annotations

import functools
from typing import Any, Callable

from .engine import state

_inference = [False]


def is_inference_mode_enabled() -> bool:
    return _inference[0]


class inference_mode:  # noqa: N801  (PyTorch's name)
    """Disable graph recording: ``with rg.inference_mode(): ...`` or ``@rg.inference_mode()``."""

    def __new__(cls, mode: Any = True) -> Any:
        if callable(mode) and not isinstance(mode, bool):  # bare @rg.inference_mode
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True) -> None:
        self.mode = bool(mode)
        self._prev: list = []

    def __enter__(self) -> None:
        self._prev.append((state.enabled, _inference[0]))
        state.enabled = not self.mode  # as PyTorch: inference_mode(False) turns grad mode on
        _inference[0] = self.mode

    def __exit__(self, *exc: object) -> None:
        state.enabled, _inference[0] = self._prev.pop()

    def __call__(self, func: Callable) -> Callable:
        mode = self.mode

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with inference_mode(mode):
                return func(*args, **kwargs)

        return wrapper
