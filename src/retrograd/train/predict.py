"""A trained run back in Python, and its predictions on new data (``retrograd predict``).

    run = rg.train.load_run("runs/fashion_mlp")       # best checkpoint if the run has one, else last
    run.model                                         # the model, in eval mode, with the checkpoint's weights
    run.predict_proba(x)                              # (N, C) class probabilities of a float32 array
    run.predict(x)                                    # (N,) predicted class indices (run.classes names them)

The model is rebuilt from the run folder's resolved ``config.toml``, which holds every argument
of the model, those derived from the data included (input size, classes, vocabulary size): no
data is read and no constructor argument guessed. A model file the config names
(``"m.py:MLP"``) is imported only after ``model_code.check_model_code`` accepts it, as for
``retrograd evaluate``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from ..data.images import FASHION_MNIST_CLASSES
from ..data.inputs import InputSpec
from ..data.presets import PRESETS
from ..engine import no_grad
from ..io.checkpoint import CheckpointError, resolve_directory, verify_directory
from ..io.serialization import load_safetensors
from ..nn import Module
from ..tensor import Tensor
from .config import ConfigError, model_factory
from .runs import checkpoint_dir, read_run_config
from .transfer import model_kwargs

__all__ = ["LoadedRun", "load_run", "read_array", "write_predictions", "PROBABILITY_LOSSES"]

# [train] loss -> how the model's outputs become class probabilities
PROBABILITY_LOSSES = {"cross_entropy": "softmax", "nll": "softmax", "bce_with_logits": "sigmoid"}


@dataclasses.dataclass
class LoadedRun:
    """A run folder's model with one checkpoint's weights (``load_run``).

    ``model``: the model in eval mode; ``config``: the run's resolved config; ``run_dir``;
    ``checkpoint``: the checkpoint folder loaded; ``which``: ``"best"``, ``"last"`` or the name or
    path asked for; ``epoch``: complete epochs trained at that checkpoint (``batch_in_epoch``
    batches more when it was saved mid-epoch) and ``step`` the optimizer steps; ``task``:
    ``"classification"``, ``"regression"`` or ``"language_model"``; ``classes``: the class names
    of a classifier (the columns of ``predict_proba``), else None; ``inputs``: how raw inputs become
    the model's inputs (the ``rg.data.inputs.InputSpec`` of the run's ``inputs.json``: columns,
    one-hot maps, standardisation, pixel scaling, image size), or None for a run folder written
    before retrograd recorded it (then inputs are arrays already in the model's input shape)."""
    model: Module
    config: dict
    run_dir: pathlib.Path
    checkpoint: pathlib.Path
    which: str
    epoch: int
    step: int
    batch_in_epoch: int
    task: str
    classes: list[str] | None
    inputs: InputSpec | None = None

    def describe(self) -> str:
        """``"best checkpoint (after 2 epochs, step 82)"``."""
        where = f"after {self.epoch} epoch{'s' if self.epoch != 1 else ''}" + \
            (f" and {self.batch_in_epoch} batches" if self.batch_in_epoch else "")
        return f"{self.which} checkpoint ({where}, step {self.step})"

    @property
    def input_features(self) -> int | tuple | None:
        """What one model input must be: an ``mlp``'s number of input values (any shape with that
        many values is flattened), else the shape the run's ``inputs`` give, else a ``cnn``'s
        ``(channels, height, width)`` from the config; None when none says (a model file of your
        own in an old run folder: its forward pass decides)."""
        m = self.config["model"]
        if m["name"] == "mlp":
            return int(m["sizes"][0])
        if self.inputs is not None and self.inputs.kind != "text":
            shape = tuple(self.inputs.shape)
            return shape[0] if len(shape) == 1 else shape
        if m["name"] == "cnn":
            size = m.get("input_size", 28)
            hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
            return (int(m.get("in_channels", 1)), *map(int, hw))
        return None

    def check_inputs(self, x: np.ndarray, where: str = "input") -> np.ndarray:
        """``x`` as float32 (a language model's token ids as they are), refused with a ``ConfigError``
        naming the expected and the given shape when it cannot be the model's input."""
        x = np.asarray(x)
        if self.task == "language_model":  # token ids (InputSpec.read of a text file: the context)
            return x
        if self.inputs is not None and self.inputs.kind == "tokens":  # token ids of a text column, any length
            if x.ndim != 2 or x.dtype.kind not in "iu":
                raise ConfigError(f"{where}: expected token ids of shape (N, T), got {x.dtype} of shape {x.shape}")
            return x.astype(np.int64, copy=False)
        if x.dtype.kind not in "fiub":
            raise ConfigError(f"{where}: expected a numeric array, got dtype {x.dtype}")
        want = self.input_features
        if x.ndim == 0 or (want is not None and x.ndim < 2):
            raise ConfigError(f"{where}: expected a batch of shape {self._expected()}, got shape {x.shape}")
        if isinstance(want, int) and int(np.prod(x.shape[1:])) != want:
            raise ConfigError(f"{where}: expected shape {self._expected()}, got {x.shape} "
                              f"({int(np.prod(x.shape[1:]))} values per row)")
        if isinstance(want, tuple) and tuple(x.shape[1:]) != want:
            raise ConfigError(f"{where}: expected shape {self._expected()}, got {x.shape}")
        return x.astype(np.float32, copy=False)

    def _expected(self) -> str:
        want = self.input_features
        if isinstance(want, int):
            return f"(N, {want}) (or (N, ...) with {want} values per row)"
        return f"(N, {', '.join(map(str, want))})" if want is not None else "(N, ...)"

    def outputs(self, x: Any, batch_size: int = 500) -> np.ndarray:
        """The model's raw outputs on ``x`` (an array in its input shape), in batches, without grad."""
        x = self.check_inputs(x)
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.model.eval()
        outs = []
        with no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]
                try:
                    out = self.model(Tensor(xb))
                except (ValueError, TypeError, IndexError, RuntimeError) as e:
                    raise ConfigError(f"input: the model {self.config['model']['name']} cannot take inputs of "
                                      f"shape {x.shape} (expected {self._expected()}): {e}") from None
                outs.append(np.asarray(out.numpy()))
        if not outs:
            raise ConfigError("input: no rows to predict")
        return np.concatenate(outs, axis=0)

    def probabilities(self, outputs: np.ndarray) -> np.ndarray | None:
        """Class probabilities of a classifier's ``outputs`` (float64): softmax for
        ``cross_entropy``/``nll`` (rows sum to 1), sigmoid for ``bce_with_logits`` (one per class,
        one class against the rest: rows need not sum to 1); None for other losses (``mse`` on
        one-hot targets gives scores, not probabilities) and for other tasks."""
        how = PROBABILITY_LOSSES.get(self.config["train"]["loss"])
        if self.task != "classification" or how is None:
            return None
        z = outputs.astype(np.float64)
        if how == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def predict_proba(self, x: Any, batch_size: int = 500) -> np.ndarray:
        """``(N, C)`` class probabilities of ``x`` (see ``probabilities``)."""
        p = self.probabilities(self.outputs(x, batch_size))
        if p is None:
            raise ValueError(f"predict_proba: a {self.task} run trained with loss "
                             f"{self.config['train']['loss']!r} gives no class probabilities; use outputs()")
        return p

    def predict(self, x: Any, batch_size: int = 500) -> np.ndarray:
        """A classifier's predicted class indices ``(N,)`` (``classes`` names them); a regression
        run's predicted values."""
        out = self.outputs(x, batch_size)
        if self.task == "classification":
            return out.argmax(axis=-1)
        return self.values(out)

    @staticmethod
    def values(outputs: np.ndarray) -> np.ndarray:
        """A regression run's predictions from its outputs: ``(N,)`` for one target, ``(N, k)`` for k."""
        v = outputs.reshape(len(outputs), -1)
        return v[:, 0] if v.shape[1] == 1 else v

    def value_names(self, k: int) -> list[str]:
        """The CSV columns of ``k`` regression outputs: ``prediction``, or ``prediction_<target>`` each."""
        names = list(self.inputs.outputs or []) if self.inputs is not None else []
        if k == 1:
            return ["prediction"]
        return [f"prediction_{n}" for n in names] if len(names) == k else [f"prediction_{i}" for i in range(k)]

    def class_names(self, n: int) -> list[str]:
        """The names of ``n`` output columns: ``classes`` when it has ``n`` of them, else ``"0"``...``"n-1"``."""
        return list(self.classes) if self.classes is not None and len(self.classes) == n else \
            [str(i) for i in range(n)]

    def read_inputs(self, path: str | pathlib.Path) -> tuple[np.ndarray, list[str]]:
        """``(x, ids)`` of an input file, ``x`` ready for the model: read by the run's ``inputs``
        (``InputSpec.read``: raw data as the run was trained on, a table's rows, images, arrays,
        preprocessed as the training data was) when it has one, else a ``.npy``/``.npz`` array
        (``read_array``) already in the model's input shape, with ids ``"0"``, ``"1"``, ..."""
        path = pathlib.Path(path)
        if not path.exists():
            raise ConfigError(f"input: {str(path)!r} not found")
        if self.inputs is not None:
            x, ids = self.inputs.read(path)
        else:
            if path.suffix.lower() not in (".npy", ".npz") or not path.is_file():
                raise ConfigError(f"input: {path}: this run folder has no inputs.json (it was written before "
                                  f"retrograd recorded how to read new data), so inputs are .npy or .npz arrays "
                                  f"of shape {self._expected()} as the model sees them; got a "
                                  f"{path.suffix or 'file'} file")
            x = read_array(path)
            ids = [str(i) for i in range(len(x))] if x.ndim else []
        return self.check_inputs(x, f"input {path}"), [str(i) for i in ids]


