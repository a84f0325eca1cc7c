"""Data: datasets, samplers, the DataLoader, transforms, and loaders for real
data sets that install without the internet.

``TensorDataset`` and the real-data loaders fetch a whole batch with one
fancy-index per array; ``DataLoader.state_dict()`` allows exact mid-epoch resume.
"""
from . import transforms
from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .bundle import DataFileError
from .idx import IDXError, read_idx, write_idx
from .imagefolder import IMG_EXTENSIONS, ImageFolder, load_image
from .images import FASHION_MNIST_CLASSES, fashion_mnist, mnist_5k
from .inputs import InputSpec
from .packaged import DataNotInstalledError
from .distributed import DistributedSampler
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                      WeightedRandomSampler)
from .tabular import SKLEARN_DATASETS, sklearn_dataset
from .text import CharDataset, Vocabulary, char_dataset, shakespeare, shakespeare_text
from .workers import WorkerInfo, get_worker_info

__all__ = [
    "BatchSampler", "CharDataset", "ConcatDataset", "DataFileError", "DataLoader", "DataNotInstalledError", "Dataset", "DistributedSampler",
    "FASHION_MNIST_CLASSES", "IDXError", "IMG_EXTENSIONS", "ImageFolder", "InputSpec", "IterableDataset", "RandomSampler", "SKLEARN_DATASETS", "Sampler",
    "SequentialSampler", "Subset", "SubsetRandomSampler", "TensorDataset", "Vocabulary",
    "WeightedRandomSampler", "char_dataset", "default_collate", "default_convert", "fashion_mnist", "load_image", "mnist_5k",
    "random_split", "read_idx", "shakespeare", "shakespeare_text", "sklearn_dataset", "transforms",
    "write_idx", "WorkerInfo", "get_worker_info",
]
