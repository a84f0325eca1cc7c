"""``DataLoader``: batches from a dataset, in this process or in worker processes (``num_workers``,
see ``workers.py``), with exact resume.

For a dataset with ``get_batch`` (``TensorDataset``, the real-data loaders,
``Subset``/``ConcatDataset`` of them) and no ``collate_fn``, each batch is one
fancy-index per array; otherwise samples are fetched one by one and collated
with ``collate_fn`` (``default_collate`` by default).

``state_dict()`` records (epoch, batches already served in that epoch, sampler
RNG state at the start of that epoch); ``load_state_dict`` makes the next
``iter(loader)`` redraw that epoch's order and serve exactly the remaining
batches, after which later epochs continue as they would have.
"""
from __future__ import annotations

import copy
import warnings
from itertools import islice, repeat
from typing import Any, Callable, Iterator

import numpy as np

from ..random import Generator
from .collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, chunked_ints
from .workers import MultiProcessIter, fetch_map, resolve_context


class DataLoader:
    """Iterate over ``dataset`` in batches, with PyTorch's arguments.

    Each ``iter(loader)`` is one epoch; ``len(loader)`` the number of batches in it. With
    ``num_workers > 0`` batches are fetched and collated in worker processes (``workers.py``): the same
    batches in the same order as ``num_workers=0`` for a map-style dataset. ``pin_memory`` has nothing to
    pin on the CPU (torch warns the same way without an accelerator).
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | None = None, batch_sampler: Any = None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn: Callable | None = None, multiprocessing_context: Any = None,
                 generator: Generator | None = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "", in_order: bool = True) -> None:
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None:
            if num_workers == 0:
                raise ValueError(f"multiprocessing_context can only be used with multi-process loading "
                                 f"(num_workers > 0), but got num_workers={num_workers}")
            resolve_context(multiprocessing_context)  # fail now on a bad start method
        self.num_workers = int(num_workers)
        self.prefetch_factor = prefetch_factor
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.pin_memory_device = pin_memory_device
        self.in_order = in_order
        self._workers_iter: MultiProcessIter | None = None
        self.dataset = dataset
        self.pin_memory = pin_memory
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                                 f"but got shuffle={shuffle}")
            if sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler and "
                                 "batch_sampler options")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if not self._iterable and sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if not self._iterable and batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        self._user_collate = collate_fn is not None
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self._epoch = 0           # epochs finished (or abandoned) so far
        self._batch = 0           # batches served in the current epoch
        self._active = False      # an epoch is in progress
        self._epoch_sampler_state: dict | None = None   # sampler RNG state at this epoch's start
        self._resume: dict | None = None

    # --------------------------------------------------------------- sizes
    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # TypeError when the stream has no length, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """``{"epoch", "batch", "sampler"}``: where the next batch comes from."""
        if self._resume is not None:
            return copy.deepcopy(self._resume)
        if self._active:
            sampler = self._epoch_sampler_state
        else:
            s = self.batch_sampler if self.batch_sampler is not None else self.sampler
            sampler = s.state_dict() if hasattr(s, "state_dict") else None
        return {"epoch": self._epoch, "batch": self._batch, "sampler": copy.deepcopy(sampler)}

    def load_state_dict(self, state: dict) -> None:
        """The next ``iter(self)`` resumes at ``state`` (from ``state_dict``)."""
        missing = {"epoch", "batch", "sampler"} - set(state)
        if missing:
            raise KeyError(f"DataLoader.load_state_dict: state is missing {sorted(missing)}")
        if not isinstance(state["batch"], int) or state["batch"] < 0:
            raise ValueError(f"DataLoader.load_state_dict: batch must be a non-negative int, "
                             f"got {state['batch']!r}")
        self._resume = copy.deepcopy(dict(state))
        self._epoch, self._batch, self._active = int(state["epoch"]), int(state["batch"]), False

    # --------------------------------------------------------------- iteration
    def _plan(self, sampler_state: dict | None) -> Iterator[Any]:
        """The epoch's batches: index arrays (auto-collation) or single indices, made while
        iterating (a sampler draws its first chunk now, the rest on demand)."""
        bs = self.batch_sampler
        if isinstance(bs, BatchSampler):
            batches = bs.iter_epoch_batches(sampler_state)
            self._epoch_sampler_state = copy.deepcopy(bs.epoch_state)
            return batches
        if bs is not None:  # a user's batch sampler: any iterable of index lists
            if sampler_state is not None and hasattr(bs, "load_state_dict"):
                bs.load_state_dict(sampler_state)
            self._epoch_sampler_state = bs.state_dict() if hasattr(bs, "state_dict") else None
            return (np.asarray(b, dtype=np.int64) for b in bs)
        s = self.sampler
        if isinstance(s, Sampler):
            chunks = s.epoch_chunks(sampler_state)
            self._epoch_sampler_state = copy.deepcopy(s.epoch_state)
            return chunked_ints(chunks)
        self._epoch_sampler_state = None
        return (int(i) for i in s)

    def __iter__(self) -> Iterator[Any]:
        if self.pin_memory:
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then device pinned "
                          "memory won't be used.", stacklevel=2)
        if self.num_workers == 0 and self.timeout != 0:
            raise AssertionError("_SingleProcessDataLoaderIter requires timeout == 0")
        if self._resume is not None:
            state, self._resume = self._resume, None
            start, sampler_state = int(state["batch"]), state["sampler"]
        else:
            if self._active:  # the previous epoch was abandoned part-way
                self._epoch += 1
            start, sampler_state = 0, None
        self._batch = start
        self._active = True
        if self.num_workers > 0:
            return self._iter_workers(sampler_state, start)
        if self._iterable:
            return self._iter_stream(start)
        return self._iter_map(self._plan(sampler_state), start)

    def _iter_workers(self, sampler_state: dict | None, start: int) -> MultiProcessIter:
        """Worker processes fetch: map-style tasks are the plan's index batches (from ``start``); an
        iterable dataset's are batch sizes, and the first ``start`` batches are dropped."""
        if self._iterable:
            tasks, skip = repeat(self.batch_size if self._auto_collation else None), start
        else:
            tasks, skip = islice(self._plan(sampler_state), start, None), 0
        it = self._workers_iter
        if self.persistent_workers and it is not None and not it._shutdown:
            it._reset(tasks, skip)
            return it
        it = MultiProcessIter(self, tasks, skip)
        if self.persistent_workers:
            self._workers_iter = it
        return it

    def _fetch(self, index: Any) -> Any:
        return fetch_map(self.dataset, index, self._auto_collation, self.collate_fn, not self._user_collate)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_workers_iter"] = None  # live processes and queues stay with this process
        return state

    def _served(self) -> None:
        self._batch += 1

    def _finished(self) -> None:
        self._epoch += 1
        self._batch = 0
        self._active = False

    def _iter_map(self, batches: Iterator[Any], start: int) -> Iterator[Any]:
        for index in islice(batches, start, None):
            out = self._fetch(index)
            self._served()
            yield out
        self._finished()

    def _iter_stream(self, start: int) -> Iterator[Any]:
        it = iter(self.dataset)
        if self.batch_size is None:
            for k, sample in enumerate(it):
                if k >= start:
                    out = self.collate_fn(sample)
                    self._served()
                    yield out
            self._finished()
            return
        k, buf = 0, []
        for sample in it:
            buf.append(sample)
            if len(buf) == self.batch_size:
                if k >= start:
                    out = self.collate_fn(buf)
                    self._served()
                    yield out
                k, buf = k + 1, []
        if buf and not self.drop_last and k >= start:
            out = self.collate_fn(buf)
            self._served()
            yield out
        self._finished()
