"""``retrograd.amp``: automatic mixed precision as ``torch.amp`` (CPU autocast in bfloat16 for
real, CUDA autocast and the CUDA GradScaler a warned no-op). See autocast_mode and grad_scaler."""
from .autocast_mode import autocast, custom_bwd, custom_fwd, is_autocast_available
from .grad_scaler import GradScaler
from . import device_amp

__all__ = ["autocast", "custom_bwd", "custom_fwd", "GradScaler", "is_autocast_available"]
