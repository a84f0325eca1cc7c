"""``retrograd.nn.modules.container``: PyTorch's import path (``torch.nn.modules.container``) to the same classes
as ``retrograd.nn``."""
from ..containers import Sequential, ModuleList, ModuleDict, ParameterList

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList"]
