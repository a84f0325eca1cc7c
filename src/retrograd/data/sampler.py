"""Samplers: which indices an epoch visits, in which order.

Besides PyTorch's ``__iter__``/``__len__``, every sampler here yields an epoch
as int64 arrays (``epoch_chunks``), which the DataLoader slices into batches
without a Python loop, or returns it whole (``epoch_indices``). Random samplers
draw at most ``_CHUNK`` indices at a time (whole permutations without
replacement), so ``RandomSampler(data, replacement=True, num_samples=10**10)``
starts at once and holds one chunk; the first chunk is drawn when the epoch
starts, so an epoch of up to ``_CHUNK`` indices is drawn whole then, and a
longer one gives the same indices as one draw would (NumPy's draws do not depend
on how they are split). Random samplers record the state of their generator
just before each epoch's draw (``epoch_state``); handing that back to
``epoch_chunks(state)`` redraws exactly the same epoch, which is how a
DataLoader resumes mid-epoch.
"""
from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator, Sequence, Sized

import numpy as np

from ..random import Generator, default_generator
from ..tensor import Tensor

_CHUNK = 1 << 20   # indices drawn at a time (8 MiB of int64)
_TOLIST = 4096     # indices turned into Python ints at a time by __iter__


def _started(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``chunks`` with its first chunk drawn now (so the epoch's first draw happens when it starts)."""
    first = next(chunks, None)
    if first is None:
        return iter(())

    def rest() -> Iterator[np.ndarray]:
        yield first
        yield from chunks
    return rest()


def _chunks_of(indices: Iterable[int]) -> Iterator[np.ndarray]:
    """Any iterable of indices as int64 chunks, read lazily."""
    it = iter(indices)

    def gen() -> Iterator[np.ndarray]:
        while True:
            c = np.fromiter(islice(it, _CHUNK), dtype=np.int64)
            if not len(c):
                return
            yield c
    return _started(gen())


def chunked_ints(chunks: Iterable[np.ndarray]) -> Iterator[int]:
    """The indices in ``chunks`` as Python ints, converted a few thousand at a time."""
    for c in chunks:
        for i in range(0, len(c), _TOLIST):
            yield from c[i:i + _TOLIST].tolist()


class Sampler:
    """Base class: ``__iter__`` over indices; subclasses override ``epoch_chunks`` or ``epoch_indices``
    (or, as in PyTorch, ``__iter__``)."""

    epoch_state: dict | None = None

    def epoch_chunks(self, state: dict | None = None) -> Iterator[np.ndarray]:
        """One epoch's indices as int64 arrays, the first drawn now, the rest while iterating."""
        if type(self).epoch_indices is not Sampler.epoch_indices:
            return iter([self.epoch_indices(state)])
        if type(self).__iter__ is not Sampler.__iter__:
            return _chunks_of(iter(self))
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__, epoch_chunks or epoch_indices")

    def epoch_indices(self, state: dict | None = None) -> np.ndarray:
        """All indices of one epoch as one int64 array."""
        chunks = list(self.epoch_chunks(state))
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)

    def state_dict(self) -> dict | None:
        """What the next epoch's draw starts from (None: nothing random)."""
        return None

    def __iter__(self) -> Iterator[int]:
        return chunked_ints(self.epoch_chunks())


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def epoch_chunks(self, state: dict | None = None) -> Iterator[np.ndarray]:
        n = len(self.data_source)
        return _started(np.arange(i, min(i + _CHUNK, n), dtype=np.int64) for i in range(0, n, _CHUNK))

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

    def epoch_chunks(self, state: dict | None = None) -> Iterator[np.ndarray]:
        rng = self._epoch_rng(state)
        n, k = len(self.data_source), self.num_samples
        if n == 0:
            raise ValueError(f"RandomSampler: cannot draw {k} samples from an empty data_source")
        if self.replacement:
            return _started(rng.integers(0, n, min(_CHUNK, k - i), dtype=np.int64) for i in range(0, k, _CHUNK))
        return _started(self._permutations(rng, n, k))

    @staticmethod
    def _permutations(rng: np.random.Generator, n: int, k: int) -> Iterator[np.ndarray]:
        """More samples than data: whole permutations, then part of one more (as PyTorch),
        grouped into chunks of about ``_CHUNK``."""
        group, size, left = [], 0, k
        while left > 0:
            p = rng.permutation(n).astype(np.int64, copy=False)[:left]
            group.append(p)
            size += len(p)
            left -= len(p)
            if size >= _CHUNK or left == 0:
                yield group[0] if len(group) == 1 else np.concatenate(group)
                group, size = [], 0

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_RandomBase):
    """The given indices in a random order."""

    def __init__(self, indices: Sequence[int], generator: Generator | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.generator = _check_generator(generator, "SubsetRandomSampler")

    def epoch_chunks(self, state: dict | None = None) -> Iterator[np.ndarray]:
        return iter([self.indices[self._epoch_rng(state).permutation(len(self.indices))]])

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

    def epoch_chunks(self, state: dict | None = None) -> Iterator[np.ndarray]:
        rng = self._epoch_rng(state)
        p = self.weights / self.weights.sum()
        if not self.replacement:  # at most len(weights) samples
            return iter([rng.choice(len(p), self.num_samples, replace=False, p=p).astype(np.int64)])
        # what rng.choice(len(p), k, p=p) does, a chunk at a time: the same indices for any split
        cdf = p.cumsum()
        cdf /= cdf[-1]
        k = self.num_samples
        return _started(cdf.searchsorted(rng.random(min(_CHUNK, k - i)), side="right").astype(np.int64)
                        for i in range(0, k, _CHUNK))

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

    def iter_epoch_batches(self, state: dict | None = None) -> Iterator[np.ndarray]:
        """One epoch's batches as int64 arrays (views into the sampler's chunks), made while iterating."""
        s = self.sampler
        if isinstance(s, Sampler):
            chunks = s.epoch_chunks(state)
            self.epoch_state = s.epoch_state
        else:
            chunks = _chunks_of(s)
            self.epoch_state = None
        return self._batches(chunks)

    def _batches(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        bs, carry = self.batch_size, None
        for c in chunks:
            if carry is not None and len(carry):
                c = np.concatenate([carry, c])
            m = len(c) // bs * bs
            for i in range(0, m, bs):
                yield c[i:i + bs]
            carry = c[m:]
        if carry is not None and len(carry) and not self.drop_last:
            yield carry

    def epoch_batches(self, state: dict | None = None) -> list[np.ndarray]:
        """One epoch's batches as a list of int64 arrays."""
        return list(self.iter_epoch_batches(state))

    def state_dict(self) -> dict | None:
        return self.sampler.state_dict() if isinstance(self.sampler, Sampler) else None

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self.iter_epoch_batches())

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
