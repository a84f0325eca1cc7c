import collections

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate as torch_collate

import retrograd as rg
from retrograd.data import default_collate

Point = collections.namedtuple("Point", "x label")


def _np(v):
    return v.numpy() if isinstance(v, (rg.Tensor, torch.Tensor)) else v


def test_numbers_arrays_tensors_match_torch_values_and_dtypes():
    cases = [
        [1, 2, 3],
        [1.5, 2.5],
        [True, False],
        [np.float32(1.0), np.float32(2.0)],
        [np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int32)],
        [np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)],
    ]
    for batch in cases:
        ours, ref = default_collate(batch), torch_collate(batch)
        np.testing.assert_array_equal(ours.numpy(), ref.numpy())
        assert str(ours.dtype) == str(ref.dtype).replace("torch.", ""), batch
    t = default_collate([rg.tensor([1.0, 2.0]), rg.tensor([3.0, 4.0])])
    assert t.shape == (2, 2) and t.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_nested_structures():
    batch = [
        {"image": np.full((1, 2), i, np.float32), "meta": (i, f"id{i}"), "pt": Point(np.float32(i), i)}
        for i in range(3)
    ]
    out = default_collate(batch)
    ref = torch_collate(batch)
    assert set(out) == {"image", "meta", "pt"}
    np.testing.assert_array_equal(out["image"].numpy(), ref["image"].numpy())
    assert out["image"].shape == (3, 1, 2)
    assert isinstance(out["meta"], tuple) and out["meta"][0].tolist() == [0, 1, 2]
    assert out["meta"][1] == ["id0", "id1", "id2"] == list(ref["meta"][1])
    assert isinstance(out["pt"], Point) and out["pt"].label.tolist() == [0, 1, 2]
    assert out["pt"].x.dtype == rg.float32
    lists = default_collate([[1, 2.0], [3, 4.0]])
    assert isinstance(lists, list) and lists[0].tolist() == [1, 3] and lists[1].tolist() == [2.0, 4.0]


def test_errors():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([(1, 2), (3,)])
    with pytest.raises(RuntimeError, match=r"stack expects each array to be equal size, but got shapes "
                                           r"\[\(2,\), \(3,\)\]"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])


def test_default_collate_through_loader_with_dicts():
    class D(rg.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.full(2, i, np.float32), "y": i}

    out = list(rg.data.DataLoader(D(), batch_size=2))
    assert [b["y"].tolist() for b in out] == [[0, 1], [2, 3], [4]]
    assert out[1]["x"].tolist() == [[2.0, 2.0], [3.0, 3.0]]
