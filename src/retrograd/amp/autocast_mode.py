"""Autocast (``torch.autocast``) on the CPU: inside the region, the ops of PyTorch's CPU
"lower precision" list run in the autocast dtype (bfloat16 by default) and those of its
"fp32" list in float32; every other op runs in its inputs' dtype. Measured against PyTorch
2.13's CPU policy (aten/src/ATen/autocast_mode.cpp) for the ops retrograd has.

``_apply`` (tensor.py) asks ``cast_rule_inputs`` per op; composite functions of the fp32 list
(most losses) are wrapped with ``fp32_op``. CUDA autocast asked for on this CPU-only library
warns and stays off, as PyTorch does without CUDA.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import numpy as np

from .. import backend as B

# PyTorch 2.13 CPU policy, by retrograd rule / function name
LOWER_PRECISION_FP = frozenset({
    "linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "einsum", "tensordot", "prelu",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "scaled_dot_product_attention",
})
FP32 = frozenset({
    "prod", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "margin_ranking_loss",
    "soft_margin_loss", "poisson_nll_loss", "hinge_embedding_loss", "cosine_embedding_loss",
    "triplet_margin_loss", "multi_margin_loss", "multilabel_margin_loss", "ctc_loss", "cdist", "trace",
    "reflection_pad", "replication_pad",
})
_CPU_DTYPES = (B.bfloat16, B.float16)


class _AutocastState:
    """The autocast settings now in force (one object, as ``backend.defaults``)."""

    __slots__ = ("cpu_enabled", "cpu_dtype", "cuda_dtype", "cache_enabled", "depth")

    def __init__(self) -> None:
        self.cpu_enabled = False
        self.cpu_dtype = B.bfloat16
        self.cuda_dtype = B.float16
        self.cache_enabled = True
        self.depth = 0


state = _AutocastState()


def _device_type(device_type: Any) -> str:
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in ("cpu", "cuda", "mps", "xpu", "hpu", "xla", "mtia", "maia", "ipu", "meta"):
        raise RuntimeError(f"Expected one of cpu, cuda, mps, xpu, ... device type at start of device string: "
                           f"{device_type}")
    return device_type


def is_autocast_available(device_type: str) -> bool:
    """Whether autocast can run on ``device_type`` (``torch.amp.is_autocast_available``):
    retrograd has the CPU only, but like PyTorch it reports CUDA's policy as available."""
    return _device_type(device_type) in ("cpu", "cuda")


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """``torch.is_autocast_enabled``: without an argument, CUDA's (always off here)."""
    if device_type is None:
        return False
    return state.cpu_enabled if _device_type(device_type) == "cpu" else False


def get_autocast_dtype(device_type: str) -> np.dtype:
    return state.cpu_dtype if _device_type(device_type) == "cpu" else state.cuda_dtype


def set_autocast_enabled(device_type: str, enabled: bool) -> None:
    if _device_type(device_type) == "cpu":
        state.cpu_enabled = bool(enabled)


def set_autocast_dtype(device_type: str, dtype: Any) -> None:
    if _device_type(device_type) == "cpu":
        state.cpu_dtype = B.as_dtype(dtype)
    else:
        state.cuda_dtype = B.as_dtype(dtype)


def is_autocast_cpu_enabled() -> bool:
    warnings.warn("torch.is_autocast_cpu_enabled() is deprecated. Please use torch.is_autocast_enabled('cpu') "
                  "instead.", DeprecationWarning, stacklevel=2)
    return state.cpu_enabled


def get_autocast_cpu_dtype() -> np.dtype:
    warnings.warn("torch.get_autocast_cpu_dtype() is deprecated. Please use torch.get_autocast_dtype('cpu') "
                  "instead.", DeprecationWarning, stacklevel=2)
    return state.cpu_dtype


def is_autocast_cache_enabled() -> bool:
    return state.cache_enabled


def set_autocast_cache_enabled(enabled: bool) -> None:
    state.cache_enabled = bool(enabled)


def clear_autocast_cache() -> None:
    """Nothing to clear: retrograd casts the weights per op (the numbers are the same as with
    PyTorch's cache, which only saves the repeated casts)."""


class autocast:
    """``torch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``: a context
    manager and a decorator. On ``"cpu"`` the region runs PyTorch's CPU autocast policy in
    ``dtype`` (bfloat16 by default; bfloat16 or float16). ``"cuda"`` warns that CUDA is not
    available and leaves autocast off, as PyTorch does on a machine without CUDA."""

    def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        self.device = _device_type(device_type)
        self.fast_dtype = get_autocast_dtype(self.device) if dtype is None else B.as_dtype(dtype)
        self._enabled = bool(enabled)
        self._cache_enabled = state.cache_enabled if cache_enabled is None else bool(cache_enabled)
        if self.device != "cpu":
            if self._enabled:
                warnings.warn(f"{'CUDA' if self.device == 'cuda' else self.device.upper()} is not available or "
                              "torch_xla is imported. Disabling autocast.", UserWarning, stacklevel=2)
            self._enabled = False
        elif self._enabled and self.fast_dtype not in _CPU_DTYPES:
            warnings.warn("In CPU autocast, but the target dtype is not supported. Disabling autocast.\n"
                          "CPU Autocast only supports dtypes of torch.bfloat16, torch.float16 currently.",
                          UserWarning, stacklevel=2)
            self._enabled = False
        self._saved: list = []

    def __enter__(self) -> "autocast":
        self._saved.append((state.cpu_enabled, state.cpu_dtype, state.cache_enabled))
        if self.device == "cpu":
            state.cpu_enabled = self._enabled
            if self._enabled:
                state.cpu_dtype = self.fast_dtype
            state.cache_enabled = self._cache_enabled
        state.depth += 1
        return self

    def __exit__(self, *exc: object) -> bool:
        state.cpu_enabled, state.cpu_dtype, state.cache_enabled = self._saved.pop()
        state.depth -= 1
        return False

    def __call__(self, func: Callable) -> Callable:
        @functools.wraps(func)
        def decorated(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)
        return decorated


