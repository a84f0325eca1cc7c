"""A user's own data as a training config's ``[data] path``: tables (CSV, TSV, Parquet, JSON Lines),
NumPy arrays (``.npy``, ``.npz``), image folders in torchvision's ``ImageFolder`` layout, and plain
text for a character-level language model. A table's ``data.text`` column is raw text, turned into
token ids by a pretrained model's tokenizer (``data.tokenizer``, ``retrograd.data.tokens``).

``check_own(data, base_dir)`` checks a ``[data]`` table that names a path (and finds the task
when the config does not say it); ``load_own(data, seed)`` reads the data, fills the values it
derives from it into ``data`` (feature and categorical columns, image size and channels) and
returns the ``DataBundle``, splits and ``InputSpec`` included. The README's "Your own data"
describes the keys.
"""
from __future__ import annotations

import pathlib
import zipfile
from typing import Any

import numpy as np

from . import transforms
from .bundle import ConfigError, DataBundle, DataFileError, arrays_bundle, text_bundle
from .imagefolder import IMG_EXTENSIONS, find_classes, make_dataset
from .inputs import InputSpec, _read_array, format_of
from .tables import TABLE_FORMATS, check_no_missing, concat_rows, read_table
from .text import char_dataset
from .tokens import tokenizer_folder, tokenizer_limits
from ..random import Generator

__all__ = ["OWN_FORMATS", "OWN_KEYS", "check_own", "own_data_keys", "load_own", "infer_task"]

OWN_FORMATS = ("csv", "tsv", "parquet", "jsonl", "npy", "npz", "imagefolder", "text")
# [data] keys that only data.path uses, and the formats each applies to
OWN_KEYS = {
    "path": OWN_FORMATS, "format": OWN_FORMATS,
    "target": TABLE_FORMATS, "features": TABLE_FORMATS, "categorical": TABLE_FORMATS,
    "task": ("csv", "tsv", "parquet", "npy", "npz"), "target_path": ("npy",),
    "test_path": TABLE_FORMATS,
    "image_size": ("imagefolder",), "channels": ("imagefolder",),
    "text": TABLE_FORMATS, "tokenizer": TABLE_FORMATS, "max_tokens": TABLE_FORMATS,
}
_TABLE_CACHE: dict = {}  # (path, size, mtime) -> DataFrame: validation and loading read a table once


def _table(path: pathlib.Path, fmt: str) -> Any:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, fmt)
    if key not in _TABLE_CACHE:
        _TABLE_CACHE.clear()
        _TABLE_CACHE[key] = read_table(path, fmt)
    return _TABLE_CACHE[key]


def _resolve(value: str | None, base_dir: pathlib.Path | None) -> str | None:
    if value is None:
        return None
    p = pathlib.Path(value).expanduser()
    return str(p if p.is_absolute() else ((base_dir or pathlib.Path.cwd()) / p).resolve())


def _folder_splits(root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path | None]:
    """``(train folder, test folder or None)`` of an image folder: ``root`` itself, or its ``train/``
    and ``test/`` when those are its only subfolders."""
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    if "train" in subdirs and subdirs <= {"train", "test"}:
        return root / "train", (root / "test" if "test" in subdirs else None)
    return root, None


def _npy_shape(f: Any) -> tuple:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)[0]


def _x_layout(data: dict) -> tuple[int, bool]:
    """``(x.ndim, whether the source has its own test split)``, from file headers only."""
    path, fmt = pathlib.Path(data["path"]), data["format"]
    try:
        if fmt == "imagefolder":
            return 4, _folder_splits(path)[1] is not None
        if fmt == "npy":
            with open(path, "rb") as f:
                return len(_npy_shape(f)), False
        if fmt == "npz":
            with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
                return len(_npy_shape(f)), "x_test.npy" in z.namelist()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass
    return 2, False


