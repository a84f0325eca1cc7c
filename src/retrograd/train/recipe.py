"""The recipe: a validated training config (``retrograd.train.config.validate``) turned into a
run: data, model, loss, optimizer, schedule, loaders and the ``Trainer`` with its callbacks.
The ``retrograd`` command, ``rg.tune``'s ``TuneTrainFn`` and Python scripts build runs here::

    from retrograd.train import config, recipe
    cfg = config.validate(config.load_config("examples/fashion_mlp.toml"))
    setup = recipe.prepare(cfg)                      # fills in the values derived from the data
    trainer = recipe.make_trainer(setup, run_dir=None)
    history = recipe.fit(trainer, setup)   # trainer.fit on the setup's loaders, start-up garbage collected

Every name comes from one table per kind (see ``retrograd.train.config``); a model whose
arguments depend on the data gets them from ``DATA_DERIVED_KWARGS``.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import pathlib
from typing import Any, Callable, Sequence

from .. import accel
from .. import nn
from ..data import DataLoader
from ..data.presets import PRESETS, DataBundle, build_data
from ..optim import scheduling
from ..random import Generator, manual_seed
from . import callbacks as cb
from .callback import Callback
from ..optim import CombinedOptimizer, Lookahead, Muon, Optimizer, muon_param_groups
from .config import (ConfigError, default_lr, is_schedule_function, model_factory, optim_lr, optimizer_class,
                     required_args, scheduler_factory)
from .losses import SequenceAwareLoss, make_loss
from .rank_data import GlobalOrderLoader, RankLoss, RankSync, global_batch
from .ranks import SingleProcess
from .trainer import Trainer
from .transfer import apply_transfer, model_kwargs, unfreezing_callback

__all__ = ["Setup", "prepare", "data_seed", "global_batch", "build_optimizer", "make_callbacks", "make_trainer", "fit",
           "DATA_DERIVED_KWARGS"]


@dataclasses.dataclass
class Setup:
    """Everything one run needs, built from ``cfg`` by ``prepare``."""
    cfg: dict
    data: DataBundle
    model: nn.Module
    optimizer: Any
    scheduler: Any
    interval: str
    loss_fn: SequenceAwareLoss
    train_loader: DataLoader
    val_loader: DataLoader | None
    test_loader: DataLoader | None
    ranks: Any = None  # the data-parallel ranks (retrograd.train.ranks.RankGroup) when there are several


# ---------------------------------------------------------------------- model arguments from the data
def _data_name(cfg: dict) -> str:
    d = cfg["data"]
    return d["name"] if d.get("path") is None else f"your data {pathlib.Path(d['path']).name}"


def _with_image_hint(cfg: dict) -> str:
    d = cfg["data"]
    if d.get("path") is not None:
        return " (images come from an image folder or an array of shape (N, H, W) or (N, C, H, W))"
    return " (set data.images = true)" if PRESETS[d["name"]].images_option else ""


def _inputs_text(data: DataBundle) -> str:
    spec = data.inputs
    if spec is not None and spec.feature_names and len(spec.feature_names) != len(spec.columns or ()):
        return f"{data.in_features} features after one-hot encoding {', '.join(spec.categorical)}"
    return f"{data.in_features} features"


def _outputs_text(data: DataBundle) -> str:
    if data.task == "regression":
        return f"{data.num_outputs} regression target{'s' if data.num_outputs != 1 else ''}"
    return f"{data.num_classes} classes"


def _mlp_sizes(cfg: dict, data: DataBundle) -> None:
    m = cfg["model"]
    if "sizes" not in m:
        raise ConfigError(f"model.sizes: a value is required for mlp, e.g. sizes = [{data.in_features}, 256, "
                          f"{data.num_outputs}] for {_data_name(cfg)} ({_inputs_text(data)}, {_outputs_text(data)})")
    sizes = m["sizes"]
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(isinstance(s, int) for s in sizes):
        raise ConfigError(f"model.sizes: expected a list of at least two ints, got {sizes!r}")
    if sizes[0] != data.in_features:
        raise ConfigError(f"model.sizes: the first size must be the input size of {_data_name(cfg)} "
                          f"({_inputs_text(data)}), got {sizes[0]}")
    if sizes[-1] != data.num_outputs:
        raise ConfigError(f"model.sizes: the last size must be the number of "
                          f"{'outputs' if data.task == 'regression' else 'classes'} of {_data_name(cfg)} "
                          f"({_outputs_text(data)}), got {sizes[-1]}")


def _cnn_shapes(cfg: dict, data: DataBundle) -> None:
    if len(data.in_shape) != 3:
        raise ConfigError(f"model.name: cnn needs images, but {_data_name(cfg)} gives features of shape "
                          f"{data.in_shape}" + _with_image_hint(cfg))
    m = cfg["model"]
    m.setdefault("in_channels", data.in_shape[0])
    m.setdefault("input_size", list(data.in_shape[1:]))
    m.setdefault("num_classes", data.num_outputs)


def _gpt_vocab(cfg: dict, data: DataBundle) -> None:
    if data.vocab is None:
        text = ", ".join(n for n, p in PRESETS.items() if p.kind == "text")
        raise ConfigError(f"model.name: gpt needs text data ({text}, or data.path to a .txt file), got "
                          f"{_data_name(cfg)}")
    cfg["model"].setdefault("vocab_size", len(data.vocab))
    cfg["model"].setdefault("block_size", cfg["data"]["block_size"])


def _pretrained_labels(cfg: dict, data: DataBundle) -> None:
    cfg["model"].setdefault("task", "regression" if data.task == "regression" else "classification")
    cfg["model"].setdefault("num_labels", data.num_outputs)


# [model] name -> fn(cfg, data) that checks the model's arguments against the data and fills in
# the ones derived from it (cfg["model"] updated in place); models not listed take theirs as given
DATA_DERIVED_KWARGS: dict[str, Callable[[dict, DataBundle], None]] = {
    "mlp": _mlp_sizes, "cnn": _cnn_shapes, "gpt": _gpt_vocab, "pretrained": _pretrained_labels}


# ---------------------------------------------------------------------- optimizer and schedule
def _steps_per_epoch(cfg: dict, n_train: int, world: int = 1) -> int:
    batches = math.ceil(n_train / global_batch(cfg, world))
    return max(1, math.ceil(batches / cfg["train"]["accumulate"]))


def _fill_schedule_kwargs(cfg: dict, n_train: int, world: int = 1) -> None:
    s = cfg.get("schedule")
    if not s:
        return
    f = scheduler_factory(s["name"])
    s.update(scheduling.schedule_defaults(
        s["name"], s, lr=optim_lr(cfg["optim"]),
        total_steps=_steps_per_epoch(cfg, n_train, world) * cfg["train"]["epochs"], epochs=cfg["train"]["epochs"],
        interval=s["interval"]))
    req = required_args(f, set() if is_schedule_function(f) else {"self", "optimizer"})
    missing = [a for a in req if a not in s]
    if missing:
        raise ConfigError(f"schedule.{missing[0]}: a value is required for {s['name']} (required: "
                          f"{', '.join(req)})")


# what an optimizer or scheduler raises on arguments it cannot take (Adafactor's eps=[1] indexes past the end)
_BUILD_ERRORS = (TypeError, ValueError, IndexError, KeyError, ArithmeticError)


def _reason(e: Exception) -> str:
    return str(e) if isinstance(e, (TypeError, ValueError)) else f"{type(e).__name__}: {e} (check its arguments)"


def build_optimizer(cfg: dict, params) -> tuple[Any, Any, str]:
    """``(optimizer, scheduler or None, scheduler interval)`` from ``[optim]`` and ``[schedule]``
    through ``optim.scheduling.scheduled_optimizer``: a schedule function becomes the optimizer's
    ``lr`` (stepped every step), a scheduler class wraps the optimizer. ``params``: the model (Muon
    needs it to split its parameters, ``rg.optim.muon_param_groups``) or its parameters."""
    params = params if hasattr(params, "parameters") else list(params)

    def make(**lr: Any):
        try:
            return _optimizer(cfg["optim"], params, lr.get("lr"))
        except ConfigError:
            raise
        except _BUILD_ERRORS as e:
            raise ConfigError(f"optim: {_reason(e)}") from None

    s = cfg.get("schedule")
    if not s:
        return make(), None, "epoch"
    args = {k: (tuple(v) if isinstance(v, list) and k != "milestones" else v)
            for k, v in s.items() if k not in ("name", "interval")}
    try:
        if is_schedule_function(scheduler_factory(s["name"])):
            opt, scheduler = scheduling.scheduled_optimizer(make, s["name"], **args)
        else:
            opt = make()
            scheduler = scheduler_factory(s["name"])(opt, **_per_group_lrs(args, opt.param_groups))
    except ConfigError:
        raise
    except _BUILD_ERRORS as e:
        raise ConfigError(f"schedule: {s['name']}: {_reason(e)}") from None
    return opt, scheduler, ("step" if scheduler is None else s["interval"])


def _optimizer(o: dict, params: Any, lr: Any = None) -> Optimizer:
    """The optimizer of a validated ``[optim]`` table on ``params`` (a model or a list of parameters);
    ``lr`` (a schedule) replaces the table's. Muon takes the model's hidden 2-D weights and its
    ``fallback`` the rest, whose lr follows the same schedule scaled by ``fallback.lr / lr``;
    lookahead wraps the optimizer of its ``inner`` table."""
    o = dict(o)
    name = o.pop("name")
    cls, preset = optimizer_class(name)
    if cls is Lookahead:
        inner = _optimizer(o.pop("inner"), params, lr)
        return _named(cls.__name__, lambda: cls(inner, **o))
    held = o.pop("fallback", None)
    kwargs = {**preset, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in o.items()}}
    if lr is not None:
        kwargs["lr"] = lr
    if cls is not Muon:
        # a model may ask for parameter groups of its own (PretrainedTask's layer-wise LR decay)
        groups = params.optimizer_param_groups(kwargs.get("lr", default_lr(name))) \
            if hasattr(params, "optimizer_param_groups") and not callable(lr) else None
        if groups is None and callable(lr) and getattr(params, "layer_lr_decay", 1.0) != 1.0:
            raise ConfigError("model.layer_lr_decay: needs a fixed optim.lr or a scheduler class, not a schedule "
                              "function as lr")
        return _named(cls.__name__, lambda: cls(groups if groups is not None else params.parameters()
                                                if hasattr(params, "parameters") else params, **kwargs))
    if not hasattr(params, "parameters"):
        raise ConfigError("optim.name: muon needs the model (to give its hidden 2-D weights to Muon and the rest "
                          "to optim.fallback), not a list of parameters")
    hidden, rest = _named("Muon", lambda: muon_param_groups(params))
    muon = _named("Muon", lambda: cls(hidden, **kwargs))
    if not rest:
        return muon
    held_lr = None
    if callable(lr):  # the fallback's lr follows Muon's schedule, scaled
        ratio = optim_lr(held) / o.get("lr", default_lr("muon"))
        held_lr = _scaled(lr, ratio)
    return CombinedOptimizer(muon, _optimizer(held, rest, held_lr))


# a scheduler's absolute learning rates, which one value would set alike in every param group
_LR_VALUED = ("max_lr", "base_lr", "min_lr")


def _per_group_lrs(args: dict, groups: list[dict]) -> dict:
    """With several param groups of different lrs (muon and its fallback), a scheduler's one
    ``max_lr``/``base_lr``/``min_lr`` is the first group's, scaled by each group's lr relative to it:
    the fallback follows the schedule as with a schedule function, instead of taking Muon's lr."""
    first = float(groups[0]["lr"]) if groups else 0.0
    if len(groups) < 2 or first <= 0 or len({float(g["lr"]) for g in groups}) < 2:
        return args
    return {k: ([v * float(g["lr"]) / first for g in groups] if k in _LR_VALUED and isinstance(v, (int, float))
                else v) for k, v in args.items()}


