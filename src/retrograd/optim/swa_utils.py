"""Weight averaging: ``AveragedModel`` (SWA, EMA), its averaging functions and
``update_bn``, with ``torch.optim.swa_utils``' semantics."""
from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Iterable

import numpy as np

from ..engine import no_grad
from ..flat import mark_modified
from ..nn.layers import _BatchNorm
from ..nn.module import Module
from ..tensor import Tensor, wrap_array
from .optimizer import lerp_

__all__ = ["AveragedModel", "update_bn", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn", "get_ema_avg_fn",
           "get_swa_avg_fn"]


def _arr(x: Any) -> np.ndarray:
    return x._array if isinstance(x, Tensor) else np.asarray(x)


def _assign(dst: Tensor, value: Any) -> None:
    # torch's copy_: a float result written into an integer buffer truncates towards zero
    np.copyto(dst._array, _arr(value), casting="unsafe")


def _check_decay(decay: float, who: str) -> float:
    if not 0.0 <= float(decay) <= 1.0:
        raise ValueError(f"{who}: invalid decay {decay!r}: expected 0 <= decay <= 1")
    return float(decay)


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """In-place EMA over lists of Tensors: ``ema <- lerp(ema, p, 1 - decay)``
    (``ema <- decay * ema + (1 - decay) * p`` for integer tensors)."""
    decay = _check_decay(decay, "get_ema_multi_avg_fn")

    def ema_update(ema_param_list: list, current_param_list: list, _: Any) -> None:
        for e, p in zip(ema_param_list, current_param_list):
            a, b = _arr(e), _arr(p)
            if np.issubdtype(a.dtype, np.inexact):
                lerp_(a, b.astype(a.dtype, copy=False), 1 - decay)
            else:
                np.copyto(a, a * decay + b * (1 - decay), casting="unsafe")

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    """In-place running mean over lists of Tensors: ``avg <- lerp(avg, p, 1 / (n + 1))``."""

    def swa_update(averaged_param_list: list, current_param_list: list, num_averaged: Any) -> None:
        n = float(_arr(num_averaged))
        for e, p in zip(averaged_param_list, current_param_list):
            a, b = _arr(e), _arr(p)
            if np.issubdtype(a.dtype, np.inexact):
                lerp_(a, b.astype(a.dtype, copy=False), 1 / (n + 1))
            else:
                np.copyto(a, a + (b - a) / (n + 1), casting="unsafe")

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable:
    """``(ema, p, n) -> decay * ema + (1 - decay) * p`` (one Tensor at a time)."""
    decay = _check_decay(decay, "get_ema_avg_fn")

    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable:
    """``(avg, p, n) -> avg + (p - avg) / (n + 1)`` (one Tensor at a time)."""

    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    r"""A copy of ``model`` whose parameters are an average of ``model``'s over time.

    ``update_parameters(model)`` after each (or every few) optimizer steps; with
    :math:`n` the number of models averaged so far (buffer ``n_averaged``)::

        n = 0:   theta_avg <- theta                                  (a copy)
        SWA:     theta_avg <- theta_avg + (theta - theta_avg) / (n + 1)     (default: the running mean)
        EMA:     theta_avg <- decay * theta_avg + (1 - decay) * theta        (get_ema_multi_avg_fn(decay))

    Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
    Generalization" (UAI 2018) for SWA; Polyak & Juditsky (1992) for averaging.
    ``avg_fn(avg, p, n) -> Tensor`` works one parameter at a time,
    ``multi_avg_fn(avg_list, p_list, n)`` in place on lists (per dtype). With
    ``use_buffers`` the buffers (BatchNorm's running stats) are averaged too;
    otherwise they are copied from ``model`` at each update. The wrapped copy
    is ``self.module``, so state-dict keys start with ``module.``, plus
    ``n_averaged``, as in ``torch.optim.swa_utils.AveragedModel``.
    """

    def __init__(self, model: Module, device: Any = None, avg_fn: Callable | None = None,
                 multi_avg_fn: Callable | None = None, use_buffers: bool = False) -> None:
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: expected an rg.nn.Module to average, got {type(model).__name__}")
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: give avg_fn or multi_avg_fn, not both (multi_avg_fn would win)")
        self.module = copy.deepcopy(model)
        self.register_buffer("n_averaged", wrap_array(np.array(0, dtype=np.int64)))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def _tensors(self, model: Module) -> list[Tensor]:
        if self.use_buffers:
            return list(itertools.chain(model.parameters(), model.buffers()))
        return list(model.parameters())

    def update_parameters(self, model: Module) -> None:
        """Fold ``model``'s current parameters (and buffers, with ``use_buffers``) into the average."""
        mine = self._tensors(self.module)
        theirs = self._tensors(model)
        if len(mine) != len(theirs):
            raise ValueError(f"AveragedModel.update_parameters: the model has {len(theirs)} parameters"
                             f"{' and buffers' if self.use_buffers else ''}, the averaged copy {len(mine)}")
        for a, p in zip(mine, theirs):
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"AveragedModel.update_parameters: shapes {tuple(a.shape)} and "
                                 f"{tuple(p.shape)} differ: not the model that was averaged")
        n = int(self.n_averaged._array)
        with no_grad():
            if n == 0:
                for a, p in zip(mine, theirs):
                    _assign(a, p._array)
            else:
                current = [wrap_array(p._array) for p in theirs]
                num = wrap_array(self.n_averaged._array.copy())
                if self.multi_avg_fn is not None or self.avg_fn is None:
                    fn = self.multi_avg_fn or get_swa_multi_avg_fn()
                    groups: dict = {}
                    for a, c in zip(mine, current):
                        groups.setdefault(a._array.dtype, ([], []))
                        groups[a._array.dtype][0].append(a)
                        groups[a._array.dtype][1].append(c)
                    for avg_list, cur_list in groups.values():
                        fn(avg_list, cur_list, num)
                else:
                    for a, c in zip(mine, current):
                        _assign(a, self.avg_fn(wrap_array(a._array), c, num))
            if not self.use_buffers:
                # the buffers are not averaged: keep them in step with the model's
                for b_avg, b_model in zip(self.module.buffers(), model.buffers()):
                    _assign(b_avg, b_model._array)
            self.n_averaged._array[...] += 1
            mark_modified(mine)


def update_bn(loader: Iterable, model: Module, device: Any = None) -> None:
    """Recompute the BatchNorm running statistics of ``model`` with one pass over ``loader``.

    Every BatchNorm's running stats are reset and re-estimated as the plain
    average over the loader's batches (``momentum=None``) in train mode; the
    momenta and the train/eval mode are restored afterwards. An item of
    ``loader`` that is a list or tuple gives its first element as the input.
    A model without BatchNorm is left alone. As ``torch.optim.swa_utils.update_bn``.
    """
    momenta = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    try:
        with no_grad():
            for batch in loader:
                if isinstance(batch, (list, tuple)):
                    batch = batch[0]
                if not isinstance(batch, Tensor):
                    batch = wrap_array(np.asarray(batch))
                model(batch)
    finally:
        for module, momentum in momenta.items():
            module.momentum = momentum
        model.train(was_training)