def read_array(path: str | pathlib.Path) -> np.ndarray:
    """The array of a ``.npy`` file, or of a ``.npz`` file holding one array (or several, one named
    ``x``); never unpickled."""
    path = pathlib.Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"input: {path}: not a readable {path.suffix} array ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        names = list(data.files)
        if len(names) == 1:
            return data[names[0]]
        if "x" in names:
            return data["x"]
        raise ConfigError(f"input: {path}: holds the arrays {', '.join(names)}; expected one array, or one "
                          f"named 'x'")


def _checkpoint_folder(run_dir: pathlib.Path, checkpoint: str | None) -> tuple[pathlib.Path, str]:
    if checkpoint is None:  # best if the run has one, else last
        best = run_dir / "checkpoints" / "best"
        has_best = best.exists() or any((run_dir / "checkpoints").glob(".best.old-*"))
        checkpoint = "best" if has_best else "last"
    if checkpoint in ("best", "last") or (run_dir / "checkpoints" / checkpoint).is_dir():
        return checkpoint_dir(run_dir, checkpoint), checkpoint
    path = pathlib.Path(checkpoint)
    if path.is_dir():
        try:
            return resolve_directory(path), checkpoint
        except CheckpointError as e:
            raise ConfigError(f"checkpoint: {e}") from None
    have = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if not p.name.startswith(".")) \
        if (run_dir / "checkpoints").is_dir() else []
    raise ConfigError(f"checkpoint: {checkpoint!r} is neither a checkpoint of {run_dir} (found: "
                      f"{', '.join(have) or 'none'}) nor a checkpoint folder")


