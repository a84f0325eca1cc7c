"""``retrograd.utils.data``: ``retrograd.data`` under PyTorch's path (``torch.utils.data``); the same
objects, so ``retrograd.utils.data.DataLoader is retrograd.data.DataLoader``."""
from ...data import *  # noqa: F401,F403
from ...data import __all__  # noqa: F401
from . import dataloader, dataset, sampler  # noqa: F401
