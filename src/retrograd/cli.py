"""The ``retrograd`` command: train, resume, evaluate, compare optimizers, find a
learning rate, plot a run and sample text from a trained GPT, all from a TOML config.

    retrograd train examples/fashion_mlp.toml --set optim.lr=0.002
    retrograd resume runs/fashion_mlp
    retrograd evaluate runs/fashion_mlp --checkpoint best
    retrograd compare examples/fashion_mlp.toml --optimizers sgd,momentum,adam,adamw
    retrograd lr-find examples/fashion_mlp.toml
    retrograd plot runs/fashion_mlp
    retrograd generate runs/shakespeare_gpt --prompt "ROMEO:" --max-new-tokens 200 --temperature 0.8

A run folder holds ``config.toml`` (the resolved config: every default and
every value derived from the data written out, so ``resume`` and ``evaluate``
rebuild exactly the same run), the metrics log, ``checkpoints/{best,last}``,
plots and ``summary.json``. See ``retrograd.config`` for the config keys.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import pathlib
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from . import accel
from . import functional as F
from . import nn
from .config import (ConfigError, apply_overrides, dumps, is_schedule_function, load_config, model_factory,
                     optimizer_class, optimizer_names, required_args, scheduler_factory, validate)
from .data import (DataLoader, DataNotInstalledError, Subset, TensorDataset, fashion_mnist, mnist_5k, shakespeare,
                   sklearn_dataset, transforms)
from .data.text import Vocabulary
from .random import Generator, manual_seed
from .tensor import Tensor

__all__ = ["main", "prepare", "make_trainer", "Setup", "DataBundle", "build_data", "make_loss", "markdown_table"]

# learning rates `compare` gives optimizers the config does not configure
COMPARE_LRS = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3,
               "radam": 1e-3, "adamax": 2e-3, "lion": 1e-4, "rmsprop": 1e-3, "adagrad": 1e-2, "muon": 1e-2}


# ---------------------------------------------------------------------- data
@dataclasses.dataclass
class DataBundle:
    """The three splits and what a model needs to know about them."""
    train: Any
    val: Any
    test: Any
    in_shape: tuple
    num_classes: int
    vocab: Vocabulary | None = None

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_shape))


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def _subset(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray | None:
    return None if k is None or k >= n else np.sort(rng.choice(n, k, replace=False))


def _augment(name: str, seed: int) -> Callable | None:
    g = Generator(seed + 1)
    if name == "fashion_mnist":
        return transforms.Compose([transforms.RandomCrop(28, padding=2, generator=g),
                                   transforms.RandomHorizontalFlip(generator=g)])
    if name == "mnist_5k":
        return transforms.RandomCrop(28, padding=2, generator=g)
    return transforms.RandomCrop(8, padding=1, generator=g)  # digits as images


def build_data(data: dict, seed: int) -> DataBundle:
    """Load ``[data]`` and split it: validation from the training set (``val_fraction``), test
    from the set's own test split or ``test_fraction`` of it; all splits seeded by ``seed``."""
    name = data["name"]
    rng = np.random.default_rng(seed)
    if name == "shakespeare":
        bs = data["block_size"]
        train = shakespeare(bs, "train", data["val_fraction"])
        val = shakespeare(bs, "val", data["val_fraction"])
        vocab = val.vocab
        sel = _subset(len(train), data["train_samples"], rng)
        train = train if sel is None else Subset(train, sel)
        sel = _subset(len(val), data["val_samples"], rng)
        val = val if sel is None else Subset(val, sel)
        return DataBundle(train, val, None, (bs,), len(vocab), vocab)
    if name in ("fashion_mnist", "mnist_5k"):
        ds = fashion_mnist("train") if name == "fashion_mnist" else mnist_5k()
        x, y = ds.arrays
        if name == "fashion_mnist":
            xt, yt = fashion_mnist("test").arrays
        else:
            tr, te = _split(len(y), data["test_fraction"], rng)
            x, y, xt, yt = x[tr], y[tr], x[te], y[te]
    else:
        ds = sklearn_dataset(name, images=data["images"])
        x, y = ds.arrays
        tr, te = _split(len(y), data["test_fraction"], rng)
        x, y, xt, yt = x[tr], y[tr], x[te], y[te]
        standardize = data["standardize"] if data["standardize"] is not None else name != "digits"
        if standardize:  # statistics of the training part only
            mean, std = x.mean(axis=0), x.std(axis=0)
            std = np.where(std == 0, 1, std)
            x, xt = ((x - mean) / std).astype(np.float32), ((xt - mean) / std).astype(np.float32)
    tr, va = _split(len(y), data["val_fraction"], rng)
    xv, yv, x, y = x[va], y[va], x[tr], y[tr]
    sel = _subset(len(y), data["train_samples"], rng)
    if sel is not None:
        x, y = x[sel], y[sel]
    sel = _subset(len(yv), data["val_samples"], rng)
    if sel is not None:
        xv, yv = xv[sel], yv[sel]
    aug = _augment(name, seed) if data["augment"] else None
    if aug is not None and x.ndim != 4:
        raise ConfigError(f"data.augment: needs images; {name} gives features of shape {x.shape[1:]}"
                          + (" (set data.images = true)" if name == "digits" else ""))
    num_classes = int(max(y.max(), yt.max()) + 1)
    return DataBundle(TensorDataset(x, y, transform=aug), TensorDataset(xv, yv) if len(yv) else None,
                      TensorDataset(xt, yt), tuple(x.shape[1:]), num_classes)


