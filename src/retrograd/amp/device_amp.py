"""The deprecated per-device spellings ``torch.cpu.amp`` and ``torch.cuda.amp``: the same
autocast and GradScaler after a FutureWarning, as PyTorch 2.13 (``retrograd.cpu.amp`` and
``retrograd.cuda.amp`` are these namespaces)."""
from __future__ import annotations

import types
import warnings
from typing import Any

from .. import backend as B
from .autocast_mode import autocast as _autocast, custom_bwd as _custom_bwd, custom_fwd as _custom_fwd
from .grad_scaler import GradScaler as _GradScaler


def _namespace(device: str) -> types.ModuleType:
    class autocast(_autocast):
        def __init__(self, enabled: bool = True, dtype: Any = B.bfloat16 if device == "cpu" else B.float16,
                     cache_enabled: bool = True) -> None:
            warnings.warn(f"`torch.{device}.amp.autocast(args...)` is deprecated. Please use "
                          f"`torch.amp.autocast('{device}', args...)` instead.", FutureWarning, stacklevel=2)
            super().__init__(device, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    class GradScaler(_GradScaler):
        def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                     growth_interval: int = 2000, enabled: bool = True) -> None:
            warnings.warn(f"`torch.{device}.amp.GradScaler(args...)` is deprecated. Please use "
                          f"`torch.amp.GradScaler('{device}', args...)` instead.", FutureWarning, stacklevel=2)
            super().__init__(device, init_scale, growth_factor, backoff_factor, growth_interval, enabled)

    def custom_fwd(fwd: Any = None, *, cast_inputs: Any = None) -> Any:
        warnings.warn(f"`torch.{device}.amp.custom_fwd(args...)` is deprecated. Please use "
                      f"`torch.amp.custom_fwd(args..., device_type='{device}')` instead.", FutureWarning, stacklevel=2)
        return _custom_fwd(fwd, device_type=device, cast_inputs=cast_inputs)

    def custom_bwd(bwd: Any = None) -> Any:
        warnings.warn(f"`torch.{device}.amp.custom_bwd(args...)` is deprecated. Please use "
                      f"`torch.amp.custom_bwd(args..., device_type='{device}')` instead.", FutureWarning, stacklevel=2)
        return _custom_bwd(bwd, device_type=device)

    autocast.__qualname__ = autocast.__name__ = "autocast"
    GradScaler.__qualname__ = GradScaler.__name__ = "GradScaler"
    mod = types.ModuleType(f"retrograd.{device}.amp", f"``torch.{device}.amp``: deprecated spellings of "
                           f"retrograd.amp.autocast('{device}') and GradScaler('{device}').")
    mod.autocast, mod.GradScaler = autocast, GradScaler
    if device == "cuda":
        mod.custom_fwd, mod.custom_bwd = custom_fwd, custom_bwd
    return mod


cpu_amp = _namespace("cpu")
cuda_amp = _namespace("cuda")


def _cpu_module() -> types.ModuleType:
    """``torch.cpu``: the CPU is always there (one device); ``amp`` as above."""
    mod = types.ModuleType("retrograd.cpu", "``torch.cpu``: the CPU device module (retrograd runs on the CPU).")
    mod.amp = cpu_amp
    mod.is_available = lambda: True
    mod.device_count = lambda: 1
    mod.synchronize = lambda device=None: None
    mod.current_device = lambda: "cpu"
    return mod


cpu = _cpu_module()
