"""Version counters: how autograd notices that a tensor it saved was changed in place.

Every Tensor has ``_vc``, its storage's version counter: a list ``[n]`` shared by the tensors that
share the storage (views, ``detach()``, a Parameter and the tensor it wraps) and bumped by every
in-place change; a second item marks a storage whose history an in-place op changed
(``tensor_inplace``). A node that reads a tensor records its version and checks it at backward.

An op's fresh output has ``FRESH`` instead, a shared read-only ``(0,)``: most outputs are never
viewed, watched or changed in place, and a list for each would be one more object per op for the
allocator and the cyclic GC to handle (the GC runs a collection per ~700 new objects; a chain of
small ops makes four per op without this). Reading ``t._vc[0]`` or ``len(t._vc)`` needs nothing
special. Code that changes a counter calls ``bump(t)``; code that shares a counter with another
tensor or node, so that it sees later changes, takes ``counter(t)``. Both give the tensor a list of
its own first. A bump written as ``t._vc[0] += 1`` on a fresh tensor fails (a tuple), not silently.

Plain Python, no retrograd import: below ``engine``.
"""
from __future__ import annotations

from typing import Any

FRESH = (0,)


def counter(t: Any) -> list:
    """``t``'s version counter as a list that later changes update (made on first need)."""
    vc = t._vc
    if type(vc) is tuple:  # FRESH (or a copy of it, e.g. unpickled)
        vc = t._vc = [vc[0]]
    return vc


def bump(t: Any) -> None:
    """Count an in-place change of ``t``'s storage."""
    vc = t._vc
    if type(vc) is tuple:
        vc = t._vc = [vc[0]]
    vc[0] += 1
