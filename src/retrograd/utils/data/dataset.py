"""``retrograd.utils.data.dataset``: PyTorch's path (``torch.utils.data.dataset``) to ``retrograd.data.dataset``."""
from ...data.dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split

__all__ = ["ConcatDataset", "Dataset", "IterableDataset", "Subset", "TensorDataset", "random_split"]
