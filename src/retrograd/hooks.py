"""The one handle every ``register_*_hook`` returns (Tensor, Module and Optimizer hooks).

Hooks live in a dict keyed by the handle's ``id``, in registration order; the
handle removes its own entry. Like ``torch.utils.hooks.RemovableHandle``.
"""
from __future__ import annotations

import itertools


class RemovableHandle:
    """Returned by ``register_*_hook``; ``remove()`` unregisters the hook (also as a context manager)."""

    _ids = itertools.count()

    def __init__(self, hooks: dict) -> None:
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def add_hook(hooks: dict, hook) -> RemovableHandle:
    """Store ``hook`` in ``hooks`` under a new handle's id and return the handle."""
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle
