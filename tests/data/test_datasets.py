import numpy as np
import pytest

import retrograd as rg
from retrograd.data import ConcatDataset, Subset, TensorDataset, random_split


def test_random_split_ints_disjoint_and_covering():
    ds = TensorDataset(np.arange(100))
    parts = random_split(ds, [70, 20, 10], generator=rg.Generator(0))
    assert [len(p) for p in parts] == [70, 20, 10]
    idx = np.concatenate([p.indices for p in parts])
    assert sorted(idx.tolist()) == list(range(100))
    assert parts[1][0][0].item() == parts[1].indices[0]
    again = random_split(ds, [70, 20, 10], generator=rg.Generator(0))
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(parts, again))


def test_random_split_fractions_like_torch():
    ds = TensorDataset(np.arange(10))
    assert [len(p) for p in random_split(ds, [0.5, 0.3, 0.2], generator=rg.Generator(0))] == [5, 3, 2]
    # remainder distributed round-robin: floor(11*0.5)=5, floor(11*0.25)=2 twice -> 9, +1 +1
    ds = TensorDataset(np.arange(11))
    assert [len(p) for p in random_split(ds, [0.5, 0.25, 0.25])] == [6, 3, 2]
    with pytest.raises(ValueError, match=r"sum of input lengths \(9\) does not equal the length of the input "
                                         r"dataset \(11\)"):
        random_split(ds, [5, 4])


def test_subset_and_concat_indexing():
    a = TensorDataset(np.arange(5))
    b = TensorDataset(np.arange(10, 13))
    c = a + b
    assert isinstance(c, ConcatDataset) and len(c) == 8
    assert [c[i][0].item() for i in range(8)] == [0, 1, 2, 3, 4, 10, 11, 12]
    assert c[-1][0].item() == 12
    with pytest.raises(IndexError, match="index 8 out of range for length 8"):
        c[8]
    s = Subset(c, [7, 0, 5])
    assert [s[i][0].item() for i in range(3)] == [12, 0, 10]
    (batch,) = s.get_batch(np.array([2, 0, 1]))
    assert batch.tolist() == [10, 12, 0]


def test_subset_without_get_batch_has_no_get_batch():
    class Plain(rg.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return i

    assert not hasattr(Subset(Plain(), [0, 1]), "get_batch")
    assert not hasattr(ConcatDataset([Plain(), TensorDataset(np.arange(2))]), "get_batch")
    assert hasattr(ConcatDataset([TensorDataset(np.arange(2))] * 2), "get_batch")
