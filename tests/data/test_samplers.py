import numpy as np
import pytest

import retrograd as rg
from retrograd.data import (BatchSampler, RandomSampler, SequentialSampler, SubsetRandomSampler,
                            WeightedRandomSampler)


def test_sequential_and_batch_sampler():
    s = SequentialSampler(range(7))
    assert list(s) == list(range(7)) and len(s) == 7
    assert list(BatchSampler(s, 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(s, 3, True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(s, 3, False)) == 3 and len(BatchSampler(s, 3, True)) == 2
    assert list(BatchSampler([5, 4, 3], 2, False)) == [[5, 4], [3]]


def test_random_sampler_permutation_and_seed():
    a = list(RandomSampler(range(20), generator=rg.Generator(1)))
    b = list(RandomSampler(range(20), generator=rg.Generator(1)))
    assert a == b and sorted(a) == list(range(20)) and a != list(range(20))


def test_random_sampler_num_samples():
    s = RandomSampler(range(4), num_samples=10, generator=rg.Generator(0))
    idx = list(s)
    assert len(s) == 10 and len(idx) == 10
    assert sorted(idx[:4]) == sorted(idx[4:8]) == [0, 1, 2, 3]  # whole permutations first
    r = RandomSampler(range(3), replacement=True, num_samples=30000, generator=rg.Generator(0))
    counts = np.bincount(list(r), minlength=3)
    assert np.all(np.abs(counts / 30000 - 1 / 3) < 0.015)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        RandomSampler(range(3), num_samples=0)


def test_subset_random_sampler():
    s = SubsetRandomSampler([10, 20, 30, 40], generator=rg.Generator(2))
    out = list(s)
    assert sorted(out) == [10, 20, 30, 40] and len(s) == 4


def test_weighted_random_sampler_frequencies():
    w = [1.0, 2.0, 3.0, 0.0, 4.0]
    n = 100_000
    s = WeightedRandomSampler(w, n, generator=rg.Generator(0))
    counts = np.bincount(list(s), minlength=5)
    freq = counts / n
    np.testing.assert_allclose(freq, np.array(w) / 10, atol=0.006)
    assert counts[3] == 0
    # chi-square goodness of fit over the non-zero classes: 3 dof, 99.9% quantile is 16.27
    exp = n * np.array([1, 2, 3, 4]) / 10
    obs = counts[[0, 1, 2, 4]]
    assert ((obs - exp) ** 2 / exp).sum() < 16.27


def test_weighted_without_replacement_and_errors():
    s = WeightedRandomSampler([1, 1, 1, 5], 4, replacement=False, generator=rg.Generator(0))
    assert sorted(s) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot draw 3 samples without replacement from 2 non-zero weights"):
        WeightedRandomSampler([1, 0, 1], 3, replacement=False)
    with pytest.raises(ValueError, match="weights must be finite, non-negative"):
        WeightedRandomSampler([1, -1], 2)
    with pytest.raises(ValueError, match="weights should be a 1-d sequence"):
        WeightedRandomSampler([[1, 2]], 2)


def test_sampler_in_loader():
    x = np.arange(6, dtype=np.float32)
    ds = rg.data.TensorDataset(x, np.arange(6))
    dl = rg.data.DataLoader(ds, batch_size=2, sampler=SubsetRandomSampler([0, 2, 4], generator=rg.Generator(0)))
    got = sorted(sum((b[1].tolist() for b in dl), []))
    assert got == [0, 2, 4] and len(dl) == 2
