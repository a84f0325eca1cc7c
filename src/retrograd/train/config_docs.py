"""The config reference (``docs/config.md``), generated from what validation reads, so it cannot drift:
the fixed keys of ``[data]``, ``[train]`` and ``[run]`` with their type, default, range and meaning
(``config.SCHEMA``: the meaning of a key is its ``Key.doc``, the one place it is written), and the
names ``[model]``, ``[optim]`` and ``[schedule]`` accept with the constructor arguments each takes
(their signatures, as validation checks them), the losses, metrics and data sets. Regenerate with::

    python -m retrograd.train.config_docs > docs/config.md

(``tests/train/test_config_docs.py`` fails when the file differs from this module's output.)
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..data.presets import PRESETS
from ..io.toml_writer import _toml_value
from ..models import MODELS
from .transfer import TRANSFER_KEYS
from ..optim import required as optim_required
from ..optim import scheduling
from . import config
from .losses import LOSSES
from .metrics import METRICS

__all__ = ["reference", "undocumented_keys", "REGENERATE", "MODEL_FILLED"]

REGENERATE = "python -m retrograd.train.config_docs > docs/config.md"

# what each section is for; the meaning of each fixed key is its Key.doc in config.SCHEMA
SECTION_INTRO = {
    "model": "The model: `name` and the keyword arguments of its constructor, checked against its signature "
             "(an unknown key is refused with the known ones). Arguments that depend on the data are filled in "
             "from it and written to the run's resolved `config.toml`.",
    "data": "The data set (`name`, the table after this one), its split and its batches. The keys are fixed:",
    "optim": "The optimizer: `name` (case-insensitive; default `adam`) and the keyword arguments of its class, "
             "checked against its signature. Without `lr` the class's default learning rate is used.",
    "schedule": "Optional: a learning-rate schedule. `name` is an `rg.optim.lr_scheduler` class or an "
                "`rg.optim.schedules` function (case-insensitive); the other keys are its keyword arguments, "
                "checked against its signature, plus `interval`. Arguments the run implies are filled in.",
    "train": "The training loop, its checkpoints and callbacks. The keys are fixed:",
    "run": "Where the run folder goes. The keys are fixed:",
}
INTERVAL_DOC = ('`interval` (str, default `"epoch"`, one of `epoch`, `step`): step a scheduler class after every '
                'epoch or after every optimizer step. A schedule function is evaluated at every optimizer step '
                '(it is the optimizer\'s `lr`), so `interval` does not apply to it.')


# an example value of each fixed key, as written in its section of a config (TOML); a key left out
# here is shown with its default. tests/docs/test_site.py checks that each example passes validation.
EXAMPLES = {
    "data.name": '"fashion_mnist"', "data.batch_size": "128", "data.eval_batch_size": "1000",
    "data.val_fraction": "0.2", "data.test_fraction": "0.25", "data.train_samples": "5000",
    "data.val_samples": "1000", "data.labels_per_class": "100", "data.augment": "true",
    "data.standardize": "false", "data.images": "true",
    "data.block_size": "128", "data.path": '"wine.csv"', "data.format": '"csv"', "data.target": '"cultivar"',
    "data.text": '"review"', "data.tokenizer": '"models/all-MiniLM-L6-v2"', "data.max_tokens": "128",
    "data.features": '["alcohol", "region"]', "data.categorical": '["region"]', "data.task": '"regression"',
    "data.target_path": '"labels.npy"', "data.test_path": '"wine_test.csv"', "data.image_size": "[32, 32]",
    "data.channels": "3", "data.root": '"data/fashion"', "data.seed": "1",
    "train.epochs": "20", "train.seed": "42", "train.loss": '"mse"', "train.label_smoothing": "0.1",
    "train.metrics": '["accuracy", "f1_macro"]', "train.grad_clip": "1.0", "train.accumulate": "4",
    "train.early_stopping": "3", "train.monitor": '"val_accuracy"', "train.save_best": "false",
    "train.save_last": "false", "train.checkpoint_every_n_steps": "500", "train.progress": "false",
    "train.nan_guard": "false", "train.gradient_flow": "50", "train.batch_scope": '"rank"',
    "train.rank_timeout": "300.0", "train.threads": "1",
    "run.dir": '"experiments"', "run.name": '"mlp-lr3e-3"', "run.overwrite": "true",
}


# the sections whose keys are a class's arguments: an example of each (tests/docs checks they validate)
SECTION_EXAMPLES = {
    "model": '[model]\nname = "mlp"\nsizes = [784, 256, 10]\nactivation = "gelu"\ndropout = 0.1',
    "optim": '[optim]\nname = "adamw"\nlr = 0.0003\nweight_decay = 0.05\nbetas = [0.9, 0.95]',
    "schedule": '[schedule]\nname = "warmup_cosine"\nwarmup_steps = 200',
}


def example(section: str, key: str) -> str:
    """``key = value``: an example of the key in its section (EXAMPLES, else its default; unset
    without an example: an empty string)."""
    value = EXAMPLES.get(f"{section}.{key}")
    if value is None:
        default = config.SCHEMA[section][key].default
        if default is None:
            return ""
        value = _value(default).strip("`")
    return f"{key} = {value}"


def undocumented_keys() -> list[str]:
    """``section.key`` of every fixed key without a meaning (an empty ``Key.doc``)."""
    return [f"{s}.{k}" for s, keys in config.SCHEMA.items() for k, spec in keys.items() if not spec.doc.strip()]


# ---------------------------------------------------------------------- values
def _value(v: Any) -> str:
    """A default as it would be written in a config."""
    try:
        return f"`{_toml_value(list(v) if isinstance(v, tuple) else v, 'default')}`"
    except TypeError:
        return f"`{v!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fixed_table(section: str) -> list[str]:
    rows = ["| key | type | default | allowed | meaning | example |", "|---|---|---|---|---|---|"]
    for k, spec in config.SCHEMA[section].items():
        default = "unset" if spec.default is None else _value(spec.default)
        allowed = []
        if spec.allowed is not None:
            allowed.append(f"one of: {', '.join(f'`{a}`' for a in spec.allowed)}")
        if spec.range is not None:
            allowed.append(f"{'each ' if spec.type.startswith('list') else ''}{spec.range}")
        if spec.optional:
            allowed.append("or unset")
        ex = example(section, k)
        rows.append(f"| `{k}` | {spec.type} | {default} | {_cell('; '.join(allowed))} | {_cell(spec.doc.strip())} | "
                    f"{_cell(f'`{ex}`') if ex else ''} |")
    return rows


_TYPE_NAMES = {"number": "number", "any": "any", "list": "list", "list[number]": "list of numbers",
               "list[int]": "list of ints"}


def _arguments(fn: Callable, skip: set, filled: dict | None = None, preset: dict | None = None) -> str:
    """``name`` (type, default) for each keyword argument a config may give ``fn`` (``filled``: how the
    ones the run fills in are found; ``preset``: defaults an alias changes)."""
    target = fn.__init__ if isinstance(fn, type) else fn
    out = []
    for n, p in inspect.signature(target).parameters.items():
        if n in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        typ, _ = config._annotation_type(p)
        typ = " or ".join(_TYPE_NAMES.get(t, t) for t in typ.split("|"))
        if filled and n in filled:
            default = f"filled: {filled[n]}"
        elif preset and n in preset:
            default = _value(preset[n])
        elif p.default is inspect.Parameter.empty or p.default is optim_required:
            default = "required"
        elif p.default is None:
            default = "unset"
        else:
            default = _value(p.default)
        out.append(f"`{n}` ({typ}, {default})")
    return ", ".join(out) or "none"


# ---------------------------------------------------------------------- the sections of signatures
# the arguments of a built-in model that the recipe fills in from the data (recipe.DATA_DERIVED_KWARGS),
# and from what; tests/train/test_config_docs.py checks the list against what prepare() fills in
MODEL_FILLED = {
    "mlp": {},
    "cnn": {"in_channels": "the data's channels", "input_size": "the data's image size",
            "num_classes": "the data's classes"},
    "gpt": {"vocab_size": "the text's vocabulary size", "block_size": "`data.block_size`"},
    "pretrained": {"num_labels": "the data's classes or targets", "task": "the data's task"},
}


def _model_section() -> list[str]:
    lines = [SECTION_INTRO["model"], "", "| `name` | class | arguments (type, default) |", "|---|---|---|"]
    for name, cls in MODELS.items():
        lines.append(f"| `{name}` | `rg.models.{cls.__name__}` | "
                     f"{_cell(_arguments(cls, {'self'}, MODEL_FILLED.get(name)))} |")
    lines += ["", "`mlp`'s `sizes` must start with the data's number of input features and end with its number "
              "of classes; the error says which numbers. `name` may also be `\"path/to/file.py:ClassName\"` "
              "(relative to the config file): a model of your own, whose constructor's arguments are the other "
              "keys. `help(rg.models.MLP)` (or CNN, GPT) says what each argument does. `pretrained` fine-tunes a "
              "Hugging Face BERT or sentence-transformers folder (`path`) on token ids (a .npz of ids, 0 = padding, "
              "with `data.standardize = false`); its checkpoints hold only what training changes and the base "
              "weights' SHA-256 (`help(rg.models.PretrainedTask)`); with `data.text` it reads raw text (a table's "
              "column), tokenised with the folder's tokenizer.json."]
    lines += ["", "Transfer learning, for every model (`rg.train.transfer`; a model whose constructor takes one of "
              "these keys, like `pretrained`'s `trainable_layers`, takes it itself):", "",
              "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {v.type} | {_value(v.default) if v.default is not None else 'unset'} | {v.doc} |"
              for k, v in TRANSFER_KEYS.items()]
    return lines


# what the table of an optimizer that holds another (config.OPTIM_WRAPPERS) is for
HELD_DOC = {"muon": "the optimizer of the parameters Muon does not take (`rg.optim.muon_param_groups`: embeddings, "
                    "the output layer, biases, norm gains, convolution kernels); under a schedule its lr follows "
                    "Muon's, scaled by its `lr` / `optim.lr`",
            "lookahead": "the optimizer Lookahead wraps (`optim.inner.lr` is the run's lr; `optim.lr` is refused)"}


def _optim_section() -> list[str]:
    lines = [SECTION_INTRO["optim"], "", "| `name` | class | arguments (type, default) |", "|---|---|---|"]
    for name in config.optimizer_names():
        cls, preset = config.optimizer_class(name)
        where = f"`rg.optim.{cls.__name__}`" + (f" with {', '.join(f'`{k} = {_toml_value(v, k)}`' for k, v in preset.items())}"
                                                if preset else "")
        args = _arguments(cls, config._SKIP_OPTIM | {"optimizer"}, preset=preset)
        if name in config.OPTIM_WRAPPERS:  # the table of the optimizer it holds
            key, default, _ = config.OPTIM_WRAPPERS[name]
            args += f", `{key}` (a table with `name` and its arguments, or a name; `{{name = \"{default}\"}}`): " + \
                HELD_DOC[name]
        lines.append(f"| `{name}` | {where} | {_cell(args)} |")
    lines += ["", "Not configurable here: the arguments no training loop sets (`params`, "
              f"{', '.join(f'`{s}`' for s in sorted(config._SKIP_OPTIM - {'self', 'params'}))}) and optimizers "
              f"that need a closure per step ({', '.join(sorted(config._NO_CLOSURE_LOOP))})."]
    return lines


_SYMBOLS = {"LR": "`optim.lr`", "STEPS": "optimizer steps in the run", "EPOCHS": "`train.epochs`"}


def _schedule_filled(name: str, interval: str) -> dict:
    got = scheduling.schedule_defaults(name, {}, lr="LR", total_steps="STEPS", epochs="EPOCHS", interval=interval)
    return {k: _SYMBOLS[v] for k, v in got.items()}


def _schedule_section() -> list[str]:
    lines = [SECTION_INTRO["schedule"], "", INTERVAL_DOC, "",
             "| `name` | kind | arguments (type, default) |", "|---|---|---|"]
    for name in config.scheduler_names():
        f = config.scheduler_factory(name)
        fn = config.is_schedule_function(f)
        filled = _schedule_filled(name, "epoch")
        if not fn:  # a length filled in depends on the interval
            by_step = _schedule_filled(name, "step")
            filled = {k: v if by_step[k] == v else f"{v}, or optimizer steps in the run with `interval = \"step\"`"
                      for k, v in filled.items()}
        kind = "function (`rg.optim.schedules`)" if fn else "class (`rg.optim.lr_scheduler`)"
        lines.append(f"| `{name}` | {kind} | {_cell(_arguments(f, config._SKIP_SCHED, filled))} |")
    return lines


def _data_section() -> list[str]:
    lines = [SECTION_INTRO["data"], "", *_fixed_table("data"), "", "| `name` | kind | notes |", "|---|---|---|"]
    for name, p in PRESETS.items():
        notes = []
        if p.augment is not None:
            notes.append("`augment`")
        if p.images_option:
            notes.append("`images`")
        if p.standardize is not None:
            notes.append(f"`standardize` (default {_value(p.standardize)})")
        if p.kind == "text":
            notes.append("`block_size`; validation is split from the text by `val_fraction`")
        lines.append(f"| `{name}` | {p.kind} | {('takes ' + ', '.join(notes)) if notes else ''} |")
    return lines


def _train_section() -> list[str]:
    lines = [SECTION_INTRO["train"], "", *_fixed_table("train"), "",
             "Losses (`loss`): " + ", ".join(f"`{n}`" + (" (takes `label_smoothing`)" if ls.label_smoothing else "")
                                             for n, ls in LOSSES.items()) + ".",
             "",
             "Metrics (`metrics`): " + ", ".join(f"`{n}`" for n in METRICS) + ", and `top<k>_accuracy` for any k. "
             "`monitor` is `train_loss`, `val_loss` or `val_<metric>` of a listed metric."]
    return lines


def reference() -> str:
    """The text of ``docs/config.md``."""
    parts = ["<!-- generated by: " + REGENERATE + " (do not edit by hand) -->", "", "# Config reference", "",
             "A training config is a TOML file with the sections below (`retrograd train CONFIG`, `compare`, "
             "`lr-find`, `tune`). Every key is checked before any data is read; a mistake names the key and what "
             "is allowed. `--set section.key=value` (repeatable) overrides a key from the command line; its value "
             "is read as TOML (`--set model.sizes=[784,128,10]`, `--set train.grad_clip=none` unsets an optional "
             "key). Every number must be finite. The run folder's `config.toml` is the resolved config: every "
             "default and every value derived from the data written out, without the keys that do not apply to "
             "the run.", ""]
    sections = {"model": _model_section, "data": _data_section, "optim": _optim_section,
                "schedule": _schedule_section, "train": _train_section,
                "run": lambda: [SECTION_INTRO["run"], "", *_fixed_table("run")]}
    assert tuple(sections) == config.SECTIONS, "a section without a part in the reference"
    for s, make in sections.items():
        parts += [f"## [{s}]", "", *make(), ""]
        if s in SECTION_EXAMPLES:
            parts += ["For example:", "", "```toml", SECTION_EXAMPLES[s], "```", ""]
    parts += ["## [search]", "", "Only for `retrograd tune`: the search space and its settings; see the README's "
              "\"Hyperparameter search\".", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
