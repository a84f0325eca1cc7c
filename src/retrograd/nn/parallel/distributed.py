"""``DistributedDataParallel``: the same model on every rank, gradients averaged over the ranks.

At wrap time the parameters and buffers of rank 0 are broadcast to all ranks. During
``loss.backward()`` gradient averaging overlaps the rest of backward: the gradients live in the
optimizer's flat gradient buffer (``retrograd.flat``; DDP makes one itself for parameters that
have none yet), cut into **buckets**, contiguous slices of at most ``bucket_cap_mb``, taken in
reverse parameter order (the order backward produces gradients). The engine tells DDP each time it
has accumulated a gradient into a parameter (``engine.state.grad_observers``); when every parameter
of a bucket has all its gradient contributions (their number is learnt in the first backward, where
every bucket waits for the end), the bucket's non-blocking ``MPI_Iallreduce`` starts, in place, on
the buffer itself, buckets always in the same order on every rank. When backward finishes
(``engine.queue_callback``) the rest start and all are waited for. So ``.grad`` holds the average
over the ranks when ``backward`` returns, as in PyTorch. The average: with a power-of-two world size N
each bucket is multiplied by 1/N just before its all-reduce starts (as PyTorch's default comm hook
prescales; exact barring subnormals, so bitwise the sum divided by N, and off the critical path
after backward); with other N the reduced sum is divided by N once it arrives (one rounding, as
exact as a division gets).

- ``no_sync()``: backward accumulates locally; the first backward outside it reduces the sum.
- Buffers (BatchNorm running statistics) are broadcast from rank 0 at every forward that will be
  followed by a synchronised backward (``broadcast_buffers=True``), as PyTorch does.
- A parameter that got no gradient raises PyTorch's kind of error at the end of backward, unless
  ``find_unused_parameters=True``: then it reads as zeros in the reduction, and a parameter unused on
  every rank keeps ``.grad`` None (as in PyTorch, so optimizers skip it); which parameters got a
  gradient on some rank takes one small all-reduce after every synchronised backward.
- ``state_dict()`` keys carry the ``module.`` prefix, as PyTorch's.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np

from ... import distributed as dist
from ...engine import is_grad_enabled, queue_callback, state as engine_state
from ...flat import FlatParams
from ...tensor import wrap_array
from ..module import Module

__all__ = ["DistributedDataParallel"]

_UNUSED = ("Expected to have finished reduction in the prior iteration before starting a new one. This error "
           "indicates that your module has parameters that were not used in producing loss. You can enable unused "
           "parameter detection by passing the keyword argument `find_unused_parameters=True` to "
           "`retrograd.nn.parallel.DistributedDataParallel`, and by making sure all `forward` function outputs "
           "participate in calculating loss.")


class _Bucket:
    """A contiguous slice ``buffer[lo:hi]`` of a flat gradient buffer and the parameters in it."""

    __slots__ = ("buffer", "lo", "hi", "members", "pending", "request", "start", "view", "grads")

    def __init__(self, buffer: np.ndarray, lo: int, hi: int, members: list) -> None:
        self.buffer, self.lo, self.hi, self.members = buffer, lo, hi, members
        self.pending = 0
        self.request: Any = None
        self.start: Any = None  # starts the bucket's all-reduce (prepared once per layout)
        self.view: Any = None  # buffer[lo:hi], once the layout is complete
        self.grads: tuple = ()  # (parameter, its gradient slot) of each member, likewise


def _place(slot: np.ndarray) -> tuple[np.ndarray, int]:
    """The flat buffer a gradient slot views, and the slot's element offset in it."""
    base = slot.base if slot.base is not None else slot
    if base.ndim != 1 or not base.flags.c_contiguous or base.dtype != slot.dtype:
        return slot.reshape(-1), 0
    return base, (slot.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // slot.itemsize


# the state DDP updates at every step: plain attributes, set past Module.__setattr__'s checks
_STEP_STATE = frozenset({"_counts", "_next", "_late", "_armed", "_queued", "_ready", "last_wait_s",
                         "last_buckets_started_early"})


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the default process group (see the module
    docstring). ``device_ids``/``output_device``/``dim``/``gradient_as_bucket_view``/``static_graph``
    are accepted for PyTorch's scripts and have no effect (the gradients are always bucket views)."""

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: Any = None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False, **kwargs: Any) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got {type(module).__name__}")
        if kwargs:
            raise TypeError(f"DistributedDataParallel: unexpected keyword arguments {sorted(kwargs)}")
        self.module = module
        self.process_group = dist.default_group(process_group)
        cap = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not cap > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.bucket_bytes_cap = int(cap * 1024 * 1024)
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._index = {id(p): i for i, p in enumerate(self._params)}
        self._observers = dict.fromkeys(self._index, self._on_grad)  # what _arm puts in the engine's table
        self._ready: list[int] | None = None  # per bucket: its member count if it can start early, else -1
        self._expected: list[int] | None = None
        self._counts = [0] * len(self._params)
        self._slots: list = []
        self._buckets: list[_Bucket] = []
        self._bucket_of: list[int] = []
        self._next = 0  # the next bucket to start
        self._armed = False
        self._queued = False
        self._late: list[int] = []
        self.last_wait_s = 0.0  # time the last backward spent waiting for all-reduces after it finished
        self.last_buckets_started_early = 0
        n = self.process_group.size
        # 1/N where multiplying by it is exact (N a power of two): the buckets are prescaled
        self._prescale = 1.0 / n if n > 1 and n & (n - 1) == 0 else None
        bare = [p for p in self._params if getattr(p, "_gslot", None) is None]
        if bare:  # no optimizer owns them yet: a flat gradient buffer of DDP's own (an optimizer may take over)
            FlatParams.attach(bare)
        self._sync_from_rank0([p._array for p in self._params], "parameters")
        self._sync_from_rank0(self._buffer_arrays(), "buffers")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _STEP_STATE:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------ wrap time / forward
    def _buffer_arrays(self) -> list:
        return [b._array for b in self.module.buffers() if b is not None]

    def _sync_from_rank0(self, arrays: list, what: str) -> None:
        """Broadcast ``arrays`` from rank 0, one call per dtype (packed into one buffer)."""
        g = self.process_group
        if g.size == 1 or not arrays:
            return
        by_dtype: dict = {}
        for a in arrays:
            by_dtype.setdefault(a.dtype, []).append(a)
        for dtype, group in by_dtype.items():
            flat = np.concatenate([a.reshape(-1) for a in group]) if len(group) > 1 else group[0].reshape(-1).copy()
            dist.broadcast(flat, src=0, group=g)
            o = 0
            for a in group:
                a[...] = flat[o:o + a.size].reshape(a.shape)
                o += a.size

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        sync = is_grad_enabled() and self.require_backward_grad_sync
        if sync and self.broadcast_buffers:
            self._sync_from_rank0(self._buffer_arrays(), "buffers")
        if sync and self._params:
            self._arm()
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward inside accumulates gradients locally, without communication."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # ------------------------------------------------------------------ buckets
    def _layout(self) -> None:
        """Cut the gradient buffers into buckets (again when an optimizer took the parameters over)."""
        slots = [getattr(p, "_gslot", None) for p in self._params]
        if len(slots) == len(self._slots) and all(a is b for a, b in zip(slots, self._slots)):
            return
        bare = [p for p in self._params if getattr(p, "_gslot", None) is None]
        if bare:
            FlatParams.attach(bare)
            slots = [getattr(p, "_gslot", None) for p in self._params]
        self._slots = slots
        buckets: list[_Bucket] = []
        cur: _Bucket | None = None
        for i in reversed(range(len(self._params))):
            buf, off = _place(slots[i])
            size = slots[i].size
            fits = (cur is not None and cur.buffer is buf and off + size == cur.lo
                    and (cur.hi - off) * buf.itemsize <= self.bucket_bytes_cap)
            if fits:
                cur.lo = off
                cur.members.append(i)
            else:
                cur = _Bucket(buf, off, off + size, [i])
                buckets.append(cur)
        for b in buckets:
            b.view = b.buffer[b.lo:b.hi]
            b.grads = tuple((self._params[i], slots[i]) for i in b.members)
            b.start = dist.flat_all_reduce_starter(b.view, dist.ReduceOp.SUM, self.process_group)
        self._buckets = buckets
        self._ready = None
        self._bucket_of = [0] * len(self._params)
        for k, b in enumerate(buckets):
            for i in b.members:
                self._bucket_of[i] = k

    def _arm(self) -> None:
        """Get ready for the next backward: count gradients from zero, observe the parameters."""
        self._layout()
        self._counts = [0] * len(self._params)
        self._next = 0
        self._late = []
        ready = self._ready
        if ready is None:  # a bucket can start early only when each member's contributions are known and nonzero
            exp = self._expected
            ready = self._ready = [len(b.members) if exp is not None and all(exp[i] > 0 for i in b.members) else -1
                                   for b in self._buckets]
        for b, r in zip(self._buckets, ready):
            b.request = None
            b.pending = r
        obs = engine_state.grad_observers
        if obs is None:
            obs = engine_state.grad_observers = {}
        obs.update(self._observers)
        self._armed = True
        self._queued = False

    def _disarm(self) -> None:
        obs = engine_state.grad_observers
        if obs is not None:
            for k in self._index:
                obs.pop(k, None)
        self._armed = False

    def _on_grad(self, p: Any) -> None:
        """The engine accumulated a gradient into ``p``."""
        if not self._queued:
            queue_callback(self._finish)
            self._queued = True
        i = self._index[id(p)]
        self._counts[i] += 1
        exp = self._expected
        if exp is None:
            return
        k = self._bucket_of[i]
        b = self._buckets[k]
        c = self._counts[i]
        if c == exp[i] and b.pending > 0:
            b.pending -= 1
            if b.pending == 0:
                while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
                    self._start(self._buckets[self._next], self._prescale)
                    self._next += 1
        elif c > exp[i] and b.request is not None:
            self._late.append(i)
        if self._next:  # let MPI progress the started reductions
            r = self._buckets[self._next - 1].request
            if r is not None:
                r.Test()

    def _start(self, b: _Bucket, scale: Any = None) -> None:
        """Start ``b``'s all-reduce, multiplied by ``scale`` first unless it is None."""
        for p, slot in b.grads:  # gradients assigned by hand, or none: into the buffer
            g = p.grad
            if g is None:
                slot[...] = 0
            elif g._array is not slot:
                np.copyto(slot, g._array, casting="unsafe")
                p.grad = wrap_array(slot)
        if scale is not None:
            np.multiply(b.view, scale, out=b.view)
        start = b.start
        b.request = start() if start is not None else None
        b.pending = 0

    def _reduce_rest(self, average: bool = True) -> None:
        """Start the buckets not started yet, wait for all, and finish the average (the end of a
        synchronised backward; ``bench/ddp_allreduce.py`` times it alone, and with ``average``
        False, where the buckets are summed and not scaled)."""
        buckets = self._buckets
        scale = self._prescale if average else None
        for k in range(self._next, len(buckets)):
            self._start(buckets[k], scale)
        self._next = len(buckets)
        t0 = time.perf_counter()
        reqs = [b.request for b in buckets if b.request is not None]
        if reqs:
            dist.wait_requests(reqs, self.process_group.timeout, "DistributedDataParallel all-reduce")
        self.last_wait_s = time.perf_counter() - t0
        n = self.process_group.size
        if average and n > 1 and self._prescale is None:
            for b in buckets:
                np.divide(b.view, n, out=b.view)

    def _finish(self) -> None:
        """End of backward: start what is left, wait for all, average."""
        self._disarm()
        first = self._expected is None
        self.last_buckets_started_early = self._next
        self._reduce_rest()
        n = self.process_group.size
        unused = [i for i, c in enumerate(self._counts) if c == 0]
        if self._late:
            names = sorted({self._names[i] for i in self._late})
            raise RuntimeError(f"DistributedDataParallel: parameters {names} got more gradient contributions in "
                               "this backward than in the first one, after their bucket's all-reduce had started; "
                               "the graph changed between iterations, so their averaged gradients are wrong")
        if unused and not self.find_unused_parameters:
            idx = " ".join(str(i) for i in unused)
            names = ", ".join(self._names[i] for i in unused)
            raise RuntimeError(f"{_UNUSED} Parameter indices which did not receive grad for rank "
                               f"{self.process_group.rank}: {idx}. Parameters: {names}")
        if self.find_unused_parameters and (unused or n > 1):
            # every rank takes part, whether it found unused parameters or not (the ranks may differ)
            used = np.array([c > 0 for c in self._counts], dtype=np.uint8)
            dist.all_reduce(used, dist.ReduceOp.MAX, group=self.process_group)
            for i in unused:
                if used[i]:
                    self._params[i].grad = wrap_array(self._slots[i])
        if first:
            self._expected = list(self._counts)
            self._ready = None

    def __repr__(self) -> str:
        return f"DistributedDataParallel(\n  (module): {self.module!r}\n)"
