"""Collectives on Tensors and NumPy arrays, with ``torch.distributed``'s signatures.

Every call works in place on what it is given (a Tensor's array, or a NumPy array), as PyTorch's
do, and with ``async_op=True`` returns a ``Work`` whose ``wait()`` finishes it; otherwise it returns
None once done. Underneath each is one MPI call (``Iallreduce``, ``Ibcast``, ...) on the group's
communicator; a non-contiguous array goes through a contiguous copy. float16 and bfloat16 have
no MPI type: they are reduced in float32 and rounded once at the end. ``AVG`` is a ``SUM``
divided by the world size. In a single-process group without MPI each call is the identity.

A Tensor is recognised by its ``_array`` (this module sits below Tensor); writing into it bumps
its version counter, as PyTorch's in-place collectives do.
"""
from __future__ import annotations

import functools
import pickle
from typing import Any, Sequence

import numpy as np

from ..versions import bump
from .group import ProcessGroup, ReduceOp, Work, default_group

__all__ = ["all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce", "gather", "scatter",
           "barrier", "all_gather_object", "broadcast_object_list", "flat_all_reduce",
           "flat_all_reduce_starter"]

_UPCAST = {"float16", "bfloat16"}


def _array(x: Any, what: str) -> np.ndarray:
    a = getattr(x, "_array", x)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what}: expected a Tensor or a NumPy array, got {type(x).__name__}")
    return a


def _touched(x: Any) -> None:
    if getattr(x, "_vc", None) is not None:
        bump(x)


def _check_op(op: Any, dtype: np.dtype, what: str) -> str:
    """Raise for an op that does not fit ``dtype``; return the dtype's kind (bfloat16/float16: 'f')."""
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{what}: op must be a ReduceOp (SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR), got {op!r}")
    kind = "f" if dtype.name in _UPCAST else dtype.kind
    if op is ReduceOp.AVG and kind not in "fc":
        raise ValueError(f"{what}: ReduceOp.AVG needs a floating dtype, got {dtype}")
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and kind not in "iub":
        raise ValueError(f"{what}: {op!r} needs an integer or bool dtype, got {dtype}")
    if op in (ReduceOp.MIN, ReduceOp.MAX) and kind == "c":
        raise ValueError(f"{what}: {op!r} is not defined for complex dtype {dtype}")
    return kind


def _mpi_op(op: Any, dtype: np.dtype, what: str) -> Any:
    from mpi4py import MPI
    kind = _check_op(op, dtype, what)
    if kind == "b":  # MPI reduces bools only logically: SUM/MAX/BOR = or, PRODUCT/MIN/BAND = and
        return {ReduceOp.SUM: MPI.LOR, ReduceOp.MAX: MPI.LOR, ReduceOp.BOR: MPI.LOR, ReduceOp.PRODUCT: MPI.LAND,
                ReduceOp.MIN: MPI.LAND, ReduceOp.BAND: MPI.LAND, ReduceOp.BXOR: MPI.LXOR}[op]
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MIN: MPI.MIN,
            ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND, ReduceOp.BOR: MPI.BOR, ReduceOp.BXOR: MPI.BXOR}[op]


def _buf(a: np.ndarray) -> Any:
    """``a`` as an mpi4py buffer spec with an explicit MPI datatype."""
    return [a, a.size, _mpi_type(a.dtype)]


@functools.lru_cache(maxsize=None)
def _mpi_type(dtype: np.dtype) -> Any:
    """The predefined MPI datatype of a NumPy dtype (reductions are defined on predefined types only)."""
    from mpi4py import MPI
    names = {"float32": "FLOAT", "float64": "DOUBLE", "complex64": "C_FLOAT_COMPLEX",
             "complex128": "C_DOUBLE_COMPLEX", "bool": "C_BOOL", "int8": "INT8_T", "int16": "INT16_T",
             "int32": "INT32_T", "int64": "INT64_T", "uint8": "UINT8_T", "uint16": "UINT16_T",
             "uint32": "UINT32_T", "uint64": "UINT64_T"}
    name = names.get(np.dtype(dtype).name)
    if name is None:
        raise TypeError(f"distributed: dtype {dtype} has no MPI type (float16/bfloat16/32/64, complex, "
                        "integers and bool are supported)")
    return getattr(MPI, name)


def _work_buffer(a: np.ndarray) -> np.ndarray:
    """A contiguous array MPI can reduce in place: ``a`` itself where possible."""
    if a.dtype.name in _UPCAST:
        return a.astype(np.float32).ravel()
    if a.flags.c_contiguous:
        return a.reshape(-1)
    return np.ascontiguousarray(a).reshape(-1)