# ---------------------------------------------------------------------- loss
class SequenceAwareLoss:
    """``loss(outputs, targets)`` by name; logits ``(B, T, C)`` with targets ``(B, T)`` are flattened
    to ``(B*T, C)``; regression-style losses compare outputs with one-hot class targets."""

    def __init__(self, name: str, label_smoothing: float = 0.0) -> None:
        self.name, self.label_smoothing = name, label_smoothing

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        if out.ndim > 2 and y.ndim == out.ndim - 1:
            out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        if self.name == "cross_entropy":
            return F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        if self.name == "nll":
            return F.nll_loss(out, y)
        if y.ndim == 1 and out.ndim == 2 and y.dtype not in (out.dtype,):  # class ids -> one-hot
            y = Tensor(np.eye(out.shape[-1], dtype=np.float32)[np.asarray(y.numpy(), dtype=np.int64)])
        fn = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss, "huber": F.huber_loss,
              "bce_with_logits": F.binary_cross_entropy_with_logits}[self.name]
        return fn(out, y)

    def __repr__(self) -> str:
        return f"SequenceAwareLoss({self.name!r})"


def make_loss(train: dict) -> SequenceAwareLoss:
    return SequenceAwareLoss(train["loss"], train["label_smoothing"])


# ---------------------------------------------------------------------- everything for one run
@dataclasses.dataclass
class Setup:
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


def _fill_model_kwargs(cfg: dict, data: DataBundle) -> None:
    m = cfg["model"]
    name = m["name"]
    if name == "mlp":
        if "sizes" not in m:
            raise ConfigError(f"model.sizes: a value is required for mlp, e.g. sizes = [{data.in_features}, 256, "
                              f"{data.num_classes}]")
        sizes = m["sizes"]
        if not isinstance(sizes, list) or len(sizes) < 2 or not all(isinstance(s, int) for s in sizes):
            raise ConfigError(f"model.sizes: expected a list of at least two ints, got {sizes!r}")
        if sizes[0] != data.in_features:
            raise ConfigError(f"model.sizes: the first size must be the input size of {cfg['data']['name']} "
                              f"({data.in_features}), got {sizes[0]}")
        if sizes[-1] != data.num_classes:
            raise ConfigError(f"model.sizes: the last size must be the number of classes of "
                              f"{cfg['data']['name']} ({data.num_classes}), got {sizes[-1]}")
    elif name == "cnn":
        if len(data.in_shape) != 3:
            raise ConfigError(f"model.name: cnn needs images, but {cfg['data']['name']} gives features of shape "
                              f"{data.in_shape}" + (" (set data.images = true)" if cfg["data"]["name"] == "digits"
                                                    else ""))
        m.setdefault("in_channels", data.in_shape[0])
        m.setdefault("input_size", list(data.in_shape[1:]))
        m.setdefault("num_classes", data.num_classes)
    elif name == "gpt":
        if data.vocab is None:
            raise ConfigError(f"model.name: gpt needs a text data set (shakespeare), got {cfg['data']['name']!r}")
        m.setdefault("vocab_size", len(data.vocab))
        m.setdefault("block_size", cfg["data"]["block_size"])


