"""``DataLoader(num_workers > 0)``: worker processes that fetch and collate batches, as PyTorch's.

Each worker gets its own index queue; the main process hands out tasks ``(send_idx, index)``
round-robin over the workers that are still active (``prefetch_factor`` tasks per worker in flight)
and yields results in task order (``in_order``), so a map-style dataset gives exactly the batches of
``num_workers=0``. An ``IterableDataset`` is iterated whole in every worker (shard it with
``get_worker_info()``); a worker whose copy runs out is dropped from the rotation, so batches
interleave round-robin as in torch.

Seeding: each ``iter(loader)`` that starts workers draws ``base_seed`` from the loader's generator (or
the default one), after the epoch's sampler order is drawn, so the epoch's batches are those of
``num_workers=0`` (torch draws a base seed on every ``iter`` even without workers; retrograd only when it
starts workers, so a shuffled loader's *later* epochs differ from a ``num_workers=0`` run that shares the
generator); worker ``i`` seeds Python's ``random`` and retrograd's default generator with
``base_seed + i`` and NumPy's global generator with ``SeedSequence([i, base_seed & 0xffffffff,
base_seed >> 32, 0])`` (the state torch's ``_generate_state`` computes), before ``worker_init_fn(i)``.

Errors in a worker come back as ``ExceptionWrapper`` and are raised again in the main process with the
worker's traceback in the message ("Caught ValueError in DataLoader worker process 1. Original
Traceback ..."). Workers stop when the epoch ends (unless ``persistent_workers``), when the iterator
is dropped or garbage collected (an early ``break``), and at interpreter exit.
"""
from __future__ import annotations

import atexit
import itertools
import multiprocessing as mp
import multiprocessing.context as mp_context
import os
import queue
import random
import sys
import traceback
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .. import random as rg_random

CHECK_INTERVAL = 5.0  # seconds between the main process's checks that its workers are still alive
# an idle worker looks for the shutdown event this often: the shutdown's None on its index queue can be lost
# when the garbage collector finalises an iterator in a reference cycle (the queue's feeder thread is
# stopped by its own finaliser first)
WORKER_POLL = 0.1


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: ``id``, ``num_workers``, ``seed`` and
    ``dataset`` (this worker's copy). Read-only, as torch's."""

    __initialized = False

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)
        self.__keys = tuple(kwargs.keys())
        self.__initialized = True

    def __setattr__(self, key: str, val: Any) -> None:
        if self.__initialized:
            raise RuntimeError(f"Cannot assign attributes to {self.__class__.__name__} objects")
        return super().__setattr__(key, val)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={getattr(self, k)}" for k in self.__keys)
        return f"{self.__class__.__name__}({items})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker: its ``WorkerInfo`` (``id``, ``num_workers``, ``seed``, ``dataset``); in the main
    process: None. Use it in ``IterableDataset.__iter__`` or ``worker_init_fn`` to give each worker its shard."""
    return _worker_info


class ExceptionWrapper:
    """An exception and its formatted traceback, carried from a worker to the main process."""

    def __init__(self, exc_info: Any = None, where: str = "in background") -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self) -> None:
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        try:
            exception = self.exc_type(msg)
        except Exception:  # an exception type that wants other arguments
            raise RuntimeError(msg) from None
        try:
            raise exception
        finally:
            del exception  # no frame -> exception -> traceback -> frame cycle keeping the iterator (and workers)


class _KeyErrorMessage(str):
    """KeyError prints its argument with repr(); this keeps the traceback readable."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class _IterableDatasetStopIteration:
    worker_id: int


@dataclass(frozen=True)
class _ResumeIteration:
    """Sent to persistent workers at the start of a new epoch: make a fresh fetcher (a new iterator)."""


def numpy_seed(base_seed: int, worker_id: int) -> np.ndarray:
    """The seed of NumPy's global generator in worker ``worker_id`` (torch's ``_generate_state`` gives the
    same four words: both are NumPy's SeedSequence mixing)."""
    entropy = [worker_id, base_seed & 0xFFFFFFFF, base_seed >> 32, 0]
    return np.random.SeedSequence(entropy).generate_state(4)