def _named(who: str, build: Callable) -> Any:
    try:
        return build()
    except _BUILD_ERRORS as e:
        raise ConfigError(f"optim: {who}: {_reason(e)}") from None


def _scaled(schedule: Callable, ratio: float) -> Callable:
    def scaled(step: int) -> float:
        return schedule(step) * ratio
    return scaled


# ---------------------------------------------------------------------- loaders, threads, the whole setup
def _loaders(cfg: dict, data: DataBundle, ranks: Any) -> tuple:
    """The training loader (``rank_data.GlobalOrderLoader``: this rank's part of each global batch, in
    the order of a shuffled ``DataLoader`` of that batch size), validation and test loaders (every
    rank evaluates the whole sets: the same numbers on each, no metric to merge)."""
    d, seed = cfg["data"], cfg["train"]["seed"]
    eval_bs = d["eval_batch_size"] or max(d["batch_size"], 500)
    train = GlobalOrderLoader(data.train, global_batch(cfg, ranks.size), Generator(seed), ranks.rank, ranks.size,
                              augment_seed=data_seed(cfg) + 1)  # per-rank augmentation streams
    val = DataLoader(data.val, batch_size=eval_bs) if data.val is not None else None
    test = DataLoader(data.test, batch_size=eval_bs) if data.test is not None else None
    return train, val, test


