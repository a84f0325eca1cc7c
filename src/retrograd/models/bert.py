"""``BertModel``: the BERT encoder with Hugging Face's parameter names, so that ``state_dict()`` keys are
a ``config.json`` + ``model.safetensors`` checkpoint's keys (``embeddings.word_embeddings.weight``,
``encoder.layer.0.attention.self.query.weight``, ..., ``pooler.dense.bias``).

Embeddings (word + absolute position + token type, LayerNorm, dropout), then ``num_hidden_layers``
post-LayerNorm blocks ``x = LN(x + attn(x))``, ``x = LN(x + W2 act(W1 x))``, then the pooler
``tanh(W h[:, 0])``. Built from ``nn.Embedding``, ``nn.Linear``, ``nn.LayerNorm`` and
``F.scaled_dot_product_attention`` only (so exporters see ordinary layers).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import numpy as np

from .. import nn
from ..io.pretrained import PretrainedError, check_state_dict, model_folder, read_config, read_weights
from ..nn import functional as F
from ..nn import init as nn_init
from ..creation import arange
from ..tensor import Tensor

__all__ = ["BertConfig", "BertModel", "BertModelOutput", "HIDDEN_ACTS"]

HIDDEN_ACTS = {"gelu": lambda x: F.gelu(x), "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu, "silu": F.silu}
# heads of BertFor* checkpoints: their encoder sits under "bert."; their head keys are not the encoder's
ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining", "BertForSequenceClassification",
                 "BertForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice",
                 "BertForNextSentencePrediction")
_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")
# buffers that some checkpoints carry and the model rebuilds (transformers ignores them too)
_IGNORED_KEYS = ("embeddings.position_ids",)


@dataclasses.dataclass
class BertConfig:
    """The ``config.json`` fields the encoder uses (Hugging Face's names and defaults)."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"BertConfig: {name} must be a positive int, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in HIDDEN_ACTS:
            raise ValueError(f"BertConfig: unsupported hidden_act {self.hidden_act!r} "
                             f"(supported: {', '.join(sorted(HIDDEN_ACTS))})")
        if self.position_embedding_type != "absolute":
            raise ValueError(f"BertConfig: unsupported position_embedding_type {self.position_embedding_type!r} "
                             f"(supported: 'absolute')")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
                raise ValueError(f"BertConfig: {name} must be a float in [0, 1), got {v!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or isinstance(self.layer_norm_eps, bool) \
                or not self.layer_norm_eps > 0:
            raise ValueError(f"BertConfig: layer_norm_eps must be a positive float, got {self.layer_norm_eps!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """The known fields of ``d`` (a parsed ``config.json``); the rest is ignored as transformers does."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class BertModelOutput(NamedTuple):
    """``last_hidden_state`` ``(B, T, hidden)`` and ``pooler_output`` ``(B, hidden)`` (None without pooler)."""
    last_hidden_state: Tensor
    pooler_output: Tensor | None


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x + self.position_embeddings(position_ids)))


class BertSelfAttention(nn.Module):
    """``(B, T, C)`` -> ``(B, T, C)``: separate query/key/value projections, softmax attention over the
    keys that ``mask`` ``(B, 1, 1, T)`` (True = attend) allows."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, t, c = x.shape
        h = self.num_attention_heads
        q, k, v = (lin(x).reshape(b, t, h, c // h).transpose(1, 2) for lin in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout_p if self.training else 0.0)
        return y.transpose(1, 2).reshape(b, t, c)


class BertSelfOutput(nn.Module):
    """``LN(dropout(dense(y)) + x)``: the residual step after attention (and, as ``BertOutput``, after the MLP)."""

    def __init__(self, c: BertConfig, in_features: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features or c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(y)) + x)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.hidden_act = c.hidden_act

    def forward(self, x: Tensor) -> Tensor:
        return HIDDEN_ACTS[self.hidden_act](self.dense(x))


class BertOutput(BertSelfOutput):
    def __init__(self, c: BertConfig) -> None:
        super().__init__(c, c.intermediate_size)


class BertLayer(nn.Module):
    """One post-LayerNorm block: ``x = LN(x + attn(x))``, then ``x = LN(x + W2 act(W1 x))``."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c.num_hidden_layers)])

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for blk in self.layer:
            x = blk(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(self.dense(x[:, 0]))


def _as_ids(x: Any, name: str, shape: tuple | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        x = Tensor(np.asarray(x))
    if x.ndim != 2 or (shape is not None and tuple(x.shape) != shape):
        want = f"{shape}" if shape is not None else "(batch, seq_len)"
        raise ValueError(f"BertModel: {name} must have shape {want}, got {tuple(x.shape)}")
    if x.dtype.kind not in "iub":
        raise TypeError(f"BertModel: {name} must hold integers, got dtype {x.dtype}")
    return x.long()


class BertModel(nn.Module):
    """Token ids ``(B, T)`` -> ``BertModelOutput(last_hidden_state (B, T, H), pooler_output (B, H))``.

    ``attention_mask`` ``(B, T)``: 1 for real tokens, 0 for padding (keys at 0 are never attended);
    ``token_type_ids`` ``(B, T)``: segment ids (default 0). Weights start as in transformers:
    N(0, initializer_range) for Linear and Embedding weights, zero biases, LayerNorm ones/zeros.
    """

    def __init__(self, config: BertConfig | dict | None = None, add_pooling_layer: bool = True, *,
                 initializer_range: float = 0.02) -> None:
        super().__init__()
        if config is None:
            config = BertConfig()
        elif isinstance(config, dict):
            config = BertConfig.from_dict(config)
        elif not isinstance(config, BertConfig):
            raise TypeError(f"BertModel: config must be a BertConfig or a dict, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        for name, p in self.named_parameters():
            if "LayerNorm" in name:
                continue
            if name.endswith("bias"):
                nn_init.zeros_(p)
            else:
                nn_init.normal_(p, 0.0, initializer_range)
        emb = self.embeddings.word_embeddings.weight
        emb._array[config.pad_token_id] = 0.0

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> BertModelOutput:
        ids = _as_ids(input_ids, "input_ids")
        b, t = ids.shape
        if t > self.config.max_position_embeddings:
            raise ValueError(f"BertModel: sequence length {t} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        # token types and positions made with Tensor ops from the input, not cached constants, so
        # that an exporter recording ops (rg.onnx) keeps the batch and sequence axes dynamic
        tt = ids * 0 if token_type_ids is None else _as_ids(token_type_ids, "token_type_ids", (b, t))
        pos = arange(t).unsqueeze(0)
        mask = None
        if attention_mask is not None:
            # made with Tensor ops (an exporter that records ops sees the mask input's path)
            m = attention_mask if isinstance(attention_mask, Tensor) else Tensor(np.asarray(attention_mask))
            if tuple(m.shape) != (b, t):
                raise ValueError(f"BertModel: attention_mask must have shape {(b, t)} like input_ids, "
                                 f"got {tuple(m.shape)}")
            mask = (m != 0).reshape(b, 1, 1, t)
        x = self.encoder(self.embeddings(ids, tt, pos), mask)
        return BertModelOutput(x, self.pooler(x) if self.pooler is not None else None)

    def layer_index(self, name: str) -> int | None:
        """Which encoder layer a parameter name belongs to: 0 for embeddings, ``N + 1`` for
        ``encoder.layer.N``, ``num_hidden_layers + 1`` for the pooler; None for anything else."""
        if name.startswith("embeddings."):
            return 0
        if name.startswith("encoder.layer."):
            return int(name.split(".")[2]) + 1
        if name.startswith("pooler."):
            return self.config.num_hidden_layers + 1
        return None

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, add_pooling_layer: bool | None = None) -> "BertModel":
        """Load ``folder/config.json`` + ``folder/model.safetensors`` (a Hugging Face BERT folder; a
        ``BertFor*`` checkpoint gives its encoder). Nothing is downloaded. Missing files, an unsupported
        ``model_type``/architecture and missing, unexpected or misshapen weights raise ``PretrainedError``.
        ``add_pooling_layer``: None builds the pooler when the checkpoint has one."""
        who = "BertModel.from_pretrained"
        path = model_folder(folder, who)
        cfg = read_config(path, who, model_types=("bert",), architectures=ARCHITECTURES)
        try:
            config = BertConfig.from_dict(cfg)
        except ValueError as e:
            raise PretrainedError(f"{who}: {path / 'config.json'}: {e}") from None
        arrays = read_weights(path, who)
        heads = any(a != "BertModel" for a in cfg.get("architectures") or ())
        weights = {}
        for k, v in arrays.items():
            if heads and k.startswith(_HEAD_PREFIXES):
                continue
            k = k[len("bert."):] if k.startswith("bert.") else k
            if k not in _IGNORED_KEYS:
                weights[k] = v
        if add_pooling_layer is None:
            add_pooling_layer = any(k.startswith("pooler.") for k in weights)
        model = cls(config, add_pooling_layer=add_pooling_layer)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_state_dict(expected, weights, who, str(path / "model.safetensors"))
        model.load_state_dict({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()})
        model.eval()
        return model
