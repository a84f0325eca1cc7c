"""DataLoader(num_workers > 0): worker processes give the batches of num_workers=0 (map-style) or torch's
round-robin interleaving (sharded IterableDataset); seeding, worker_init_fn and get_worker_info as torch;
worker errors re-raised with the worker's traceback; workers shut down on early break, error and deletion;
persistent workers across epochs; argument errors with torch's messages."""
import multiprocessing as mp
import os
import random
import re
import time

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import retrograd as rg
from retrograd.data import workers as W
from retrograd.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info


def _ids(batches):
    """Batches of (x, y) tensors, or of plain tensors, as nested lists."""
    out = []
    for b in batches:
        if isinstance(b, (list, tuple)):
            out.append([np.asarray(t).tolist() for t in b])
        else:
            out.append(np.asarray(b).tolist())
    return out


def _dead(procs, wait=5.0):
    end = time.time() + wait
    while time.time() < end and any(p.is_alive() for p in procs):
        time.sleep(0.02)
    return not any(p.is_alive() for p in procs)


class Squares(Dataset):
    """A map-style dataset without get_batch: samples fetched one by one and collated."""

    def __init__(self, n, fail_at=None, exc=ValueError):
        self.n, self.fail_at, self.exc = n, fail_at, exc

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise self.exc(f"bad sample {i}")
        return rg.tensor([float(i), float(i * i)]), i


