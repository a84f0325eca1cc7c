"""``retrograd.nn.modules.linear``: PyTorch's import path (``torch.nn.modules.linear``) to the same classes
as ``retrograd.nn``."""
from ..layers import Linear, Bilinear
from ..containers import Identity

__all__ = ["Linear", "Bilinear", "Identity"]