def _steps_per_epoch(cfg: dict, n_train: int) -> int:
    batches = math.ceil(n_train / cfg["data"]["batch_size"])
    return max(1, math.ceil(batches / cfg["train"]["accumulate"]))


_LR_ARGS = ("lr", "init_lr", "peak_lr", "max_lr")
_STEP_ARGS = ("steps", "decay_steps", "total_steps")


def _fill_schedule_kwargs(cfg: dict, n_train: int) -> None:
    s = cfg.get("schedule")
    if not s:
        return
    f = scheduler_factory(s["name"])
    total_steps = _steps_per_epoch(cfg, n_train) * cfg["train"]["epochs"]
    lr = cfg["optim"].get("lr", _default_lr(cfg["optim"]["name"]))
    if is_schedule_function(f):
        req = required_args(f, set())
        for a in req:
            if a in _LR_ARGS and a not in s:
                s[a] = lr
            elif a in _STEP_ARGS and a not in s:
                s[a] = total_steps
    else:
        req = required_args(f, {"self", "optimizer"})
        intervals = total_steps if s["interval"] == "step" else cfg["train"]["epochs"]
        if f.__name__ == "CosineAnnealingLR":
            s.setdefault("T_max", intervals)
        if f.__name__ == "OneCycleLR":
            s.setdefault("max_lr", lr)
            if "epochs" not in s and "steps_per_epoch" not in s:
                s.setdefault("total_steps", intervals)
    missing = [a for a in req if a not in s]
    if missing:
        raise ConfigError(f"schedule.{missing[0]}: a value is required for {s['name']} (required: "
                          f"{', '.join(req)})")


def _default_lr(name: str) -> float:
    import inspect

    cls, preset = optimizer_class(name)
    return preset.get("lr", inspect.signature(cls.__init__).parameters["lr"].default)


def _build_optimizer(cfg: dict, params) -> tuple[Any, Any, str]:
    o = dict(cfg["optim"])
    cls, preset = optimizer_class(o.pop("name"))
    kwargs = {**preset, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in o.items()}}
    s = cfg.get("schedule")
    scheduler, interval = None, "epoch"
    if s:
        f = scheduler_factory(s["name"])
        args = {k: (tuple(v) if isinstance(v, list) and k != "milestones" else v)
                for k, v in s.items() if k not in ("name", "interval")}
        if is_schedule_function(f):
            kwargs["lr"] = f(**args)
            interval = "step"
        else:
            opt = cls(params, **kwargs)
            try:
                scheduler = f(opt, **args)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"schedule: {s['name']}: {e}") from None
            return opt, scheduler, s["interval"]
    try:
        return cls(params, **kwargs), scheduler, interval
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optim: {cls.__name__}: {e}") from None


def _loaders(cfg: dict, data: DataBundle) -> tuple:
    d, seed = cfg["data"], cfg["train"]["seed"]
    eval_bs = d["eval_batch_size"] or max(d["batch_size"], 500)
    train = DataLoader(data.train, batch_size=d["batch_size"], shuffle=True, generator=Generator(seed))
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
                          "threadpoolctl") from None
    threadpool_limits(limits=threads, user_api="blas")


def prepare(cfg: dict, data: DataBundle | None = None, *, config_path: str | None = None) -> Setup:
    """Everything a run needs from a validated config: data, model (initialised from
    ``train.seed``), optimizer, scheduler, loss and loaders. Fills in the values derived
    from the data (``cfg`` is updated in place; write it as the run's resolved config)."""
    seed = cfg["train"]["seed"]
    _limit_threads(cfg["train"]["threads"])
    if data is None:
        data = build_data(cfg["data"], seed)
    _fill_model_kwargs(cfg, data)
    _fill_schedule_kwargs(cfg, len(data.train))
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    factory = model_factory(cfg["model"]["name"], pathlib.Path(config_path).parent if config_path else None)
    manual_seed(seed)
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {cfg['model']['name']}: {e}") from None
    optimizer, scheduler, interval = _build_optimizer(cfg, model.parameters())
    train, val, test = _loaders(cfg, data)
    return Setup(cfg, data, model, optimizer, scheduler, interval, make_loss(cfg["train"]), train, val, test)


# ---------------------------------------------------------------------- trainer
def _monitor_mode(monitor: str) -> str:
    return "min" if "loss" in monitor else "max"