def _is_float_tensor(x: Any) -> bool:
    return hasattr(x, "_array") and x._array.dtype.kind in "fV"


def _cast(x: Any, to: np.dtype) -> Any:
    """PyTorch's ``cached_cast``: a floating tensor other than float64 becomes ``to`` (float32 -> the
    autocast dtype for the lower-precision list, bfloat16/float16 -> float32 for the fp32 list);
    anything else passes as it is."""
    if not _is_float_tensor(x):
        return x
    d = x._array.dtype
    if d == to or d == B.float64:
        return x
    return x._cast(to)


def cast_rule_inputs(name: str, ins: tuple) -> tuple:
    """The inputs of rule ``name`` as CPU autocast hands them over (unchanged for other ops)."""
    if name in LOWER_PRECISION_FP:
        return tuple([_cast(t, state.cpu_dtype) for t in ins])
    if name in FP32:
        return tuple([_cast(t, B.float32) for t in ins])
    return ins


def _policy_op(func: Callable, to: Callable[[], np.dtype] | None) -> Callable:
    """``func`` run with autocast off (as PyTorch's kernels run below the autocast key), its floating
    tensor arguments first cast to ``to()`` (``to`` None: cast nothing)."""
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not state.cpu_enabled:
            return func(*args, **kwargs)
        if to is not None:
            d = to()
            args = tuple(_cast(a, d) for a in args)
            kwargs = {key: _cast(v, d) for key, v in kwargs.items()}
        state.cpu_enabled = False
        try:
            return func(*args, **kwargs)
        finally:
            state.cpu_enabled = True
    return run


def outside_autocast(func: Callable) -> Callable:
    """Run composite function ``func`` (on none of PyTorch's lists: one kernel there) with autocast off,
    in its inputs' dtypes, though it is written with ops (matmul, einsum) that autocast would cast."""
    return _policy_op(func, None)


def lower_precision_op(func: Callable) -> Callable:
    """Run composite function ``func`` (of PyTorch's CPU lower-precision list) in the autocast dtype:
    its float32 (and float16) tensor arguments are cast and the body runs with autocast off."""
    return _policy_op(func, lambda: state.cpu_dtype)


def fp32_op(func: Callable) -> Callable:
    """Run composite function ``func`` (of PyTorch's CPU fp32 list) in float32 under autocast:
    its floating tensor arguments of a lower precision are cast to float32 and the body runs
    with autocast off (as PyTorch's kernels run below the autocast key)."""
    return _policy_op(func, lambda: B.float32)


def _cast_nested(value: Any, to: np.dtype) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_nested(v, to) for v in value)
    if isinstance(value, dict):
        return {k: _cast_nested(v, to) for k, v in value.items()}
    return _cast(value, to)


def custom_fwd(fwd: Callable | None = None, *, device_type: str, cast_inputs: Any = None) -> Callable:
    """``torch.amp.custom_fwd`` for a ``Function.forward(ctx, ...)``: with ``cast_inputs`` and autocast
    on, the floating tensor arguments are cast to it and ``forward`` runs with autocast off; the
    autocast state is kept on ``ctx`` for ``custom_bwd``."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)
    _device_type(device_type)

    @functools.wraps(fwd)
    def decorate_fwd(*args: Any, **kwargs: Any) -> Any:
        ctx, on = args[0], is_autocast_enabled(device_type)
        ctx._dtype = get_autocast_dtype(device_type)
        ctx._fwd_used_autocast = on and cast_inputs is None
        if cast_inputs is None or not on:
            return fwd(*args, **kwargs)
        with autocast(device_type, enabled=False):
            to = B.as_dtype(cast_inputs)
            return fwd(ctx, *_cast_nested(args[1:], to), **_cast_nested(kwargs, to))
    return decorate_fwd


def custom_bwd(bwd: Callable | None = None, *, device_type: str) -> Callable:
    """``torch.amp.custom_bwd``: ``backward(ctx, ...)`` runs under the autocast state its forward saw."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)
    _device_type(device_type)

    @functools.wraps(bwd)
    def decorate_bwd(*args: Any, **kwargs: Any) -> Any:
        ctx = args[0]
        with autocast(device_type, enabled=getattr(ctx, "_fwd_used_autocast", False),
                      dtype=getattr(ctx, "_dtype", None)):
            return bwd(*args, **kwargs)
    return decorate_bwd
