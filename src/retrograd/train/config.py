"""Training configs for the ``retrograd`` command: read TOML, apply ``--set``
overrides, validate every key with a message that names it and what is
allowed, fill in defaults, and write the resolved config back as TOML.

A config has the sections ``[model]``, ``[data]``, ``[optim]``, ``[schedule]``,
``[train]`` and ``[run]``. The keys of ``[data]``, ``[train]`` and ``[run]`` are
fixed (``SCHEMA``); ``[model]``, ``[optim]`` and ``[schedule]`` take a ``name``
plus the keyword arguments of what it names, checked against its signature.

The names a config may use come from one table per kind, read here for validation and by
``retrograd.train.recipe`` for building: data sets from ``retrograd.data.presets.PRESETS``,
losses from ``retrograd.train.losses.LOSSES``, models from ``retrograd.models.MODELS``,
optimizers from ``rg.optim``'s classes (plus ``OPTIM_ALIASES``), schedules by
name from ``rg.optim.scheduling``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import pathlib
import re
import sys
from typing import Any, Callable, Collection

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from .. import optim
from ..data.owndata import OWN_FORMATS, OWN_KEYS, check_own
from ..data.presets import PRESETS, ConfigError, data_keys
from ..io.toml_writer import toml_dumps
from ..models import MODELS
from ..optim import scheduling
from .config_ranges import (F32_MAX, FRACTION, FRACTION_OPEN, NON_NEGATIVE, POSITIVE, Range, check_finite,
                            check_kwarg_ranges, check_range, check_run_name)
from .losses import LOSSES
from .metrics import METRICS, get_metric
from .transfer import check_transfer_keys, split_transfer_keys

__all__ = ["ConfigError", "SCHEMA", "SECTIONS", "OPTIM_ALIASES", "optimizer_names", "optimizer_class", "default_lr",
           "OPTIM_WRAPPERS", "validate_optim", "optim_lr", "with_lr",
           "scheduler_names", "scheduler_factory", "is_schedule_function", "model_factory", "check_kwargs",
           "required_args", "load_config", "parse_override", "apply_overrides", "validate", "dumps",
           "without_inapplicable", "run_section"]

SECTIONS = ("model", "data", "optim", "schedule", "train", "run")


@dataclasses.dataclass(frozen=True)
class Key:
    """One fixed key: its type ("int", "float", "bool", "str", "list[int]", "list[str]"), default,
    allowed values (for str; a registry table is read when the value is checked), whether None is
    allowed, a one-line description and the range of a number (every float must also be finite)."""
    type: str
    default: Any = None
    allowed: Collection[str] | None = None
    optional: bool = False
    doc: str = ""
    range: Range | None = None


SCHEMA: dict[str, dict[str, Key]] = {
    "data": {
        "name": Key("str", None, PRESETS, optional=True,
                    doc="a built-in data set (give data.name or data.path, not both)"),
        "batch_size": Key("int", 64, doc="training batch size", range=POSITIVE),
        "eval_batch_size": Key("int", None, optional=True, range=POSITIVE,
                               doc="batch size for validation/test (default max(batch_size, 500))"),
        "val_fraction": Key("float", 0.1, doc="share of the training set held out for validation", range=FRACTION_OPEN),
        "test_fraction": Key("float", 0.2, doc="share held out for test when the set has no test split",
                             range=FRACTION_OPEN),
        "train_samples": Key("int", None, optional=True, doc="use a random subset of this many training samples",
                             range=POSITIVE),
        "val_samples": Key("int", None, optional=True, doc="use a random subset of this many validation samples",
                           range=POSITIVE),
        "labels_per_class": Key("int", None, optional=True, range=POSITIVE,
                                doc="classification: train on this many labelled samples of each class (the first "
                                    "N of a seeded permutation of each class's training samples; validation and "
                                    "test unchanged)"),
        "augment": Key("bool", False, doc="random crops (and flips for fashion_mnist) of training images; own images: "
                                          "random crops, padded by an eighth of their height"),
        "standardize": Key("bool", None, optional=True,
                           doc="zero-mean unit-variance features from training-split statistics (default: on for "
                               "tables, feature arrays and the tabular presets; digits: off)"),
        "images": Key("bool", False, doc="digits as (1, 8, 8) images instead of 64 features"),
        "block_size": Key("int", 64, doc="text (shakespeare, a .txt data.path): characters per training window", range=POSITIVE),
        "path": Key("str", None, optional=True,
                    doc="your own data: a .csv, .tsv, .parquet, .npy, .npz or .txt file or an image folder "
                        "(relative to the config file's folder)"),
        "format": Key("str", None, OWN_FORMATS, optional=True,
                      doc="the format of data.path (default: from its suffix; a folder is an imagefolder)"),
        "target": Key("str", None, optional=True, doc="tables: the column to predict (required for a table)"),
        "features": Key("list[str]", None, optional=True,
                        doc="tables: the feature columns (default: every column but the target)"),
        "categorical": Key("list[str]", None, optional=True,
                           doc="tables: feature columns to one-hot encode (default: the non-numeric ones)"),
        "task": Key("str", None, ("classification", "regression"), optional=True,
                    doc="tables and arrays: classification (default for string, integer and boolean targets) "
                        "or regression (default for float targets: loss mse, metrics mae and r2)"),
        "target_path": Key("str", None, optional=True,
                           doc="a .npy data.path: the .npy file of its targets (relative to the config's folder)"),
        "test_path": Key("str", None, optional=True,
                         doc="tables: a second table with the same columns to test on (then test_fraction does "
                             "not apply; relative to the config's folder)"),
        "image_size": Key("list[int]", None, optional=True, range=POSITIVE,
                          doc="image folders: resize every image to [height, width] (default: their common size)"),
        "channels": Key("int", None, optional=True,
                        doc="image folders: 1 (grayscale) or 3 (RGB) (default: 1 when every image is grayscale)"),
        "text": Key("str", None, optional=True,
                    doc="tables: a column of raw text, the only input, tokenised with data.tokenizer (default for "
                        "model.name = 'pretrained': its path) into token ids"),
        "tokenizer": Key("str", None, optional=True,
                         doc="with data.text: a model folder holding tokenizer.json (relative to the config's folder)"),
        "max_tokens": Key("int", None, optional=True, range=POSITIVE,
                          doc="with data.text: tokens per text, [CLS] and [SEP] included (default: the model's "
                              "max_seq_length or max_position_embeddings)"),
        "root": Key("str", None, optional=True,
                    doc="fashion_mnist: the folder holding its IDX files (default /usr/share/datasets/fashion-mnist; "
                        "relative to the config's folder)"),
        "seed": Key("int", None, optional=True, range=Range(0, 2**64 - 1),
                    doc="seeds the data split, subsets and augmentation (default: train.seed); "
                        "retrograd tune pins it so that every trial, and the best config, sees one split"),
    },
    "train": {
        "epochs": Key("int", 10, doc="passes over the training set", range=POSITIVE),
        "seed": Key("int", 0, doc="seeds the init and the batch order, and the data split unless data.seed is set",
                    range=Range(0, 2**64 - 1)),
        "loss": Key("str", "cross_entropy", LOSSES, doc="the loss between the model's outputs and the targets"),
        "label_smoothing": Key("float", 0.0, doc="cross_entropy only", range=FRACTION),
        "metrics": Key("list[str]", ["accuracy"],
                       doc="metrics of the validation and test data, logged as val_<name> and test_<name>"),
        "grad_clip": Key("float", None, optional=True, doc="clip the global gradient norm to this",
                         range=Range(0, F32_MAX, lo_open=True)),
        "accumulate": Key("int", 1, doc="batches per optimizer step", range=POSITIVE),
        "early_stopping": Key("int", None, optional=True, range=NON_NEGATIVE,
                              doc="patience in epochs (monitor: val_loss); 0 stops at the first epoch without "
                                  "improvement, leave it out for no early stopping"),
        "monitor": Key("str", "val_loss", doc="metric for the best checkpoint and early stopping"),
        "save_best": Key("bool", True, doc="keep checkpoints/best, the epoch with the best train.monitor"),
        "save_last": Key("bool", True, doc="keep checkpoints/last, where resume continues from"),
        "checkpoint_every_n_steps": Key("int", None, optional=True, range=POSITIVE,
                                        doc="also save checkpoints/last every N optimizer steps (mid-epoch resume)"),
        "progress": Key("bool", True, doc="progress bar"),
        "nan_guard": Key("bool", True, doc="stop on a NaN/inf loss"),
        "gradient_flow": Key("int", 0, doc="record gradient statistics every N steps (0: off)", range=NON_NEGATIVE),
        "batch_scope": Key("str", "global", ("global", "rank"),
                           doc="data-parallel runs (--nproc N, mpiexec): 'global': data.batch_size is the batch of "
                               "one optimizer step over all ranks, each rank taking its part, so N ranks train as one "
                               "process; 'rank': it is each rank's batch (the step's batch is N times larger)"),
        "sync_batchnorm": Key("bool", True,
                              doc="data-parallel runs: BatchNorm layers become SyncBatchNorm, whose batch statistics "
                                  "cover every rank's part, so N ranks train as one process; false: each rank "
                                  "normalises its own part"),
        "bucket_cap_mb": Key("float", 25.0, range=Range(0, 1e6, lo_open=True),
                             doc="data-parallel runs: size in MiB of DistributedDataParallel's gradient buckets, "
                                 "each all-reduced while backward goes on"),
        "rank_timeout": Key("float", 60.0, range=Range(0, 86400, lo_open=True),
                            doc="data-parallel runs: seconds a rank waits for the others in one collective before "
                                "it names the ranks that hung or died and stops every rank (--rank-timeout)"),
        "threads": Key("int", None, optional=True, range=POSITIVE,
                       doc="BLAS and fused-optimizer threads for the run (needs threadpoolctl); "
                           "1 is faster for small models on a busy machine"),
    },
    "run": {
        "dir": Key("str", "runs", doc="parent folder of run folders"),
        "name": Key("str", None, optional=True,
                    doc="run folder name (default: the config file's name); one folder inside run.dir"),
        "overwrite": Key("bool", False, doc="reuse run/<name> instead of making run/<name>-2"),
    },
}

# keyword arguments no config should set
_SKIP_OPTIM = {"self", "params", "foreach", "capturable", "differentiable", "fused"}
_SKIP_SCHED = {"self", "optimizer", "last_epoch", "verbose", "scale_fn", "lr_lambda", "schedulers", "schedule"}
# optimizers that need a closure per step, which a training loop over batches does not give
_NO_CLOSURE_LOOP = {"lbfgs"}
# names that are SGD with preset arguments
OPTIM_ALIASES = {"momentum": ("sgd", {"momentum": 0.9}), "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True})}


# ---------------------------------------------------------------------- registries
def _optimizer_classes() -> dict[str, type]:
    out = {}
    for n in dir(optim):
        c = getattr(optim, n)
        if isinstance(c, type) and issubclass(c, optim.Optimizer) and c is not optim.Optimizer:
            if n.lower() not in _NO_CLOSURE_LOOP and c is not optim.CombinedOptimizer:  # built from muon's tables
                out[n.lower()] = c
    return out


def optimizer_names() -> list[str]:
    """Every ``[optim] name`` accepted: the aliases, then rg.optim's classes in lower case."""
    classes = _optimizer_classes()
    first = [n for n in ("sgd", "momentum", "nesterov", "adam", "adamw") if n in classes or n in OPTIM_ALIASES]
    return first + sorted(n for n in classes if n not in first)


def optimizer_class(name: str, where: str = "optim") -> tuple[type, dict]:
    """``(class, preset kwargs)`` for an ``[optim] name`` (case-insensitive)."""
    key = name.lower()
    preset: dict = {}
    if key in OPTIM_ALIASES:
        key, preset = OPTIM_ALIASES[key]
    classes = _optimizer_classes()
    if key not in classes:
        raise ConfigError(f"{where}.name: {name!r} is not one of: {', '.join(optimizer_names())}")
    return classes[key], dict(preset)


def default_lr(name: str) -> float:
    """The learning rate an ``[optim] name`` gets when the config sets none (its preset's or its default;
    for ``lookahead``, that of the optimizer it wraps by default)."""
    if name.lower() == "lookahead":
        return default_lr(OPTIM_WRAPPERS["lookahead"][1])
    cls, preset = optimizer_class(name)
    return preset.get("lr", inspect.signature(cls.__init__).parameters["lr"].default)


# optimizers that hold another: name -> (the key of its table, the default name there, names it may not hold).
# Muon takes the hidden 2-D weights and the fallback the rest (rg.optim.muon_param_groups); Lookahead wraps inner.
OPTIM_WRAPPERS = {"muon": ("fallback", "adamw", ("muon", "lookahead")),
                  "lookahead": ("inner", "adam", ("lookahead",))}


