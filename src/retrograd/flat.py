"""Flat parameter and gradient storage: the memory optimizers and data-parallel training share.

``FlatParams(params)`` takes over a list of leaf Tensors of one dtype
(``FlatParams.attach(params)`` groups any list by dtype, one ``FlatParams``
each, in order of first appearance):

- **Parameters.** It allocates one contiguous 1-D buffer ``data`` (the slot
  ``_array``, the name library code uses), copies every parameter's values into
  it and then re-points each parameter's array (``p._array``) at its slice, a view shaped like the parameter (``views[i]``). From then on the
  buffer owns the storage and the parameter's array is a window onto it: one
  whole-buffer NumPy operation (``data -= lr * grad``) updates every parameter,
  and nothing is copied per step.
- **Gradients.** It allocates a matching buffer ``grad`` and sets each
  parameter's ``_gslot`` to its slice (``grad_slots[i]``). The engine's backward
  writes a leaf's new gradient into ``_gslot`` instead of allocating one (and
  accumulates into it afterwards), so ``p.grad.data`` is a view of ``grad`` too.
  A gradient the parameter already had is copied in.
- **Taking back.** The parameters stay ordinary Tensors: a user may rebind
  ``p.data = tensor`` or assign ``p.grad = tensor``. ``sync`` (before an
  optimizer step) and ``sync_grads`` notice it by identity (``p._array is not
  views[i]``) and copy the new values into the buffer (``retake``); an assigned
  gradient is copied into ``grad``. ``sync_grads`` re-points the parameter at
  the buffer; ``sync`` leaves it on its new storage, which ``write_back`` updates
  after the step (as in PyTorch, ``p.data = t`` makes ``p`` and ``t`` share
  storage, and the step changes both).

**Version counters.** Every Tensor carries ``_vc``, a one-element list counting its
in-place changes (``retrograd.versions``: an op's output gets its list on first
need); autograd saves the versions of the inputs a backward rule needs and refuses
to use them once they changed. An optimizer step changes the parameters in place
behind autograd's back (through ``data``), so ``sync`` bumps the counter of every
parameter about to be updated, as PyTorch's in-place ``param.add_()`` does, and
``mark_modified`` does so for other writes (L-BFGS's line search, schedule-free's
train/eval swap). A graph recorded before a step therefore fails loudly instead of
backpropagating through stale values. Outside the Tensor and the engine, this module
is the one that writes ``_gslot`` and ``_vc`` for optimizer memory.

**Data-parallel training.** All gradients of one (param group, dtype) live in
one buffer, so averaging them across processes is one collective call per
buffer, made between ``backward`` and ``step``::

    for g in optimizer.flat_grads():            # FlatParams.sync_grads() of each buffer
        comm.Allreduce(MPI.IN_PLACE, g)
        g /= comm.Get_size()
    optimizer.step()

``sync_grads`` first makes the buffer current (assigned gradients copied in,
parameters without a gradient reading as zeros), so every process reduces
buffers of the same layout, and the step reads the reduced values through the
parameters' ``.grad`` views.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .tensor import Tensor, wrap_array
from .versions import bump, counter

__all__ = ["FlatParams", "give_back_heap", "mark_modified"]

TRIM_BYTES = 8 << 20  # take-overs at least this large give the freed storage back (give_back_heap)
_TRIM: list = []  # [malloc_trim or None], looked up once


def give_back_heap() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim(0)``; about a
    millisecond per 100 MiB of heap). False where the C library has no such call."""
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL(None).malloc_trim)
            _TRIM[0].argtypes, _TRIM[0].restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
            _TRIM.append(None)
    if _TRIM[0] is None:
        return False
    _TRIM[0](0)
    return True


def mark_modified(tensors: Iterable[Tensor]) -> None:
    """Bump the version counters of ``tensors`` after changing their arrays in place
    outside autograd (as PyTorch's in-place ops do), so that a graph that saved
    their old values refuses to backpropagate through them."""
    for t in tensors:
        bump(t)


