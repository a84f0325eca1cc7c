"""``retrograd.nn.modules.flatten``: PyTorch's import path (``torch.nn.modules.flatten``) to the same classes
as ``retrograd.nn``."""
from ..containers import Flatten, Unflatten

__all__ = ["Flatten", "Unflatten"]