def validate_optim(table: Any, where: str = "optim", default: str = "adam") -> dict:
    """An ``[optim]`` table (or one nested in it: ``optim.fallback``, ``optim.inner``, also given as a bare
    name) checked against the signature of the optimizer it names; ``muon`` gets ``fallback`` (default
    ``{name = "adamw"}``) and ``lookahead`` gets ``inner`` (default ``{name = "adam"}``), checked the same way.
    ``default``: the name of a table without one."""
    if isinstance(table, str):
        table = {"name": table}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of keys or an optimizer name, got {_describe(table)}")
    opt = dict(table)
    name = _check(f"{where}.name", opt.pop("name", default), "str")
    cls, _ = optimizer_class(name, where)
    out = {"name": name.lower()}
    wrapper = OPTIM_WRAPPERS.get(out["name"])
    held = None
    if wrapper is not None:
        sub, default, refused = wrapper
        held = validate_optim(opt.pop(sub, default), f"{where}.{sub}", default)
        if held["name"] in refused:
            raise ConfigError(f"{where}.{sub}.name: {out['name']} cannot hold {held['name']!r}; expected another "
                              f"optimizer, e.g. {default!r}")
    if out["name"] == "lookahead":
        if "lr" in opt:
            raise ConfigError(f"{where}.lr: lookahead has no lr of its own; set {where}.inner.lr (the optimizer "
                              "it wraps)")
        out.update(check_kwargs(where, cls, opt, skip={"self", "optimizer"}, what="lookahead (keys: name, k, "
                                "alpha and the table inner)"))
    else:
        out.update(check_kwargs(where, cls, opt, skip=_SKIP_OPTIM, what=f"optimizer {cls.__name__}"))
        check_kwarg_ranges(where, out, "optim")
    if held is not None:
        out[wrapper[0]] = held
    return out


