"""``retrograd.nn.modules.module``: PyTorch's import path (``torch.nn.modules.module``) to the same classes
as ``retrograd.nn``."""
from ..module import Module, Parameter

__all__ = ["Module", "Parameter"]
