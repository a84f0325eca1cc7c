"""``retrograd.nn.modules.batchnorm``: PyTorch's import path (``torch.nn.modules.batchnorm``) to the same classes
as ``retrograd.nn``."""
from ..layers import _BatchNorm, BatchNorm1d, BatchNorm2d

__all__ = ["_BatchNorm", "BatchNorm1d", "BatchNorm2d"]
