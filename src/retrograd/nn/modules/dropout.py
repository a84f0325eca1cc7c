"""``retrograd.nn.modules.dropout``: PyTorch's import path (``torch.nn.modules.dropout``) to the same classes
as ``retrograd.nn``."""
from ..layers import Dropout, Dropout1d, Dropout2d, Dropout3d

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]