def own_data_keys(data: dict, common: tuple) -> list[str]:
    """The ``[data]`` keys that apply to own data ``data``: ``path``, ``format``, the ``OWN_KEYS``
    of its format, the ``common`` keys, ``block_size`` for text; else ``test_fraction`` unless the
    source has a test split (an image folder's ``test/``, a .npz's ``x_test``), then ``augment``
    for images or ``standardize`` for features and tables."""
    fmt = data["format"]
    keys = [k for k, formats in OWN_KEYS.items() if fmt in formats] + list(common)
    if fmt == "text":
        return keys + ["block_size"]
    ndim, has_test = _x_layout(data)
    has_test = has_test or data.get("test_path") is not None
    return keys + ([] if has_test else ["test_fraction"]) + ["augment" if ndim >= 3 else "standardize"]


def check_own(data: dict, base_dir: pathlib.Path | None = None) -> dict:
    """``data`` (a ``[data]`` table with ``path``, defaults filled) with ``path`` and ``target_path``
    made absolute (relative ones are relative to ``base_dir``, the config file's folder), ``format``
    found from the suffix and ``task`` found from the targets when not given; raises a
    ``ConfigError`` naming the key for anything that does not fit."""
    data = dict(data)
    data["path"] = _resolve(data["path"], base_dir)
    data["target_path"] = _resolve(data.get("target_path"), base_dir)
    data["test_path"] = _resolve(data.get("test_path"), base_dir)
    data["tokenizer"] = _resolve(data.get("tokenizer"), base_dir)
    path = pathlib.Path(data["path"])
    if not path.exists():
        raise ConfigError(f"data.path: {str(path)!r} not found"
                          + (f" (relative paths are relative to the config's folder, {base_dir})" if base_dir else ""))
    try:
        data["format"] = fmt = format_of(path, data.get("format"))
    except DataFileError as e:
        raise ConfigError(str(e)) from None
    if fmt not in OWN_FORMATS:
        raise ConfigError(f"data.path: {str(path)!r} is one image; give a folder of class folders (ImageFolder "
                          "layout) to train on images")
    if (fmt == "imagefolder") != path.is_dir():
        raise ConfigError(f"data.path: {str(path)!r} is {'a folder' if path.is_dir() else 'a file'}, but "
                          f"data.format = {fmt!r} needs {'a folder' if fmt == 'imagefolder' else 'a file'}")
    for key, formats in OWN_KEYS.items():
        if data.get(key) is not None and fmt not in formats:
            raise ConfigError(f"data.{key}: does not apply to {fmt} data (only to: {', '.join(formats)})")
    if fmt in TABLE_FORMATS and data.get("target") is None:
        raise ConfigError(f"data.target: a value is required for a table: the column to predict "
                          f"(columns of {path.name}: {', '.join(_table(path, fmt).columns)})")
    if fmt == "npy" and data.get("target_path") is None:
        raise ConfigError("data.target_path: a value is required with a .npy data.path: the .npy file of the "
                          "targets (or put both in one .npz file with arrays x and y)")
    for key in ("target_path", "test_path"):
        if data[key] is not None and not pathlib.Path(data[key]).is_file():
            raise ConfigError(f"data.{key}: {data[key]!r} not found")
    if data["test_path"] is not None:
        try:
            test_fmt = format_of(data["test_path"], what="data.test_path")
        except DataFileError as e:
            raise ConfigError(str(e)) from None
        if test_fmt not in TABLE_FORMATS:
            raise ConfigError(f"data.test_path: {data['test_path']!r} is not a table (.csv, .tsv or .parquet)")
    if data.get("text") is not None:
        _check_text_keys(data)
    elif data.get("tokenizer") is not None or data.get("max_tokens") is not None:
        key = "tokenizer" if data.get("tokenizer") is not None else "max_tokens"
        raise ConfigError(f"data.{key}: only with data.text (the column of raw text to tokenise)")
    if data.get("image_size") is not None and (len(data["image_size"]) != 2 or min(data["image_size"]) < 1):
        raise ConfigError(f"data.image_size: expected [height, width] of positive ints, got {data['image_size']}")
    if data.get("channels") not in (None, 1, 3):
        raise ConfigError(f"data.channels: expected 1 (grayscale) or 3 (RGB), got {data['channels']}")
    if fmt == "text" and not 0 < data["val_fraction"] < 1:
        raise ConfigError(f"data.val_fraction: text needs a value in (0, 1), got {data['val_fraction']}")
    if data.get("task") is None and fmt not in ("imagefolder", "text"):
        data["task"] = infer_task(data)
    return data


