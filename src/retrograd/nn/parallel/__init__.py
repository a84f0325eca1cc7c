"""``retrograd.nn.parallel``: PyTorch's import path for data-parallel wrappers.

``DistributedDataParallel``, ``DataParallel`` and ``data_parallel`` are not available yet. They can be
imported, as training scripts do at the top whether or not they run distributed
(``from torch.nn.parallel import DistributedDataParallel as DDP``); using one raises a RuntimeError that
names the way forward."""
from __future__ import annotations

from typing import Any

__all__ = ["DistributedDataParallel", "DataParallel", "data_parallel"]

_NOT_YET = {
    "DistributedDataParallel": "DistributedDataParallel is not available yet in retrograd (data-parallel training "
                               "over MPI is planned); train in one process for now",
    "DataParallel": "DataParallel is not available: it splits a batch across GPUs and retrograd runs on the CPU; "
                    "call the module directly",
    "data_parallel": "data_parallel is not available: it splits a batch across GPUs and retrograd runs on the "
                     "CPU; call the module directly",
}


class DistributedDataParallel:
    """Placeholder: constructing it raises (see the module docstring)."""

    def __init__(self, module: Any = None, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"retrograd.nn.parallel.{_NOT_YET['DistributedDataParallel']}")


class DataParallel:
    """Placeholder: constructing it raises (see the module docstring)."""

    def __init__(self, module: Any = None, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"retrograd.nn.parallel.{_NOT_YET['DataParallel']}")


def data_parallel(module: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"retrograd.nn.parallel.{_NOT_YET['data_parallel']}")