def optim_lr(table: dict) -> Any:
    """The lr of a validated ``[optim]`` table (a schedule's peak): its ``lr``, or ``inner``'s for lookahead."""
    if table["name"] == "lookahead":
        return optim_lr(table["inner"])
    return table.get("lr", default_lr(table["name"]))


def with_lr(table: dict, lr: float) -> dict:
    """A copy of an ``[optim]`` table with its lr (``optim_lr``'s) set to ``lr``."""
    if table["name"] == "lookahead":
        return {**table, "inner": with_lr(table.get("inner", {"name": OPTIM_WRAPPERS["lookahead"][1]}), lr)}
    return {**table, "lr": lr}


def scheduler_names() -> list[str]:
    return scheduling.schedule_names()


def scheduler_factory(name: str) -> Callable:
    """An ``rg.optim.lr_scheduler`` class or an ``rg.optim.schedules`` function (case-insensitive)."""
    try:
        return scheduling.schedule_factory(name)
    except ValueError as e:
        raise ConfigError(f"schedule.name: {e}") from None


is_schedule_function = scheduling.is_schedule_function


def model_factory(name: str, base_dir: pathlib.Path | None = None) -> Callable:
    """The class for ``[model] name``: a built-in (mlp, cnn, gpt, pretrained) or ``"path/to/file.py:ClassName"``."""
    if name.lower() in MODELS:
        return MODELS[name.lower()]
    if ":" in name and name.split(":", 1)[0].endswith(".py"):
        file, cls = name.rsplit(":", 1)
        path = pathlib.Path(file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(f"model.name: file {str(path)!r} not found (from {name!r})")
        spec = importlib.util.spec_from_file_location(f"retrograd_user_model_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, cls):
            found = sorted(n for n, v in vars(mod).items() if isinstance(v, type) and v.__module__ == mod.__name__)
            raise ConfigError(f"model.name: {path} has no class {cls!r}; it defines: {', '.join(found) or 'none'}")
        return getattr(mod, cls)
    raise ConfigError(f"model.name: {name!r} is not one of: {', '.join(MODELS)}, or 'path/to/file.py:ClassName'")


# ---------------------------------------------------------------------- type checks
def _describe(v: Any) -> str:
    return f"{v!r} ({type(v).__name__})"


def _check(where: str, value: Any, typ: str, optional: bool = False, allowed: Collection[str] | None = None
           ) -> Any:
    """``value`` checked (and coerced int -> float) against ``typ``; raises ConfigError naming ``where``."""
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    if typ == "any":
        return value
    if "|" in typ:  # a union: the first alternative that takes the value
        for alt in typ.split("|"):
            try:
                return _check(where, value, alt)
            except ConfigError as e:
                if "finite" in str(e) or "[" in str(e).split(":", 1)[0]:
                    raise  # the value has the right type but a bad number in it
        raise ConfigError(f"{where}: expected {' or '.join(_NAMES.get(t, t) for t in typ.split('|'))}, "
                          f"got {_describe(value)}")
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an int, got {_describe(value)}")
        return value
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        return check_finite(where, float(value))
    if typ == "number":  # an int stays an int
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        return check_finite(where, value) if isinstance(value, float) else value
    if typ == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if typ == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of: {', '.join(allowed)}")
        return value
    if typ.startswith("list"):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        inner = typ[5:-1] if typ.startswith("list[") else "any"
        return [_check(f"{where}[{i}]", v, "number" if inner == "any" and isinstance(v, float) else inner)
                for i, v in enumerate(value)]
    raise AssertionError(typ)


_SEQUENCE = re.compile(r"(?:Sequence|Iterable|list|tuple|List|Tuple)\[(\w+)(?:, \.\.\.)?\]")
_SCALARS = {"bool": "bool", "int": "int", "float": "number", "str": "str"}
_NAMES = {"bool": "true or false", "int": "an int", "number": "a number", "str": "a string",
          "list[int]": "a list of ints", "list[number]": "a list of numbers", "list": "a list"}


def _part_type(part: str, default: Any) -> str | None:
    """The config type of one member of an annotation's union, or None when it has none."""
    if part in _SCALARS:
        return _SCALARS[part]
    m = _SEQUENCE.fullmatch(part)
    if m:
        inner = _SCALARS.get(m.group(1))
        return f"list[{inner}]" if inner in ("int", "number") else "list"
    if part in ("tuple", "list"):
        numbers = isinstance(default, (tuple, list)) and default and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in default)
        return "list[number]" if numbers else "list"
    return None


def _annotation_type(param: inspect.Parameter) -> tuple[str, bool]:
    """A config type for a signature parameter, from its annotation and default: one of ``_NAMES``,
    several joined by ``|`` (``float | Sequence[float]``), or ``"any"`` (not checked here)."""
    ann = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    d = param.default
    optional = d is None or "None" in ann
    parts = [p.strip() for p in ann.split("|") if p.strip() not in ("None", "")]
    if not parts or parts == ["_empty"]:  # no annotation: the default's type
        if isinstance(d, bool):
            return "bool", optional
        if isinstance(d, (int, float)):
            return "number", optional
        if isinstance(d, str):
            return "str", optional
        if isinstance(d, (tuple, list)):
            return "list", optional
        return "any", True
    if isinstance(d, bool):
        return "bool", optional
    types = [_part_type(p, d) for p in parts]
    if None in types:
        return "any", True
    if set(types) == {"int", "number"}:
        types = ["number"]
    return "|".join(dict.fromkeys(types)), optional


def check_kwargs(section: str, fn: Callable, kwargs: dict, *, skip: set = frozenset(), what: str = "") -> dict:
    """Check ``kwargs`` against ``fn``'s signature: unknown keys rejected with the known ones, types checked."""
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return dict(kwargs)
    params = {n: p for n, p in sig.parameters.items()
              if n not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    out = {}
    for k, v in kwargs.items():
        if k not in params:
            if takes_any:
                out[k] = v
                continue
            known = ", ".join(["name"] + list(params))
            raise ConfigError(f"{section}.{k}: unknown key for {what or section}; known keys: {known}")
        typ, optional = _annotation_type(params[k])
        v = _check(f"{section}.{k}", v, typ, optional or params[k].default is None)
        out[k] = v
    return out


def required_args(fn: Callable, skip: set) -> list[str]:
    target = fn.__init__ if isinstance(fn, type) else fn
    sig = inspect.signature(target)
    return [n for n, p in sig.parameters.items() if n not in skip and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


# ---------------------------------------------------------------------- loading and overrides
def load_config(path: str | pathlib.Path) -> dict:
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"config: {str(path)!r} is a folder; expected a TOML file")
    if not path.is_file():
        raise ConfigError(f"config: file {str(path)!r} not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"config: {path} is not valid UTF-8 (byte 0x{raw[e.start]:02x} on line {line}); "
                          "expected a UTF-8 TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"optim.lr=0.01"`` -> ``("optim", "lr", 0.01)``: the value is read as a TOML value
    (numbers, true/false, [lists], "strings"); anything else is taken as a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. optim.lr=0.01")
    lhs, raw = text.split("=", 1)
    lhs = lhs.strip()
    if lhs.count(".") < 1 or not all(lhs.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. optim.lr=0.01")
    section, key = lhs.split(".", 1)  # key: "lr", or "inner.lr" for a table inside the section
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def apply_overrides(cfg: dict, overrides: list[str], sections: tuple = SECTIONS) -> dict:
    """``--set section.key=value`` overrides applied to a loaded config (``sections``: those a config
    of its kind has; ``retrograd rl``'s are ``rl.config.RL_SECTIONS``)."""
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in sections:
            raise ConfigError(f"--set {text!r}: unknown section [{section}]; known sections: {', '.join(sections)}")
        node = cfg.setdefault(section, _table(cfg, section))
        *path, last = key.split(".")
        for i, part in enumerate(path):  # optim.inner.lr: into (or a new) table optim.inner
            if isinstance(node.get(part), str) and section == "optim":
                node[part] = {"name": node[part]}  # fallback = "adamw" written as a bare name
            node[part] = dict(node[part]) if isinstance(node.get(part), dict) else \
                _nested_table(text, ".".join([section, *path[:i + 1]]), node.get(part))
            node = node[part]
        node[last] = value
    return cfg


def _nested_table(text: str, where: str, value: Any) -> dict:
    if value is not None:
        raise ConfigError(f"--set {text!r}: {where} is {_describe(value)}, not a table")
    return {}


# ---------------------------------------------------------------------- validation
def _table(cfg: dict, section: str) -> dict:
    """``cfg[section]`` (a copy; ``{}`` when absent), refusing a section given as a plain value."""
    given = cfg.get(section, {})
    if not isinstance(given, dict):
        hint = f'; write it as [{section}] then name = "{given}"' if isinstance(given, str) else ""
        raise ConfigError(f"[{section}]: expected a table of keys, got {_describe(given)}{hint}")
    return dict(given)


def _fixed_section(cfg: dict, section: str, schema: dict | None = None) -> dict:
    """A section of fixed keys checked against ``schema`` (default ``SCHEMA``; ``retrograd rl``: its RL_SCHEMA)."""
    given = _table(cfg, section)
    keys = (schema or SCHEMA)[section]
    for k in given:
        if k not in keys:
            raise ConfigError(f"{section}.{k}: unknown key; known keys for [{section}]: {', '.join(keys)}")
    out = {}
    for k, spec in keys.items():
        v = given.get(k, spec.default)
        out[k] = _check(f"{section}.{k}", v, spec.type, spec.optional, spec.allowed) if v is not None or \
            not spec.optional else None
        check_range(f"{section}.{k}", out[k], spec.range)
    return out


_CLASS_METRICS = ("accuracy", "acc", "f1", "f1_macro", "perplexity", "ppl", "top")


def _data_section(cfg: dict, base: pathlib.Path | None, data_files: bool = True) -> dict:
    """``[data]`` checked: exactly one of ``name``/``path``; a path's keys by ``owndata.check_own``
    (which makes paths absolute and finds the task; not with ``data_files=False``), a preset's own options."""
    data = _fixed_section(cfg, "data")
    if data["name"] is not None and data["path"] is not None:
        raise ConfigError(f"data: give data.name (a built-in data set) or data.path (your own data), not both "
                          f"(got name = {data['name']!r} and path = {data['path']!r})")
    if data["labels_per_class"] is not None and data["train_samples"] is not None:
        raise ConfigError(f"data.labels_per_class: give data.labels_per_class or data.train_samples, not both (got "
                          f"{data['labels_per_class']} and {data['train_samples']})")
    if data["path"] is not None:
        if data["images"]:
            raise ConfigError("data.images: only for digits; own images come from an image folder or an array of "
                              "shape (N, H, W) or (N, C, H, W)")
        if data["root"] is not None:
            raise ConfigError("data.root: the folder of a built-in data set's files (fashion_mnist); your own data "
                              "is data.path")
        return check_own(data, base) if data_files else data
    if data["name"] is None:
        raise ConfigError(f"data.name: a value is required; one of: {', '.join(PRESETS)}; or set data.path to "
                          "your own data (a .csv, .tsv, .parquet, .npy, .npz or .txt file, or an image folder)")
    preset = PRESETS[data["name"]]
    for key in OWN_KEYS:
        if data[key] is not None:
            raise ConfigError(f"data.{key}: only for your own data (data.path), not for data.name = "
                              f"{data['name']!r}")
    if data["root"] is not None:
        if not preset.root:
            allowed = ", ".join(n for n, p in PRESETS.items() if p.root)
            raise ConfigError(f"data.root: only for {allowed} (the other built-in sets come with installed "
                              f"packages), not {data['name']!r}")
        root = pathlib.Path(data["root"]).expanduser()
        data["root"] = str(root if root.is_absolute() else ((base or pathlib.Path.cwd()) / root).resolve())
    if preset.kind == "text" and not 0 < data["val_fraction"] < 1:  # a text set splits validation itself
        raise ConfigError(f"data.val_fraction: {data['name']} needs a value in (0, 1), got {data['val_fraction']}")
    if data["images"] and not preset.images_option:
        allowed = ", ".join(n for n, p in PRESETS.items() if p.images_option)
        raise ConfigError(f"data.images: only for {allowed}, not {data['name']!r}")
    return data


def _regression_defaults(train: dict, given: dict) -> None:
    """A regression's loss and metrics: mse and mae, r2 unless the config gives them; a loss or
    metric that needs class labels is refused."""
    if "loss" not in given:
        train["loss"] = "mse"
    elif LOSSES[train["loss"]].class_targets:
        raise ConfigError(f"train.loss: {train['loss']!r} needs class labels, but data.task is 'regression'; use "
                          f"one of: {', '.join(n for n, l in LOSSES.items() if not l.class_targets)}")
    if "metrics" not in given:
        train["metrics"] = ["mae", "r2"]
    for i, m in enumerate(train["metrics"]):
        if isinstance(m, str) and m.startswith(_CLASS_METRICS):
            raise ConfigError(f"train.metrics[{i}]: {m!r} needs class labels, but data.task is 'regression'; use "
                              "mae, rmse or r2")


def validate(cfg: dict, *, config_path: str | pathlib.Path | None = None, data_files: bool = True) -> dict:
    """The config with every key checked and defaults filled (``[model]``/``[optim]``/``[schedule]``
    keep only the keys given, checked against the signatures of what they name). ``data_files=False``:
    a run folder's resolved config read back without its data (``rg.train.load_run``, ``predict``):
    ``data.path`` is neither read nor required to exist."""
    if not isinstance(cfg, dict):
        raise ConfigError("config: expected a table")
    for s in cfg:
        if s not in SECTIONS:
            raise ConfigError(f"config: unknown section [{s}]; known sections: {', '.join(SECTIONS)}")
    base = pathlib.Path(config_path).resolve().parent if config_path else None
    out: dict[str, dict] = {}

    model = _table(cfg, "model")
    if "name" not in model:
        raise ConfigError(f"model.name: a value is required; one of: {', '.join(MODELS)}, or "
                          "'path/to/file.py:ClassName'")
    name = _check("model.name", model.pop("name"), "str")
    factory = model_factory(name, base)
    if name.lower() not in MODELS:  # record where the file is, so the run folder is self-contained
        file, cls = name.rsplit(":", 1)
        p = pathlib.Path(file)
        name = f"{(base / p) if base is not None and not p.is_absolute() else p}:{cls}"
    else:
        name = name.lower()
    if name == "pretrained" and isinstance(model.get("path"), str):  # the base folder, as the data path
        p = pathlib.Path(model["path"]).expanduser()
        model["path"] = str((base / p) if base is not None and not p.is_absolute() else p.absolute())
    model, transfer = split_transfer_keys(model, factory)  # init_from, trainable_layers, ...: any model's
    out["model"] = {"name": name, **check_kwargs("model", factory, model, skip={"self"}, what=f"model {name!r}"),
                    **check_transfer_keys(transfer, model, base)}
    if name in MODELS:
        check_kwarg_ranges("model", out["model"])

    given = _table(cfg, "data")
    if name == "pretrained" and given.get("text") is not None and given.get("tokenizer") is None:
        cfg = {**cfg, "data": {**given, "tokenizer": out["model"].get("path")}}  # the model's own tokenizer
    out["data"] = data = _data_section(cfg, base, data_files)
    text = data["format"] == "text" if data["path"] is not None else PRESETS[data["name"]].kind == "text"

    out["optim"] = validate_optim(_table(cfg, "optim"))

    sched = _table(cfg, "schedule")
    if sched:
        sname = _check("schedule.name", sched.pop("name", None), "str")
        interval = _check("schedule.interval", sched.pop("interval", "epoch"), "str", allowed=("epoch", "step"))
        f = scheduler_factory(sname)
        if is_schedule_function(f):
            interval = "step"  # a schedule function is the optimizer's lr, evaluated every step
        out["schedule"] = {"name": sname, "interval": interval,
                           **check_kwargs("schedule", f, sched, skip=_SKIP_SCHED, what=f"schedule {sname!r}")}
        check_kwarg_ranges("schedule", out["schedule"])

    train = _fixed_section(cfg, "train")
    if data["task"] == "regression":
        _regression_defaults(train, _table(cfg, "train"))
    for i, m in enumerate(train["metrics"]):
        try:
            get_metric(m)
        except ValueError:
            raise ConfigError(f"train.metrics[{i}]: {m!r} is not one of: {', '.join(METRICS)}, top<k>_accuracy") \
                from None
    monitors = ["train_loss", "val_loss"] + [f"val_{get_metric(m).name}" for m in train["metrics"]]
    if train["monitor"] not in monitors:
        raise ConfigError(f"train.monitor: {train['monitor']!r} is not one of: {', '.join(monitors)}")
    if train["monitor"].startswith("val_") and data["val_fraction"] == 0 and not text:
        raise ConfigError(f"train.monitor: {train['monitor']!r} needs validation data (data.val_fraction > 0); "
                          "use 'train_loss'")
    _refuse_without_effect(train)
    out["train"] = train
    out["run"] = run_section(cfg, config_path)
    return out


def run_section(cfg: dict, config_path: str | pathlib.Path | None = None) -> dict:
    """``[run]`` checked (``retrograd train``'s and ``retrograd rl``'s): its name, or the config file's
    by default, is one folder inside ``run.dir``."""
    run = _fixed_section(cfg, "run")
    if run["name"] is not None:
        check_run_name(run["name"], run["dir"])
    elif config_path is not None:  # the default name, the config file's ('...toml' would give '..')
        check_run_name(pathlib.Path(config_path).stem, run["dir"], what=f"run.name (default, from {config_path})")
    return run


def _refuse_without_effect(train: dict) -> None:
    """A ``[train]`` value the other keys make ineffective is refused (it would be ignored silently)."""
    if train["label_smoothing"] and not LOSSES[train["loss"]].label_smoothing:
        takes = ", ".join(n for n, v in LOSSES.items() if v.label_smoothing)
        raise ConfigError(f"train.label_smoothing: only loss {takes} takes it, not {train['loss']!r}; "
                          "leave it out")
    if train["checkpoint_every_n_steps"] is not None and not train["save_last"]:
        raise ConfigError("train.checkpoint_every_n_steps: saves checkpoints/last, which train.save_last = false "
                          "turns off")


# ---------------------------------------------------------------------- writing
def without_inapplicable(cfg: dict) -> dict:
    """A validated config without the non-data keys that have no effect given the others (they hold
    their defaults, which validation fills back in): ``train.label_smoothing`` for a loss that takes
    none, ``train.monitor`` with neither ``save_best`` nor ``early_stopping``, and ``schedule.interval``
    of a schedule function (evaluated at every optimizer step)."""
    out = {s: dict(v) if isinstance(v, dict) else v for s, v in cfg.items()}
    t, default = out.get("train"), {k: spec.default for k, spec in SCHEMA["train"].items()}
    if t is not None:
        if t.get("label_smoothing") == default["label_smoothing"] and not LOSSES[t["loss"]].label_smoothing:
            del t["label_smoothing"]
        if t.get("monitor") == default["monitor"] and not t.get("save_best") and t.get("early_stopping") is None:
            del t["monitor"]
    s = out.get("schedule")
    if s and "name" in s and s.get("interval") == "step" and is_schedule_function(scheduler_factory(s["name"])):
        del s["interval"]
    return out


def dumps(cfg: dict) -> str:
    """TOML text of a validated config (keys whose value is None are left out: None is the default; and
    so are the keys ``without_inapplicable`` removes; ``[data]`` keeps only the keys that apply to its
    source, ``rg.data.presets.data_keys``)."""
    out = without_inapplicable({section: cfg[section] for section in SECTIONS if section in cfg})
    if "data" in out:
        keys = data_keys(out["data"])
        out["data"] = {k: out["data"][k] for k in keys if k in out["data"]}
    return toml_dumps(out)
