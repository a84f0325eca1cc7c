"""Raw text -> token ids with a pretrained model's own tokenizer (``tokenizer.json`` in a Hugging Face
folder, read by the ``tokenizers`` library): what ``[data] text = "COLUMN"`` of a table (CSV, TSV,
Parquet, JSONL) uses, so that ``retrograd train`` fine-tunes a pretrained encoder on a user's text
without a hand-made file of ids. Ids are int64 ``(N, T)``: ``[CLS] ... [SEP]`` (the tokenizer's own
template), truncated to ``max_tokens`` (default: the folder's ``sentence_bert_config.json``
``max_seq_length``, else ``config.json``'s ``max_position_embeddings``), padded with ``config.json``'s
``pad_token_id`` (default 0) to the longest text; the model cuts each batch's padding columns.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from .bundle import DataFileError
from .packaged import optional_module

__all__ = ["TOKENIZERS_INSTALL", "tokenizer_folder", "tokenizer_limits", "text_token_ids"]

TOKENIZERS_INSTALL = "python3 -m pip install tokenizers  (or: python3 -m pip install 'retrograd[pretrained]')"
_CACHE: dict = {}  # (path, size, mtime) -> tokenizers.Tokenizer


def tokenizer_folder(folder: str | os.PathLike, what: str = "data.tokenizer") -> pathlib.Path:
    """``folder`` checked: a folder holding ``tokenizer.json`` (a ``DataFileError`` naming ``what`` if not)."""
    p = pathlib.Path(folder)
    if not p.is_dir():
        raise DataFileError(f"{what}: {str(p)!r} is not a folder (expected a model folder with tokenizer.json)")
    if not (p / "tokenizer.json").is_file():
        raise DataFileError(f"{what}: no tokenizer.json in {str(p)!r} (a fast-tokenizer file is needed; "
                            f"vocab.txt alone is not read)")
    return p


def _json(path: pathlib.Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as e:
        raise DataFileError(f"{path}: cannot read it as JSON ({e})") from None
    return d if isinstance(d, dict) else {}


def tokenizer_limits(folder: pathlib.Path) -> tuple[int, int, int]:
    """``(default max_tokens, largest max_tokens, pad_id)`` of a model folder (module docstring)."""
    cfg = _json(folder / "config.json")
    positions = int(cfg.get("max_position_embeddings") or 512)
    limit = _json(folder / "sentence_bert_config.json").get("max_seq_length") or positions
    return min(int(limit), positions), positions, int(cfg.get("pad_token_id") or 0)


def _tokenizer(folder: pathlib.Path) -> Any:
    path = folder / "tokenizer.json"
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        tokenizers = optional_module("tokenizers", needed_for="tokenising data.text", install=TOKENIZERS_INSTALL)
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on a malformed file
            raise DataFileError(f"data.tokenizer: {path} is not a readable tokenizer file ({e})") from None
        tok.no_padding()
        _CACHE.clear()
        _CACHE[key] = tok
    return _CACHE[key]


def text_token_ids(texts: Sequence[str], folder: str | os.PathLike, max_tokens: int | None = None) -> np.ndarray:
    """int64 ``(len(texts), T)`` token ids of ``texts`` with the tokenizer of ``folder`` (see the module
    docstring); ``T`` is the longest encoded text, at most ``max_tokens``."""
    folder = tokenizer_folder(folder)
    default, positions, pad = tokenizer_limits(folder)
    n = default if max_tokens is None else int(max_tokens)
    if not 2 <= n <= positions:
        raise DataFileError(f"data.max_tokens: expected 2 to {positions} (the model's positions, "
                            f"max_position_embeddings of {folder / 'config.json'}), got {n}")
    tok = _tokenizer(folder)
    tok.enable_truncation(max_length=n)
    encoded = tok.encode_batch([str(t) for t in texts])
    ids = np.full((len(encoded), max((len(e.ids) for e in encoded), default=1)), pad, dtype=np.int64)
    for i, e in enumerate(encoded):
        ids[i, :len(e.ids)] = e.ids
    return ids
