"""Data parallelism of the ``retrograd`` command: every rank trains on its part of the same global
batches, so N ranks take exactly the steps one process takes with the same global batch.

**One global sample order.** Each epoch's order is the single-process run's: a ``RandomSampler``
seeded by ``train.seed`` (every rank draws the same permutation). ``RankBatchSampler`` cuts it into
global batches of ``global_batch`` samples and gives rank ``r`` of ``N`` the ``r``-th of ``N``
consecutive, near-equal parts of each (``L // N`` samples, one more for the first ``L % N`` ranks).
This is not ``rg.data.DistributedSampler``'s order (rank ``r`` takes every ``N``-th sample of the
epoch, padded), whose steps depend on ``N``; here the steps do not.

**The same numbers.** Each rank's loss is its part's mean, scaled by ``N * n_r / L`` (1 when ``N``
divides the batch), and the gradients are summed over the ranks and divided by ``N``
(``RankSync.before_step``): the mean over the ranks is the mean over the global batch, as one process
computes it (to rounding). A rank whose part of a short last batch is empty (``L < N``) runs one
sample with weight 0. The batch loss each rank reports is the global batch's mean (one small
all-reduce per batch, which also carries a Ctrl-C that any rank received, so every rank stops at
the same batch).

**Resume on another number of ranks.** ``GlobalOrderLoader.state_dict`` records the epoch, the
global batches served and the position in the epoch's global order (``sample``), with the sampler's
state at the epoch's start, none of which depends on the rank or ``N``: a checkpoint written by 3
ranks resumes on 2 (or 1) with the same global order. The global batch may differ (``train.batch_scope
= "rank"`` on another ``N``) when the checkpoint is at an epoch's end or at a multiple of the new one.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..data import DataLoader
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
    part of each global batch. ``len()`` is the number of global batches."""

    def __init__(self, dataset: Any, global_batch: int, generator: Generator, rank: int = 0, world: int = 1
                 ) -> None:
        sampler = RandomSampler(dataset, generator=generator)
        super().__init__(dataset, batch_sampler=RankBatchSampler(sampler, global_batch, rank, world))
        self.generator = generator  # where a plain shuffled DataLoader keeps it (checkpoints find it there)
        self.global_batch = global_batch

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
    """The Trainer's ``sync``: after each batch's backward, the global batch's loss and whether any rank
    was interrupted (``after_backward``); before each optimizer step, the gradients averaged over the
    ranks (``before_step``). ``group``: a ``retrograd.train.ranks.RankGroup``."""

    def __init__(self, group: Any, loader: GlobalOrderLoader, loss: RankLoss) -> None:
        self.group, self.part, self.loss = group, loader.part, loss
        loss.weighting = True

    def after_backward(self, trainer: Any, value: float, n: int) -> tuple[float, int]:
        mine = self.part.current[0] if self.part.current is not None else n
        self.part.current = None  # taken: evaluation and re-runs of the batch compute unweighted losses
        local = self.loss.last if self.loss.last is not None else value
        buf = np.array([local * mine if mine else 0.0, float(mine),
                        1.0 if getattr(trainer, "_interrupt_requested", False) else 0.0])
        st = trainer.state
        self.group.allreduce_(buf, f"the loss of epoch {st.epoch + 1}, batch {st.batch_in_epoch + 1}")
        if buf[2] > 0:  # some rank got Ctrl-C: every rank stops after this batch, gradients made global
            trainer._interrupt_requested = True
            if getattr(trainer, "_pending", 0):
                self.before_step(trainer)
        return float(buf[0] / buf[1]), int(buf[1])

    def before_step(self, trainer: Any) -> None:
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


def effective_batch_text(group: Any, cfg: dict) -> str:
    """``data parallel: 3 ranks, global batch 64 = 22 + 21 + 21 per rank (train.batch_scope = "global")``."""
    b = global_batch(cfg, group.size)
    sizes = rank_sizes(b, group.size)
    parts = f"{group.size} x {sizes[0]}" if len(set(sizes)) == 1 else " + ".join(map(str, sizes))
    return (f"data parallel: {group.size} ranks (MPI), effective batch {b} = {parts} per rank "
            f"(train.batch_scope = \"{cfg['train'].get('batch_scope', 'global')}\", data.batch_size = "
            f"{cfg['data']['batch_size']})")
