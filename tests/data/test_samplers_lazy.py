"""Lazy samplers: a 10**10-sample epoch starts at once in bounded memory, gives the same indices as one
whole draw (any chunk size), and resumes mid-epoch exactly; semantics as torch.utils.data's samplers."""
import itertools
import tracemalloc

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import retrograd as rg
from retrograd.data import (BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler,
                            SubsetRandomSampler, TensorDataset, WeightedRandomSampler)
from retrograd.data import sampler as sampler_module

HUGE = 10**10


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _head(it, k):
    return list(itertools.islice(it, k))


# ----------------------------------------------------------------------------- huge epochs start at once
def test_huge_random_sampler_with_replacement_is_lazy():
    s = RandomSampler(range(10), replacement=True, num_samples=HUGE, generator=rg.Generator(0))
    ts = tud.RandomSampler(range(10), replacement=True, num_samples=HUGE)
    assert len(s) == len(ts) == HUGE
    head, peak = _peak_bytes(lambda: _head(iter(s), 5))
    assert peak < 64 * 2**20  # one chunk (8 MiB) and its bookkeeping, not 80 GB
    assert head == rg.Generator(0).np.integers(0, 10, 5).tolist()
    assert all(0 <= i < 10 for i in _head(iter(ts), 5))  # torch is lazy too


def test_huge_sampler_without_replacement_draws_one_permutation_at_a_time():
    s = RandomSampler(range(10), num_samples=HUGE, generator=rg.Generator(1))
    ts = tud.RandomSampler(range(10), num_samples=HUGE)
    assert len(s) == len(ts) == HUGE
    head, peak = _peak_bytes(lambda: _head(iter(s), 25))
    assert peak < 64 * 2**20
    # whole permutations first, as torch
    assert sorted(head[:10]) == sorted(head[10:20]) == sorted(_head(iter(ts), 10)) == list(range(10))


def test_huge_weighted_sampler_is_lazy():
    w = [1.0, 0.0, 3.0]
    s = WeightedRandomSampler(w, HUGE, generator=rg.Generator(2))
    assert len(s) == len(tud.WeightedRandomSampler(w, HUGE)) == HUGE
    head, peak = _peak_bytes(lambda: _head(iter(s), 1000))
    assert peak < 64 * 2**20
    assert 1 not in head and set(head) == {0, 2}
    ref = rg.Generator(2).np.choice(3, 1000, p=np.array(w) / 4)
    assert head == ref.tolist()


def test_dataloader_over_a_huge_sampler_starts_at_once_and_resumes_exactly():
    ds = TensorDataset(np.arange(10, dtype=np.float32), np.arange(10))

    def loader(seed):
        return DataLoader(ds, batch_size=4, sampler=RandomSampler(ds, replacement=True, num_samples=HUGE,
                                                                   generator=rg.Generator(seed)))
    dl = loader(3)
    assert len(dl) == len(tud.DataLoader(tud.TensorDataset(torch.arange(10)), batch_size=4,
                                         sampler=tud.RandomSampler(range(10), True, HUGE))) == HUGE // 4

    def first_batches():
        it = iter(dl)
        head = [next(it)[1].tolist() for _ in range(3)]
        return it, head
    (it, head), peak = _peak_bytes(first_batches)
    assert peak < 64 * 2**20
    state = dl.state_dict()
    tail = [next(it)[1].tolist() for _ in range(3)]
    assert head + tail == rg.Generator(3).np.integers(0, 10, 24).reshape(6, 4).tolist()
    dl2 = loader(99)
    dl2.load_state_dict(state)
    it2 = iter(dl2)
    assert [next(it2)[1].tolist() for _ in range(3)] == tail


# ----------------------------------------------------------------------------- the same indices for any chunk size
@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(sampler_module, "_CHUNK", 7)
    monkeypatch.setattr(sampler_module, "_TOLIST", 3)


def _one_draw(seed, fn):
    g = rg.Generator(seed)
    return fn(g.np), g.get_state()


