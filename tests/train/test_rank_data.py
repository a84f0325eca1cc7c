"""The data side of data-parallel training from the command line (``retrograd.train.rank_data``), in
one process: the rank parts of the global order, the loader state by global position, and the
resume rules across rank counts and batch scopes. The MPI runs are in tests/cli/test_nproc.py."""
import numpy as np
import pytest

from retrograd.data import DataLoader, TensorDataset
from retrograd.io.checkpoint import CheckpointError
from retrograd.random import Generator
from retrograd.tensor import Tensor
from retrograd.train.rank_data import GlobalOrderLoader, effective_batch_text, global_batch, rank_sizes
from retrograd.cli import _without_nproc


def _data(n=50):
    return TensorDataset(Tensor(np.arange(n, dtype=np.float64).reshape(n, 1)), Tensor(np.arange(n)))


def _epoch(loader):
    return [b[1].numpy().tolist() for b in loader]


def test_rank_sizes_split_a_batch_into_near_equal_consecutive_parts():
    assert rank_sizes(32, 3) == [11, 11, 10]
    assert rank_sizes(2, 3) == [1, 1, 0]
    assert rank_sizes(64, 2) == [32, 32]
    assert sum(rank_sizes(17, 5)) == 17


@pytest.mark.parametrize("world", [1, 2, 3])
def test_the_ranks_cover_the_one_process_order_exactly_once(world):
    data = _data(50)
    plain = _epoch(DataLoader(data, batch_size=16, shuffle=True, generator=Generator(7)))
    parts = [_epoch(GlobalOrderLoader(data, 16, Generator(7), r, world)) for r in range(world)]
    assert all(len(p) == len(plain) == 4 for p in parts)
    for i, batch in enumerate(plain):
        sizes = rank_sizes(len(batch), world)
        joined = []
        for r in range(world):
            got = parts[r][i]
            assert len(got) == max(sizes[r], 1)  # an empty part runs one sample (weight 0)
            joined += got[:sizes[r]]
        assert joined == batch


def test_the_loader_state_is_a_global_position_that_another_rank_count_resumes():
    data = _data(50)
    three = GlobalOrderLoader(data, 16, Generator(3), 1, 3)
    it = iter(three)
    next(it), next(it)
    state = three.state_dict()
    assert (state["epoch"], state["batch"], state["sample"], state["global_batch"]) == (0, 2, 32, 16)
    whole = _epoch(DataLoader(data, batch_size=16, shuffle=True, generator=Generator(3)))
    two = GlobalOrderLoader(data, 16, Generator(0), 0, 2)
    two.load_state_dict(state)
    rest = _epoch(two)
    assert rest == [b[:rank_sizes(len(b), 2)[0]] for b in whole[2:]]


def test_another_global_batch_resumes_at_a_multiple_of_it_and_refuses_elsewhere():
    data = _data(50)
    src = GlobalOrderLoader(data, 8, Generator(3))
    it = iter(src)
    for _ in range(4):
        next(it)
    state = src.state_dict()  # 32 samples in
    whole = _epoch(DataLoader(data, batch_size=16, shuffle=True, generator=Generator(3)))
    dst = GlobalOrderLoader(data, 16, Generator(0))
    dst.load_state_dict(state)
    assert _epoch(dst) == whole[2:]
    next(it)  # 40 samples in: not a multiple of 16
    with pytest.raises(CheckpointError, match="stopped at sample 40 of its epoch, with global batches of 8 samples; "
                                              "this run's global batch is 16"):
        GlobalOrderLoader(data, 16, Generator(0)).load_state_dict(src.state_dict())


def test_a_plain_loader_state_resumes_in_the_global_order():
    data = _data(50)
    plain = DataLoader(data, batch_size=16, shuffle=True, generator=Generator(5))
    it = iter(plain)
    next(it)
    state = plain.state_dict()
    rest = [b[1].numpy().tolist() for b in it]
    assert len(rest) == 3
    loader = GlobalOrderLoader(data, 16, Generator(0))
    loader.load_state_dict(state)
    assert _epoch(loader) == rest


def test_global_batch_and_the_effective_batch_line():
    class Group:
        rank, size = 0, 3

    cfg = {"data": {"batch_size": 32}, "train": {"batch_scope": "global"}}
    assert global_batch(cfg, 3) == 32
    assert effective_batch_text(Group, cfg) == ('data parallel: 3 ranks (MPI), effective batch 32 = 11 + 11 + 10 per '
                                                'rank (train.batch_scope = "global", data.batch_size = 32)')
    cfg["train"]["batch_scope"] = "rank"
    assert global_batch(cfg, 3) == 96
    assert "effective batch 96 = 3 x 32 per rank" in effective_batch_text(Group, cfg)


def test_nproc_is_taken_out_of_the_command_line_the_ranks_get():
    assert _without_nproc(["train", "c.toml", "--nproc", "2", "--quiet"]) == ["train", "c.toml", "--quiet"]
    assert _without_nproc(["train", "c.toml", "--nproc=3"]) == ["train", "c.toml"]
    assert _without_nproc(["resume", "r", "--npr", "2", "--epochs", "4"]) == ["resume", "r", "--epochs", "4"]