def _limit_threads(threads: int | None) -> None:
    """Limit the BLAS thread pools and the fused optimizer kernels' threads for the
    rest of the process (``train.threads``)."""
    if threads is None:
        return
    accel.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ConfigError("train.threads: needs threadpoolctl; install it with: python3 -m pip install "
                          "'retrograd[train]' (or threadpoolctl)") from None
    threadpool_limits(limits=threads, user_api="blas")


def data_seed(cfg: dict) -> int:
    """The seed of the data split, subsets and augmentation: ``data.seed``, else ``train.seed``."""
    return cfg["train"]["seed"] if cfg["data"].get("seed") is None else cfg["data"]["seed"]


def prepare(cfg: dict, data: DataBundle | None = None, *, config_path: str | None = None, ranks: Any = None,
            init_weights: bool = True) -> Setup:
    """Everything a run needs from a validated config: data, model (initialised from
    ``train.seed``), optimizer, scheduler, loss and loaders. Fills in the values derived
    from the data (``cfg`` is updated in place; write it as the run's resolved config).
    ``data``: an already loaded ``build_data(cfg["data"], data_seed(cfg))`` to share between runs.
    ``ranks``: the data-parallel ranks (``retrograd.train.ranks``; default one process): the training
    loader gives this rank its part of each global batch and the loss is weighted for it
    (``rank_data``), BatchNorm layers become SyncBatchNorm (``train.sync_batchnorm``); ``make_trainer``
    then averages the gradients over the ranks.
    ``init_weights=False``: leave out ``model.init_from`` (resume and evaluate load the run's own weights)."""
    ranks = ranks if ranks is not None else SingleProcess()
    seed = cfg["train"]["seed"]
    _limit_threads(cfg["train"]["threads"])
    if data is None:
        data = build_data(cfg["data"], data_seed(cfg))
    fill = DATA_DERIVED_KWARGS.get(cfg["model"]["name"])
    if fill is not None:
        fill(cfg, data)
    _fill_schedule_kwargs(cfg, len(data.train), ranks.size)
    factory = model_factory(cfg["model"]["name"], pathlib.Path(config_path).parent if config_path else None)
    kwargs, transfer_keys = model_kwargs(cfg["model"], factory)
    manual_seed(seed)
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {cfg['model']['name']}: {e}") from None
    apply_transfer(model, transfer_keys, init_weights=init_weights)  # init_from, trainable_layers, ...
    if ranks.size > 1 and cfg["train"]["sync_batchnorm"]:  # batch statistics over every rank's part
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer, scheduler, interval = build_optimizer(cfg, model)
    train, val, test = _loaders(cfg, data, ranks)
    loss = make_loss(cfg["train"])
    setup = Setup(cfg, data, model, optimizer, scheduler, interval, loss, train, val, test)
    if ranks.size > 1:
        setup.loss_fn = RankLoss(loss, train.part)
        setup.ranks = ranks
    return setup