class WhoAmI(Dataset):
    """Each sample says which worker fetched it and draws from every generator a worker seeds."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return {"i": i, "id": info.id, "n": info.num_workers, "seed": info.seed, "pid": os.getpid(),
                "same_dataset": info.dataset is self, "init": getattr(self, "init_by", -1),
                "rg": float(rg.rand(1)[0]), "np": float(np.random.rand()), "py": random.random()}


def _init_fn(worker_id):
    get_worker_info().dataset.init_by = worker_id


@pytest.mark.parametrize("kw", [dict(batch_size=3, shuffle=True), dict(batch_size=4, drop_last=True),
                                dict(batch_size=None), dict(batch_size=2, prefetch_factor=1),
                                dict(batch_size=3, shuffle=True, prefetch_factor=5)])
def test_map_style_same_batches_as_in_process(kw):
    for ds in (TensorDataset(rg.arange(26.).reshape(13, 2), rg.arange(13)), Squares(11)):
        rg.manual_seed(3)
        want = _ids(DataLoader(ds, num_workers=0, **{k: v for k, v in kw.items() if k != "prefetch_factor"}))
        rg.manual_seed(3)
        got = _ids(DataLoader(ds, num_workers=2, **kw))
        assert got == want
        g0, g1 = rg.Generator(5), rg.Generator(5)
        assert _ids(DataLoader(ds, num_workers=3, generator=g1, **kw)) == \
            _ids(DataLoader(ds, generator=g0, **{k: v for k, v in kw.items() if k != "prefetch_factor"}))


def test_map_style_batch_sampler_collate_fn_and_out_of_order():
    ds = Squares(10)
    sampler = [[3, 1], [0], [9, 8, 7], [2, 4, 6, 5]]
    collate = lambda samples: [s[1] * 10 for s in samples]  # noqa: E731
    assert list(DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=2)) == \
        [[30, 10], [0], [90, 80, 70], [20, 40, 60, 50]]
    got = _ids(DataLoader(ds, batch_size=2, num_workers=2, in_order=False))
    want = _ids(DataLoader(ds, batch_size=2))
    assert sorted(map(str, got)) == sorted(map(str, want))
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    it = iter(loader)
    assert len(it) == len(loader) == 4


def _sharded(lib):
    """The same IterableDataset class for torch and retrograd: worker k of n takes range(k, n_items, n)
    (uneven shards, so one worker runs out before the others)."""
    base = tud.IterableDataset if lib is torch else IterableDataset
    info = tud.get_worker_info if lib is torch else get_worker_info

    class Sharded(base):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            w = info()
            start, step = (0, 1) if w is None else (w.id, w.num_workers)
            if w is not None and w.id == 0:
                return iter([lib.tensor(i * 1.0) for i in range(start, self.n, step)][:2])  # worker 0 stops early
            return iter([lib.tensor(i * 1.0) for i in range(start, self.n, step)])
    return Sharded


@pytest.mark.parametrize("kw", [dict(batch_size=2), dict(batch_size=3, drop_last=True), dict(batch_size=None),
                                dict(batch_size=2, prefetch_factor=1)])
@pytest.mark.parametrize("workers", [2, 3])
def test_iterable_sharded_order_as_torch(kw, workers):
    want = _ids(tud.DataLoader(_sharded(torch)(17), num_workers=workers, **kw))
    got = _ids(DataLoader(_sharded(rg)(17), num_workers=workers, **kw))
    assert got == want and len(got) >= 2


def test_iterable_unsharded_is_copied_in_every_worker_as_torch():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(5))
    got = _ids(DataLoader(Stream(), batch_size=2, num_workers=2))
    assert got == [[0, 1], [0, 1], [2, 3], [2, 3], [4], [4]]
    assert _ids(DataLoader(Stream(), batch_size=2)) == [[0, 1], [2, 3], [4]]


def test_worker_info_seeds_and_init_fn():
    assert get_worker_info() is None
    rg.manual_seed(11)
    rows = list(DataLoader(WhoAmI(), batch_size=None, num_workers=2, worker_init_fn=_init_fn))
    assert [r["i"] for r in rows] == list(range(8))
    assert [r["id"] for r in rows] == [0, 1] * 4  # round-robin tasks
    assert all(r["n"] == 2 and r["same_dataset"] and r["init"] == r["id"] for r in rows)
    assert len({r["pid"] for r in rows} | {os.getpid()}) == 3
    base = rows[0]["seed"]
    assert all(r["seed"] == base + r["id"] for r in rows)
    # base_seed comes from the (default) generator: the same seed gives the same worker streams
    rg.manual_seed(11)
    again = list(DataLoader(WhoAmI(), batch_size=None, num_workers=2, worker_init_fn=_init_fn))
    assert [(r["seed"], r["rg"], r["np"], r["py"]) for r in again] == \
        [(r["seed"], r["rg"], r["np"], r["py"]) for r in rows]
    # each worker's generators are seeded as torch seeds them: base_seed + id, and NumPy via SeedSequence
    first = rows[1]  # worker 1's first sample
    rg.manual_seed(first["seed"])
    random.seed(first["seed"])
    assert first["rg"] == float(rg.rand(1)[0]) and first["py"] == random.random()
    np.random.seed(W.numpy_seed(base, 1))
    assert first["np"] == np.random.rand()
    # an explicit generator gives the base seed; a different one gives other streams
    a = list(DataLoader(WhoAmI(), batch_size=None, num_workers=2, generator=rg.Generator(1)))
    b = list(DataLoader(WhoAmI(), batch_size=None, num_workers=2, generator=rg.Generator(1)))
    c = list(DataLoader(WhoAmI(), batch_size=None, num_workers=2, generator=rg.Generator(2)))
    assert [r["rg"] for r in a] == [r["rg"] for r in b] != [r["rg"] for r in c]


def test_numpy_seed_is_torchs_generate_state():
    from torch.utils.data._utils.worker import _generate_state
    for base, wid in [(0, 0), (123456789012345, 3), (2**63 - 2, 7)]:
        assert W.numpy_seed(base, wid).tolist() == _generate_state(base, wid)


def test_worker_info_is_read_only_and_repr():
    info = W.WorkerInfo(id=1, num_workers=2, seed=5, dataset=None)
    assert repr(info) == "WorkerInfo(id=1, num_workers=2, seed=5, dataset=None)"
    with pytest.raises(RuntimeError, match="Cannot assign attributes to WorkerInfo objects"):
        info.id = 3


def test_exception_in_worker_is_reraised_with_its_traceback():
    loader = DataLoader(Squares(10, fail_at=5), batch_size=2, num_workers=2)
    it = iter(loader)
    assert _ids([next(it), next(it)]) == _ids(list(DataLoader(Squares(10), batch_size=2))[:2])
    with pytest.raises(ValueError) as e:
        next(it)
    msg = str(e.value)
    assert msg.startswith("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback")
    assert "bad sample 5" in msg and "__getitem__" in msg
    procs = it._workers
    del it, e  # the traceback refers to the iterator's frames
    assert _dead(procs)
    with pytest.raises(KeyError) as e:
        list(DataLoader(Squares(4, fail_at=1, exc=KeyError), batch_size=None, num_workers=2))
    assert "Caught KeyError in DataLoader worker process 1.\nOriginal Traceback" in str(e.value)
    assert "\\n" not in str(e.value)  # readable, not a repr

    def bad_init(worker_id):
        raise RuntimeError(f"init failed in {worker_id}")
    with pytest.raises(RuntimeError, match=r"Caught RuntimeError in DataLoader worker process 0\.(.|\n)*"
                                           r"init failed in 0"):
        list(DataLoader(Squares(4), num_workers=2, worker_init_fn=bad_init))


def test_early_break_and_end_of_epoch_shut_workers_down():
    before = set(mp.active_children())
    loader = DataLoader(Squares(40), batch_size=2, num_workers=2)
    for k, _ in enumerate(loader):
        if k == 1:
            break
    assert _dead([p for p in mp.active_children() if p not in before])
    it = iter(loader)
    procs = list(it._workers)
    assert all(p.is_alive() for p in procs)
    assert len(list(it)) == 20
    assert _dead(procs)  # the epoch ended: workers joined without waiting for the iterator to go
    # the loader's resume bookkeeping: the abandoned epoch counted, then one full epoch
    assert loader.state_dict()["epoch"] == 2


def test_persistent_workers_across_epochs():
    loader = DataLoader(WhoAmI(), batch_size=2, num_workers=2, persistent_workers=True, worker_init_fn=_init_fn)
    e1 = list(loader)
    it = loader._workers_iter
    procs = list(it._workers)
    partial = iter(loader)
    next(partial)  # abandon an epoch part-way: its tasks in flight are dropped at the next reset
    e2 = list(loader)
    assert loader._workers_iter is it and all(p.is_alive() for p in procs)
    assert [b["i"].tolist() for b in e1] == [b["i"].tolist() for b in e2] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert {int(p) for b in e1 + e2 for p in b["pid"]} == {p.pid for p in procs}
    # the workers keep their generators: a later epoch draws new numbers
    assert [b["rg"].tolist() for b in e1] != [b["rg"].tolist() for b in e2]
    del loader, it, partial
    assert _dead(procs)


def test_persistent_iterable_dataset_restarts_each_epoch():
    loader = DataLoader(_sharded(rg)(9), batch_size=2, num_workers=2, persistent_workers=True)
    a, b = _ids(loader), _ids(loader)
    want = _ids(tud.DataLoader(_sharded(torch)(9), batch_size=2, num_workers=2))
    assert a == b == want


def test_resume_mid_epoch_with_workers():
    ds = TensorDataset(rg.arange(20.), rg.arange(20))
    rg.manual_seed(4)
    ref = DataLoader(ds, batch_size=3, shuffle=True)
    full = _ids(ref)
    rg.manual_seed(4)
    loader = DataLoader(ds, batch_size=3, shuffle=True, num_workers=2)
    it = iter(loader)
    head = _ids([next(it), next(it)])
    state = loader.state_dict()
    del it
    again = DataLoader(ds, batch_size=3, shuffle=True, num_workers=2)
    again.load_state_dict(state)
    assert head + _ids(again) == full


def test_timeout_and_dead_worker():
    class Slow(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            time.sleep(1)
            return i

    with pytest.raises(RuntimeError, match=re.escape("DataLoader timed out after 0.2 seconds")):
        list(DataLoader(Slow(), num_workers=1, timeout=0.2))

    class Dies(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            os._exit(3)

    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited unexpectedly"):
        list(DataLoader(Dies(), num_workers=1, timeout=0.3))


def test_multiprocessing_context_choices():
    ds = TensorDataset(rg.arange(6.), rg.arange(6))
    want = _ids(DataLoader(ds, batch_size=4))
    assert _ids(DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="fork")) == want
    assert _ids(DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context=mp.get_context("spawn"))) \
        == want  # spawn pickles the dataset, the collate function and tensors across


def test_argument_errors_as_torch():
    ds = TensorDataset(rg.arange(4.))
    tds = tud.TensorDataset(torch.arange(4.))
    cases = [dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2),
             dict(num_workers=1, prefetch_factor=-1), dict(persistent_workers=True),
             dict(multiprocessing_context="fork"), dict(num_workers=1, multiprocessing_context="nope")]
    for kw in cases:
        with pytest.raises(ValueError) as te:
            tud.DataLoader(tds, **kw)
        with pytest.raises(ValueError) as re_:
            DataLoader(ds, **kw)
        assert str(re_.value) == str(te.value), kw
    with pytest.raises(TypeError, match="multiprocessing_context option should be a valid context object"):
        DataLoader(ds, num_workers=1, multiprocessing_context=3)
    with pytest.raises(AssertionError, match="prefetch_factor must be greater than 0"):
        iter(DataLoader(ds, num_workers=1, prefetch_factor=0))
    assert len(list(DataLoader(ds, num_workers=np.int64(1)))) == 4
    with pytest.raises(AssertionError, match="requires timeout == 0"):
        iter(DataLoader(ds, timeout=1))
    with pytest.warns(UserWarning, match="'pin_memory' argument is set as true but no accelerator is found"):
        assert len(list(DataLoader(ds, batch_size=2, pin_memory=True, num_workers=1))) == 2
    # more workers than CPUs: torch's warning, word for word
    n = len(os.sched_getaffinity(0)) + 1
    with pytest.warns(UserWarning) as rec:
        iter(tud.DataLoader(tds, num_workers=n))
    want = [str(w.message) for w in rec if "worker processes in total" in str(w.message)][0]
    with pytest.warns(UserWarning) as rec:
        iter(DataLoader(ds, num_workers=n))
    assert [str(w.message) for w in rec if "worker processes in total" in str(w.message)] == [want]
