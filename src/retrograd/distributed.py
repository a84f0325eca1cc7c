"""``rg.distributed``: PyTorch's ``torch.distributed`` import path, as it answers in a single process.

retrograd has no process groups yet (data-parallel training over MPI is planned, issue 15), so
``is_available()`` is False (as in a PyTorch build without distributed support) and
``is_initialized()`` False. The names real training scripts import at the top
(``from torch.distributed import init_process_group, destroy_process_group``) exist, so such a script
runs in one process; calling one that needs a process group raises a RuntimeError that says so, and
``get_rank``/``get_world_size``/``barrier`` raise PyTorch's ValueError for an uninitialised group."""
from __future__ import annotations

from typing import Any

__all__ = ["is_available", "is_initialized", "init_process_group", "destroy_process_group", "get_rank",
           "get_world_size", "barrier", "all_reduce"]

_NOT_YET = ("multi-process training is not available yet in retrograd (data-parallel over MPI is planned, "
            "issue 15); run a single process (launch with `python`, not torchrun, so RANK is unset)")
_NO_GROUP = "Default process group has not been initialized, please make sure to call init_process_group."


def is_available() -> bool:
    return False


def is_initialized() -> bool:
    return False


def init_process_group(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError(f"distributed.init_process_group: {_NOT_YET}")


def destroy_process_group(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError(f"distributed.destroy_process_group: no process group to destroy; {_NOT_YET}")


def get_rank(group: Any = None) -> int:
    raise ValueError(_NO_GROUP)


def get_world_size(group: Any = None) -> int:
    raise ValueError(_NO_GROUP)


def barrier(*args: Any, **kwargs: Any) -> None:
    raise ValueError(_NO_GROUP)


def all_reduce(*args: Any, **kwargs: Any) -> None:
    raise ValueError(_NO_GROUP)
