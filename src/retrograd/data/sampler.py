"""Samplers: which indices an epoch visits, in which order.

Besides PyTorch's ``__iter__``/``__len__``, every sampler here returns a whole
epoch at once as an int64 array (``epoch_indices``), which the DataLoader
slices into batches without a Python loop. Random samplers record the state
of their generator just before each epoch's draw (``epoch_state``); handing
that back to ``epoch_indices(state)`` redraws exactly the same epoch, which is
how a DataLoader resumes mid-epoch.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence, Sized

import numpy as np

from ..random import Generator, default_generator
from ..tensor import Tensor


class Sampler:
    """Base class: ``__iter__`` over indices; subclasses override ``epoch_indices``."""

    epoch_state: dict | None = None

    def epoch_indices(self, state: dict | None = None) -> np.ndarray:
        """All indices of one epoch as an int64 array."""
        if type(self).__iter__ is Sampler.__iter__:
            raise NotImplementedError(f"{type(self).__name__} must implement __iter__ or epoch_indices")
        return np.fromiter(iter(self), dtype=np.int64)

    def state_dict(self) -> dict | None:
        """What the next epoch's draw starts from (None: nothing random)."""
        return None

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices().tolist())


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def epoch_indices(self, state: dict | None = None) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data_source)


class _RandomBase(Sampler):
    """Shared generator handling. With ``generator=None`` each epoch draws a fresh
    seed from the default generator (``rg.manual_seed``) into a private one, as
    PyTorch does; with a generator, the epoch draws from it directly."""

    generator: Generator | None

    def _epoch_rng(self, state: dict | None) -> np.random.Generator:
        saved = None if state is None else state.get("generator")
        if self.generator is not None:
            if saved is not None:
                self.generator.set_state(saved)
            g = self.generator
        elif saved is not None:
            g = Generator(0)
            g.set_state(saved)
        else:
            g = Generator(int(default_generator.np.integers(2**63 - 1)))
        self.epoch_state = {"generator": g.get_state()}
        return g.np

    def state_dict(self) -> dict:
        return {"generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])


def _check_generator(generator: Any, op: str) -> Generator | None:
    if generator is not None and not isinstance(generator, Generator):
        raise TypeError(f"{op}: generator must be an rg.Generator, got {type(generator).__name__}")
    return generator


class RandomSampler(_RandomBase):
    """A random permutation of the data (``replacement=False``), or
    ``num_samples`` indices drawn uniformly with replacement."""

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None) -> None:
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a boolean value, but got "
                            f"replacement={replacement}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = _check_generator(generator, "RandomSampler")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"RandomSampler: num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def epoch_indices(self, state: dict | None = None) -> np.ndarray:
        rng = self._epoch_rng(state)
        n, k = len(self.data_source), self.num_samples
        if self.replacement:
            return rng.integers(0, n, k, dtype=np.int64)
        # more samples than data: whole permutations, then part of one more (as PyTorch)
        perms = [rng.permutation(n) for _ in range(-(-k // n))]
        return np.concatenate(perms)[:k].astype(np.int64)

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_RandomBase):
    """The given indices in a random order."""

    def __init__(self, indices: Sequence[int], generator: Generator | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.generator = _check_generator(generator, "SubsetRandomSampler")

    def epoch_indices(self, state: dict | None = None) -> np.ndarray:
        return self.indices[self._epoch_rng(state).permutation(len(self.indices))]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(_RandomBase):
    """``num_samples`` indices drawn with probability proportional to ``weights``."""

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator: Generator | None = None) -> None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
            raise ValueError(f"WeightedRandomSampler: num_samples should be a positive integer value, "
                             f"but got num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a boolean value, but got "
                             f"replacement={replacement}")
        w = np.asarray(weights._array if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"WeightedRandomSampler: weights should be a 1-d sequence but given weights "
                             f"have shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and not all zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: cannot draw {num_samples} samples without replacement "
                             f"from {np.count_nonzero(w)} non-zero weights")
        self.weights = w
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = _check_generator(generator, "WeightedRandomSampler")

    def epoch_indices(self, state: dict | None = None) -> np.ndarray:
        rng = self._epoch_rng(state)
        return rng.choice(len(self.weights), self.num_samples, replace=self.replacement,
                          p=self.weights / self.weights.sum()).astype(np.int64)

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups another sampler's indices into lists of ``batch_size``."""

    def __init__(self, sampler: Sampler | Sequence[int], batch_size: int, drop_last: bool) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got "
                             f"drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def epoch_batches(self, state: dict | None = None) -> list[np.ndarray]:
        """One epoch's batches as int64 arrays (views into one index array)."""
        s = self.sampler
        if isinstance(s, Sampler):
            idx = s.epoch_indices(state)
            self.epoch_state = s.epoch_state
        else:
            idx = np.fromiter(iter(s), dtype=np.int64)
            self.epoch_state = None
        n = len(idx) // self.batch_size * self.batch_size if self.drop_last else len(idx)
        return [idx[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def state_dict(self) -> dict | None:
        return self.sampler.state_dict() if isinstance(self.sampler, Sampler) else None

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self.epoch_batches())

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