def _finish_into(x: Any, a: np.ndarray, work: np.ndarray, divide: int) -> Any:
    def finish() -> None:
        if divide > 1:
            np.divide(work, divide, out=work, casting="unsafe")
        if not np.shares_memory(work, a):
            np.copyto(a, work.reshape(a.shape), casting="unsafe")
        _touched(x)
    return finish


def _done(work: Work, async_op: bool) -> Work | None:
    if async_op:
        return work
    work.wait()
    return None


def _check_rank(g: ProcessGroup, r: Any, name: str, what: str) -> int:
    if r is None:
        r = 0
    if not isinstance(r, (int, np.integer)) or not 0 <= int(r) < g.size:
        raise ValueError(f"{what}: {name}={r!r} is not a rank of this group of {g.size}")
    return int(r)


def _reduction(tensor: Any, op: Any, g: ProcessGroup, what: str) -> tuple:
    """``(array, MPI op, work buffer)`` for a reduction; the op None in a group without MPI (where
    the reduction is the identity, already done)."""
    a = _array(tensor, what)
    if g.comm is None:
        _check_op(op, a.dtype, what)
        _touched(tensor)
        return a, None, None
    return a, _mpi_op(op, a.dtype, what), _work_buffer(a)


def all_reduce(tensor: Any, op: ReduceOp = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> Work | None:
    """Combine ``tensor`` over all ranks with ``op``; every rank gets the result, in place."""
    g = default_group(group)
    a, mop, w = _reduction(tensor, op, g, "all_reduce")
    if mop is None:
        return _done(Work([], None, None, "all_reduce"), async_op)
    from mpi4py import MPI
    req = g.comm.Iallreduce(MPI.IN_PLACE, _buf(w), mop)
    div = g.size if op is ReduceOp.AVG else 1
    return _done(Work([req], _finish_into(tensor, a, w, div), g.timeout, "all_reduce"), async_op)


def flat_all_reduce(buffer: np.ndarray, op: ReduceOp = ReduceOp.SUM, group: Any = None) -> Any:
    """Start an in-place all-reduce of a contiguous 1-D NumPy ``buffer`` (a slice of a flat gradient
    buffer) and return the bare MPI request, or None in a single-process group. No copies, no
    finishing step: what DistributedDataParallel's buckets use."""
    start = flat_all_reduce_starter(buffer, op, group)
    return None if start is None else start()


def flat_all_reduce_starter(buffer: np.ndarray, op: ReduceOp = ReduceOp.SUM, group: Any = None) -> Any:
    """``flat_all_reduce`` prepared once: a callable that starts it and returns the MPI request (None
    in a single-process group), with the checks and the MPI types done here, not at every call
    (DistributedDataParallel prepares one per bucket)."""
    g = default_group(group)
    if g.comm is None:
        return None
    from mpi4py import MPI
    return functools.partial(g.comm.Iallreduce, MPI.IN_PLACE, _buf(buffer), _mpi_op(op, buffer.dtype,
                                                                                    "flat_all_reduce"))


def broadcast(tensor: Any, src: int | None = None, group: Any = None, async_op: bool = False) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into every other rank's, in place."""
    g = default_group(group)
    src = _check_rank(g, src, "src", "broadcast")
    a = _array(tensor, "broadcast")
    if g.comm is None:
        _touched(tensor)
        return _done(Work([], None, None, "broadcast"), async_op)
    w = _raw(a)
    req = g.comm.Ibcast(_buf(w), root=src)
    return _done(Work([req], _finish_into(tensor, a, w.view(a.dtype), 1), g.timeout, "broadcast"), async_op)


def _raw(a: np.ndarray) -> np.ndarray:
    """A contiguous 1-D array with an MPI type carrying ``a``'s bytes (float16/bfloat16 as uint16)."""
    c = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    return c.view(np.uint16) if a.dtype.name in _UPCAST else c


def _same_shapes(arrays: Sequence[np.ndarray], a: np.ndarray, n: int, what: str, name: str) -> None:
    if len(arrays) != n:
        raise ValueError(f"{what}: {name} must hold one tensor per rank ({n}), got {len(arrays)}")
    for i, b in enumerate(arrays):
        if b.shape != a.shape or b.dtype != a.dtype:
            raise ValueError(f"{what}: {name}[{i}] has shape {b.shape} {b.dtype}, expected {a.shape} {a.dtype}")


def _root_list(g: ProcessGroup, root: int, lst: list | None, a: np.ndarray, what: str, role: str,
               name: str) -> list | None:
    """The arrays of ``lst`` on the root rank (checked: one per rank, shaped like ``a``); None elsewhere,
    where ``lst`` must be empty."""
    if g.rank != root:
        if lst:
            raise ValueError(f"{what}: only rank {root} ({role}) takes a {name}; rank {g.rank} got one")
        return None
    if lst is None:
        raise ValueError(f"{what}: rank {root} ({role}) needs a {name} of {g.size} tensors")
    arrays = [_array(t, what) for t in lst]
    _same_shapes(arrays, a, g.size, what, name)
    return arrays


def _split_into(tensors: list, outs: list, recv: np.ndarray, a: np.ndarray) -> Any:
    """A finishing step that copies ``recv``'s equal parts into ``outs`` (of ``tensors``)."""
    def finish() -> None:
        for t, o, part in zip(tensors, outs, np.split(recv, len(outs))):
            np.copyto(o, part.view(a.dtype).reshape(a.shape))
            _touched(t)
    return finish


def all_gather(tensor_list: list, tensor: Any, group: Any = None, async_op: bool = False) -> Work | None:
    """Every rank's ``tensor`` into ``tensor_list`` (one per rank, in rank order), on every rank."""
    g = default_group(group)
    a = _array(tensor, "all_gather")
    outs = [_array(t, "all_gather") for t in tensor_list]
    _same_shapes(outs, a, g.size, "all_gather", "tensor_list")
    if g.comm is None:
        np.copyto(outs[0], a)
        _touched(tensor_list[0])
        return _done(Work([], None, None, "all_gather"), async_op)
    send = _raw(a)
    recv = np.empty(g.size * send.size, send.dtype)
    req = g.comm.Iallgather(_buf(send), _buf_n(recv, send.size))
    return _done(Work([req], _split_into(tensor_list, outs, recv, a), g.timeout, "all_gather"), async_op)


def _buf_n(a: np.ndarray, count: int) -> Any:
    """A receive/send spec of ``count`` elements per rank."""
    b = _buf(a)
    return [a, count, b[2]]


def all_gather_into_tensor(output_tensor: Any, input_tensor: Any, group: Any = None,
                           async_op: bool = False) -> Work | None:
    """Every rank's ``input_tensor`` stacked (along dim 0, in rank order) into ``output_tensor``."""
    g = default_group(group)
    a = _array(input_tensor, "all_gather_into_tensor")
    o = _array(output_tensor, "all_gather_into_tensor")
    if o.size != a.size * g.size or o.dtype != a.dtype:
        raise ValueError(f"all_gather_into_tensor: output of shape {o.shape} {o.dtype} cannot hold {g.size} "
                         f"inputs of shape {a.shape} {a.dtype}")
    if g.comm is None:
        np.copyto(o, a.reshape(o.shape))
        _touched(output_tensor)
        return _done(Work([], None, None, "all_gather_into_tensor"), async_op)
    send = _raw(a)
    recv = _raw(o)
    req = g.comm.Iallgather(_buf(send), _buf_n(recv, send.size))
    return _done(Work([req], _finish_into(output_tensor, o, recv.view(o.dtype), 1), g.timeout,
                      "all_gather_into_tensor"), async_op)


def reduce(tensor: Any, dst: int | None = None, op: ReduceOp = ReduceOp.SUM, group: Any = None,
           async_op: bool = False) -> Work | None:
    """Combine ``tensor`` over all ranks into rank ``dst``'s ``tensor``; the others keep theirs."""
    g = default_group(group)
    dst = _check_rank(g, dst, "dst", "reduce")
    a, mop, w = _reduction(tensor, op, g, "reduce")
    if mop is None:
        return _done(Work([], None, None, "reduce"), async_op)
    from mpi4py import MPI
    if g.rank == dst:
        req = g.comm.Ireduce(MPI.IN_PLACE, _buf(w), mop, root=dst)
        finish = _finish_into(tensor, a, w, g.size if op is ReduceOp.AVG else 1)
    else:
        req = g.comm.Ireduce(_buf(w), None, mop, root=dst)
        finish = None
    return _done(Work([req], finish, g.timeout, "reduce"), async_op)


def gather(tensor: Any, gather_list: list | None = None, dst: int | None = None, group: Any = None,
           async_op: bool = False) -> Work | None:
    """Every rank's ``tensor`` into rank ``dst``'s ``gather_list`` (one per rank, in rank order);
    the other ranks pass None."""
    g = default_group(group)
    dst = _check_rank(g, dst, "dst", "gather")
    a = _array(tensor, "gather")
    outs = _root_list(g, dst, gather_list, a, "gather", "dst", "gather_list")
    if g.comm is None:
        np.copyto(outs[0], a)
        _touched(gather_list[0])
        return _done(Work([], None, None, "gather"), async_op)
    send = _raw(a)
    if g.rank != dst:
        req = g.comm.Igather(_buf(send), None, root=dst)
        return _done(Work([req], None, g.timeout, "gather"), async_op)
    recv = np.empty(g.size * send.size, send.dtype)
    req = g.comm.Igather(_buf(send), _buf_n(recv, send.size), root=dst)
    return _done(Work([req], _split_into(gather_list, outs, recv, a), g.timeout, "gather"), async_op)


def scatter(tensor: Any, scatter_list: list | None = None, src: int | None = None, group: Any = None,
            async_op: bool = False) -> Work | None:
    """Rank ``src``'s ``scatter_list[i]`` into rank ``i``'s ``tensor``; the other ranks pass None."""
    g = default_group(group)
    src = _check_rank(g, src, "src", "scatter")
    a = _array(tensor, "scatter")
    ins = _root_list(g, src, scatter_list, a, "scatter", "src", "scatter_list")
    if g.comm is None:
        np.copyto(a, ins[0])
        _touched(tensor)
        return _done(Work([], None, None, "scatter"), async_op)
    recv = np.empty_like(_raw(a))
    send = None
    if g.rank == src:
        send = np.concatenate([_raw(b) for b in ins])
        req = g.comm.Iscatter(_buf_n(send, recv.size), _buf(recv), root=src)
    else:
        req = g.comm.Iscatter(None, _buf(recv), root=src)

    def finish() -> None:
        del send_keep[:]
        np.copyto(a, recv.view(a.dtype).reshape(a.shape))
        _touched(tensor)
    send_keep = [send]  # the send buffer lives until the request is done
    return _done(Work([req], finish, g.timeout, "scatter"), async_op)


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    """Wait until every rank of the group has called it."""
    g = default_group(group)
    if g.comm is None:
        return _done(Work([], None, None, "barrier"), async_op)
    return _done(Work([g.comm.Ibarrier()], None, g.timeout, "barrier"), async_op)


def all_gather_object(object_list: list, obj: Any, group: Any = None) -> None:
    """Every rank's picklable ``obj`` into ``object_list`` (one slot per rank, in rank order)."""
    g = default_group(group)
    if len(object_list) != g.size:
        raise ValueError(f"all_gather_object: object_list must have one slot per rank ({g.size}), "
                         f"got {len(object_list)}")
    object_list[:] = [pickle.loads(b) for b in _allgather_bytes(g, pickle.dumps(obj))]


def _allgather_bytes(g: ProcessGroup, data: bytes) -> list[bytes]:
    if g.comm is None:
        return [data]
    sizes = np.zeros(g.size, np.int64)
    Work([g.comm.Iallgather(_buf(np.array([len(data)], np.int64)), _buf_n(sizes, 1))], None, g.timeout,
         "all_gather_object").wait()
    recv = np.empty(int(sizes.sum()), np.uint8)
    displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    from mpi4py import MPI
    Work([g.comm.Iallgatherv([np.frombuffer(data, np.uint8), len(data), MPI.BYTE],
                             [recv, (sizes.astype(int), displs), MPI.BYTE])], None, g.timeout,
         "all_gather_object").wait()
    return [recv[o:o + s].tobytes() for o, s in zip(displs.tolist(), sizes.tolist())]


def broadcast_object_list(object_list: list, src: int | None = None, group: Any = None, device: Any = None) -> None:
    """Rank ``src``'s picklable objects into every rank's ``object_list`` (same length on all ranks)."""
    g = default_group(group)
    src = _check_rank(g, src, "src", "broadcast_object_list")
    if g.comm is None:
        return
    data = pickle.dumps(list(object_list)) if g.rank == src else b""
    n = np.array([len(data)], np.int64)
    Work([g.comm.Ibcast(_buf(n), root=src)], None, g.timeout, "broadcast_object_list").wait()
    buf = np.frombuffer(data, np.uint8).copy() if g.rank == src else np.empty(int(n[0]), np.uint8)
    Work([g.comm.Ibcast(_buf(buf), root=src)], None, g.timeout, "broadcast_object_list").wait()
    got = pickle.loads(buf.tobytes())
    if len(got) != len(object_list):
        raise ValueError(f"broadcast_object_list: rank {src} sent {len(got)} objects, this rank's list has "
                         f"{len(object_list)}")
    object_list[:] = got
