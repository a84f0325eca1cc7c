"""``rg.cuda``: PyTorch's ``torch.cuda`` as it answers on a machine without CUDA, so device checks in
real programs (``device = "cuda" if torch.cuda.is_available() else "cpu"``) take the CPU branch.

Queries answer as PyTorch does without CUDA (``is_available()`` False, ``device_count()`` 0, memory
figures 0); seeding and ``empty_cache`` are no-ops as there; calls that need a GPU raise a
RuntimeError that says what to change."""
from __future__ import annotations

from typing import Any

from .devices import unavailable


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def is_initialized() -> bool:
    return False


def is_bf16_supported(including_emulation: bool = True) -> bool:
    return False


def manual_seed(seed: int) -> None:
    """No-op without CUDA (as PyTorch); seed the CPU generator with ``rg.manual_seed``."""


def manual_seed_all(seed: int) -> None:
    """No-op without CUDA (as PyTorch)."""


def seed() -> None:
    """No-op without CUDA (as PyTorch)."""


def seed_all() -> None:
    """No-op without CUDA (as PyTorch)."""


def empty_cache() -> None:
    """No-op without CUDA (as PyTorch)."""


def memory_allocated(device: Any = None) -> int:
    return 0


def max_memory_allocated(device: Any = None) -> int:
    return 0


def memory_reserved(device: Any = None) -> int:
    return 0


def max_memory_reserved(device: Any = None) -> int:
    return 0


def _needs_gpu(name: str):
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise unavailable("cuda", f"cuda.{name}")

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Raises: ``cuda.{name}`` needs a GPU and retrograd runs on the CPU."
    return fn


synchronize = _needs_gpu("synchronize")
current_device = _needs_gpu("current_device")
set_device = _needs_gpu("set_device")
get_device_name = _needs_gpu("get_device_name")
get_device_properties = _needs_gpu("get_device_properties")
get_device_capability = _needs_gpu("get_device_capability")
reset_peak_memory_stats = _needs_gpu("reset_peak_memory_stats")
get_rng_state = _needs_gpu("get_rng_state")
set_rng_state = _needs_gpu("set_rng_state")


class _CudaTensorType(type):
    """``rg.cuda.FloatTensor`` and friends: names that exist, as in PyTorch without CUDA, so that
    ``T = torch.cuda.FloatTensor if cuda else torch.FloatTensor`` runs; no tensor is one of them and
    calling one raises."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return False

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise unavailable("cuda", f"cuda.{cls.__name__}")


FloatTensor = _CudaTensorType("FloatTensor", (), {"__module__": __name__})
DoubleTensor = _CudaTensorType("DoubleTensor", (), {"__module__": __name__})
HalfTensor = _CudaTensorType("HalfTensor", (), {"__module__": __name__})
LongTensor = _CudaTensorType("LongTensor", (), {"__module__": __name__})
IntTensor = _CudaTensorType("IntTensor", (), {"__module__": __name__})
ByteTensor = _CudaTensorType("ByteTensor", (), {"__module__": __name__})
BoolTensor = _CudaTensorType("BoolTensor", (), {"__module__": __name__})