def _callbacks(cfg: dict, run_dir: pathlib.Path | None, *, quiet: bool = False, checkpoints: bool = True) -> list:
    from .train import callbacks as cb

    t = cfg["train"]
    out: list = []
    # the same callbacks in the same order for train and resume: checkpoints key callback state by position
    out.append(cb.ProgressBar(disable=quiet or not t["progress"]))
    if run_dir is not None:
        out.append(cb.MetricLogger(str(run_dir)))
        if checkpoints and (t["save_best"] or t["save_last"]):
            out.append(cb.ModelCheckpoint(str(run_dir), monitor=t["monitor"], mode=_monitor_mode(t["monitor"]),
                                          save_best=t["save_best"], save_last=t["save_last"],
                                          every_n_steps=t["checkpoint_every_n_steps"]))
    out.append(cb.LRMonitor())
    if t["nan_guard"]:
        out.append(cb.NaNGuard(str(run_dir) if run_dir is not None else None))
    if t["early_stopping"] is not None:
        out.append(cb.EarlyStopping(monitor=t["monitor"], mode=_monitor_mode(t["monitor"]),
                                    patience=t["early_stopping"]))
    if t["gradient_flow"]:
        out.append(cb.GradientFlow(every_n_steps=t["gradient_flow"],
                                   run_dir=str(run_dir) if run_dir is not None else None))
    return out


def make_trainer(setup: Setup, run_dir: pathlib.Path | None, *, quiet: bool = False, checkpoints: bool = True,
                 extra_callbacks: Sequence = ()):
    from .train import Trainer

    t = setup.cfg["train"]
    return Trainer(setup.model, setup.optimizer, setup.loss_fn, scheduler=setup.scheduler,
                   scheduler_interval=setup.interval, metrics=tuple(t["metrics"]),
                   callbacks=_callbacks(setup.cfg, run_dir, quiet=quiet, checkpoints=checkpoints)
                   + list(extra_callbacks),
                   grad_clip=t["grad_clip"], accumulate=t["accumulate"],
                   run_dir=str(run_dir) if run_dir is not None else None, seed=t["seed"], config=setup.cfg)


def _gradient_flow(trainer) -> Any:
    for c in getattr(trainer, "callbacks", ()):
        if type(c).__name__ == "GradientFlow":
            return c
    return None


# ---------------------------------------------------------------------- run folders
def _new_run_dir(cfg: dict, config_path: str) -> pathlib.Path:
    r = cfg["run"]
    name = r["name"] or pathlib.Path(config_path).stem
    base = pathlib.Path(r["dir"]) / name
    path, k = base, 1
    if not r["overwrite"]:
        while path.exists() and any(path.iterdir()):
            k += 1
            path = base.with_name(f"{name}-{k}")
    path.mkdir(parents=True, exist_ok=True)
    r["name"] = path.name
    return path


def _read_run_config(run_dir: pathlib.Path) -> dict:
    path = run_dir / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.toml)")
    return validate(load_config(path), config_path=path)


def _final(history: dict) -> dict:
    return {k: v[-1] for k, v in history.items() if isinstance(v, list) and v and
            isinstance(v[-1], (int, float)) and k not in ("lr", "epoch_time", "samples_per_sec")}


