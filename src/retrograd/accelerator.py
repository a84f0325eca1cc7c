"""``rg.accelerator``: PyTorch's ``torch.accelerator`` on a machine without one (retrograd runs on the
CPU): ``is_available()`` False, ``current_accelerator()`` None, ``device_count()`` 0; calls that need
an accelerator raise a RuntimeError, as PyTorch does there."""
from __future__ import annotations

from typing import Any


def is_available() -> bool:
    return False


def current_accelerator(check_available: bool = False) -> None:
    return None


def device_count() -> int:
    return 0


def _needs_accelerator(name: str):
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"accelerator.{name}: cannot access accelerator device when none is available "
                           "(retrograd runs on the CPU; check rg.accelerator.is_available() first)")

    fn.__name__ = fn.__qualname__ = name
    return fn


current_device_index = current_device_idx = _needs_accelerator("current_device_index")
set_device_index = set_device_idx = _needs_accelerator("set_device_index")
synchronize = _needs_accelerator("synchronize")
empty_cache = _needs_accelerator("empty_cache")
memory_allocated = _needs_accelerator("memory_allocated")
max_memory_allocated = _needs_accelerator("max_memory_allocated")
