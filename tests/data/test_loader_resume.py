import pickle

import numpy as np
import pytest

import retrograd as rg
from retrograd.data import DataLoader, TensorDataset, WeightedRandomSampler


def _ds(n=23):
    return TensorDataset(np.arange(n, dtype=np.float32)[:, None] * 10, np.arange(n))


def _labels(batches):
    return [b[1].tolist() for b in batches]


@pytest.mark.parametrize("with_generator", [True, False])
def test_resume_mid_epoch_gives_exactly_the_remaining_batches(with_generator):
    rg.manual_seed(0)
    gen = (lambda: rg.Generator(42)) if with_generator else (lambda: None)
    dl = DataLoader(_ds(), batch_size=4, shuffle=True, generator=gen())
    epoch0 = _labels(dl)
    it = iter(dl)
    head = _labels([next(it) for _ in range(3)])
    state = pickle.loads(pickle.dumps(dl.state_dict()))  # survives a checkpoint file
    assert state["epoch"] == 1 and state["batch"] == 3
    tail = _labels(it)
    epoch2 = _labels(dl)
    assert sorted(sum(head + tail, [])) == list(range(23)) and head + tail != epoch0

    # a fresh loader (fresh generator with another seed, default RNG moved on) resumes exactly
    rg.manual_seed(999)
    dl2 = DataLoader(_ds(), batch_size=4, shuffle=True, generator=rg.Generator(7) if with_generator else None)
    dl2.load_state_dict(state)
    assert dl2.state_dict()["batch"] == 3
    resumed = _labels(dl2)
    assert resumed == tail
    assert dl2.state_dict()["epoch"] == 2 and dl2.state_dict()["batch"] == 0
    if with_generator:  # the generator itself was restored, so later epochs continue identically
        assert _labels(dl2) == epoch2


def test_resume_at_epoch_boundary():
    dl = DataLoader(_ds(), batch_size=5, shuffle=True, generator=rg.Generator(3))
    list(dl)
    state = dl.state_dict()
    assert (state["epoch"], state["batch"]) == (1, 0)
    nxt = _labels(dl)
    dl2 = DataLoader(_ds(), batch_size=5, shuffle=True, generator=rg.Generator(0))
    dl2.load_state_dict(state)
    assert _labels(dl2) == nxt


def test_resume_per_sample_path_weighted_sampler_and_drop_last():
    class Plain(rg.data.Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return np.float32(i), i

    def make(seed):
        s = WeightedRandomSampler(np.linspace(1, 2, 30), 30, generator=rg.Generator(seed))
        return DataLoader(Plain(), batch_size=4, sampler=s, drop_last=True)

    dl = make(5)
    it = iter(dl)
    [next(it) for _ in range(2)]
    state = dl.state_dict()
    tail = _labels(it)
    assert len(tail) == 7 - 2
    dl2 = make(6)
    dl2.load_state_dict(state)
    assert _labels(dl2) == tail


def test_resume_sequential_and_iterable():
    dl = DataLoader(_ds(10), batch_size=3)
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    dl2 = DataLoader(_ds(10), batch_size=3)
    dl2.load_state_dict(state)
    assert _labels(dl2) == [[3, 4, 5], [6, 7, 8], [9]]

    class Stream(rg.data.IterableDataset):
        def __iter__(self):
            return iter(range(7))

    dl = DataLoader(Stream(), batch_size=2)
    it = iter(dl)
    next(it)
    next(it)
    dl2 = DataLoader(Stream(), batch_size=2)
    dl2.load_state_dict(dl.state_dict())
    assert [b.tolist() for b in dl2] == [[4, 5], [6]]


def test_epoch_counter_and_errors():
    dl = DataLoader(_ds(10), batch_size=3, shuffle=True, generator=rg.Generator(0))
    it = iter(dl)
    next(it)
    iter(dl)  # abandoning a partial epoch starts the next one
    assert dl.state_dict()["epoch"] == 1
    with pytest.raises(KeyError, match=r"state is missing \['sampler'\]"):
        dl.load_state_dict({"epoch": 0, "batch": 0})
    with pytest.raises(ValueError, match="batch must be a non-negative int"):
        dl.load_state_dict({"epoch": 0, "batch": -1, "sampler": None})
