"""How raw inputs become model inputs for a trained run: ``InputSpec``.

``build_data`` makes one for every data source (``DataBundle.inputs``) and the training data
goes through its own methods, so new inputs read with ``spec.read(path)`` are preprocessed
exactly as the training data was: the same columns, one-hot maps, standardisation statistics,
pixel scaling, image size and vocabulary. ``retrograd train`` saves it in the run folder as
``inputs.json``::

    spec = InputSpec.from_dict(json.loads((run_dir / "inputs.json").read_text()))
    x, ids = spec.read("new_rows.csv")      # float32, ready for the model; one id per row or file
    spec.classes, spec.task                 # class names (None for regression), the task

Kinds of inputs (``spec.kind``):

- ``"table"``: CSV/TSV/Parquet rows; ``columns`` are the feature columns in training order,
  ``categorical`` maps each one-hot column to its categories (an unknown category is an error
  naming column and row), ``mean``/``std`` standardise the encoded features. The target column
  may be present in a file to predict on; it is ignored.
- ``"features"``: rows of numbers, from ``.npy``/``.npz`` (key ``x``) or a table with exactly
  ``shape`` numeric columns (``columns``, when known, pick them by name); divided by ``scale``
  when set (digits: 16), standardised by ``mean``/``std`` when set, reshaped to ``shape``.
- ``"images"``: ``shape = [C, H, W]``; ``.npy``/``.npz`` arrays ``(N, H, W)`` or ``(N, C, H, W)``
  (integer pixels are divided by 255, floats taken as they are), one image file, or a folder of
  image files (any depth; ids are their paths relative to the folder), read with Pillow in
  ``channels`` and resized to ``image_size``.
- ``"tokens"``: a text column (``columns[0]``) of a table, as token ids of the pretrained model's
  tokenizer (``tokenizer``: its folder; ``max_tokens``; ``retrograd.data.tokens``).
- ``"text"``: a UTF-8 text file, encoded with the character vocabulary ``vocab``; ``read`` gives
  its last ``block_size`` characters as int64 ids ``(1, T)``, the context for the next character.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from .bundle import DataFileError
from .imagefolder import IMG_EXTENSIONS, image_files, load_image
from .tables import TABLE_FORMATS, check_no_missing, read_table, row_name
from .tokens import text_token_ids

__all__ = ["InputSpec", "KINDS", "TASKS", "SUFFIX_FORMATS", "format_of"]

KINDS = ("table", "features", "images", "text", "tokens")
TASKS = ("classification", "regression", "language_model")
SPEC_VERSION = 1
# file suffix -> data.format
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                  ".jsonl": "jsonl", ".npy": "npy", ".npz": "npz", ".txt": "text"}


def format_of(path: str | os.PathLike, given: str | None = None, *, what: str = "data.path") -> str:
    """The format of a data file or folder: ``given``, else from the suffix (a folder is an image
    folder); a ``DataFileError`` for a suffix it does not know."""
    if given is not None:
        return given
    p = pathlib.Path(path)
    if p.is_dir():
        return "imagefolder"
    fmt = SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None and p.suffix.lower() in IMG_EXTENSIONS:
        return "image"
    if fmt is None:
        images = "" if what == "data.path" else f", an image file ({', '.join(IMG_EXTENSIONS)})"
        raise DataFileError(f"{what}: {str(p)!r}: unknown suffix {p.suffix!r}; expected a folder of images{images} or "
                            f"a file ending in {', '.join(SUFFIX_FORMATS)}"
                            + (" (or set data.format)" if what == "data.path" else ""))
    return fmt


def _float32(values: Sequence[float] | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)


def _pixels(a: np.ndarray) -> np.ndarray:
    """Integer pixels (0-255) to float32 in [0, 1]; float arrays as they are (float32)."""
    if a.dtype.kind in "iub":
        return np.divide(a, 255, dtype=np.float32)
    if a.dtype.kind != "f":
        raise TypeError(f"expected numbers, got dtype {a.dtype}")
    return a.astype(np.float32, copy=False)


@dataclasses.dataclass
class InputSpec:
    """How raw inputs of one trained run become model inputs (see the module docstring).

    ``to_dict()`` gives a JSON-able dict, ``InputSpec.from_dict(d)`` the spec back; ``read(path)``
    gives ``(x, ids)``: ``x`` float32 ready for the model (int64 token ids for text), ``ids`` one
    string per row (its 0-based row number) or file."""
    kind: str
    task: str = "classification"
    shape: list[int] = dataclasses.field(default_factory=list)  # one model input's shape
    classes: list[str] | None = None  # class names, in the order of the model's outputs
    outputs: list[str] | None = None  # regression: the names of the model's outputs
    source: str = ""  # what the run was trained on: a built-in set's name or a file's path
    format: str | None = None  # the training data's format: csv, tsv, parquet, npy, npz, imagefolder, text
    target: str | None = None  # tables: the target column (ignored when a file to predict on has it)
    columns: list[str] | None = None  # tables: feature columns, in order; features: names of the columns
    categorical: dict[str, list[str]] | None = None  # tables: one-hot column -> its categories, in order
    feature_names: list[str] | None = None  # tables: the encoded features ("age", "color=red", ...)
    mean: list[float] | None = None  # standardisation of the encoded features (float32 values)
    std: list[float] | None = None
    scale: float | None = None  # features: raw values are divided by this first (digits: 16)
    channels: int | None = None  # images read from files: 1 (grayscale) or 3 (RGB)
    image_size: list[int] | None = None  # images read from files: [H, W]
    vocab: list[str] | None = None  # text: the characters, in id order
    block_size: int | None = None  # text: the model's context length
    tokenizer: str | None = None  # tokens: the model folder whose tokenizer.json encodes the text
    max_tokens: int | None = None  # tokens: truncation length (None: the model's)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"InputSpec: kind {self.kind!r} is not one of: {', '.join(KINDS)}")
        if self.task not in TASKS:
            raise ValueError(f"InputSpec: task {self.task!r} is not one of: {', '.join(TASKS)}")
        self.shape = [int(s) for s in self.shape]

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict:
        """A JSON-able dict (fields that are None are left out) with a ``version``."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {"version": SPEC_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        """The spec ``to_dict`` gave (e.g. read from a run folder's ``inputs.json``)."""
        if not isinstance(d, dict) or "kind" not in d:
            raise ValueError(f"InputSpec.from_dict: expected a dict with a 'kind', got {type(d).__name__}")
        d = dict(d)
        version = d.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"InputSpec.from_dict: version {version} is not supported (this retrograd reads "
                             f"version {SPEC_VERSION})")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"InputSpec.from_dict: unknown keys {unknown}; known: {sorted(fields)}")
        return cls(**d)

    # ------------------------------------------------------------------ the preprocessing training uses too
    def encode_table(self, df: Any, where: str, fmt: str | None = None) -> np.ndarray:
        """Table rows -> float32 features ``(N, len(feature_names))``, not yet standardised:
        numeric columns as numbers, categorical ones one-hot in the order of their categories.
        ``fmt``: the format of the file they came from, for messages (default: the training data's)."""
        fmt = fmt or self.format
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataFileError(f"{where}: no column {', '.join(map(repr, missing))}; the run was trained on "
                                f"columns {', '.join(self.columns)} (columns here: {', '.join(df.columns)})")
        check_no_missing(df, self.columns, where, fmt if fmt in TABLE_FORMATS else None)
        cats = self.categorical or {}
        parts = []
        for col in self.columns:
            s = df[col]
            if col in cats:
                index = {c: i for i, c in enumerate(cats[col])}
                values = s.astype(str).to_numpy()
                codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))
                bad = np.flatnonzero(codes < 0)
                if bad.size:
                    raise DataFileError(f"{where}: column {col!r}, {row_name(int(bad[0]), fmt)}: unknown "
                                        f"category {values[bad[0]]!r}; the run knows: {', '.join(cats[col])}")
                parts.append(np.eye(len(cats[col]), dtype=np.float64)[codes])
            else:
                try:
                    parts.append(s.to_numpy(dtype=np.float64)[:, None])
                except (TypeError, ValueError):
                    bad = next(i for i, v in enumerate(s) if not _is_number(v))
                    raise DataFileError(f"{where}: column {col!r}, {row_name(bad, fmt)}: {s.iloc[bad]!r} is "
                                        "not a number (the column was numeric in training; list it in "
                                        "data.categorical to one-hot encode it)") from None
        x = np.concatenate(parts, axis=1) if parts else np.zeros((len(df), 0))
        return x.astype(np.float32)

    def encode_text_table(self, df: Any, where: str, fmt: str | None = None) -> np.ndarray:
        """The text column ``columns[0]`` of ``df`` as int64 token ids ``(N, T)`` (kind ``"tokens"``)."""
        col = self.columns[0]
        if col not in df.columns:
            raise DataFileError(f"{where}: no column {col!r} (the text column of {self.source}); its columns: "
                                f"{', '.join(df.columns)}")
        check_no_missing(df, [col], where, fmt)
        values = df[col].tolist()
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
        if bad is not None:
            raise DataFileError(f"{where}: column {col!r}, {row_name(bad, fmt)}: expected text, got "
                                f"{values[bad]!r}")
        return text_token_ids(values, self.tokenizer, self.max_tokens)

    def encode_features(self, raw: np.ndarray, where: str) -> np.ndarray:
        """Raw feature rows ``(N, F)`` (or ``(N, *shape)``) -> float32, divided by ``scale``, not yet
        standardised; shape ``(N, F)``."""
        a = np.asarray(raw)
        if a.dtype.kind not in "iubf":
            raise DataFileError(f"{where}: expected numbers, got dtype {a.dtype}")
        n_features = int(np.prod(self.shape))
        if a.ndim < 2 or int(np.prod(a.shape[1:])) != n_features:
            raise DataFileError(f"{where}: expected {n_features} features per row ({self._shape_text()}), got "
                                f"an array of shape {a.shape}")
        a = a.reshape(len(a), n_features).astype(np.float64)
        if self.scale is not None:
            a = a / self.scale
        return a.astype(np.float32)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` in float32 when the spec has statistics, else ``x``."""
        if self.mean is None:
            return x
        return ((x - _float32(self.mean)) / _float32(self.std)).astype(np.float32)

    def fit_standardize(self, x: np.ndarray, columns: np.ndarray | None = None) -> None:
        """Set ``mean``/``std`` from training features ``x`` (float32 ``(N, F)``): per column, a
        std of 0 counted as 1; columns where ``columns`` is False (one-hot ones) get 0 and 1."""
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std == 0, 1, std)
        if columns is not None:
            mean, std = np.where(columns, mean, 0).astype(np.float32), np.where(columns, std, 1).astype(np.float32)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]

    def to_model_shape(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), *self.shape)

    def encode_images(self, raw: np.ndarray, where: str) -> np.ndarray:
        """An array of images ``(N, H, W)`` or ``(N, C, H, W)`` -> float32 ``(N, C, H, W)``."""
        raw = a = np.asarray(raw)
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4 or list(a.shape[1:]) != self.shape:
            raise DataFileError(f"{where}: expected images of shape (N, {', '.join(map(str, self.shape))})"
                                f"{' or (N, ' + ', '.join(map(str, self.shape[1:])) + ')' if self.shape[0] == 1 else ''}"
                                f", got {raw.shape}")
        try:
            return _pixels(a)
        except TypeError as e:
            raise DataFileError(f"{where}: {e}") from None

    def load_image(self, path: str | os.PathLike) -> np.ndarray:
        """One image file -> float32 ``(C, H, W)`` as the model takes it."""
        size = self.image_size or self.shape[1:]
        return load_image(path, size=size, channels=self.channels or self.shape[0])

    # ------------------------------------------------------------------ new inputs
    def read(self, path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
        """New inputs from ``path``, preprocessed as the training data was: ``(x, ids)``."""
        path = pathlib.Path(path)
        if not path.exists():
            raise DataFileError(f"{path}: no such file or folder")
        fmt = format_of(path, what="input")
        if self.kind == "text":
            if path.is_dir():
                raise DataFileError(f"{path}: a language model reads a text file, not a folder")
            return self._read_text(path), [path.name]
        if fmt in ("image", "imagefolder"):
            if self.kind != "images":
                raise DataFileError(f"{path}: this run was trained on {self._kind_text()}, not images")
            files = [path] if fmt == "image" else image_files(path)
            if not files:
                raise DataFileError(f"{path}: no image files in the folder (looked for "
                                    f"{', '.join(IMG_EXTENSIONS)}, any depth)")
            x = np.stack([self.load_image(f) for f in files]).astype(np.float32, copy=False)
            ids = [path.name] if fmt == "image" else [f.relative_to(path).as_posix() for f in files]
            return x, ids
        if fmt in ("npy", "npz"):
            raw = _read_array(path, fmt)
            where = str(path)
            if self.kind == "images":
                x = self.encode_images(raw, where)
            elif self.kind == "table":
                raise DataFileError(f"{path}: this run was trained on a table ({self.source}); give a "
                                    f"{(self.format or 'csv').upper()} file with columns {', '.join(self.columns)}")
            else:
                x = self.to_model_shape(self.standardize(self.encode_features(raw, where)))
            return x, [str(i) for i in range(len(x))]
        if fmt in TABLE_FORMATS:
            df = read_table(path, fmt)
            if self.kind == "table":
                x = self.standardize(self.encode_table(df, str(path), fmt))
            elif self.kind == "tokens":
                x = self.encode_text_table(df, str(path), fmt)
            elif self.kind == "features":
                x = self.to_model_shape(self.standardize(self.encode_features(self._feature_columns(df, path),
                                                                               str(path))))
            else:
                raise DataFileError(f"{path}: this run was trained on {self._kind_text()}, not a table")
            return x, [str(i) for i in range(len(x))]
        raise DataFileError(f"{path}: this run was trained on {self._kind_text()}; a {fmt} file does not fit")

    def _feature_columns(self, df: Any, path: pathlib.Path) -> np.ndarray:
        cols = [c for c in df.columns if c != self.target]
        if self.columns and all(c in df.columns for c in self.columns):
            cols = list(self.columns)
        check_no_missing(df, cols, str(path), "csv" if path.suffix.lower() in (".csv", ".tsv") else None)
        try:
            return df[cols].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise DataFileError(f"{path}: every column must be a number (features of {self.source})") from None

    def _read_text(self, path: pathlib.Path) -> np.ndarray:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataFileError(f"{path}: cannot read it as UTF-8 text ({e})") from None
        stoi = {c: i for i, c in enumerate(self.vocab)}
        unknown = sorted({c for c in text if c not in stoi})
        if unknown:
            raise DataFileError(f"{path}: characters not in the run's vocabulary: {''.join(unknown)!r}")
        if not text:
            raise DataFileError(f"{path}: the text is empty")
        ids = np.asarray([stoi[c] for c in text[-(self.block_size or len(text)):]], dtype=np.int64)
        return ids[None]

    def _shape_text(self) -> str:
        return f"shape {tuple(self.shape)}"

    def _kind_text(self) -> str:
        return {"table": f"a table ({self.source})", "features": f"features of {self._shape_text()} ({self.source})",
                "images": f"images of {self._shape_text()} ({self.source})", "text": f"text ({self.source})",
                "tokens": f"a text column of a table ({self.source})"}[self.kind]


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _read_array(path: pathlib.Path, fmt: str, key: str = "x") -> np.ndarray:
    """The array of a ``.npy`` file, or ``key`` (or the only array) of a ``.npz`` file."""
    try:
        if fmt == "npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if key in keys:
                return f[key]
            if len(keys) == 1:
                return f[keys[0]]
    except (OSError, ValueError, EOFError) as e:
        raise DataFileError(f"{path}: cannot read it as {fmt} ({e})") from None
    raise DataFileError(f"{path}: no array {key!r} (arrays: {', '.join(keys) or 'none'})")
