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


# ---------------------------------------------------------------------- evaluation split over ranks, dropout streams
class _FakeRanks:
    """Rank ``rank`` of ``size`` in one process: ``allgather`` files this rank's part in ``parts`` and
    returns every part filed so far (run ranks 1.. first, rank 0 last to get the whole list)."""

    def __init__(self, rank, size, parts):
        self.rank, self.size, self.parts = rank, size, parts

    def allgather(self, obj, what):
        self.parts[self.rank] = obj
        return [self.parts.get(r, []) for r in range(self.size)]


def _split_evaluate(make_trainer, loader, world):
    from retrograd.train.rank_data import RankSync

    parts = {}
    result = None
    for r in [*range(1, world), 0]:
        trainer = make_trainer()
        sync = RankSync.__new__(RankSync)
        sync.group = _FakeRanks(r, world, parts)
        result = sync.evaluate(trainer, loader)
    return result


@pytest.mark.parametrize("world", [2, 3, 5])
@pytest.mark.parametrize("task", ["classes", "regression", "tokens"])
def test_evaluation_split_over_ranks_gives_one_process_numbers_bitwise(world, task):
    """Each rank evaluates every N-th batch; the per-batch sums merged in batch order equal one process's
    Trainer.evaluate exactly (7 batches of a set of 101, the last one short)."""
    import retrograd as rg
    from retrograd import nn
    from retrograd.train import Trainer

    rg.manual_seed(0)
    rng = np.random.default_rng(1)
    if task == "classes":
        model, loss = nn.Linear(5, 4), nn.CrossEntropyLoss()
        x, y = rng.normal(size=(101, 5)), rng.integers(0, 4, 101)
        metrics = ("accuracy", "f1", "top2_accuracy", lambda p, t: float(p.numpy().max()))
    elif task == "regression":
        model, loss = nn.Linear(5, 2), nn.MSELoss()
        x, y = rng.normal(size=(101, 5)), rng.normal(size=(101, 2))
        metrics = ("mae", "rmse", "r2")
    else:
        model, loss = nn.Linear(5, 3), nn.CrossEntropyLoss()
        x, y = rng.normal(size=(101, 5)), rng.integers(0, 3, 101)
        metrics = ("perplexity",)
    data = TensorDataset(Tensor(x.astype(np.float32)), Tensor(y.astype(np.float32 if task == "regression" else np.int64)))
    loader = DataLoader(data, batch_size=16)

    def make():
        return Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), loss, metrics=metrics)

    one = make().evaluate(loader)
    split = _split_evaluate(make, loader, world)
    assert sorted(split) == sorted(one)
    for k, v in one.items():
        assert split[k] == v, (k, split[k], v)


def test_evaluation_with_a_metric_that_cannot_be_merged_runs_whole_on_every_rank():
    from retrograd.train.metrics import Metric
    from retrograd.train.rank_data import RankSync

    class Odd(Metric):
        name = "odd"

    class T:
        def _metrics(self):
            return [Odd()]
    sync = RankSync.__new__(RankSync)
    sync.group = _FakeRanks(0, 2, {})
    assert sync.evaluate(T(), []) is None  # the Trainer then evaluates the whole loader itself


def test_each_rank_draws_its_own_deterministic_dropout_stream():
    """RankSync.before_batch reseeds the default generator from (seed, rank, epoch, batch): ranks differ,
    the same position gives the same draws (so a resumed run continues the same streams)."""
    import retrograd as rg
    from retrograd.train.rank_data import RankSync
    from retrograd.train.trainer import TrainerState

    def draws(rank, epoch, batch, seed=3):
        sync = RankSync.__new__(RankSync)
        sync.group, sync.seed = _FakeRanks(rank, 2, {}), seed
        trainer = type("T", (), {"state": TrainerState(epoch=epoch, batch_in_epoch=batch)})()
        sync.before_batch(trainer)
        return rg.rand(6).numpy()

    a = draws(0, 1, 4)
    assert np.array_equal(a, draws(0, 1, 4))
    for other in (draws(1, 1, 4), draws(0, 1, 5), draws(0, 2, 4), draws(0, 1, 4, seed=4)):
        assert not np.array_equal(a, other)


def test_a_rank_stops_after_ctrl_c_only_where_every_rank_agreed():
    """A Ctrl-C that reached this rank after the batch's all-reduce waits for the next batch (the others
    do not know yet); at an epoch's end one more all-reduce makes a request of any rank everyone's."""
    from retrograd.train.rank_data import RankSync
    from retrograd.train.trainer import TrainerState

    class Others:
        rank, size = 0, 2

        def __init__(self, theirs):
            self.theirs = theirs

        def allreduce_(self, array, what):
            array += self.theirs
            return array

    trainer = type("T", (), {"state": TrainerState(epoch=1), "_interrupt_requested": True})()
    sync = RankSync.__new__(RankSync)
    sync.group, sync._stop = Others(np.array([0.0])), False
    assert not sync.interrupted(trainer, "batch")  # only this rank asked, after the batch's agreement
    sync._stop = True
    assert sync.interrupted(trainer, "batch") and not sync._stop
    trainer._interrupt_requested = False
    assert not sync.interrupted(trainer, "epoch")  # nobody asked
    sync.group = Others(np.array([1.0]))  # the other rank asked
    assert sync.interrupted(trainer, "epoch") and trainer._interrupt_requested


def test_each_rank_draws_its_own_deterministic_augmentation_stream():
    """GlobalOrderLoader(augment_seed=) on several ranks reseeds the dataset's generators (the
    augmentation's) from (seed, rank, epoch, batch) before each fetch: ranks differ, a second run and a
    mid-epoch resume draw the same; one process keeps the generator's own stream."""
    import retrograd as rg

    class Jitter:  # an augmentation that draws one number per batch from its generator
        def __init__(self, g):
            self.generator = g

        def __call__(self, x):
            return x + rg.rand(1, generator=self.generator, dtype=rg.float64)

    def noise(rank, world, state=None, seed=11):
        data = TensorDataset(Tensor(np.zeros((40, 1))), Tensor(np.arange(40)), transform=Jitter(Generator(5)))
        loader = GlobalOrderLoader(data, 8, Generator(7), rank, world, augment_seed=seed)
        if state is not None:
            loader.load_state_dict(state)
        out = []
        for _ in range(2):  # two epochs
            out += [float(b[0].numpy()[0, 0]) for b in loader]
        return out, loader

    r0, _ = noise(0, 2)
    r1, _ = noise(1, 2)
    assert len(r0) == 10 and len(set(r0)) == 10 and not set(r0) & set(r1)
    assert noise(0, 2)[0] == r0 and noise(0, 2, seed=12)[0] != r0
    # resume at batch 3 of the first epoch: the same draws as the uninterrupted run from there
    data = TensorDataset(Tensor(np.zeros((40, 1))), Tensor(np.arange(40)), transform=Jitter(Generator(5)))
    partial = GlobalOrderLoader(data, 8, Generator(7), 1, 2, augment_seed=11)
    it = iter(partial)
    for _ in range(3):
        next(it)
    resumed, _ = noise(1, 2, state=partial.state_dict())
    assert resumed[:2] == r1[3:5] and resumed[2:7] == r1[5:]
    # one process: the transform's generator as it is (no reseeding)
    single, _ = noise(0, 1)
    g = Generator(5)
    assert single == [float(rg.rand(1, generator=g, dtype=rg.float64).numpy()[0]) for _ in range(10)]