def _check_text_keys(data: dict) -> None:
    if data.get("tokenizer") is None:
        raise ConfigError(f"data.text: needs a tokenizer: data.tokenizer = a model folder with tokenizer.json, or "
                          f"[model] name = \"pretrained\" (whose path gives it); got neither for column "
                          f"{data['text']!r}")
    for key in ("features", "categorical"):
        if data.get(key):
            raise ConfigError(f"data.{key}: not with data.text (the text column is the only input)")
    if data.get("target") == data["text"]:
        raise ConfigError(f"data.text: the target column {data['target']!r} cannot be the text too")
    try:
        tokenizer_folder(data["tokenizer"])
    except DataFileError as e:
        raise ConfigError(str(e)) from None


# ---------------------------------------------------------------------- targets
def _raw_targets(data: dict) -> tuple[np.ndarray, str]:
    """The targets of a table or array source as an array, and where they come from."""
    path, fmt = pathlib.Path(data["path"]), data["format"]
    if fmt in TABLE_FORMATS:
        df = _table(path, fmt)
        if data["target"] not in df.columns:
            raise ConfigError(f"data.target: {path.name} has no column {data['target']!r}; its columns: "
                              f"{', '.join(df.columns)}")
        check_no_missing(df, [data["target"]], str(path), fmt)
        col = df[data["target"]]
        return (col.to_numpy() if col.dtype.kind in "iubf" else col.astype(str).to_numpy()), \
            f"column {data['target']!r} of {path.name}"
    if fmt == "npy":
        return _read_array(pathlib.Path(data["target_path"]), "npy"), str(data["target_path"])
    return _read_array(path, "npz", "y"), f"array y of {path.name}"


def infer_task(data: dict) -> str:
    """"regression" for float targets, else "classification" (strings, integers, booleans)."""
    y, _ = _raw_targets(data)
    return "regression" if y.dtype.kind == "f" else "classification"


def _encode_targets(y: np.ndarray, task: str, where: str, identity_ints: bool) -> tuple:
    """``(labels, classes, outputs)``: class ids int64 and class names (sorted; non-negative integer
    array labels keep their values when ``identity_ints``) or float32 ``(N, k)`` regression targets."""
    if task == "regression":
        if y.dtype.kind not in "iubf":
            raise DataFileError(f"{where}: data.task = 'regression' needs numbers, got {y.dtype} values such "
                                f"as {y.reshape(-1)[0]!r}")
        return y.astype(np.float32).reshape(len(y), -1), None
    if y.ndim != 1:
        raise DataFileError(f"{where}: class labels must be one per sample, got shape {y.shape}")
    if y.dtype.kind in "iu" and identity_ints and len(y) and y.min() >= 0:
        return y.astype(np.int64), [str(i) for i in range(int(y.max()) + 1)]
    values, labels = np.unique(y, return_inverse=True)
    return labels.astype(np.int64).reshape(-1), [str(v) for v in values]


