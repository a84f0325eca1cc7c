"""``SentenceEncoder``: a sentence-transformers folder (``modules.json``: Transformer -> Pooling ->
optional Normalize) on a ``BertModel``, tokenised with Hugging Face's ``tokenizers`` library.

``SentenceEncoder.from_pretrained(folder).encode(["a sentence", ...])`` gives a NumPy ``(n, dim)``
array equal to ``sentence_transformers.SentenceTransformer(folder).encode(...)``. The module itself is
differentiable: ``forward(input_ids, attention_mask, token_type_ids)`` -> ``(B, dim)`` embeddings, so
it can be fine-tuned like any ``nn.Module``.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Sequence

import numpy as np

from .. import nn
from ..engine import no_grad
from ..io.pretrained import PretrainedError, model_folder, read_json_file
from ..nn import functional as F
from ..tensor import Tensor
from ..tensor_functions import cat
from .bert import BertModel

__all__ = ["Pooling", "SentenceEncoder", "load_tokenizer", "POOLING_MODES"]

# sentence-transformers' concatenation order of the pooled vectors
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")
_CONFIG_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
_ST = "sentence_transformers.models."


class Pooling(nn.Module):
    """Token embeddings ``(B, T, H)`` + mask ``(B, T)`` -> ``(B, H * len(modes))``, the modes concatenated
    in sentence-transformers' order (cls, max, mean, mean_sqrt_len); padding never counts."""

    def __init__(self, modes: Sequence[str] = ("mean",)) -> None:
        super().__init__()
        modes = tuple(modes)
        bad = [m for m in modes if m not in POOLING_MODES]
        if bad or not modes:
            raise ValueError(f"Pooling: unsupported mode(s) {bad or modes} (supported: {', '.join(POOLING_MODES)})")
        self.modes = tuple(m for m in POOLING_MODES if m in modes)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(-1).to(tokens.dtype)
        out = []
        for mode in self.modes:
            if mode == "cls":
                out.append(tokens[:, 0])
            elif mode == "max":
                out.append(tokens.masked_fill(m == 0, -1e9).max(dim=1)[0])
            else:
                n = m.sum(dim=1).clamp(min=1e-9)
                s = (tokens * m).sum(dim=1)
                out.append(s / n if mode == "mean" else s / n.sqrt())
        return out[0] if len(out) == 1 else cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"modes={self.modes}"


