"""``retrograd.nn.modules.conv``: PyTorch's import path (``torch.nn.modules.conv``) to the same classes
as ``retrograd.nn``."""
from ..conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, _ConvNd, _ConvTransposeNd

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "_ConvNd", "_ConvTransposeNd"]