# ---------------------------------------------------------------------- sources
def _table_source(data: dict) -> tuple:
    path, fmt = pathlib.Path(data["path"]), data["format"]
    df, where, target = _table(path, fmt), str(path), data["target"]
    test = test_where = None
    if data.get("test_path") is not None:
        test_where = data["test_path"]
        test = read_table(test_where, format_of(test_where))
    if data.get("text") is not None:
        return _text_table_source(data, df, test, test_where)
    cols = list(df.columns)
    features = data.get("features") or [c for c in cols if c != target]
    for key, names in (("features", features), ("categorical", data.get("categorical") or [])):
        unknown = [c for c in names if c not in cols]
        if unknown:
            raise ConfigError(f"data.{key}: {path.name} has no column {', '.join(map(repr, unknown))}; its "
                              f"columns: {', '.join(cols)}")
    if target in features:
        raise ConfigError(f"data.features: the target column {target!r} cannot be a feature too")
    if not features:
        raise ConfigError(f"data.features: {path.name} has no column besides the target {target!r}")
    categorical = data.get("categorical")
    if categorical is None:
        categorical = [c for c in features if df[c].dtype.kind not in "iubf"]
    outside = [c for c in categorical if c not in features]
    if outside:
        raise ConfigError(f"data.categorical: {', '.join(map(repr, outside))} {'is' if len(outside) == 1 else 'are'}"
                          f" not among the features ({', '.join(features)})")
    check_no_missing(df, features + [target], where, fmt)
    if test is not None:
        missing = [c for c in features + [target] if c not in test.columns]
        if missing:
            raise DataFileError(f"data.test_path: {test_where} has no column {', '.join(map(repr, missing))}; it "
                                f"needs the columns of {path.name}")
        check_no_missing(test, features + [target], test_where, format_of(test_where))
    both = df if test is None else concat_rows(df[features + [target]], test[features + [target]])
    cats = {c: sorted(set(both[c].astype(str))) for c in features if c in categorical}
    raw = _raw_targets(data)[0]
    if test is not None:
        col = test[target]
        raw = np.concatenate([raw, col.to_numpy() if col.dtype.kind in "iubf" else col.astype(str).to_numpy()])
    y, classes = _encode_targets(raw, data["task"], f"{where}: column {target!r}", False)
    names = [n for c in features for n in ([f"{c}={v}" for v in cats[c]] if c in cats else [c])]
    spec = InputSpec("table", data["task"], [len(names)], classes, None if classes else [target], str(path), fmt,
                     target=target, columns=features, categorical=cats, feature_names=names)
    x = spec.encode_table(df, where)
    xt = yt = None
    if test is not None:
        xt, yt, y = spec.encode_table(test, test_where, format_of(test_where)), y[len(df):], y[:len(df)]
    data["features"], data["categorical"] = features, [c for c in features if c in cats]
    numeric = np.array([c not in cats for c in features for _ in (cats[c] if c in cats else [0])])
    return x, y, xt, yt, spec, numeric


def _text_table_source(data: dict, df: Any, test: Any, test_where: str | None) -> tuple:
    """A table whose ``data.text`` column is raw text: token ids (kind ``"tokens"``) and the targets."""
    path, fmt, text, target = pathlib.Path(data["path"]), data["format"], data["text"], data["target"]
    if text not in df.columns:
        raise ConfigError(f"data.text: {path.name} has no column {text!r}; its columns: {', '.join(df.columns)}")
    raw = _raw_targets(data)[0]
    if test is not None:
        if target not in test.columns:
            raise DataFileError(f"data.test_path: {test_where} has no column {target!r}")
        col = test[target]
        raw = np.concatenate([raw, col.to_numpy() if col.dtype.kind in "iubf" else col.astype(str).to_numpy()])
    y, classes = _encode_targets(raw, data["task"], f"{path}: column {target!r}", False)
    spec = InputSpec("tokens", data["task"], [0], classes, None if classes else [target], str(path), fmt,
                     target=target, columns=[text], tokenizer=data["tokenizer"], max_tokens=data.get("max_tokens"))
    x = spec.encode_text_table(df, str(path), fmt)
    xt = yt = None
    if test is not None:
        test_fmt = format_of(test_where)
        xt, yt, y = spec.encode_text_table(test, test_where, test_fmt), y[len(df):], y[:len(df)]
        width, pad = max(x.shape[1], xt.shape[1]), tokenizer_limits(pathlib.Path(data["tokenizer"]))[2]
        x, xt = (np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=pad) for a in (x, xt))
    spec.shape = [x.shape[1]]  # one width for every split (the model cuts each batch's padding)
    return x, y, xt, yt, spec, None


