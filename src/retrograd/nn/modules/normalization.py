"""``retrograd.nn.modules.normalization``: PyTorch's import path (``torch.nn.modules.normalization``) to the same
classes as ``retrograd.nn``."""
from ..layers import LayerNorm, GroupNorm, RMSNorm

__all__ = ["LayerNorm", "GroupNorm", "RMSNorm"]
