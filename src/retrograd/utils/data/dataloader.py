"""``retrograd.utils.data.dataloader``: PyTorch's path (``torch.utils.data.dataloader``) to ``retrograd.data``'s
loader."""
from ...data.collate import default_collate, default_convert
from ...data.dataloader import DataLoader

__all__ = ["DataLoader", "default_collate", "default_convert"]
