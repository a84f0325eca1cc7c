"""``GPT``: a decoder-only transformer for (character-level) language modelling,
nanoGPT-style: token + position embeddings, pre-LayerNorm blocks of causal
self-attention and a GELU MLP, a final LayerNorm and a linear head."""
from __future__ import annotations

import math

from ..nn import functional as F
from .. import nn
from ..engine import no_grad
from ..creation import arange, multinomial
from ..nn import init as nn_init
from ..random import Generator
from ..tensor import Tensor
from ..tensor_functions import cat


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``t`` sees positions ``<= t``: ``(B, T, C) -> (B, T, C)``."""

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"CausalSelfAttention: d_model ({d_model}) must be divisible by n_head ({n_head})")
        self.n_head, self.d_model, self.dropout = n_head, d_model, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q, k, v = (z.reshape(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    """``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` with a 4x GELU MLP."""

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    """Token ids ``(B, T)`` (``T <= block_size``) -> logits ``(B, T, vocab_size)``.

    Weights start N(0, 0.02) (the residual output projections 0.02/sqrt(2 n_layer)),
    biases zero, as in GPT-2.
    """

    def __init__(self, vocab_size: int, block_size: int = 64, n_layer: int = 2, n_head: int = 4,
                 d_model: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("block_size", block_size), ("n_layer", n_layer),
                        ("n_head", n_head), ("d_model", d_model)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"GPT: {name} must be a positive int, got {v!r}")
        if d_model % n_head:
            raise ValueError(f"GPT: d_model ({d_model}) must be divisible by n_head ({n_head})")
        self.vocab_size, self.block_size = vocab_size, block_size
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, n_head, dropout) for _ in range(n_layer)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        residual_std = 0.02 / math.sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn_init.zeros_(p)
            elif p.ndim == 2:
                std = residual_std if name.endswith(("attn.proj.weight", "out.weight")) else 0.02
                nn_init.normal_(p, 0.0, std)

    def forward(self, idx: Tensor) -> Tensor:
        b, t = idx.shape
        if t > self.block_size:
            raise ValueError(f"GPT: sequence length {t} exceeds block_size {self.block_size}")
        # made per call (a microsecond): under rg.onnx.export, t is a traced size and arange a Range node
        x = self.drop(self.tok(idx) + self.pos(arange(t)))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))

    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: Generator | None = None) -> Tensor:
        """Extend ``idx`` ``(B, T)`` by ``max_new_tokens`` sampled tokens -> ``(B, T + max_new_tokens)``.

        Each step feeds the last ``block_size`` tokens, divides the last logits by
        ``temperature`` (0: greedy argmax), keeps the ``top_k`` largest (if given)
        and samples from the softmax with ``generator``. Runs in eval mode without
        grad; the training mode is restored afterwards.
        """
        if temperature < 0:
            raise ValueError(f"GPT.generate: temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k <= 0:
            raise ValueError(f"GPT.generate: top_k must be a positive int or None, got {top_k}")
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for _ in range(max_new_tokens):
                    logits = self(idx[:, -self.block_size:])[:, -1, :]
                    if temperature == 0:
                        nxt = logits.argmax(-1, keepdim=True)
                    else:
                        logits = logits / temperature
                        if top_k is not None and top_k < logits.shape[-1]:
                            kth = logits.topk(top_k, dim=-1)[0][:, -1:]
                            logits = logits.masked_fill(logits < kth, float("-inf"))
                        nxt = multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
                    idx = cat([idx, nxt.long()], dim=1)
        finally:
            self.train(was_training)
        return idx