def _prefixed(metrics: dict, prefix: str) -> dict:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, np.floating)):
            k2 = k[4:] if k.startswith("val_") else k
            out[f"{prefix}_{k2}" if not k2.startswith(prefix + "_") else k2] = float(v)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def _finish_run(setup: Setup, trainer, history: dict, run_dir: pathlib.Path, elapsed: float) -> dict:
    test = {}
    if setup.test_loader is not None:
        test = _prefixed(trainer.evaluate(setup.test_loader), "test")
    times = history.get("epoch_time", [])
    sps = history.get("samples_per_sec", [])
    summary = {
        "run_dir": str(run_dir),
        "model": setup.cfg["model"]["name"], "data": setup.cfg["data"]["name"],
        "optimizer": setup.cfg["optim"]["name"],
        "parameters": int(sum(p.numel() for p in setup.model.parameters())),
        "epochs": len(history.get("train_loss", [])),
        "time_s": round(elapsed, 3),
        "train_time_s": round(float(sum(times)), 3) if times else None,
        "samples_per_sec": round(float(np.mean(sps)), 1) if sps else None,
        "final": _final(history), "test": test,
    }
    flow = _gradient_flow(trainer)
    if flow is not None:
        try:
            summary["gradient_flow"] = _jsonable(flow.verdicts())
        except Exception as e:  # noqa: BLE001 - the summary must still be written
            summary["gradient_flow"] = f"unavailable: {e}"
    plots = []
    try:
        from .train import plots as tplots

        made = tplots.plot_run(str(run_dir))
        plots = [str(p) for p in (made if isinstance(made, (list, tuple)) else [made]) if p]
    except ImportError as e:
        print(f"(no plots: {e})")
    summary["plots"] = plots
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(_summary_text(summary))
    return summary


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _summary_text(s: dict) -> str:
    lines = [f"run {s['run_dir']}: {s['model']} on {s['data']} with {s['optimizer']}, "
             f"{s['parameters']:,} parameters, {s['epochs']} epochs in {s['time_s']:.1f} s"
             + (f" ({s['samples_per_sec']:,.0f} samples/s)" if s.get("samples_per_sec") else "")]
    if s["final"]:
        lines.append("  final: " + "  ".join(f"{k} {_fmt(v)}" for k, v in s["final"].items()))
    if s["test"]:
        lines.append("  test:  " + "  ".join(f"{k} {_fmt(v)}" for k, v in s["test"].items()))
    if isinstance(s.get("gradient_flow"), (dict, list)):
        lines.append(f"  gradient flow: {json.dumps(s['gradient_flow'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- commands
def _config_from_args(args) -> dict:
    raw = apply_overrides(load_config(args.config), args.set or [])
    return validate(raw, config_path=args.config)


def cmd_train(args, extra_callbacks: Sequence = ()) -> dict:
    cfg = _config_from_args(args)
    t0 = time.perf_counter()
    setup = prepare(cfg, config_path=args.config)
    run_dir = _new_run_dir(cfg, args.config)
    (run_dir / "config.toml").write_text(dumps(cfg))
    if setup.data.vocab is not None:
        (run_dir / "vocab.json").write_text(json.dumps(setup.data.vocab.itos))
    args.active_run_dir = run_dir  # for the message after Ctrl-C
    print(f"run folder: {run_dir}")
    trainer = make_trainer(setup, run_dir, quiet=args.quiet, extra_callbacks=extra_callbacks)
    history = trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"])
    return _finish_run(setup, trainer, history, run_dir, time.perf_counter() - t0)


def _checkpoint_dir(run_dir: pathlib.Path, which: str) -> pathlib.Path:
    path = run_dir / "checkpoints" / which
    if not path.exists():
        have = sorted(p.name for p in (run_dir / "checkpoints").iterdir()) if (run_dir / "checkpoints").is_dir() \
            else []
        raise ConfigError(f"{run_dir}: no checkpoint {which!r} (found: {', '.join(have) or 'none'})")
    return path


def cmd_resume(args, extra_callbacks: Sequence = ()) -> dict:
    run_dir = pathlib.Path(args.run_dir)
    cfg = _read_run_config(run_dir)
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    t0 = time.perf_counter()
    setup = prepare(cfg)
    ckpt = _checkpoint_dir(run_dir, "last")
    args.active_run_dir = run_dir  # for the message after Ctrl-C
    print(f"resuming {run_dir} from {ckpt}")
    trainer = make_trainer(setup, run_dir, quiet=args.quiet, extra_callbacks=extra_callbacks)
    history = trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"],
                          resume_from=str(ckpt))
    (run_dir / "config.toml").write_text(dumps(cfg))
    return _finish_run(setup, trainer, history, run_dir, time.perf_counter() - t0)


def cmd_evaluate(args) -> dict:
    run_dir = pathlib.Path(args.run_dir)
    cfg = _read_run_config(run_dir)
    setup = prepare(cfg)
    trainer = make_trainer(setup, None, quiet=True, checkpoints=False)
    trainer.load_checkpoint(str(_checkpoint_dir(run_dir, args.checkpoint)))
    result = {"checkpoint": args.checkpoint}
    for split, loader in (("val", setup.val_loader), ("test", setup.test_loader)):
        if loader is not None:
            result.update(_prefixed(trainer.evaluate(loader), split))
    (run_dir / f"evaluate_{args.checkpoint}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{run_dir} ({args.checkpoint}): " + "  ".join(f"{k} {_fmt(v)}" for k, v in result.items()
                                                          if k != "checkpoint"))
    return result


