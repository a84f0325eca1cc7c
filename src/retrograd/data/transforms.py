"""Transforms for samples and whole batches, vectorised with NumPy.

Each transform takes a NumPy array or a Tensor and returns the same kind.
Image transforms read the last three axes as (C, H, W): a 4-D input is a
batch ``(N, C, H, W)`` and gets independent random draws per sample, a 3-D
input is one image. Random transforms draw from their ``generator``
(an ``rg.Generator``; None: the default one seeded by ``rg.manual_seed``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..random import Generator, resolve
from ..tensor import Tensor, wrap_array


def _unwrap(x: Any) -> tuple[np.ndarray, bool]:
    if isinstance(x, Tensor):
        return x._array, True
    return np.asarray(x), False


def _rewrap(a: np.ndarray, was_tensor: bool) -> Any:
    return wrap_array(a) if was_tensor else a


class Compose:
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Lambda:
    """Wrap any function of the input."""

    def __init__(self, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError(f"Lambda: argument should be callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, x: Any) -> Any:
        return self.fn(x)


class ToFloat:
    """Cast to ``dtype`` (float32) and multiply by ``scale``: ``ToFloat(1/255)``
    maps uint8 pixels to [0, 1]."""

    def __init__(self, scale: float = 1.0, dtype: Any = np.float32) -> None:
        self.scale = scale
        self.dtype = np.dtype(dtype)

    def __call__(self, x: Any) -> Any:
        a, t = _unwrap(x)
        out = a.astype(self.dtype)
        if self.scale != 1.0:
            out *= self.dtype.type(self.scale)
        return _rewrap(out, t)

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale}, dtype={self.dtype})"


class Normalize:
    """``(x - mean) / std`` per channel.

    For inputs with 3 or more axes the channel axis is -3 (``(C, H, W)`` or
    ``(N, C, H, W)``); for 1-D/2-D inputs (feature vectors ``(F,)`` or
    ``(N, F)``) mean and std broadcast along the last axis.
    """

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to float64, leading to "
                             f"division by zero (std={self.std.tolist()})")

    def __call__(self, x: Any) -> Any:
        a, t = _unwrap(x)
        if a.dtype.kind != "f":
            raise TypeError(f"Normalize: input should be a float array, got {a.dtype}; apply ToFloat first")
        shape = (-1, 1, 1) if a.ndim >= 3 else (-1,)
        c = a.shape[-3] if a.ndim >= 3 else a.shape[-1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(f"Normalize: {name} has {v.size} values but the input has {c} channels "
                                 f"(shape {a.shape})")
        mean = self.mean.astype(a.dtype).reshape(shape)
        std = self.std.astype(a.dtype).reshape(shape)
        return _rewrap((a - mean) / std, t)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _check_image(a: np.ndarray, op: str) -> None:
    if a.ndim not in (3, 4):
        raise ValueError(f"{op}: expected an image (C, H, W) or a batch (N, C, H, W), got shape {a.shape}")


class RandomHorizontalFlip:
    """Flip each image left-right (last axis) with probability ``p``."""

    def __init__(self, p: float = 0.5, *, generator: Generator | None = None) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, x: Any) -> Any:
        a, t = _unwrap(x)
        _check_image(a, "RandomHorizontalFlip")
        rng = resolve(self.generator)
        if a.ndim == 3:
            return _rewrap(a[..., ::-1].copy() if rng.random() < self.p else a, t)
        flip = rng.random(a.shape[0]) < self.p
        out = a.copy()
        out[flip] = a[flip][..., ::-1]
        return _rewrap(out, t)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Pad by ``padding`` (constant ``fill``) then cut a random ``size`` window,
    independently per image."""

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] | None = None, *,
                 fill: float = 0, generator: Generator | None = None) -> None:
        self.size = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        if len(self.size) != 2:
            raise ValueError(f"RandomCrop: size must be an int or (h, w), got {size}")
        if padding is None:
            pad = (0, 0, 0, 0)
        elif np.ndim(padding) == 0:
            pad = (int(padding),) * 4
        elif len(padding) == 2:   # (left/right, top/bottom), as torchvision
            pad = (int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1]))
        elif len(padding) == 4:   # (left, top, right, bottom)
            pad = tuple(int(p) for p in padding)
        else:
            raise ValueError(f"RandomCrop: padding must be an int or a sequence of 2 or 4, got {padding}")
        self.padding = pad
        self.fill = fill
        self.generator = generator

    def __call__(self, x: Any) -> Any:
        a, t = _unwrap(x)
        _check_image(a, "RandomCrop")
        left, top, right, bottom = self.padding
        if any(self.padding):
            widths = [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)]
            a = np.pad(a, widths, mode="constant", constant_values=self.fill)
        h, w = self.size
        H, W = a.shape[-2:]
        if h > H or w > W:
            raise ValueError(f"RandomCrop: required crop size {(h, w)} is larger than the padded input "
                             f"image size {(H, W)}")
        rng = resolve(self.generator)
        n = 1 if a.ndim == 3 else a.shape[0]
        i = rng.integers(0, H - h + 1, n)
        j = rng.integers(0, W - w + 1, n)
        if a.ndim == 3:
            return _rewrap(a[:, i[0]:i[0] + h, j[0]:j[0] + w].copy(), t)
        # all windows as a view, then one gather of each image's own window
        win = np.lib.stride_tricks.sliding_window_view(a, (h, w), axis=(2, 3))  # (N, C, H-h+1, W-w+1, h, w)
        return _rewrap(win[np.arange(n), :, i, j], t)   # advanced axes first: (N, C, h, w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"