class FlatParams:
    """Parameters of one dtype as views of one 1-D buffer ``data``, their gradient
    slots as views of a matching buffer ``grad`` (see the module docstring).

    ``params`` the Tensors in buffer order; ``sizes`` their element counts and
    ``offsets`` the cumulative starts (``len(params) + 1`` entries, int64);
    ``views[i]``/``grad_slots[i]`` parameter ``i``'s slices of ``data``/``grad``,
    shaped like it. Treat them as read-only: the methods keep them consistent.
    """

    __slots__ = ("params", "dtype", "sizes", "offsets", "_array", "grad", "views", "grad_slots")

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("FlatParams: got no parameters")
        self.dtype = self.params[0]._array.dtype
        mixed = sorted({str(p._array.dtype) for p in self.params if p._array.dtype != self.dtype})
        if mixed:
            raise ValueError(f"FlatParams: parameters of one dtype expected, got {self.dtype} and {mixed} "
                             "(FlatParams.attach makes one FlatParams per dtype)")
        self.sizes = np.array([p._array.size for p in self.params], dtype=np.int64)
        self.offsets = np.zeros(len(self.params) + 1, dtype=np.int64)
        np.cumsum(self.sizes, out=self.offsets[1:])
        n = int(self.offsets[-1])
        self._array = np.empty(n, self.dtype)
        self.grad = np.zeros(n, self.dtype)
        self.views, self.grad_slots = [], []
        for p, o, s in zip(self.params, self.offsets[:-1].tolist(), self.sizes.tolist()):
            view = self._array[o:o + s].reshape(p._array.shape)
            np.copyto(view, p._array)  # the values first, then the parameter becomes the view
            p._array = view
            counter(p)  # a list of its own now (not versions.FRESH): ``sync`` bumps it in place
            slot = self.grad[o:o + s].reshape(p._array.shape)
            p._gslot = slot
            if p.grad is not None:
                np.copyto(slot, p.grad._array, casting="unsafe")
                p.grad = wrap_array(slot)
            self.views.append(view)
            self.grad_slots.append(slot)
        if n * self._array.itemsize >= TRIM_BYTES:
            give_back_heap()  # the parameters' old arrays (and copied gradients) are free now

    @property
    def data(self) -> np.ndarray:
        """The flat parameter buffer (read-only name for ``_array``)."""
        return self._array

    @classmethod
    def attach(cls, params: Iterable[Tensor]) -> list:
        """Take over ``params``: one instance per dtype, in order of each dtype's first parameter."""
        by_dtype: dict = {}
        for p in params:
            by_dtype.setdefault(p._array.dtype, []).append(p)
        return [cls(ps) for ps in by_dtype.values()]

    def __len__(self) -> int:
        return len(self.params)

    def segment(self, i: int) -> slice:
        """Where parameter ``i`` lies in ``data``, ``grad`` (and any buffer of the same layout)."""
        o = int(self.offsets[i])
        return slice(o, o + int(self.sizes[i]))

    def grad_slot(self, i: int) -> np.ndarray:
        """Parameter ``i``'s slice of ``grad``, where backward writes its gradient (its ``_gslot``)."""
        return self.grad_slots[i]

    # ------------------------------------------------------------------ keeping the views
    def retake(self, i: int, who: str, keep: bool = False) -> None:
        """Parameter ``i``'s ``.data`` was rebound (by the user or another optimizer):
        copy its values into the buffer and make it a view of the buffer again. With
        ``keep`` the parameter keeps its new storage (other tensors may share it, as
        PyTorch's ``p.data = t`` makes ``p`` and ``t`` one storage): ``write_back``
        copies the buffer's values into it after the step."""
        p = self.params[i]
        d = p._array
        if d.shape != self.views[i].shape:
            raise RuntimeError(f"{who}: parameter {i} of its group changed shape from "
                               f"{self.views[i].shape} to {d.shape} after the optimizer was built")
        np.copyto(self.views[i], d, casting="unsafe")
        if not keep:
            p._array = self.views[i]
        p._gslot = self.grad_slots[i]

    def write_back(self) -> None:
        """After a step on ``data``: parameters that kept a rebound storage (``sync``) get
        their new values, so every tensor sharing that storage sees the update, as in PyTorch."""
        for i, p in enumerate(self.params):
            if p._array is not self.views[i]:
                np.copyto(p._array, self.views[i], casting="unsafe")

    def retake_rebound(self, who: str) -> None:
        """``retake`` every parameter whose ``.data`` is no longer its view."""
        for i, p in enumerate(self.params):
            if p._array is not self.views[i]:
                self.retake(i, who)

    def sync(self, who: str) -> np.ndarray | None | bool:
        """Make the buffers current before a step that updates the parameters in
        place: take back rebound parameters, copy in a ``.grad`` that is not a view
        of ``grad``, bump the version counters of the parameters with a gradient
        (those the step updates). Returns None when every parameter has a gradient,
        False when none has, else the boolean mask of those that have one."""
        missing = None
        views, slots = self.views, self.grad_slots
        for i, p in enumerate(self.params):
            if p._array is not views[i]:
                self.retake(i, who, keep=True)  # the step's caller then calls write_back
            g = p.grad
            if g is None:
                if missing is None:
                    missing = []
                missing.append(i)
                continue
            gd = g._array
            if gd is not slots[i]:
                if gd.shape != slots[i].shape:
                    raise RuntimeError(f"{who}.step: the gradient of shape {gd.shape} does not match its "
                                       f"parameter of shape {slots[i].shape}")
                np.copyto(slots[i], gd, casting="unsafe")
            p._vc[0] += 1  # a list: made in __init__
        if missing is None:
            return None
        if len(missing) == len(self.params):
            return False
        has = np.ones(len(self.params), dtype=bool)
        has[missing] = False
        return has

    def sync_grads(self, who: str) -> np.ndarray:
        """The gradient buffer, made current for a collective (an allreduce): a
        gradient assigned by hand is copied in and ``.grad`` becomes a view of the
        buffer, so changing the buffer changes the gradients the next step uses;
        a parameter without a gradient reads as zeros and stays without one."""
        for i, p in enumerate(self.params):
            if p._array is not self.views[i]:
                self.retake(i, who)
            g = p.grad
            slot = self.grad_slots[i]
            if g is None:
                slot[...] = 0
            elif g._array is not slot:
                np.copyto(slot, g._array, casting="unsafe")
                p.grad = wrap_array(slot)
        return self.grad

    def mark_modified(self) -> None:
        """Bump every parameter's version counter after writing ``data`` directly."""
        mark_modified(self.params)