def _array_source(data: dict) -> tuple:
    path, fmt = pathlib.Path(data["path"]), data["format"]
    if fmt == "npy":
        x = _read_array(path, "npy")
        y = _read_array(pathlib.Path(data["target_path"]), "npy")
        xt = yt = None
        where = f"{path.name} and {pathlib.Path(data['target_path']).name}"
    else:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.keys()}
        for need in ("x", "y"):
            if need not in arrays:
                raise DataFileError(f"{path}: no array {need!r}; a .npz needs arrays x and y (and optionally "
                                    f"x_test and y_test), it has: {', '.join(arrays) or 'none'}")
        if ("x_test" in arrays) != ("y_test" in arrays):
            raise DataFileError(f"{path}: has {'x_test' if 'x_test' in arrays else 'y_test'} without "
                                f"{'y_test' if 'x_test' in arrays else 'x_test'}; give both or neither")
        x, y, xt, yt = arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test")
        where = str(path)
    for a, b, what in ((x, y, "x and y"), (xt, yt, "x_test and y_test")):
        if a is not None and len(a) != len(b):
            raise DataFileError(f"{where}: {what} differ in length: {len(a)} samples and {len(b)} targets")
    if x.dtype.kind not in "iubf" or x.ndim < 2:
        raise DataFileError(f"{where}: x must be numbers of shape (N, features), (N, H, W) or (N, C, H, W), got "
                            f"{x.dtype} of shape {x.shape}")
    if xt is not None and xt.shape[1:] != x.shape[1:]:
        raise DataFileError(f"{where}: x_test has samples of shape {xt.shape[1:]}, x has {x.shape[1:]}")
    n = len(y)
    labels, classes = _encode_targets(y if yt is None else np.concatenate([y, yt]), data["task"], where, True)
    y, yt = labels[:n], (labels[n:] if yt is not None else None)
    images = x.ndim >= 3
    if images:
        shape = list(x.shape[1:]) if x.ndim == 4 else [1, *x.shape[1:]]
        spec = InputSpec("images", data["task"], shape, classes, None if classes else ["y"], str(path), fmt,
                         channels=shape[0] if shape[0] in (1, 3) else None, image_size=shape[1:])
        encode = spec.encode_images
    else:
        spec = InputSpec("features", data["task"], [x.shape[1]], classes, None if classes else ["y"], str(path),
                         fmt)
        encode = spec.encode_features
    x = encode(x, where)
    xt = encode(xt, where) if xt is not None else None
    return x, y, xt, yt, spec, None


def _image_sizes(files: list[str]) -> tuple[list, list]:
    from .imagefolder import _pil_image

    Image, sizes, modes = _pil_image(), [], []
    for f in files:
        try:
            with Image.open(f) as img:
                sizes.append((img.size[1], img.size[0]))
                modes.append(img.mode)
        except (OSError, ValueError) as e:
            raise DataFileError(f"{f}: cannot read it as an image ({e})") from None
    return sizes, modes


