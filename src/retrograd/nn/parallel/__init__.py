"""``retrograd.nn.parallel``: PyTorch's import path for data-parallel wrappers.

``DistributedDataParallel`` (data-parallel training over MPI, ``distributed.py``). ``DataParallel`` and
``data_parallel`` (one process splitting a batch across GPUs) can be imported, as scripts do at the top,
and raise a RuntimeError that names the way forward when used."""
from __future__ import annotations

from typing import Any

from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel", "DataParallel", "data_parallel"]

_NOT_YET = {
    "DataParallel": "DataParallel is not available: it splits a batch across GPUs and retrograd runs on the CPU; "
                    "call the module directly",
    "data_parallel": "data_parallel is not available: it splits a batch across GPUs and retrograd runs on the "
                     "CPU; call the module directly",
}


class DataParallel:
    """Placeholder: constructing it raises (see the module docstring)."""

    def __init__(self, module: Any = None, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"retrograd.nn.parallel.{_NOT_YET['DataParallel']}")


def data_parallel(module: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"retrograd.nn.parallel.{_NOT_YET['data_parallel']}")
