"""``rg.distributed``: ``torch.distributed``'s names, on MPI through mpi4py.

Launch N processes with the MPI launcher and start the group in each::

    mpiexec -n 4 python train.py          # retrograd.distributed.find_mpiexec() names the launcher

    import retrograd as rg
    import retrograd.distributed as dist
    dist.init_process_group("mpi")        # rank and world size come from MPI
    x = rg.ones(3) * dist.get_rank()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)

- ``group``: ``init_process_group``, ``is_initialized``, ``get_rank``, ``get_world_size``,
  ``destroy_process_group``, ``abort``, ``ReduceOp``, ``Work`` (what ``async_op=True`` returns),
  ``wait_requests`` (a Work's waiting for bare MPI requests: the wait hook, the timeout).
- ``collectives``: ``all_reduce``, ``broadcast``, ``all_gather``, ``all_gather_into_tensor``,
  ``reduce``, ``gather``, ``scatter``, ``barrier``, ``all_gather_object``,
  ``broadcast_object_list`` on Tensors and NumPy arrays, in place.
- ``launch``: ``find_mpiexec``, ``mpi_implementation``, ``mpiexec_command``.

mpi4py (``pip install 'retrograd[distributed]'``) is imported only by ``init_process_group``.
Without it, and outside ``mpiexec``, the group is one process (rank 0 of 1) and every collective
is the identity, so single-process scripts run unchanged. Before ``init_process_group``,
``get_rank``/``get_world_size``/``barrier`` raise PyTorch's ValueError.
"""
from __future__ import annotations

from .collectives import (all_gather, all_gather_into_tensor, all_gather_object, all_reduce, barrier, broadcast,
                          broadcast_object_list, flat_all_reduce, flat_all_reduce_starter, gather, reduce,
                          scatter)
from .group import (DistError, abort, DistTimeoutError, ProcessGroup, ReduceOp, Work, default_group, destroy_process_group,
                    get_backend, get_rank, get_world_size, init_process_group, is_available, is_initialized,
                    is_mpi_available, launched_rank, launched_world_size, set_wait_hook, wait_requests)
from .launch import find_mpiexec, mpi_implementation, mpiexec_command

__all__ = ["is_available", "is_mpi_available", "is_initialized", "init_process_group", "destroy_process_group",
           "get_rank", "get_world_size", "get_backend", "barrier", "ReduceOp", "ProcessGroup", "Work", "DistError",
           "DistTimeoutError", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce", "gather",
           "scatter", "all_gather_object", "broadcast_object_list", "flat_all_reduce", "flat_all_reduce_starter",
           "default_group",
           "launched_world_size", "launched_rank", "set_wait_hook", "wait_requests", "abort", "find_mpiexec", "mpi_implementation", "mpiexec_command"]
