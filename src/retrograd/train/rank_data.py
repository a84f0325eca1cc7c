"""Data parallelism of the ``retrograd`` command: every rank trains on its part of the same global
batches, so N ranks take exactly the steps one process takes with the same global batch.

**One global sample order.** Each epoch's order is the single-process run's: a ``RandomSampler``
seeded by ``train.seed`` (every rank draws the same permutation). ``RankBatchSampler`` cuts it into
global batches of ``global_batch`` samples and gives rank ``r`` of ``N`` the ``r``-th of ``N``
consecutive, near-equal parts of each (``L // N`` samples, one more for the first ``L % N`` ranks).
This is not ``rg.data.DistributedSampler``'s order (rank ``r`` takes every ``N``-th sample of the
epoch, padded), whose steps depend on ``N``; here the steps do not.

**The same numbers.** Each rank's loss is its part's mean, scaled by ``N * n_r / L`` (1 when ``N``
divides the batch), and ``DistributedDataParallel`` averages the gradients over the ranks during
backward (``RankSync``): the mean over the ranks is the mean over the global batch, as one process
computes it (to rounding). BatchNorm layers become ``SyncBatchNorm`` (``train.sync_batchnorm``, the
recipe), whose statistics cover the whole global batch. A rank whose part of a short last batch is
empty (``L < N``) runs one sample with weight 0 (and adds nothing to SyncBatchNorm's statistics).
The batch loss each rank reports is the global batch's mean (one small all-reduce per batch, which
also carries a Ctrl-C that any rank received, so every rank stops at the same batch). Validation and
test sets are split by batches over the ranks and merged in one process's order (``RankSync.evaluate``).
A gradient that is NaN or inf on one rank is NaN or inf in every rank's average, so every rank's
``NaNGuard`` stops at the same batch.

**Resume on another number of ranks.** ``GlobalOrderLoader.state_dict`` records the epoch, the
global batches served and the position in the epoch's global order (``sample``), with the sampler's
state at the epoch's start, none of which depends on the rank or ``N``: a checkpoint written by 3
ranks resumes on 2 (or 1) with the same global order. The global batch may differ (``train.batch_scope
= "rank"`` on another ``N``) when the checkpoint is at an epoch's end or at a multiple of the new one.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import numpy as np

from ..data import DataLoader
from ..engine import no_grad
from ..random import default_generator
from . import metrics as metrics_mod
from ..data.sampler import BatchSampler, RandomSampler
from ..io.checkpoint import CheckpointError
from ..random import Generator

__all__ = ["RankBatchSampler", "GlobalOrderLoader", "RankLoss", "RankSync", "rank_sizes", "global_batch",
           "effective_batch_text"]


def global_batch(cfg: dict, world: int = 1) -> int:
    """The samples of one training batch over all ``world`` ranks: ``data.batch_size``, times ``world``
    with ``train.batch_scope = "rank"``."""
    b = cfg["data"]["batch_size"]
    return b * world if cfg["train"].get("batch_scope") == "rank" else b


def rank_sizes(total: int, world: int) -> list[int]:
    """The sizes of the ``world`` parts of a global batch of ``total`` samples."""
    return [total // world + (r < total % world) for r in range(world)]


def _stream_seed(seed: int, *key: int) -> int:
    """A generator seed of its own for (``seed``, ``key``): a rank's stream for one batch."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0] >> np.uint64(1))


