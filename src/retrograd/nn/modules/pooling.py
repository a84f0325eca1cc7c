"""``retrograd.nn.modules.pooling``: PyTorch's import path (``torch.nn.modules.pooling``) to the same classes
as ``retrograd.nn``."""
from ..pooling import MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d"]