# ---------------------------------------------------------------------- trainer
def _monitor_mode(monitor: str) -> str:
    return "min" if any(k in monitor for k in ("loss", "mae", "rmse", "perplexity", "ppl")) else "max"


def make_callbacks(cfg: dict, run_dir: pathlib.Path | None, *, quiet: bool = False, checkpoints: bool = True,
                   writes: bool = True) -> list:
    """The callbacks ``[train]`` asks for; with a ``run_dir``, a metrics log and (``checkpoints``)
    best/last checkpoints there. ``writes=False`` (a data-parallel rank other than 0): the same list
    with an inert ``Callback`` in place of each one that writes into ``run_dir`` and no progress bar,
    so that every rank keys the callback states of a checkpoint by the same positions."""
    t = cfg["train"]
    out: list = []
    # the same callbacks in the same order for train and resume: checkpoints key callback state by position
    out.append(cb.ProgressBar(disable=quiet or not t["progress"] or not writes))
    if run_dir is not None:
        out.append(cb.MetricLogger(str(run_dir)) if writes else Callback())
        if checkpoints and (t["save_best"] or t["save_last"]) and not writes:
            out.append(Callback())
        elif checkpoints and (t["save_best"] or t["save_last"]):
            out.append(cb.ModelCheckpoint(str(run_dir), monitor=t["monitor"], mode=_monitor_mode(t["monitor"]),
                                          save_best=t["save_best"], save_last=t["save_last"],
                                          every_n_steps=t["checkpoint_every_n_steps"]))
    out.append(cb.LRMonitor())
    if t["nan_guard"]:
        out.append(cb.NaNGuard(str(run_dir) if run_dir is not None and writes else None))
    if t["early_stopping"] is not None:
        out.append(cb.EarlyStopping(monitor=t["monitor"], mode=_monitor_mode(t["monitor"]),
                                    patience=t["early_stopping"]))
    if t["gradient_flow"]:
        out.append(cb.GradientFlow(every_n_steps=t["gradient_flow"],
                                   run_dir=str(run_dir) if run_dir is not None and writes else None))
    if "unfreeze_every" in cfg["model"]:  # gradual unfreezing, the last callback
        unfreeze = unfreezing_callback(cfg["model"], model_factory(cfg["model"]["name"]))
        if unfreeze is not None:
            out.append(unfreeze)
    return out