def _task(run_dir: pathlib.Path, cfg: dict, inputs: Any) -> str:
    if inputs is not None:
        return inputs.task
    preset = PRESETS.get(cfg["data"]["name"])
    if (run_dir / "vocab.json").is_file() or (preset is not None and preset.kind == "text"):
        return "language_model"
    return "classification"  # every built-in data set that is not text has class labels


def _classes(cfg: dict, inputs: Any) -> list[str] | None:
    if inputs is not None:
        return [str(c) for c in inputs.classes] if inputs.classes is not None else None
    return list(FASHION_MNIST_CLASSES) if cfg["data"].get("name") == "fashion_mnist" else None


def _read_inputs_json(run_dir: pathlib.Path) -> InputSpec | None:
    """The run's InputSpec (``inputs.json``), or None for a run folder written before it was recorded."""
    path = run_dir / "inputs.json"
    if not path.is_file():
        return None
    try:
        return InputSpec.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot read it ({type(e).__name__}: {e})") from None


def load_run(run_dir: str | pathlib.Path, checkpoint: str | None = None, *, trust_model_code: bool = False,
             command: str = "") -> LoadedRun:
    """The model of a run folder with a checkpoint's weights, in eval mode, ready for Python.

    ``checkpoint``: ``"best"``, ``"last"``, the name of another folder in ``run_dir/checkpoints``
    or the path of a checkpoint folder; None (the default) loads ``best`` when the run has one,
    else ``last`` (``LoadedRun.which`` says which). The model is built from the run's resolved
    ``config.toml`` (no data is read, and the training data need not exist any more) and the
    checkpoint is verified against its manifest before its weights are loaded. A model file of your
    own (``"m.py:MLP"``) is imported only when ``retrograd.train.model_code`` trusts it;
    ``trust_model_code=True`` is ``--trust-model-code``. Raises ``ConfigError`` (not a run folder,
    no such checkpoint, untrusted model code) or ``CheckpointError`` (a corrupted checkpoint)::

        run = rg.train.load_run("runs/fashion_mlp", "best")
        print(run.describe(), run.classes)
        x, ids = run.read_inputs("new_images.npy")    # raw data, preprocessed as in training
        probs = run.predict_proba(x)                  # (N, 10)
        logits = run.model(rg.tensor(x))              # the model itself
    """
    run_dir = pathlib.Path(run_dir)
    cfg = read_run_config(run_dir, trust_model_code=trust_model_code, command=command or "load_run",
                          data_files=False)  # the training data need not be there: inputs.json says how to read
    folder, which = _checkpoint_folder(run_dir, checkpoint)
    manifest = verify_directory(folder)  # sizes and SHA-256 of every file, before anything is read
    if "model.safetensors" not in manifest.get("files", {}):
        raise CheckpointError(f"{folder}: its manifest lists no model.safetensors")
    try:
        state = json.loads((folder / "trainer.json").read_text())["state"]
    except (OSError, ValueError, KeyError, TypeError):
        state = {}
    factory = model_factory(cfg["model"]["name"])
    kwargs, _ = model_kwargs(cfg["model"], factory)  # init_from etc.: the checkpoint holds every weight
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {cfg['model']['name']}: {e}") from None
    try:
        model.load_state_dict(load_safetensors(folder / "model.safetensors"))
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{folder / 'model.safetensors'}: does not fit the model the run's config.toml "
                              f"builds ({e})") from None
    model.eval()
    inputs = _read_inputs_json(run_dir)
    return LoadedRun(model=model, config=cfg, run_dir=run_dir, checkpoint=folder, which=which,
                     epoch=int(state.get("epoch", 0)), step=int(state.get("global_step", 0)),
                     batch_in_epoch=int(state.get("batch_in_epoch", 0)), task=_task(run_dir, cfg, inputs),
                     classes=_classes(cfg, inputs), inputs=inputs)


