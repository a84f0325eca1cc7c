import numpy as np
import pytest

import retrograd as rg
from retrograd.data import DataLoader, Dataset, IterableDataset, TensorDataset


def _xy(n=10, f=3):
    x = np.arange(n * f, dtype=np.float32).reshape(n, f)
    y = np.arange(n, dtype=np.int64)
    return x, y


class CountingTensorDataset(TensorDataset):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.getitem_calls = 0

    def __getitem__(self, i):
        self.getitem_calls += 1
        return super().__getitem__(i)


class PlainDataset(Dataset):
    """No get_batch: samples fetched one by one and collated."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_sequential_batches_and_len():
    x, y = _xy(10)
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    assert len(dl) == 3
    batches = list(dl)
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert all(isinstance(t, rg.Tensor) for b in batches for t in b)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)
    np.testing.assert_array_equal(batches[1][0].numpy(), x[4:8])
    assert batches[0][0].dtype == rg.float32 and batches[0][1].dtype == rg.int64


def test_drop_last():
    x, y = _xy(10)
    dl = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)
    assert len(dl) == 2
    assert [b[1].tolist() for b in dl] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    dl = DataLoader(TensorDataset(x, y), batch_size=5, drop_last=True)
    assert len(dl) == 2 and len(list(dl)) == 2


def test_vectorised_path_never_calls_getitem():
    x, y = _xy(100)
    ds = CountingTensorDataset(x, y)
    for shuffle in (False, True):
        for bx, by in DataLoader(ds, batch_size=32, shuffle=shuffle, generator=rg.Generator(0)):
            np.testing.assert_array_equal(bx.numpy(), x[by.numpy()])
    assert ds.getitem_calls == 0
    # through Subset and ConcatDataset too
    sub = rg.data.Subset(ds, [5, 3, 1])
    cat = sub + ds
    out = list(DataLoader(cat, batch_size=50, shuffle=True, generator=rg.Generator(1)))
    assert ds.getitem_calls == 0
    got = np.concatenate([b[1].numpy() for b in out])
    assert sorted(got.tolist()) == sorted([5, 3, 1] + list(range(100)))
    # a user collate_fn takes the per-sample path
    n = sum(1 for _ in DataLoader(ds, batch_size=10, collate_fn=lambda b: len(b)))
    assert n == 10 and ds.getitem_calls == 100


def test_vectorised_equals_per_sample_path():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 2, 3)).astype(np.float32)
    y = rng.integers(0, 5, 37)
    fast = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=rg.Generator(7))
    slow = DataLoader(PlainDataset(x, y), batch_size=8, shuffle=True, generator=rg.Generator(7))
    for (fx, fy), (sx, sy) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(fx.numpy(), sx.numpy())
        np.testing.assert_array_equal(fy.numpy(), sy.numpy())
        assert fx.dtype == sx.dtype and fy.dtype == sy.dtype == rg.int64


def test_shuffle_same_seed_same_order():
    x, y = _xy(50)
    ds = TensorDataset(x, y)

    def order(seed):
        return [b[1].tolist() for b in DataLoader(ds, batch_size=7, shuffle=True, generator=rg.Generator(seed))]

    assert order(3) == order(3)
    assert order(3) != order(4)
    flat = sum(order(3), [])
    assert sorted(flat) == list(range(50)) and flat != list(range(50))
    # successive epochs of one loader differ, and replay identically from the same seed
    dl = DataLoader(ds, batch_size=50, shuffle=True, generator=rg.Generator(5))
    e1, e2 = [next(iter(dl))[1].tolist() for _ in range(2)]
    dl2 = DataLoader(ds, batch_size=50, shuffle=True, generator=rg.Generator(5))
    assert e1 != e2
    assert [next(iter(dl2))[1].tolist() for _ in range(2)] == [e1, e2]


def test_shuffle_without_generator_follows_manual_seed():
    x, y = _xy(30)
    ds = TensorDataset(x, y)
    rg.manual_seed(11)
    a = [b[1].tolist() for b in DataLoader(ds, batch_size=30, shuffle=True)]
    rg.manual_seed(11)
    b = [b[1].tolist() for b in DataLoader(ds, batch_size=30, shuffle=True)]
    assert a == b and sorted(a[0]) == list(range(30))


def test_batch_size_none_and_batch_sampler():
    x, y = _xy(4)
    items = list(DataLoader(TensorDataset(x, y), batch_size=None))
    assert len(items) == 4 and items[2][0].shape == (3,) and items[2][1].item() == 2
    dl = DataLoader(TensorDataset(x, y), batch_sampler=[[3, 0], [1]])
    assert [b[1].tolist() for b in dl] == [[3, 0], [1]]
    assert len(dl) == 2


def test_argument_errors():
    x, y = _xy(4)
    ds = TensorDataset(x, y)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=rg.data.SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-2)
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        DataLoader(ds, batch_size=0)


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter([(np.float32(i), i) for i in range(self.n)])

    def __len__(self):
        return self.n


def test_iterable_dataset_batching_and_errors():
    dl = DataLoader(Stream(7), batch_size=3)
    out = list(dl)
    assert [b[1].tolist() for b in out] == [[0, 1, 2], [3, 4, 5], [6]]
    assert out[0][0].dtype == rg.float32 and out[0][1].dtype == rg.int64
    assert len(dl) == 3
    assert len(list(DataLoader(Stream(7), batch_size=3, drop_last=True))) == 2
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)


def test_tensor_dataset_from_tensors_and_errors():
    x = rg.arange(6).reshape(3, 2)
    ds = TensorDataset(x, rg.tensor([1, 2, 3]))
    assert len(ds) == 3 and ds[1][0].tolist() == [2, 3] and ds[1][1].item() == 2
    with pytest.raises(ValueError, match=r"size mismatch between tensors: first dimensions \[3, 2\]"):
        TensorDataset(np.zeros((3, 1)), np.zeros(2))
    with pytest.raises(TypeError, match="expected Tensors or NumPy arrays, got list"):
        TensorDataset([1, 2])


def test_dataset_transforms_apply_to_batch_and_sample():
    x = np.arange(8, dtype=np.uint8).reshape(4, 1, 1, 2)
    y = np.arange(4)
    ds = TensorDataset(x, y, transform=rg.data.transforms.ToFloat(0.5), target_transform=lambda t: t + 10)
    bx, by = next(iter(DataLoader(ds, batch_size=4)))
    np.testing.assert_array_equal(bx.numpy(), x.astype(np.float32) * 0.5)
    assert by.tolist() == [10, 11, 12, 13]
    sx, sy = ds[2]
    np.testing.assert_array_equal(sx.numpy(), [[[2.0, 2.5]]])
    assert sy.item() == 12
