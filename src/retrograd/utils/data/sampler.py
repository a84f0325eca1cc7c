"""``retrograd.utils.data.sampler``: PyTorch's path (``torch.utils.data.sampler``) to ``retrograd.data.sampler``."""
from ...data.sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                             WeightedRandomSampler)

__all__ = ["BatchSampler", "RandomSampler", "Sampler", "SequentialSampler", "SubsetRandomSampler",
           "WeightedRandomSampler"]