def _fmt(v: float) -> str:
    return format(float(v), ".9g")


def write_predictions(run: LoadedRun, x: np.ndarray, ids: list[str], out: str | pathlib.Path,
                      batch_size: int = 500) -> dict:
    """Predict ``x`` and write the predictions to ``out``:

    - ``.csv``: a header, then one row per input: ``id``, for a classifier ``predicted`` (the class
      name) and one column per class, ``prob_<class>`` (``score_<class>`` when the loss gives no
      probabilities, e.g. ``mse``); for a regression run ``prediction`` (``prediction_<target>``
      for several targets);
    - ``.npy``: the ``(N, C)`` probabilities (or scores), or the regression values, plus for a
      classifier ``<out>.labels.txt``, the predicted class name of each row, one a line;
    - ``.npz``: ``ids``, ``outputs`` (raw), and ``probabilities``/``scores``, ``predicted`` and
      ``classes`` (a classifier) or ``predictions`` (regression).

    Returns ``{"path", "rows", "columns", "files"}``."""
    out = pathlib.Path(out)
    fmt = out.suffix.lower()
    if fmt not in (".csv", ".npy", ".npz"):
        raise ConfigError(f"-o {out}: expected a .csv, .npy or .npz file name")
    raw = run.outputs(x, batch_size)
    files = [out]
    out.parent.mkdir(parents=True, exist_ok=True)
    if run.task == "classification":
        probs = run.probabilities(raw)
        table, kind = (probs, "prob") if probs is not None else (raw.reshape(len(raw), -1), "score")
        names = run.class_names(table.shape[1])
        predicted = [names[i] for i in table.argmax(axis=1)]
        columns = ["id", "predicted"] + [f"{kind}_{n}" for n in names]
        if fmt == ".csv":
            with open(out, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(columns)
                for i, row in enumerate(table):
                    w.writerow([ids[i], predicted[i], *map(_fmt, row)])
        elif fmt == ".npy":
            np.save(out, table.astype(np.float32))
            labels = out.with_name(out.name[:-4] + ".labels.txt")
            labels.write_text("".join(p + "\n" for p in predicted))
            files.append(labels)
        else:
            np.savez(out, ids=np.asarray(ids), outputs=raw, predicted=np.asarray(predicted),
                     classes=np.asarray(names), **{"probabilities" if kind == "prob" else "scores": table})
    else:
        values = run.values(raw)
        cols = run.value_names(1 if values.ndim == 1 else values.shape[1])
        columns = ["id"] + cols
        if fmt == ".csv":
            with open(out, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(columns)
                for i, v in enumerate(values):
                    w.writerow([ids[i], *map(_fmt, np.atleast_1d(v))])
        elif fmt == ".npy":
            np.save(out, values)
        else:
            np.savez(out, ids=np.asarray(ids), outputs=raw, predictions=values)
    return {"path": str(out), "rows": len(raw), "columns": columns, "files": [str(f) for f in files]}