def make_trainer(setup: Setup, run_dir: pathlib.Path | None, *, quiet: bool = False, checkpoints: bool = True,
                 extra_callbacks: Sequence = ()) -> Trainer:
    """The ``Trainer`` of a ``Setup``: its callbacks (``make_callbacks``) then ``extra_callbacks``. With
    several ranks (``setup.ranks``) only rank 0 writes into ``run_dir`` (the others get the same
    callbacks, inert where they would write: ``make_callbacks(writes=False)``), and the Trainer
    trains the model wrapped in ``DistributedDataParallel`` (``rank_data.RankSync``; call it after
    ``ranks.start``, whose start-up check must come before DDP's first collective)."""
    t = setup.cfg["train"]
    writes = setup.ranks is None or setup.ranks.rank == 0
    return Trainer(setup.model, setup.optimizer, setup.loss_fn, scheduler=setup.scheduler,
                   scheduler_interval=setup.interval, metrics=tuple(t["metrics"]),
                   callbacks=make_callbacks(setup.cfg, run_dir, quiet=quiet, checkpoints=checkpoints, writes=writes)
                   + list(extra_callbacks),
                   grad_clip=t["grad_clip"], accumulate=t["accumulate"],
                   run_dir=str(run_dir) if run_dir is not None and writes else None, seed=t["seed"], config=setup.cfg,
                   sync=RankSync(setup.ranks, setup.train_loader, setup.loss_fn, setup.model,
                                 bucket_cap_mb=t["bucket_cap_mb"], seed=t["seed"]) if setup.ranks is not None else None)


def fit(trainer: Trainer, setup: Setup, resume_from: str | None = None) -> dict:
    """``trainer.fit`` on ``setup``'s loaders for ``train.epochs`` epochs (``resume_from``: a
    checkpoint folder): what the ``retrograd`` command runs. First one full collection of the
    garbage that building the run left (``gc.collect``, unless the program turned the collector
    off): otherwise the collector's first full pass over the ~170,000 start-up objects of
    ``examples/fashion_cnn.toml`` (50-60 ms) lands among the first batches."""
    if gc.isenabled():
        gc.collect()
    return trainer.fit(setup.train_loader, setup.val_loader, epochs=setup.cfg["train"]["epochs"],
                       resume_from=resume_from)
