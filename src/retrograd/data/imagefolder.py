"""Images in folders, read with Pillow: ``ImageFolder`` (torchvision's layout and semantics) and
``load_image``, the one function that turns an image file into model input, for training on an
image folder and for predicting on new images alike."""
from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from .bundle import DataFileError
from .dataset import Dataset
from .packaged import optional_module

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "find_classes", "make_dataset", "pil_loader", "load_image",
           "image_files"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
PILLOW_INSTALL = "python3 -m pip install pillow  (or: python3 -m pip install 'retrograd[data]')"


def _pil_image() -> Any:
    return optional_module("PIL.Image", needed_for="reading images", install=PILLOW_INSTALL)


def find_classes(directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
    """The class folders of ``directory``, sorted, and ``class_to_idx`` (as torchvision's)."""
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
    return classes, {name: i for i, name in enumerate(classes)}


def _has_extension(name: str, extensions: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(extensions))


def make_dataset(directory: str | os.PathLike, class_to_idx: dict[str, int],
                 extensions: Sequence[str] = IMG_EXTENSIONS, allow_empty: bool = False) -> list[tuple[str, int]]:
    """``(path, class index)`` of every file with one of ``extensions`` under each class folder,
    classes in sorted order and files sorted within their folders (symbolic links followed)."""
    directory = os.path.expanduser(directory)
    instances, found = [], set()
    for target_class in sorted(class_to_idx, key=class_to_idx.get):
        target_dir = os.path.join(directory, target_class)
        if not os.path.isdir(target_dir):
            continue
        for root, _, fnames in sorted(os.walk(target_dir, followlinks=True)):
            for fname in sorted(fnames):
                if _has_extension(fname, extensions):
                    instances.append((os.path.join(root, fname), class_to_idx[target_class]))
                    found.add(target_class)
    empty = set(class_to_idx) - found
    if empty and not allow_empty:
        raise FileNotFoundError(f"Found no valid file for the classes {', '.join(sorted(empty))}. "
                                f"Supported extensions are: {', '.join(extensions)}")
    return instances


def pil_loader(path: str | os.PathLike) -> Any:
    """The image at ``path`` as an RGB ``PIL.Image`` (torchvision's default loader)."""
    with open(path, "rb") as f:
        img = _pil_image().open(f)
        return img.convert("RGB")


class ImageFolder(Dataset):
    """Images arranged in one folder per class (torchvision's ``ImageFolder``)::

        root/dog/xxx.png
        root/cat/123.png

    ``classes`` (sorted folder names), ``class_to_idx``, ``samples`` (``(path, class index)``,
    class by class, files sorted), ``targets``, ``imgs`` (= ``samples``) and ``extensions`` as
    torchvision's. Item ``i`` is ``(transform(loader(path)), target_transform(class index))``; the
    default ``loader`` gives an RGB ``PIL.Image`` (read with Pillow), so a ``transform`` such as
    ``lambda im: load_image(im, size=(32, 32))`` turns it into an array for the model.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 target_transform: Callable | None = None, loader: Callable = pil_loader,
                 is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False) -> None:
        self.root = os.fspath(root)
        self.transform, self.target_transform, self.loader = transform, target_transform, loader
        self.classes, self.class_to_idx = find_classes(self.root)
        if is_valid_file is None:
            self.extensions: tuple | None = IMG_EXTENSIONS
            self.samples = make_dataset(self.root, self.class_to_idx, IMG_EXTENSIONS, allow_empty)
        else:  # torchvision: a custom test replaces the extension check
            self.extensions = None
            self.samples = [s for s in make_dataset(self.root, self.class_to_idx, ("",), True)
                            if is_valid_file(s[0])]
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple:
        path, target = self.samples[index]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target


def load_image(image: Any, size: Sequence[int] | None = None, channels: int | None = None) -> np.ndarray:
    """An image file (or a ``PIL.Image``) as float32 ``(C, H, W)`` in [0, 1]: converted to
    grayscale (``channels=1``) or RGB (3; None: grayscale images stay grayscale, others become RGB),
    resized to ``size = (H, W)`` with bilinear filtering when given."""
    Image = _pil_image()
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as img:
                img.load()
        except (OSError, ValueError) as e:
            raise DataFileError(f"{image}: cannot read it as an image ({e})") from None
    else:
        img = image
    mode = "L" if channels == 1 or (channels is None and img.mode in ("1", "L", "LA", "I", "I;16", "F")) else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    if size is not None:
        h, w = (int(s) for s in size)
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / np.float32(255)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def image_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Every image file under ``folder`` (any depth), sorted by path."""
    folder = pathlib.Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and _has_extension(p.name, IMG_EXTENSIONS))
