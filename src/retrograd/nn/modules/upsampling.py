"""``retrograd.nn.modules.upsampling``: PyTorch's import path (``torch.nn.modules.upsampling``) to the same classes
as ``retrograd.nn``."""
from ..pooling import Upsample

__all__ = ["Upsample"]
