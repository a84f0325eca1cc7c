"""Data presets: the data sets a training config's ``[data] name`` can name, how each is
loaded, and how every preset is split into train, validation and test. ``build_data`` also
builds a user's own data (``[data] path``: ``retrograd.data.owndata``).

``PRESETS`` is the one table of them: config validation takes its names and options from it
and ``build_data`` loads from it, so a data set added here is available to the ``retrograd``
command, to ``rg.tune`` and to Python alike::

    from retrograd.data.presets import build_data
    bundle = build_data({"name": "digits", ...}, seed=0)   # a validated [data] table
    bundle.train, bundle.val, bundle.test, bundle.in_shape, bundle.num_classes, bundle.inputs
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from . import transforms
from .bundle import ConfigError, DataBundle, arrays_bundle, text_bundle
from .images import FASHION_MNIST_CLASSES, fashion_mnist_pixels, mnist_5k, scale_pixels
from .inputs import InputSpec
from .owndata import load_own, own_data_keys
from .tabular import sklearn_dataset
from .text import shakespeare
from ..random import Generator

__all__ = ["ConfigError", "DataBundle", "DataPreset", "PRESETS", "build_data", "data_keys"]


@dataclasses.dataclass(frozen=True)
class DataPreset:
    """One ``[data] name``.

    ``load(data)`` gives ``(x, y, x_test, y_test)`` arrays for the ``[data]`` table ``data``;
    ``x_test`` is None when the set has no test split (``data.test_fraction`` of it is held out).
    A ``"text"`` preset's ``load`` gives ``(train, val)`` datasets with a ``vocab`` instead.
    ``inputs(data, x)`` gives the ``InputSpec`` of raw inputs (``x``: the training features as
    loaded; None: a generic one from ``x``'s shape).
    """
    load: Callable[[dict], tuple]
    kind: str = "features"  # "images", "features" or "text"
    # data.augment: the transform of training images, made from its own generator
    augment: Callable[[Generator], Callable] | None = None
    standardize: bool | None = None  # default of data.standardize; None: the option does not apply
    images_option: bool = False  # data.images = true gives the features as (1, H, W) images
    test_split: bool = False  # the set has its own test split (data.test_fraction does not apply)
    root: bool = False  # data.root: the folder where the set's files are
    inputs: Callable[[dict, np.ndarray], InputSpec] | None = None
    # the loaded features as stored (e.g. uint8 pixels) -> what the model reads, applied per split
    convert: Callable[[np.ndarray], np.ndarray] | None = None


def _fashion_mnist(data: dict) -> tuple:
    """uint8 pixels: ``build_data`` splits and subsets them as stored and its datasets convert each
    batch to float32 as it is read (the whole training set as float32 is 188 MB)."""
    root = data.get("root")
    return (*fashion_mnist_pixels("train", root), *fashion_mnist_pixels("test", root))


def _mnist_5k(data: dict) -> tuple:
    return (*mnist_5k().arrays, None, None)


def _sklearn(name: str, data: dict) -> tuple:
    return (*sklearn_dataset(name, images=data["images"]).arrays, None, None)


def _shakespeare(data: dict) -> tuple:
    return tuple(shakespeare(data["block_size"], split, data["val_fraction"]) for split in ("train", "val"))


def _image_inputs(name: str, classes: tuple, data: dict, x: np.ndarray) -> InputSpec:
    return InputSpec("images", shape=list(x.shape[1:]), classes=list(classes), source=name, format="npy",
                     channels=1, image_size=list(x.shape[2:]))


def _sklearn_inputs(name: str, data: dict, x: np.ndarray) -> InputSpec:
    ds = sklearn_dataset(name)
    return InputSpec("features", shape=list(x.shape[1:]), classes=list(ds.classes), source=name,
                     columns=list(ds.feature_names), scale=16.0 if name == "digits" else None)


def _crop_flip_28(g: Generator) -> Callable:
    return transforms.Compose([transforms.RandomCrop(28, padding=2, generator=g),
                               transforms.RandomHorizontalFlip(generator=g)])


def _crop_28(g: Generator) -> Callable:
    return transforms.RandomCrop(28, padding=2, generator=g)


def _crop_8(g: Generator) -> Callable:
    return transforms.RandomCrop(8, padding=1, generator=g)


def _sklearn_preset(name: str, **kwargs: Any) -> DataPreset:
    return DataPreset(functools.partial(_sklearn, name), inputs=functools.partial(_sklearn_inputs, name), **kwargs)


PRESETS: dict[str, DataPreset] = {
    "fashion_mnist": DataPreset(_fashion_mnist, "images", augment=_crop_flip_28, test_split=True, root=True,
                                inputs=functools.partial(_image_inputs, "fashion_mnist", FASHION_MNIST_CLASSES),
                                convert=scale_pixels),
    "mnist_5k": DataPreset(_mnist_5k, "images", augment=_crop_28,
                           inputs=functools.partial(_image_inputs, "mnist_5k", tuple(str(d) for d in range(10)))),
    "digits": _sklearn_preset("digits", augment=_crop_8, standardize=False, images_option=True),
    "iris": _sklearn_preset("iris", standardize=True),
    "breast_cancer": _sklearn_preset("breast_cancer", standardize=True),
    "wine": _sklearn_preset("wine", standardize=True),
    "shakespeare": DataPreset(_shakespeare, "text"),
}

# [data] keys every source uses; the others apply as data_keys says
COMMON_KEYS = ("batch_size", "eval_batch_size", "val_fraction", "train_samples", "val_samples", "seed")


def data_keys(data: dict) -> list[str]:
    """The ``[data]`` keys that apply to the source ``data`` names (a validated ``[data]`` table):
    what a resolved config keeps. A preset's: ``name``, the common keys, ``test_fraction`` unless it
    has a test split, ``augment``/``standardize``/``images``/``root`` where it has them,
    ``block_size`` for text, ``labels_per_class`` for the others. A path's: see ``owndata.own_data_keys``."""
    if data.get("path") is not None:
        keys = own_data_keys(data, COMMON_KEYS)
        return keys if data.get("format") == "text" else [*keys, "labels_per_class"]
    preset = PRESETS.get(data.get("name"))
    keys = ["name", *COMMON_KEYS]
    if preset is None:
        return keys
    if preset.kind == "text":
        return [*keys, "block_size"]
    keys += ["labels_per_class"] + ([] if preset.test_split else ["test_fraction"])
    return keys + [k for k, applies in (("augment", preset.augment is not None),
                                        ("standardize", preset.standardize is not None),
                                        ("images", preset.images_option), ("root", preset.root)) if applies]


def build_data(data: dict, seed: int) -> DataBundle:
    """Load ``[data]`` and split it: validation from the training set (``val_fraction``), test
    from the set's own test split or ``test_fraction`` of it; all splits seeded by ``seed``.
    ``data["path"]`` (a user's own data, checked by ``owndata.check_own``) is read by
    ``owndata.load_own``, which writes the values it derives from the data into ``data``."""
    if data.get("path") is not None:
        return load_own(data, seed)
    name = data["name"]
    preset = PRESETS[name]
    rng = np.random.default_rng(seed)
    if preset.kind == "text":
        train, val = preset.load(data)
        spec = InputSpec("text", "language_model", [data["block_size"]], source=name,
                         vocab=list(val.vocab.itos), block_size=data["block_size"])
        return text_bundle(train, val, data, rng, spec, name)
    x, y, xt, yt = preset.load(data)
    spec = preset.inputs(data, x) if preset.inputs is not None else InputSpec(
        "images" if x.ndim == 4 else "features", shape=list(x.shape[1:]), source=name)
    standardize = data["standardize"] if data.get("standardize") is not None else preset.standardize
    aug = None
    if data["augment"]:
        if preset.augment is None or x.ndim != 4:
            raise ConfigError(f"data.augment: needs images; {name} gives features of shape {x.shape[1:]}"
                              + (" (set data.images = true)" if preset.images_option else ""))
        aug = preset.augment
    bundle = arrays_bundle(x, y, xt, yt, data=data, rng=rng, seed=seed, spec=spec,
                           standardize=bool(preset.standardize is not None and standardize), augment=aug,
                           num_classes=0, source=name, convert=preset.convert)
    labels = [(d.stored if hasattr(d, "stored") else d.arrays)[1]  # the labels alone, no pixels converted
              for d in (bundle.train, bundle.test) if d is not None]
    bundle.num_classes = bundle.num_outputs = int(max(a.max() for a in labels) + 1)
    if spec.classes is None:
        spec.classes = [str(i) for i in range(bundle.num_classes)]
    return bundle