@pytest.mark.parametrize("n,k", [(5, 1), (5, 7), (5, 50), (13, 13), (3, 22)])
def test_chunked_draws_equal_one_whole_draw(small_chunks, n, k):
    """What the samplers drew before they were lazy (one draw per epoch), index for index; the generator
    ends in the same state, so later epochs are unchanged too."""
    w = np.linspace(0.5, 2.0, n)
    cases = [
        (RandomSampler(range(n), replacement=True, num_samples=k, generator=rg.Generator(4)),
         lambda r: r.integers(0, n, k, dtype=np.int64)),
        (RandomSampler(range(n), num_samples=k, generator=rg.Generator(4)),
         lambda r: np.concatenate([r.permutation(n) for _ in range(-(-k // n))])[:k]),
        (WeightedRandomSampler(w, k, generator=rg.Generator(4)),
         lambda r: r.choice(n, k, replace=True, p=w / w.sum())),
    ]
    for s, draw in cases:
        ref, end_state = _one_draw(4, draw)
        assert list(s) == ref.tolist()
        assert s.generator.get_state()["bit_generator"] == end_state["bit_generator"]
        second = s.epoch_indices()  # the next epoch, as one array
        np.testing.assert_array_equal(second, _one_draw(4, lambda r: (draw(r), draw(r))[1])[0])
        for drop_last in (False, True):  # the same epoch again from its recorded state, in batches
            got = [b.tolist() for b in BatchSampler(s, 3, drop_last).epoch_batches(s.epoch_state)]
            m = len(second) // 3 * 3 if drop_last else len(second)
            assert got == [second[i:i + 3].tolist() for i in range(0, m, 3)]


def test_resume_mid_epoch_across_chunk_boundaries(small_chunks):
    ds = TensorDataset(np.arange(11, dtype=np.float32), np.arange(11))
    for make in (lambda g: RandomSampler(ds, replacement=True, num_samples=40, generator=g),
                 lambda g: RandomSampler(ds, num_samples=40, generator=g),
                 lambda g: WeightedRandomSampler(np.arange(1.0, 12.0), 40, generator=g)):
        dl = DataLoader(ds, batch_size=3, sampler=make(rg.Generator(5)))
        whole = [b[1].tolist() for b in dl]
        assert sum(len(b) for b in whole) == 40
        it = iter(dl)
        head = [next(it)[1].tolist() for _ in range(5)]  # 15 indices: past two chunks of 7
        state = dl.state_dict()
        tail = [b[1].tolist() for b in it]
        dl2 = DataLoader(ds, batch_size=3, sampler=make(rg.Generator(0)))
        dl2.load_state_dict(state)
        assert [b[1].tolist() for b in dl2] == tail and len(head + tail) == len(whole)


def test_a_short_epoch_is_still_drawn_whole_when_it_starts():
    """Up to _CHUNK indices: the generator moves past the whole epoch at iter(), as before the samplers
    were lazy, so an abandoned epoch leaves the next one where it was."""
    g = rg.Generator(6)
    it = iter(RandomSampler(range(1000), replacement=True, generator=g))
    next(it)
    ref = rg.Generator(6)
    ref.np.integers(0, 1000, 1000)
    assert g.get_state()["bit_generator"] == ref.get_state()["bit_generator"]


def test_sequential_and_subset_samplers_unchanged(small_chunks):
    assert list(SequentialSampler(range(17))) == list(range(17))
    s = SubsetRandomSampler(list(range(100, 120)), generator=rg.Generator(7))
    assert list(s) == (np.arange(100, 120)[rg.Generator(7).np.permutation(20)]).tolist()


# ----------------------------------------------------------------------------- user samplers, errors
def test_user_sampler_with_only_iter_works_lazily_in_a_loader(small_chunks):
    class Evens(Sampler):  # torch style: only __iter__ and __len__
        def __iter__(self):
            return iter(range(0, 30, 2))

        def __len__(self):
            return 15

    ds = TensorDataset(np.arange(30))
    assert list(Evens()) == list(range(0, 30, 2))
    np.testing.assert_array_equal(Evens().epoch_indices(), np.arange(0, 30, 2))
    assert [b[0].tolist() for b in DataLoader(ds, batch_size=4, sampler=Evens())][:2] == [[0, 2, 4, 6],
                                                                                           [8, 10, 12, 14]]
    endless = itertools.count()  # a plain iterable sampler that never ends: the loader still starts
    it = iter(DataLoader(ds, batch_size=None, sampler=endless))
    assert [int(next(it)[0]) for _ in range(3)] == [0, 1, 2]

    class Nothing(Sampler):
        pass
    with pytest.raises(NotImplementedError, match="Nothing must implement __iter__, epoch_chunks or epoch_indices"):
        list(Nothing())


def test_empty_data_source_with_num_samples_raises_clearly():
    # torch fails here with ZeroDivisionError / RuntimeError from deep inside; retrograd says what is wrong
    for replacement in (False, True):
        with pytest.raises(ValueError, match="cannot draw 3 samples from an empty data_source"):
            list(RandomSampler(range(0), replacement=replacement, num_samples=3))
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        RandomSampler(range(0))
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        tud.RandomSampler(range(0))