def _folder_source(data: dict) -> tuple:
    root = pathlib.Path(data["path"])
    train_dir, test_dir = _folder_splits(root)
    try:
        classes, class_to_idx = find_classes(train_dir)
        samples = make_dataset(train_dir, class_to_idx)
        test = []
        if test_dir is not None:
            extra = sorted(set(find_classes(test_dir)[0]) - set(classes))
            if extra:
                raise DataFileError(f"{test_dir}: classes {', '.join(extra)} are not in {train_dir}")
            test = make_dataset(test_dir, class_to_idx, allow_empty=True)
    except FileNotFoundError as e:
        raise DataFileError(f"data.path: {train_dir}: {e} (expected one folder per class holding image files "
                            f"ending in {', '.join(IMG_EXTENSIONS)})") from None
    files = [p for p, _ in samples + test]
    sizes, modes = _image_sizes(files)
    size = data.get("image_size")
    if size is None:
        if len(set(sizes)) > 1:
            other = next(i for i, s in enumerate(sizes) if s != sizes[0])
            raise DataFileError(f"data.path: images differ in size: {files[0]} is {sizes[0][0]}x{sizes[0][1]}, "
                                f"{files[other]} is {sizes[other][0]}x{sizes[other][1]} (height x width); set "
                                f"data.image_size = [H, W] to resize them all")
        size = list(sizes[0])
    channels = data.get("channels") or (1 if all(m in ("1", "L", "LA", "I", "I;16", "F") for m in modes) else 3)
    data["image_size"], data["channels"] = list(size), channels
    spec = InputSpec("images", "classification", [channels, *size], classes, source=str(root), format="imagefolder",
                     channels=channels, image_size=list(size))

    def stack(items: list) -> tuple:
        if not items:
            return None, None
        x = np.stack([spec.load_image(p) for p, _ in items]).astype(np.float32, copy=False)
        return x, np.array([t for _, t in items], dtype=np.int64)

    x, y = stack(samples)
    xt, yt = stack(test)
    return x, y, xt, yt, spec, None


def _image_augment(shape: list) -> Any:
    h = shape[1]

    def make(g: Generator) -> Any:
        return transforms.RandomCrop(shape[1:], padding=max(1, h // 8), generator=g)
    return make


def load_own(data: dict, seed: int) -> DataBundle:
    """The ``DataBundle`` of a checked ``[data]`` table with a ``path`` (``check_own``); the values
    derived from the data (feature columns, image size, ...) are written into ``data``."""
    fmt = data["format"]
    source = str(data["path"])
    rng = np.random.default_rng(seed)
    if fmt == "text":
        path = pathlib.Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataFileError(f"data.path: {path}: cannot read it as UTF-8 text ({e})") from None
        try:
            train, val = (char_dataset(text, data["block_size"], s, data["val_fraction"], what=f"data.path: {path}")
                          for s in ("train", "val"))
        except ValueError as e:
            raise DataFileError(str(e)) from None
        spec = InputSpec("text", "language_model", [data["block_size"]], source=source, format="text",
                         vocab=list(train.vocab.itos), block_size=data["block_size"])
        return text_bundle(train, val, data, rng, spec, source)
    reader = _table_source if fmt in TABLE_FORMATS else _array_source if fmt in ("npy", "npz") else _folder_source
    x, y, xt, yt, spec, numeric = reader(data)
    standardize = data.get("standardize")
    if standardize is None:
        standardize = spec.kind in ("table", "features")
    if standardize and spec.kind in ("images", "tokens"):
        raise ConfigError(f"data.standardize: applies to tables and feature arrays, not to "
                          f"{'images' if spec.kind == 'images' else 'token ids of data.text'}")
    if spec.kind != "images":
        data["standardize"] = bool(standardize)
    augment = None
    if data.get("augment"):
        if spec.kind != "images":
            raise ConfigError(f"data.augment: needs images; {source} gives {spec.kind}")
        augment = _image_augment(spec.shape)
    num_classes = len(spec.classes) if spec.classes else 0
    return arrays_bundle(x, y, xt, yt, data=data, rng=rng, seed=seed, spec=spec, standardize=bool(standardize),
                         std_columns=numeric, augment=augment, num_classes=num_classes,
                         num_outputs=num_classes or y.shape[1], source=source)