class RankBatchSampler(BatchSampler):
    """This rank's part of each global batch of ``sampler``'s epoch order (see the module docstring).
    ``current``: ``(samples of this rank, samples of the global batch)`` of the batch yielded last."""

    def __init__(self, sampler: Any, global_batch: int, rank: int = 0, world: int = 1) -> None:
        super().__init__(sampler, global_batch, False)
        if not 0 <= rank < world:
            raise ValueError(f"RankBatchSampler: rank {rank} is not in [0, {world})")
        self.rank, self.world = rank, world
        self.current: tuple[int, int] | None = None

    def _batches(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for batch in super()._batches(chunks):
            sizes = rank_sizes(len(batch), self.world)
            start = sum(sizes[:self.rank])
            n = sizes[self.rank]
            self.current = (n, len(batch))
            yield batch[start:start + n] if n else batch[:1]  # an empty part runs one sample, weight 0

    def iter_epoch_batches(self, state: dict | None = None) -> Iterator[np.ndarray]:
        batches = super().iter_epoch_batches(state)
        if self.epoch_state is not None:
            self.epoch_state = {**self.epoch_state, "global_batch": self.batch_size}
        return batches


class GlobalOrderLoader(DataLoader):
    """The training loader of a recipe run: ``dataset`` shuffled by ``generator`` (the order of
    ``DataLoader(dataset, batch_size=global_batch, shuffle=True, generator=generator)``), this rank's
    part of each global batch. ``len()`` is the number of global batches.

    ``augment_seed`` (on more than one rank): before each batch is fetched, every generator reachable
    from ``dataset`` (the augmentation's: ``dataset.transform...generator``) is reseeded from
    (``augment_seed``, rank, epoch, batch), so each rank draws augmentations of its own, the same in
    every run and after a resume (as dropout's streams, ``RankSync.before_batch``). One process
    keeps drawing from the generators as they are."""

    def __init__(self, dataset: Any, global_batch: int, generator: Generator, rank: int = 0, world: int = 1,
                 augment_seed: int | None = None) -> None:
        sampler = RandomSampler(dataset, generator=generator)
        super().__init__(dataset, batch_sampler=RankBatchSampler(sampler, global_batch, rank, world))
        self.generator = generator  # where a plain shuffled DataLoader keeps it (checkpoints find it there)
        self.global_batch = global_batch
        self.augment_seed = augment_seed if world > 1 else None
        self._augment_generators: list | None = None

    def _fetch(self, index: Any) -> Any:
        if self.augment_seed is not None:
            gens = self._augment_generators
            if gens is None:
                from .checkpoint import find_generators
                gens = self._augment_generators = [g for _, g in sorted(find_generators(self.dataset).items())]
            for i, g in enumerate(gens):  # self._batch: the batch about to be served, counted in its epoch
                g.manual_seed(_stream_seed(self.augment_seed, self.part.rank, self._epoch, self._batch, i))
        return super()._fetch(index)

    @property
    def part(self) -> RankBatchSampler:
        return self.batch_sampler

    def state_dict(self) -> dict:
        """``{"epoch", "batch", "sampler", "sample", "global_batch"}``: global batches served, and the
        position in the epoch's global order, which no rank count changes."""
        out = super().state_dict()
        n = len(self.dataset)
        return {**out, "sample": min(out["batch"] * self.global_batch, n), "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``'s position in the global order (from this class's ``state_dict`` or a
        plain ``DataLoader``'s with the same batch size); another global batch needs a position at a
        multiple of it."""
        state = dict(state)
        saved = state.pop("global_batch", None)
        sample = state.pop("sample", None)
        if saved is not None and saved != self.global_batch and isinstance(sample, int) and \
                isinstance(state.get("batch"), int):
            if sample >= len(self.dataset):
                state["batch"] = -(-len(self.dataset) // self.global_batch)
            elif sample % self.global_batch:
                raise CheckpointError(
                    f"the checkpoint stopped at sample {sample} of its epoch, with global batches of {saved} "
                    f"samples; this run's global batch is {self.global_batch}, which does not continue there "
                    f"(resume with the same global batch: train.batch_scope = \"global\", or the same number of "
                    f"ranks; or from a checkpoint at an epoch's end)")
            else:
                state["batch"] = sample // self.global_batch
        sampler = state.get("sampler")
        if isinstance(sampler, dict):
            state["sampler"] = {k: v for k, v in sampler.items() if k != "global_batch"}
        super().load_state_dict(state)


class RankLoss:
    """The recipe's loss on a rank: ``loss_fn``'s value, scaled by ``N * n_r / L`` for a training batch
    (``part.current``, which ``RankSync.after_backward`` clears, so validation losses are not scaled)
    so that the mean over the ranks is the global batch's mean. ``last``: the unscaled value of the
    last call, a float."""

    def __init__(self, loss_fn: Any, part: RankBatchSampler) -> None:
        self.loss_fn, self.part = loss_fn, part
        self.last: float | None = None
        self.weighting = False  # set by RankSync while a training batch runs forward and backward

    def __call__(self, *args: Any) -> Any:
        loss = self.loss_fn(*args)
        self.last = float(loss.item())
        if self.weighting and self.part.current is not None:
            n, total = self.part.current
            w = self.part.world * n / total
            if w != 1:
                return loss * w
        return loss

    def __getattr__(self, name: str) -> Any:  # the wrapped loss's name, label_smoothing ...
        return getattr(self.__dict__["loss_fn"], name)


class RankSync:
    """The Trainer's ``sync`` on several ranks (``group``: a ``retrograd.train.ranks.RankGroup``):

    - ``train_model(sync)``: what trains this rank's part of a batch: ``model`` wrapped in
      ``rg.nn.parallel.DistributedDataParallel`` (``bucket_cap_mb``), whose backward averages the
      gradients over the ranks in buckets that overlap the rest of backward; ``sync=False`` (a batch
      before the last of an accumulation group) runs under ``no_sync()``. A rank whose part is empty
      runs its stand-in sample inside ``SyncBatchNorm``'s ``placeholder_batch()``.
    - ``before_batch``: with ``seed`` given, this rank's default generator is reseeded from (seed, rank,
      epoch, batch): dropout draws a stream of its own on each rank, deterministic, and the same after a
      resume (a checkpoint holds rank 0's generator only).
    - ``after_backward``: the global batch's loss and whether any rank was interrupted (one small
      all-reduce); ``interrupted``: whether the ranks agreed to stop at this batch or epoch boundary. ``before_step``: averages the gradients only when the last backward did not (an
      interrupt in the middle of an accumulation group), so that a checkpoint holds global gradients.
    - ``evaluate``: each rank evaluates every N-th batch of a loader, the per-batch sums are gathered
      and added in the batch order of one process, so every rank gets one process's numbers.
    """

    def __init__(self, group: Any, loader: GlobalOrderLoader, loss: RankLoss, model: Any = None,
                 bucket_cap_mb: float = 25.0, seed: int | None = None) -> None:
        self.group, self.part, self.loss = group, loader.part, loss
        loss.weighting = True
        self.seed = seed
        self.ddp = None
        if model is not None:
            from ..nn.parallel import DistributedDataParallel
            self.ddp = DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb, find_unused_parameters=True)
        self._synced = True  # the last backward averaged the gradients over the ranks
        self._stop = False  # the last batch's all-reduce carried a Ctrl-C of some rank

    # ------------------------------------------------------------------ training
    def before_batch(self, trainer: Any) -> None:
        if self.seed is None:
            return
        st = trainer.state
        default_generator.manual_seed(_stream_seed(self.seed, self.group.rank, st.epoch, st.batch_in_epoch))

    def train_model(self, sync: bool = True) -> Any:
        """The callable the Trainer runs this rank's part of a training batch through; None without DDP
        (the Trainer's model, and ``before_step`` averages the gradients)."""
        self._synced = sync and self.ddp is not None
        return _Forward(self.ddp, sync, self.part) if self.ddp is not None else None

    def after_backward(self, trainer: Any, value: float, n: int) -> tuple[float, int]:
        mine = self.part.current[0] if self.part.current is not None else n
        self.part.current = None  # taken: evaluation and re-runs of the batch compute unweighted losses
        local = self.loss.last if self.loss.last is not None else value
        buf = np.array([local * mine if mine else 0.0, float(mine),
                        1.0 if getattr(trainer, "_interrupt_requested", False) else 0.0])
        st = trainer.state
        self.group.allreduce_(buf, f"the loss of epoch {st.epoch + 1}, batch {st.batch_in_epoch + 1}")
        self._stop = buf[2] > 0
        if self._stop:  # some rank got Ctrl-C: every rank stops after this batch, gradients made global
            trainer._interrupt_requested = True
            if getattr(trainer, "_pending", 0):
                self.before_step(trainer)
        return float(buf[0] / buf[1]), int(buf[1])

    def interrupted(self, trainer: Any, boundary: str) -> bool:
        """Whether every rank stops here after a Ctrl-C: after a batch, what that batch's all-reduce
        agreed (a Ctrl-C that reaches a rank later waits for the next batch's); at an epoch's end, one
        more small all-reduce of the ranks' requests. A rank never stops alone."""
        if boundary == "batch":
            stop, self._stop = self._stop, False
            return stop
        flag = np.array([1.0 if getattr(trainer, "_interrupt_requested", False) else 0.0])
        self.group.allreduce_(flag, f"the end of epoch {trainer.state.epoch}")
        if flag[0] > 0:
            trainer._interrupt_requested = True
        return bool(flag[0] > 0)

    def before_step(self, trainer: Any) -> None:
        if self._synced:
            return
        opt = trainer.optimizer
        st = trainer.state
        what = f"the gradients of optimizer step {st.global_step + 1}"
        if hasattr(opt, "flat_grads"):
            buffers = opt.flat_grads()
        else:  # wrappers without flat buffers (Lookahead, Muon + fallback): one call per parameter
            from ..tensor import wrap_array
            buffers = []
            for p in trainer.params:
                if p.grad is None:
                    p.grad = wrap_array(np.zeros(p.shape, dtype=p._array.dtype))
                buffers.append(p.grad._array)
        for g in buffers:
            self.group.allreduce_(g, what)
            g /= self.group.size
        self._synced = True

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, trainer: Any, loader: Any) -> dict | None:
        """``Trainer.evaluate`` split over the ranks (see the class docstring); None when a metric is not
        one whose sums can be merged (the Trainer then evaluates the whole loader on every rank)."""
        metrics = trainer._metrics()
        if not all(_mergeable(m) for m in metrics):
            return None
        from .step import batch_size, forward_loss

        rank, world = self.group.rank, self.group.size
        mine: list = []
        was_training = getattr(trainer.model, "training", True)
        trainer.model.eval()
        try:
            with no_grad():
                for k, batch in enumerate(loader):
                    if k % world != rank:
                        continue
                    inputs, target = trainer.unpack_batch(batch)
                    out, loss = forward_loss(trainer.model, trainer.loss_fn, inputs, target)
                    n = batch_size(inputs, target)
                    states = []
                    if target is not None:
                        for m in metrics:
                            fresh = copy.deepcopy(m)
                            fresh.reset()
                            fresh.update(out, target)
                            states.append(_sums(fresh))
                    mine.append((k, float(loss.item()) * n, n, states))
        finally:
            trainer.model.train(was_training)
        parts = self.group.allgather(mine, "the evaluation's per-batch sums")
        rows = sorted((row for part in parts for row in part), key=lambda row: row[0])
        total, count = 0.0, 0
        for m in metrics:
            m.reset()
        for _, loss_n, n, states in rows:
            total += loss_n
            count += n
            for m, st in zip(metrics, states):
                _add_sums(m, st)
        result = {"loss": total / count if count else float("nan")}
        for m in metrics:
            result[m.name] = m.compute()
        return result


class _Forward:
    """This rank's forward through DDP: synchronised or under ``no_sync()``; a stand-in part (empty
    share of a short batch) inside SyncBatchNorm's ``placeholder_batch()``."""

    def __init__(self, ddp: Any, sync: bool, part: RankBatchSampler) -> None:
        self.ddp, self.sync, self.part = ddp, sync, part

    def __call__(self, *inputs: Any) -> Any:
        from ..nn.sync_batchnorm import placeholder_batch

        empty = self.part.current is not None and self.part.current[0] == 0
        with placeholder_batch(empty), (contextlib.nullcontext() if self.sync else self.ddp.no_sync()):
            return self.ddp(*inputs)


_MERGEABLE = (metrics_mod.Accuracy, metrics_mod.TopKAccuracy, metrics_mod.F1Macro, metrics_mod.MAE,
              metrics_mod.RMSE, metrics_mod.R2, metrics_mod.Perplexity, metrics_mod.CallableMetric)


def _mergeable(metric: Any) -> bool:
    return type(metric) in _MERGEABLE


def _sums(metric: Any) -> dict:
    """The additive state of a built-in metric after one batch: its numbers, arrays and count dicts."""
    return {k: v for k, v in vars(metric).items()
            if isinstance(v, (int, float, np.ndarray, np.number, dict)) and not isinstance(v, bool)
            and k not in ("k", "num_classes", "ignore_index")}


def _add_sums(metric: Any, sums: dict) -> None:
    """``metric``'s state plus one batch's ``sums``, added as its own ``update`` adds them."""
    for k, v in sums.items():
        cur = getattr(metric, k)
        if isinstance(v, dict):
            for c, x in v.items():
                cur[c] = cur.get(c, 0) + x
        else:
            setattr(metric, k, cur + v)


def effective_batch_text(group: Any, cfg: dict) -> str:
    """``data parallel: 3 ranks, global batch 64 = 22 + 21 + 21 per rank (train.batch_scope = "global")``."""
    b = global_batch(cfg, group.size)
    sizes = rank_sizes(b, group.size)
    parts = f"{group.size} x {sizes[0]}" if len(set(sizes)) == 1 else " + ".join(map(str, sizes))
    return (f"data parallel: {group.size} ranks (MPI), effective batch {b} = {parts} per rank "
            f"(train.batch_scope = \"{cfg['train'].get('batch_scope', 'global')}\", data.batch_size = "
            f"{cfg['data']['batch_size']})")
