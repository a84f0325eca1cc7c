"""``retrograd.nn.modules.pixelshuffle``: PyTorch's import path (``torch.nn.modules.pixelshuffle``) to the same
classes as ``retrograd.nn``."""
from ..pooling import PixelShuffle, PixelUnshuffle

__all__ = ["PixelShuffle", "PixelUnshuffle"]
