"""``SyncBatchNorm``: batch normalisation whose batch statistics cover the batches of all ranks.

In training, with a process group of more than one rank, the per-channel sums (and the sample
count) are all-reduced to the global mean, then the centred squares to the global (biased)
variance: two all-reduces, the same formulas as one process holding every rank's batch. The
all-reduce is a differentiable op whose backward all-reduces the incoming gradient, so the input
gradient carries every rank's share, as PyTorch's. Otherwise (eval, one rank, no group) it is
``BatchNorm``. ``SyncBatchNorm.convert_sync_batchnorm(module)`` swaps every BatchNorm in a model.

Two switches for a training loop (``retrograd.train.rank_data``): inside ``placeholder_batch()``
this rank's batch is a stand-in (a rank whose part of a short last batch is empty runs one sample
with loss weight 0) and adds nothing to the statistics (its sums and count are multiplied by 0);
inside ``local_statistics()`` every SyncBatchNorm normalises with this rank's batch alone and makes
no collective call (a re-run of one rank's batch, as ``NaNGuard`` does to find a NaN).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from .. import distributed as dist
from ..autograd import Function
from ..creation import tensor
from ..tensor_functions import cat
from ..tensor import Tensor, wrap_array
from .layers import _BatchNorm
from .module import Module
from ..versions import bump

__all__ = ["SyncBatchNorm", "placeholder_batch", "local_statistics"]


class _Mode:
    placeholder = False  # this rank's batch adds nothing to the statistics
    local = False  # no collectives: BatchNorm over this rank's batch


@contextlib.contextmanager
def placeholder_batch(active: bool = True) -> Iterator[None]:
    """While active, this rank's SyncBatchNorm batches count zero samples in the global statistics."""
    old, _Mode.placeholder = _Mode.placeholder, bool(active)
    try:
        yield
    finally:
        _Mode.placeholder = old


@contextlib.contextmanager
def local_statistics() -> Iterator[None]:
    """SyncBatchNorm as BatchNorm over this rank's batch, with no collective call."""
    old, _Mode.local = _Mode.local, True
    try:
        yield
    finally:
        _Mode.local = old


class _AllReduceSum(Function):
    """``sum over ranks of x``; its gradient is the sum over ranks of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = x._array.copy()
        dist.all_reduce(out, dist.ReduceOp.SUM, group=group)
        return wrap_array(out)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        out = np.array(g._array, copy=True)
        dist.all_reduce(out, dist.ReduceOp.SUM, group=ctx.group)
        return wrap_array(out), None


def sync_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None,
                    bias: Tensor | None, momentum: float, eps: float, group: Any) -> Tensor:
    """Training-mode batch norm over the union of all ranks' batches (input ``(N, C, *)``)."""
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    dims = (0,) + tuple(range(2, x.ndim))
    local = x.numel() // c
    sums = x.sum(dims)
    if _Mode.placeholder:
        sums, local = sums * 0.0, 0
    packed = _AllReduceSum.apply(cat([sums, tensor([float(local)], dtype=x.dtype)]), group)
    count = int(round(float(packed._array[-1])))
    if count <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)} "
                         f"on each rank ({count} values per channel over all ranks)")
    mu = (packed[:c] / count).reshape(bshape)
    xc = x - mu
    squares = (xc * xc).sum(dims)
    if _Mode.placeholder:
        squares = squares * 0.0
    var = (_AllReduceSum.apply(squares, group) / count).reshape(bshape)
    y = xc * (var + eps).rsqrt()
    if running_mean is not None:
        rm = running_mean._array
        rm *= (1 - momentum)
        rm += momentum * mu._array.reshape(c).astype(rm.dtype)
        bump(running_mean)
    if running_var is not None:
        rv = running_var._array
        rv *= (1 - momentum)
        rv += momentum * (var._array.reshape(c) * (count / (count - 1))).astype(rv.dtype)
        bump(running_var)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


class SyncBatchNorm(_BatchNorm):
    """``BatchNorm`` for inputs ``(N, C, *)`` (at least 2-D) whose training statistics are taken over
    every rank's batch (``torch.nn.SyncBatchNorm``)."""

    _ranks = (2, 3, 4, 5, 6)
    _shape_text = "(N, C, *)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Any = None, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _batch_norm(self, x: Tensor, rm: Tensor | None, rv: Tensor | None, w: Tensor | None, b: Tensor | None,
                    training: bool, momentum: float, eps: float) -> Tensor:
        if training and not _Mode.local and dist.is_initialized() and dist.get_world_size(self.process_group) > 1:
            return sync_batch_norm(x, rm, rv, w, b, momentum, eps, dist.default_group(self.process_group))
        return super()._batch_norm(x, rm, rv, w, b, training, momentum, eps)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """``module`` with every BatchNorm (1d/2d) replaced by a SyncBatchNorm holding the same
        parameters and statistics (the same Tensors); a BatchNorm given itself comes back converted."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls.__new__(cls)
            Module.__init__(out)
            for k in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
                setattr(out, k, getattr(module, k))
            out.process_group = process_group
            for name, p in module._parameters.items():
                out.register_parameter(name, p)
            for name, b in module._buffers.items():
                out.register_buffer(name, b)
            out.training = module.training
        for name, child in list(module._modules.items()):
            if child is not None:
                out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out
