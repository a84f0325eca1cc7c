"""DistributedSampler against torch.utils.data.DistributedSampler: the padding rule and the rank
split (bitwise the same indices without shuffling; with shuffling the same rule applied to
retrograd's permutation), coverage, set_epoch, and resuming mid-epoch on another number of ranks."""
from __future__ import annotations

import numpy as np
import pytest
import torch.utils.data as tdata

import retrograd as rg
from retrograd.data import DataLoader, DistributedSampler, TensorDataset


class Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


CASES = [(n, w, drop) for n in (1, 7, 10, 11, 12) for w in (1, 2, 3, 4) for drop in (False, True)
         if not (drop and n < w)]


@pytest.mark.parametrize("n,w,drop", CASES)
def test_indices_as_torch_without_shuffle(n, w, drop):
    for r in range(w):
        ours = DistributedSampler(Sized(n), num_replicas=w, rank=r, shuffle=False, drop_last=drop)
        theirs = tdata.DistributedSampler(Sized(n), num_replicas=w, rank=r, shuffle=False, drop_last=drop)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        assert (ours.num_samples, ours.total_size) == (theirs.num_samples, theirs.total_size)


@pytest.mark.parametrize("n,w,drop", CASES)
def test_shuffled_indices_follow_torchs_rule_on_our_permutation(n, w, drop):
    for r in range(w):
        ours = DistributedSampler(Sized(n), num_replicas=w, rank=r, seed=5, drop_last=drop)
        ours.set_epoch(3)
        order = ours.epoch_order()
        positions = list(tdata.DistributedSampler(Sized(n), num_replicas=w, rank=r, shuffle=False, drop_last=drop))
        assert list(ours) == order[positions].tolist()
        assert sorted(order.tolist()) == list(range(n))


@pytest.mark.parametrize("n,w", [(12, 3), (12, 4), (11, 3), (10, 4)])
def test_every_sample_once_per_epoch(n, w):
    per_rank = [list(DistributedSampler(Sized(n), num_replicas=w, rank=r, seed=1)) for r in range(w)]
    everything = sorted(i for part in per_rank for i in part)
    assert len({len(p) for p in per_rank}) == 1  # equal shares: no rank waits for a batch the others lack
    if n % w == 0:
        assert everything == list(range(n))
    else:  # padded by repeating the first samples of the order, PyTorch's rule
        assert set(everything) == set(range(n)) and len(everything) == -(-n // w) * w
    dropped = sorted(i for r in range(w)
                     for i in DistributedSampler(Sized(n), num_replicas=w, rank=r, seed=1, drop_last=True))
    assert len(dropped) == len(set(dropped)) == n // w * w


def test_set_epoch_reshuffles_reproducibly():
    s = DistributedSampler(Sized(50), num_replicas=2, rank=1, seed=7)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1
    s.set_epoch(0)
    assert list(s) == e0
    assert list(DistributedSampler(Sized(50), num_replicas=2, rank=1, seed=8)) != e0


def _global_steps(n: int, w: int, b: int, steps: int, state: dict | None = None) -> list:
    """The samples of each global step (sorted), from ``w`` samplers with batch ``b``."""
    per_rank = []
    for r in range(w):
        s = DistributedSampler(Sized(n), num_replicas=w, rank=r, seed=3)
        if state is not None:
            s.load_state_dict(state)
        per_rank.append(list(s))
    return [sorted(i for part in per_rank for i in part[k * b:(k + 1) * b]) for k in range(steps)]


def test_resume_mid_epoch_on_another_number_of_ranks_keeps_the_global_order():
    n, b = 60, 2
    order = DistributedSampler(Sized(n), num_replicas=1, rank=0, seed=3).epoch_order()
    three = _global_steps(n, 3, b, 4)
    assert three == [sorted(order[k * 6:(k + 1) * 6].tolist()) for k in range(4)]
    saved = DistributedSampler(Sized(n), num_replicas=3, rank=0, seed=3).state_dict()
    saved["start"] = 4 * b * 3  # after 4 steps of 2 per rank on 3 ranks
    two = _global_steps(n, 2, b, 9, saved)
    assert two == [sorted(order[24 + k * 4:24 + (k + 1) * 4].tolist()) for k in range(9)]
    s = DistributedSampler(Sized(n), num_replicas=2, rank=0, seed=3)
    s.load_state_dict(saved)
    assert len(s) == 18
    list(s)
    assert s.start == 0 and len(list(s)) == 30  # the next epoch starts from its beginning


def test_dataloader_resumes_mid_epoch():
    ds = TensorDataset(rg.arange(40))
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, seed=4)
    loader = DataLoader(ds, batch_size=3, sampler=sampler)
    it = iter(loader)
    first = [next(it)[0].tolist() for _ in range(2)]
    state = loader.state_dict()
    rest = [b[0].tolist() for b in it]
    again = DataLoader(ds, batch_size=3, sampler=DistributedSampler(ds, num_replicas=2, rank=1, seed=4))
    again.load_state_dict(state)
    assert [b[0].tolist() for b in again] == rest
    assert sorted(sum(first + rest, [])) == sorted(list(sampler))


def test_errors_as_torch():
    with pytest.raises(ValueError) as theirs:
        tdata.DistributedSampler(Sized(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError) as ours:
        DistributedSampler(Sized(4), num_replicas=2, rank=2)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        DistributedSampler(Sized(4))