def _parse_lrs(text: str | None) -> dict[str, float]:
    out = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ConfigError(f"--lr {text!r}: expected name=value pairs, e.g. sgd=0.05,adam=0.001")
        k, v = item.split("=", 1)
        try:
            out[k.strip().lower()] = float(v)
        except ValueError:
            raise ConfigError(f"--lr: {k}={v!r} is not a number") from None
    return out


def cmd_compare(args) -> dict:
    base = _config_from_args(args)
    names = [n.strip().lower() for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ConfigError("--optimizers: give a comma-separated list, e.g. sgd,momentum,adam")
    for n in names:  # all names checked before any training
        try:
            optimizer_class(n)
        except ConfigError:
            raise ConfigError(f"--optimizers: {n!r} is not an optimizer in rg.optim; available: "
                              f"{', '.join(optimizer_names())}") from None
    lrs = _parse_lrs(args.lr)
    seed = base["train"]["seed"]
    data = build_data(base["data"], seed)
    out_dir = _new_run_dir(copy.deepcopy(base) | {"run": {**base["run"], "name": (base["run"]["name"] or
                                                   pathlib.Path(args.config).stem) + "-compare"}}, args.config)
    histories, rows = {}, []
    for n in names:
        cfg = copy.deepcopy(base)
        if n != base["optim"]["name"]:
            cfg["optim"] = {"name": n, "lr": lrs.get(n, COMPARE_LRS.get(n, _default_lr(n)))}
        elif n in lrs:
            cfg["optim"]["lr"] = lrs[n]
        setup = prepare(cfg, data, config_path=args.config)
        run_dir = out_dir / n
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(dumps(cfg))
        print(f"== {n} (lr {cfg['optim'].get('lr', _default_lr(n))})")
        trainer = make_trainer(setup, run_dir, quiet=args.quiet, checkpoints=False)
        t0 = time.perf_counter()
        history = trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"])
        elapsed = time.perf_counter() - t0
        histories[n] = history
        row = {"optimizer": n, "lr": cfg["optim"].get("lr", _default_lr(n)), **_final(history)}
        if setup.test_loader is not None:
            row.update(_prefixed(trainer.evaluate(setup.test_loader), "test"))
        row["time_s"] = round(elapsed, 2)
        rows.append(row)
    from .train import plots as tplots

    plot_path = out_dir / "comparison.png"
    tplots.plot_comparison(histories, str(plot_path))
    table = markdown_table(rows)
    (out_dir / "comparison.md").write_text(table + "\n")
    (out_dir / "comparison.json").write_text(json.dumps({"rows": rows, "histories": _jsonable(histories)},
                                                        indent=2) + "\n")
    print(table)
    print(f"plot: {plot_path}")
    return {"dir": str(out_dir), "rows": rows, "plot": str(plot_path)}


def markdown_table(rows: list[dict]) -> str:
    """A markdown table of dicts (columns: the union of their keys, in order; floats to 4 significant digits)."""
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def cmd_lr_find(args) -> dict:
    from .train import LRFinder

    cfg = _config_from_args(args)
    cfg.pop("schedule", None)  # the range test sets the lr itself
    setup = prepare(cfg, config_path=args.config)
    finder = LRFinder(setup.model, setup.optimizer, setup.loss_fn)
    finder.range_test(setup.train_loader, start_lr=args.start_lr, end_lr=args.end_lr, num_iter=args.num_iter)
    skip_start = min(10, max(0, len(finder.history["lr"]) // 10))
    lr = finder.suggestion(skip_start=skip_start, skip_end=min(5, len(finder.history["lr"]) // 10))
    out = pathlib.Path(args.out) if args.out else \
        pathlib.Path(cfg["run"]["dir"]) / f"{cfg['run']['name'] or pathlib.Path(args.config).stem}-lr_finder.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        finder.plot(path=str(out), skip_start=skip_start, skip_end=min(5, len(finder.history["lr"]) // 10))
        plot = str(out)
    except ImportError as e:
        plot = None
        print(f"(no plot: {e})")
    out.with_suffix(".json").write_text(json.dumps({"suggested_lr": lr, **finder.history}, indent=2) + "\n")
    print(f"suggested lr: {lr:.3g} ({cfg['optim']['name']}, {len(finder.history['lr'])} iterations"
          f"{', stopped at divergence' if finder.diverged else ''})" + (f"; plot: {plot}" if plot else ""))
    return {"suggested_lr": lr, "plot": plot, "history": finder.history}


def cmd_plot(args) -> list:
    from .train import plots as tplots

    run_dir = pathlib.Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    made = tplots.plot_run(str(run_dir))
    made = [str(p) for p in (made if isinstance(made, (list, tuple)) else [made]) if p]
    for p in made:
        print(p)
    return made


def cmd_generate(args) -> str:
    run_dir = pathlib.Path(args.run_dir)
    cfg = _read_run_config(run_dir)
    vocab_path = run_dir / "vocab.json"
    if not vocab_path.is_file():
        raise ConfigError(f"{run_dir}: no vocab.json; generate needs a run of a language model on text "
                          f"(model gpt, data shakespeare), this one is {cfg['model']['name']} on {cfg['data']['name']}")
    vocab = Vocabulary(json.loads(vocab_path.read_text()))
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    manual_seed(cfg["train"]["seed"])
    model = model_factory(cfg["model"]["name"])(**kwargs)
    if not hasattr(model, "generate"):
        raise ConfigError(f"{run_dir}: model {cfg['model']['name']} has no generate()")
    from .io import load_safetensors

    model.load_state_dict(load_safetensors(_checkpoint_dir(run_dir, args.checkpoint) / "model.safetensors"))
    try:
        ids = vocab.encode(args.prompt)
    except KeyError as e:
        raise ConfigError(f"--prompt: {e.args[0]}") from None
    if not ids:
        raise ConfigError("--prompt: must not be empty")
    idx = Tensor(np.asarray([ids], dtype=np.int64))
    out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         generator=Generator(args.seed))
    text = vocab.decode(out[0])
    print(text)
    return text


# ---------------------------------------------------------------------- tune
class TuneTrainFn:
    """``train_fn`` for ``rg.tune``: validate a trial's config and train it as ``retrograd train`` does
    (no run folder), reporting the validation metric each epoch through a ``PruningCallback``. The data
    is loaded and split once, with the base config's seed, so every trial sees the same split."""

    def __init__(self, config_path: str | None, data_seed: int, quiet: bool = True) -> None:
        self.config_path, self.data_seed, self.quiet = config_path, data_seed, quiet
        self._data: dict[str, DataBundle] = {}

    def __call__(self, trial_cfg: dict, reporter) -> dict:
        from .tune import PruningCallback

        cfg = validate(trial_cfg, config_path=self.config_path)
        key = json.dumps(cfg["data"], sort_keys=True)
        if key not in self._data:
            self._data = {key: build_data(cfg["data"], self.data_seed)}  # one data set in memory at a time
        setup = prepare(cfg, self._data[key], config_path=self.config_path)
        trainer = make_trainer(setup, None, quiet=self.quiet, checkpoints=False,
                               extra_callbacks=[PruningCallback(reporter)])
        history = trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"])
        return _final(history)


def cmd_tune(args):
    """``retrograd tune CONFIG`` (the config's ``[search]`` table declares the space and the settings;
    ``--workers``/``--storage``/``--resume`` override them) or ``retrograd tune --show STUDY_DIR``."""
    from . import tune

    if args.show:
        try:
            return tune.show(args.show, storage=args.storage)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    if not args.config:
        raise ConfigError("tune: give a config with a [search] table, or --show STUDY_DIR")
    raw = load_config(args.config)
    table = raw.pop("search", None)
    if not table:
        raise ConfigError(f'[search]: {args.config} has no [search] table; add e.g. [search] with '
                          f'"optim.lr" = {{log_uniform = [1e-5, 1e-1]}}')
    base = validate(apply_overrides(raw, args.set or []), config_path=args.config)
    try:
        settings, space = tune.split_search_table(table)
        for name in tune.parse_space(space).names:
            if name.split(".")[0] not in base:
                raise ConfigError(f"search.{name}: [{name.split('.')[0]}] is not a config section; known: "
                                  f"{', '.join(base)}")
        stem = pathlib.Path(args.config).stem
        study_dir = settings.get("study_dir") or pathlib.Path(base["run"]["dir"]) / f"{base['run']['name'] or stem}-tune"
        kwargs = {k: settings[k] for k in ("method", "n_trials", "timeout", "metric", "direction", "pruner", "seed")
                  if k in settings}
        kwargs.setdefault("metric", "val_accuracy" if "accuracy" in base["train"]["metrics"] else "val_loss")
        kwargs.setdefault("direction", "minimize" if "loss" in kwargs["metric"] else "maximize")
        if args.n_trials is not None:
            kwargs["n_trials"] = args.n_trials
        return tune.search(base, space, train_fn=TuneTrainFn(args.config, base["train"]["seed"], quiet=True),
                           storage=args.storage or settings.get("storage"), study_dir=study_dir,
                           study_name=settings.get("study_name") or stem,
                           workers=args.workers or settings.get("workers", 1), resume=args.resume, **kwargs)
    except tune.TuneError as e:
        raise ConfigError(str(e)) from None


# ---------------------------------------------------------------------- argument parsing
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retrograd", description="Train and inspect retrograd models from TOML "
                                "configs (see examples/*.toml).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp):
        sp.add_argument("config", help="a TOML config, e.g. examples/fashion_mlp.toml")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable), e.g. --set optim.lr=0.01")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        return sp

    with_config(sub.add_parser("train", help="train from a config; writes a run folder"))
    r = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--epochs", type=int, help="train to this many epochs in total (default: the config's)")
    r.add_argument("--quiet", action="store_true")
    e = sub.add_parser("evaluate", help="metrics of a run's checkpoint on its validation and test data")
    e.add_argument("run_dir")
    e.add_argument("--checkpoint", choices=("best", "last"), default="best")
    c = with_config(sub.add_parser("compare", help="train with several optimizers from the same init and batch "
                                   "order; one plot, one table"))
    c.add_argument("--optimizers", required=True, help="comma-separated, e.g. sgd,momentum,adam,adamw,lion")
    c.add_argument("--lr", help="learning rates per optimizer, e.g. sgd=0.05,adam=0.001")
    f = with_config(sub.add_parser("lr-find", help="learning-rate range test: suggestion and plot"))
    f.add_argument("--start-lr", type=float, default=1e-6)
    f.add_argument("--end-lr", type=float, default=10.0)
    f.add_argument("--num-iter", type=int, default=100)
    f.add_argument("--out", help="plot path (default: RUN.dir/NAME-lr_finder.png)")
    pl = sub.add_parser("plot", help="plot a run's metrics")
    pl.add_argument("run_dir")
    g = sub.add_parser("generate", help="sample text from a trained language model")
    g.add_argument("run_dir")
    g.add_argument("--prompt", default="\n")
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--checkpoint", choices=("best", "last"), default="best")
    tu = sub.add_parser("tune", help="hyperparameter search over the config's [search] table (Optuna)")
    tu.add_argument("config", nargs="?", help="a TOML config with a [search] table, e.g. examples/tune_fashion_mlp.toml")
    tu.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    tu.add_argument("--resume", action="store_true", help="continue the study (interrupted trials are rerun)")
    tu.add_argument("--workers", type=int, help="local worker processes sharing the study")
    tu.add_argument("--storage", help="Optuna storage URL (default: SQLite in the study folder), e.g. "
                    "postgresql://user:pw@host/db, or 'journal'")
    tu.add_argument("--n-trials", type=int, help="total trials (default: [search] n_trials; grid: the whole grid)")
    tu.add_argument("--show", metavar="STUDY_DIR", help="print a study's table and redraw its plots")
    return p


COMMANDS = {"train": cmd_train, "resume": cmd_resume, "evaluate": cmd_evaluate, "compare": cmd_compare,
            "lr-find": cmd_lr_find, "plot": cmd_plot, "generate": cmd_generate}
COMMANDS["tune"] = cmd_tune


def main(argv: Sequence[str] | None = None, *, extra_callbacks: Sequence = ()) -> int:
    """Run the command line ``argv``; returns the exit status (2: a config/data error, 130: interrupted).
    ``extra_callbacks`` are appended to the Trainer's callbacks by ``train`` and ``resume``."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "resume"):
            COMMANDS[args.command](args, extra_callbacks=extra_callbacks)
        else:
            COMMANDS[args.command](args)
    except (ConfigError, DataNotInstalledError) as e:
        print(f"retrograd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_dir = getattr(args, "active_run_dir", None)
        where = f"; continue with: retrograd resume {run_dir}" if run_dir else ""
        print(f"retrograd {args.command}: interrupted{where}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
