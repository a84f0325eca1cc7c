"""``retrograd.nn.modules.sparse``: PyTorch's import path (``torch.nn.modules.sparse``) to the same classes
as ``retrograd.nn``."""
from ..layers import Embedding

__all__ = ["Embedding"]