# ----------------------------------------------------------------------------- fetching (both paths)
def fetch_map(dataset: Any, index: Any, auto_collation: bool, collate_fn: Callable, use_get_batch: bool) -> Any:
    """One batch (or one sample without auto-collation) of a map-style dataset."""
    if not auto_collation:
        return collate_fn(dataset[index])
    get_batch = getattr(dataset, "get_batch", None) if use_get_batch else None
    if get_batch is not None:
        return get_batch(index)
    return collate_fn([dataset[int(i)] for i in index])


class _IterableFetcher:
    """Pulls ``batch_size`` samples at a time (one without auto-collation) from this worker's iterator."""

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable, drop_last: bool) -> None:
        self.it = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def __call__(self, batch_size: int | None) -> Any:
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.it))
        data = []
        for _ in range(batch_size):
            try:
                data.append(next(self.it))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < batch_size):
            raise StopIteration
        return self.collate_fn(data)


@dataclass
class _Spec:
    """What a worker needs to fetch (sent to it once, at start)."""
    dataset: Any
    iterable: bool
    auto_collation: bool
    collate_fn: Callable
    use_get_batch: bool
    drop_last: bool

    def fetcher(self) -> Callable:
        if self.iterable:
            return _IterableFetcher(self.dataset, self.auto_collation, self.collate_fn, self.drop_last)
        return lambda index: fetch_map(self.dataset, index, self.auto_collation, self.collate_fn,
                                       self.use_get_batch)


def _worker_loop(spec: _Spec, index_queue: Any, result_queue: Any, done_event: Any, base_seed: int,
                 init_fn: Callable | None, worker_id: int, num_workers: int, parent_pid: int) -> None:
    global _worker_info
    try:
        seed = base_seed + worker_id
        random.seed(seed)
        rg_random.manual_seed(seed)
        np.random.seed(numpy_seed(base_seed, worker_id))
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=spec.dataset)
        where = f"in DataLoader worker process {worker_id}"
        init_error = None
        fetch = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetch = spec.fetcher()
        except Exception:
            init_error = ExceptionWrapper(where=where)
        ended = False
        while True:
            try:
                r = index_queue.get(timeout=WORKER_POLL)
            except queue.Empty:
                # shut down, or the main process died (nobody will read our results)
                if done_event.is_set() or os.getppid() != parent_pid:
                    break
                continue
            if isinstance(r, _ResumeIteration):
                result_queue.put((r, None))
                ended = False
                fetch = spec.fetcher()
                continue
            if r is None:  # shutdown
                break
            if done_event.is_set() or ended:
                continue
            idx, index = r
            if init_error is not None:
                data, init_error = init_error, None
            else:
                try:
                    data = fetch(index)
                except StopIteration:
                    if not spec.iterable:
                        data = ExceptionWrapper(where=where)
                    else:
                        data, ended = _IterableDatasetStopIteration(worker_id), True
                except Exception:
                    data = ExceptionWrapper(where=where)
            result_queue.put((idx, data))
            del data, idx, index, r
    except KeyboardInterrupt:
        pass
    if done_event.is_set():
        result_queue.cancel_join_thread()
        result_queue.close()


# ----------------------------------------------------------------------------- the main-process side
def resolve_context(context: Any) -> Any:
    """``multiprocessing_context``: None (the platform default), a start method name or a context object."""
    if context is None:
        return mp.get_context()
    if isinstance(context, str):
        methods = mp.get_all_start_methods()
        if context not in methods:
            raise ValueError(f"multiprocessing_context option should specify a valid start method in "
                             f"{methods!r}, but got multiprocessing_context={context!r}")
        return mp.get_context(context)
    if not isinstance(context, mp_context.BaseContext):
        raise TypeError(f"multiprocessing_context option should be a valid context object or a string "
                        f"specifying the start method, but got multiprocessing_context={context}")
    return context