def load_tokenizer(folder: pathlib.Path, max_length: int, who: str) -> Any:
    """``tokenizers.Tokenizer`` from ``folder/tokenizer.json``, truncating to ``max_length`` tokens and
    padding each batch to its longest sequence (the file's own fixed padding is replaced)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError(f"{who}: the 'tokenizers' package is needed (pip install 'retrograd[pretrained]')") from None
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise PretrainedError(f"{who}: tokenizer.json not found in {str(folder)!r} (a fast-tokenizer file is "
                              f"needed; vocab.txt alone is not read)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise PretrainedError(f"{who}: {path} is not a readable tokenizer file ({e})") from None
    tok.enable_truncation(max_length=max_length)
    pad = tok.padding or {}
    tok.enable_padding(pad_id=pad.get("pad_id", 0), pad_type_id=pad.get("pad_type_id", 0),
                       pad_token=pad.get("pad_token", "[PAD]"), direction=pad.get("direction", "right"))
    return tok


def _modules(folder: pathlib.Path, who: str) -> tuple[str, list[dict]]:
    """The folder of the Transformer module and the modules after it, from ``modules.json``."""
    mods = read_json_file(folder, "modules.json", who)
    if not isinstance(mods, list) or not all(isinstance(m, dict) and "type" in m for m in mods):
        raise PretrainedError(f"{who}: {folder / 'modules.json'} must be a list of {{'type', 'path', ...}} objects")
    supported = {"Transformer", "Pooling", "Normalize"}
    kinds = []
    for m in mods:
        t = str(m["type"])
        kind = t[len(_ST):] if t.startswith(_ST) else t
        if kind not in supported:
            raise PretrainedError(f"{who}: unsupported module type {t!r} in {folder / 'modules.json'} "
                                  f"(supported: {', '.join(_ST + s for s in sorted(supported))})")
        kinds.append(dict(m, kind=kind))
    if not kinds or kinds[0]["kind"] != "Transformer":
        raise PretrainedError(f"{who}: {folder / 'modules.json'} must start with a Transformer module")
    return str(kinds[0].get("path") or ""), kinds[1:]


class SentenceEncoder(nn.Module):
    """``BertModel`` -> ``Pooling`` -> optional L2 normalisation: ``(B, T)`` ids -> ``(B, dim)``."""

    def __init__(self, bert: BertModel, pooling: Pooling | None = None, normalize: bool = False, *,
                 tokenizer: Any = None, max_seq_length: int | None = None) -> None:
        super().__init__()
        self.bert = bert
        self.pooling = pooling if pooling is not None else Pooling(("mean",))
        self.normalize = normalize
        self.tokenizer = tokenizer
        self._max_seq_length = 0
        self.max_seq_length = max_seq_length or bert.config.max_position_embeddings
        self.folder: str | None = None       # the sentence-transformers folder, and its transformer's
        self.bert_folder: str | None = None

    @property
    def max_seq_length(self) -> int:
        """Tokens per text after truncation, [CLS] and [SEP] included (settable, as in sentence-transformers)."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, n: int) -> None:
        limit = self.bert.config.max_position_embeddings
        if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= limit:
            raise ValueError(f"SentenceEncoder: max_seq_length must be an int in [1, {limit}] "
                             f"(max_position_embeddings), got {n!r}")
        self._max_seq_length = n
        if self.tokenizer is not None:
            self.tokenizer.enable_truncation(max_length=n)

    @property
    def dim(self) -> int:
        return self.bert.config.hidden_size * len(self.pooling.modes)

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Tensor:
        ids = input_ids if isinstance(input_ids, Tensor) else Tensor(np.asarray(input_ids))
        if attention_mask is None:
            attention_mask = np.ones(tuple(ids.shape), dtype=np.int64)
        mask = attention_mask if isinstance(attention_mask, Tensor) else Tensor(np.asarray(attention_mask))
        tokens = self.bert(ids, mask, token_type_ids).last_hidden_state
        out = self.pooling(tokens, mask)
        return F.normalize(out, p=2.0, dim=1) if self.normalize else out

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``{'input_ids', 'attention_mask', 'token_type_ids'}``: int64 ``(len(texts), longest)`` arrays."""
        if self.tokenizer is None:
            raise RuntimeError("SentenceEncoder.tokenize: no tokenizer (build it with from_pretrained, or pass "
                               "tokenizer=)")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("SentenceEncoder.tokenize: expected a list of str")
        enc = self.tokenizer.encode_batch(list(texts))
        return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64).reshape(len(enc), -1),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64).reshape(len(enc), -1),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64).reshape(len(enc), -1)}

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, normalize_embeddings: bool = False,
               show_progress_bar: bool = False) -> np.ndarray:
        """Embed ``sentences`` -> float32 NumPy ``(n, dim)`` (``(dim,)`` for a single str), in eval mode and
        without grad. Batches are formed longest-first (less padding) and the rows put back in order;
        ``normalize_embeddings`` L2-normalises on top of the folder's own Normalize module."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not all(isinstance(t, str) for t in texts):
            bad = next(type(t).__name__ for t in texts if not isinstance(t, str))
            raise TypeError(f"SentenceEncoder.encode: expected a str or a list of str, got an item of type {bad}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be a positive int, got {batch_size!r}")
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for start in range(0, len(texts), batch_size):
                    idx = order[start:start + batch_size]
                    batch = self.tokenize([texts[i] for i in idx])
                    emb = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                    out[idx] = emb.numpy()
        finally:
            self.train(was_training)
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "SentenceEncoder":
        """Load a sentence-transformers folder: ``modules.json``, the Transformer folder (``config.json``,
        ``model.safetensors``, ``tokenizer.json``, ``sentence_bert_config.json``) and the Pooling module's
        ``config.json``. Missing or malformed files raise ``PretrainedError``; nothing is downloaded."""
        who = "SentenceEncoder.from_pretrained"
        root = model_folder(folder, who)
        sub, rest = _modules(root, who)
        tdir = root / sub
        bert = BertModel.from_pretrained(tdir)
        limit = bert.config.max_position_embeddings
        max_len = None
        if (tdir / "sentence_bert_config.json").is_file():
            max_len = read_json_file(tdir, "sentence_bert_config.json", who).get("max_seq_length")
        if max_len is None and (tdir / "tokenizer_config.json").is_file():
            max_len = read_json_file(tdir, "tokenizer_config.json", who).get("model_max_length")
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len <= 0:
            max_len = limit
        max_len = min(max_len, limit)
        pooling, normalize = None, False
        for m in rest:
            if m["kind"] == "Pooling":
                pdir = root / str(m.get("path") or "")
                pcfg = read_json_file(pdir, "config.json", who)
                if not isinstance(pcfg, dict):
                    raise PretrainedError(f"{who}: {pdir / 'config.json'} must hold a JSON object")
                modes = [mode for key, mode in _CONFIG_KEYS.items() if pcfg.get(key)]
                other = [k for k, v in pcfg.items() if k.startswith("pooling_mode_") and v and k not in _CONFIG_KEYS]
                if other or not modes:
                    raise PretrainedError(f"{who}: {pdir / 'config.json'}: unsupported pooling "
                                          f"{', '.join(other) or '(no mode set)'} (supported: "
                                          f"{', '.join(_CONFIG_KEYS)})")
                dim = pcfg.get("word_embedding_dimension", bert.config.hidden_size)
                if dim != bert.config.hidden_size:
                    raise PretrainedError(f"{who}: {pdir / 'config.json'}: word_embedding_dimension {dim} != "
                                          f"hidden_size {bert.config.hidden_size} of the transformer")
                pooling = Pooling(modes)
            elif m["kind"] == "Normalize":
                normalize = True
            else:
                raise PretrainedError(f"{who}: {root / 'modules.json'}: a second Transformer module is not supported")
        if pooling is None:
            raise PretrainedError(f"{who}: {root / 'modules.json'} has no Pooling module")
        enc = cls(bert, pooling, normalize, tokenizer=load_tokenizer(tdir, max_len, who), max_seq_length=max_len)
        enc.folder, enc.bert_folder = str(root), str(tdir)
        enc.eval()
        return enc
