"""``DistributedSampler``: each rank's share of an epoch, as ``torch.utils.data.DistributedSampler``.

The epoch's order is ``0..n-1`` or, with ``shuffle``, a permutation drawn from a generator seeded
with ``seed + epoch`` (the same on every rank; call ``set_epoch`` each epoch). PyTorch's rule then
makes it divisible by the number of ranks: ``drop_last`` cuts the tail, otherwise the order is
padded by repeating it from the start; rank ``r`` takes every ``num_replicas``-th index from ``r``.
With ``shuffle=False`` the indices are PyTorch's exactly. With ``shuffle=True`` the rule is
PyTorch's but the permutation comes from retrograd's generator (NumPy's PCG64), not from
``torch.randperm``, so the order differs from PyTorch's for the same seed.

**Global order and resuming.** Consecutive batches of ``B`` on each of ``W`` ranks consume the
epoch's order in consecutive blocks of ``W * B``, whatever ``W`` is. ``state_dict()`` returns
``{"epoch", "seed", "start"}``; ``start`` is a position in the epoch's order counted over all ranks
(``set_start(batches_done * B * W)`` after a checkpoint). The next epoch iterated begins there,
splitting what is left among the ranks, padded or cut as above, so a run can resume mid-epoch on
another number of ranks with the same global sample order; after that epoch ``start`` returns to 0.
"""
from __future__ import annotations

from typing import Any, Iterator, Sized

import numpy as np

from .. import distributed as dist
from ..random import Generator
from .sampler import Sampler

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler):
    """Indices of ``dataset`` for rank ``rank`` of ``num_replicas`` (default: the process group's)."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size()
        if rank is None:
            rank = dist.get_rank()
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.seed = int(seed)
        self.start = 0
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = -(-(n - num_replicas) // num_replicas)
        else:
            self.num_samples = -(-n // num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration gives (the shuffle's seed is ``seed + epoch``)."""
        self.epoch = int(epoch)

    def set_start(self, position: int) -> None:
        """Begin the next epoch iterated at ``position`` of its order, counted over all ranks."""
        if not isinstance(position, (int, np.integer)) or position < 0:
            raise ValueError(f"DistributedSampler.set_start: position must be a non-negative int, got {position!r}")
        self.start = int(position)

    def epoch_order(self, epoch: int | None = None) -> np.ndarray:
        """The whole epoch's order over all ranks, before padding (int64)."""
        n = len(self.dataset)
        e = self.epoch if epoch is None else epoch
        if self.shuffle:
            return Generator(self.seed + e).np.permutation(n).astype(np.int64)
        return np.arange(n, dtype=np.int64)

    def _mine(self, epoch: int, start: int) -> np.ndarray:
        order = self.epoch_order(epoch)
        rest = order[min(start, len(order)):]
        w = self.num_replicas
        if self.drop_last:
            rest = rest[:len(rest) - len(rest) % w]
        elif len(rest) % w:
            pad = w - len(rest) % w
            rest = np.concatenate([rest, np.resize(order, pad)]) if len(order) else rest
        return rest[self.rank::w]

    def epoch_chunks(self, state: dict | None = None) -> Iterator[np.ndarray]:
        if state is not None:
            epoch, start = int(state["epoch"]), int(state.get("start", 0))
        else:
            epoch, start = self.epoch, self.start
        self.epoch_state = {"epoch": epoch, "seed": self.seed, "start": start}
        self.start = 0
        return iter([self._mine(epoch, start)])

    def __iter__(self) -> Iterator[int]:
        return iter(next(self.epoch_chunks()).tolist())

    def __len__(self) -> int:
        if not self.start:
            return self.num_samples
        return len(self._mine(self.epoch, self.start))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed, "start": self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"DistributedSampler.load_state_dict: the state was saved with seed {state['seed']}, "
                             f"this sampler has seed {self.seed}")
        self.epoch = int(state["epoch"])
        self.set_start(int(state.get("start", 0)))