def check_worker_number(num_workers: int) -> None:
    """torch's warning when a loader asks for more workers than this process may run on CPUs."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus is None or num_workers > cpus:
        suggest = ("DataLoader is not able to compute a suggested max number of worker in current system."
                   if cpus is None else
                   f"Our suggested max number of worker in current system is {cpus}"
                   f"{'' if hasattr(os, 'sched_getaffinity') else ' (`cpuset` is not taken into account)'}, "
                   f"which is smaller than what this DataLoader is going to create.")
        warnings.warn(f"This DataLoader will create {num_workers} worker processes in total. {suggest} Please be "
                      f"aware that excessive worker creation might get DataLoader running slow or even freeze, lower "
                      f"the worker number to avoid potential slowness/freeze if necessary.", stacklevel=3)


_live: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    for it in list(_live):
        it._shutdown_workers()


class MultiProcessIter:
    """The iterator ``iter(loader)`` returns when ``num_workers > 0`` (torch's
    ``_MultiProcessingDataLoaderIter``). ``tasks`` yields what each task fetches (an index batch, a
    single index, or the batch size for an iterable dataset); the first ``skip`` results are dropped
    (exact resume of an iterable dataset)."""

    def __init__(self, loader: Any, tasks: Iterator[Any], skip: int = 0) -> None:
        # a persistent loader keeps this iterator: a weak reference back avoids a cycle that would keep the
        # workers alive until the garbage collector runs
        self._loader = weakref.proxy(loader) if loader.persistent_workers else loader
        self._num_workers = loader.num_workers
        self._prefetch = loader.prefetch_factor
        self._timeout = loader.timeout
        self._in_order = loader.in_order
        self._persistent = loader.persistent_workers
        self._iterable = loader._iterable
        self._shutdown = False
        self._workers: list = []
        if self._prefetch <= 0:
            raise AssertionError("prefetch_factor must be greater than 0 for MultiProcessingDataLoaderIter")
        check_worker_number(self._num_workers)
        ctx = resolve_context(loader.multiprocessing_context)
        self._base_seed = int(rg_random.resolve(loader.generator).integers(2**63 - 1))
        spec = _Spec(loader.dataset, loader._iterable, loader._auto_collation, loader.collate_fn,
                     not loader._user_collate, loader.drop_last)
        self._result_queue = ctx.Queue()
        self._done_event = ctx.Event()
        self._index_queues = []
        for i in range(self._num_workers):
            q = ctx.Queue()
            q.cancel_join_thread()
            w = ctx.Process(target=_worker_loop, args=(spec, q, self._result_queue, self._done_event,
                                                       self._base_seed, loader.worker_init_fn, i,
                                                       self._num_workers, os.getpid()), daemon=True)
            w.start()
            self._index_queues.append(q)
            self._workers.append(w)
        _live.add(self)
        self._reset(tasks, skip, first=True)

    # --------------------------------------------------------------- epochs
    def _reset(self, tasks: Iterator[Any], skip: int = 0, first: bool = False) -> None:
        self._tasks = tasks
        self._skip = skip
        self._send_idx = 0
        self._rcvd_idx = 0
        self._task_info: dict = {}
        self._outstanding = 0
        self._status = [True] * self._num_workers
        self._worker_tasks = [0] * self._num_workers
        self._cycle = itertools.cycle(range(self._num_workers))
        self._finished = False
        if not first:  # persistent workers: fresh fetchers; drop what an abandoned epoch left in flight
            for q in self._index_queues:
                q.put(_ResumeIteration())
            pending = self._num_workers
            while pending > 0:
                idx, _ = self._get()
                if isinstance(idx, _ResumeIteration):
                    pending -= 1
        for _ in range(self._prefetch * self._num_workers):
            self._put_task()

    def __iter__(self) -> "MultiProcessIter":
        return self

    def __len__(self) -> int:
        return len(self._loader)

    def __next__(self) -> Any:
        while True:
            if self._finished:
                raise StopIteration
            try:
                data = self._next_data()
            except StopIteration:
                self._finished = True
                self._loader._finished()
                raise
            if self._skip > 0:
                self._skip -= 1
                continue
            self._loader._served()
            return data

    # --------------------------------------------------------------- tasks and results
    def _put_task(self) -> None:
        try:
            task = next(self._tasks)
        except StopIteration:
            return
        for _ in range(self._num_workers):  # the next active worker
            w = next(self._cycle)
            if self._status[w]:
                if self._in_order or self._worker_tasks[w] < (self._prefetch * self._num_workers) // sum(self._status):
                    break
        else:
            return
        self._index_queues[w].put((self._send_idx, task))
        self._task_info[self._send_idx] = (w,)
        self._worker_tasks[w] += 1
        self._outstanding += 1
        self._send_idx += 1

    def _try_get(self, timeout: float) -> tuple[bool, Any]:
        try:
            return True, self._result_queue.get(timeout=timeout)
        except queue.Empty:
            failed = []
            for i, w in enumerate(self._workers):
                if self._status[i] and not w.is_alive():
                    failed.append(w)
                    self._mark_unavailable(i)
            if failed:
                pids = ", ".join(str(w.pid) for w in failed)
                raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly") from None
            return False, None

    def _get(self) -> Any:
        if self._timeout > 0:
            ok, data = self._try_get(self._timeout)
            if not ok:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")
            return data
        while True:
            ok, data = self._try_get(CHECK_INTERVAL)
            if ok:
                return data

    def _next_data(self) -> Any:
        while True:
            while self._rcvd_idx < self._send_idx:  # skip tasks of workers whose iterable ran out
                info = self._task_info.get(self._rcvd_idx)
                if info and (len(info) == 2 or self._status[info[0]]):
                    break
                self._task_info.pop(self._rcvd_idx, None)
                self._rcvd_idx += 1
            else:
                if not self._persistent:
                    self._shutdown_workers()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:
                w, data = self._task_info.pop(self._rcvd_idx)
                self._rcvd_idx += 1
                return self._process(data, w)
            idx, data = self._get()
            self._outstanding -= 1
            if isinstance(data, _IterableDatasetStopIteration):
                if self._persistent:
                    self._status[data.worker_id] = False
                else:
                    self._mark_unavailable(data.worker_id)
                self._put_task()
                continue
            if idx != self._rcvd_idx:
                if not self._in_order:
                    w = self._task_info.pop(idx)[0]
                    return self._process(data, w)
                self._task_info[idx] += (data,)
            else:
                w = self._task_info.pop(idx)[0]
                self._rcvd_idx += 1
                return self._process(data, w)

    def _process(self, data: Any, worker: int) -> Any:
        self._worker_tasks[worker] -= 1
        self._put_task()
        if isinstance(data, ExceptionWrapper):
            data.reraise()
        return data

    # --------------------------------------------------------------- shutdown
    def _mark_unavailable(self, worker: int) -> None:
        self._index_queues[worker].put(None)
        self._status[worker] = False

    def _shutdown_workers(self) -> None:
        if self._shutdown or not self._workers:
            return
        self._shutdown = True
        try:
            self._done_event.set()
            for i in range(len(self._workers)):
                if self._persistent or self._status[i]:
                    self._mark_unavailable(i)
            for w in self._workers:
                w.join(timeout=CHECK_INTERVAL)
            for q in self._index_queues:
                q.cancel_join_thread()
                q.close()
            self._result_queue.cancel_join_thread()
            self._result_queue.close()
        finally:
            for w in self._workers:
                if w.is_alive():
                    w.terminate()
                    w.join(timeout=CHECK_INTERVAL)
            _live.discard(self)

    def __del__(self) -> None:
        try:
            self._shutdown_workers()
        except Exception:  # interpreter teardown: modules may already be gone
            pass

    def __getstate__(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be pickled")


__all__ = ["WorkerInfo", "get_worker_info"]
