"""``retrograd.nn.parallel``: PyTorch's import path for data-parallel wrappers.

``DistributedDataParallel`` and ``DataParallel`` are not available yet: asking for either raises an
AttributeError that says so (so ``hasattr`` answers False and the message names the way forward)."""
from __future__ import annotations

_NOT_YET = {
    "DistributedDataParallel": "DistributedDataParallel is not available yet in retrograd (data-parallel training "
                               "over MPI is planned); train in one process for now",
    "DataParallel": "DataParallel is not available: it splits a batch across GPUs and retrograd runs on the CPU; "
                    "call the module directly",
}


def __getattr__(name: str):
    if name in _NOT_YET:
        raise AttributeError(f"retrograd.nn.parallel.{name}: {_NOT_YET[name]}")
    raise AttributeError(f"module 'retrograd.nn.parallel' has no attribute {name!r}")
