"""``retrograd.utils``: PyTorch's ``torch.utils`` import paths. ``retrograd.utils.data`` is
``retrograd.data`` under the name PyTorch programs import (``from torch.utils.data import DataLoader``)."""
from . import data

__all__ = ["data"]
