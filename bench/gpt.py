"""GPT-style training step (vocab 65, d_model 128, 4 heads, 2 layers, MLP 4x
with GELU, LayerNorm, causal attention, seq 64, batch 32), forward+backward,
retrograd vs PyTorch eager with identical weights.

The model is written once against the torch.nn API and built with either
library's ``nn``/``F`` modules, which is the point of following PyTorch's names.

Run: python bench/gpt.py [--repeat 15] [--threads N]
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

VOCAB, D, HEADS, LAYERS, SEQ, BATCH = 65, 128, 4, 2, 64, 32


def build(nn, F, lib):
    sdpa = getattr(F, "scaled_dot_product_attention", None)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(D)
            self.qkv = nn.Linear(D, 3 * D)
            self.proj = nn.Linear(D, D)
            self.ln2 = nn.LayerNorm(D)
            self.fc = nn.Linear(D, 4 * D)
            self.out = nn.Linear(4 * D, D)

        def forward(self, x, mask):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
            q, k, v = (z.reshape(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
            if sdpa is not None:
                y = sdpa(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // HEADS))
                y = att.masked_fill(mask, float("-inf")).softmax(-1) @ v
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, D)
            self.pos = nn.Embedding(SEQ, D)
            self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln = nn.LayerNorm(D)
            self.head = nn.Linear(D, VOCAB)

        def forward(self, idx, pos, mask):
            x = self.tok(idx) + self.pos(pos)
            for blk in self.blocks:
                x = blk(x, mask)
            return self.head(self.ln(x))

    return GPT()


def step_fns():
    import numpy as np
    import torch

    import retrograd as rg

    torch.manual_seed(0)
    tm = build(torch.nn, torch.nn.functional, "torch")
    rm = build(rg.nn, rg.nn.functional, "rg")
    rm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(0)
    data = rng.integers(0, VOCAB, (BATCH, SEQ + 1))
    xi, yi = data[:, :-1], data[:, 1:].reshape(-1)
    mask = np.triu(np.ones((SEQ, SEQ), dtype=bool), 1)
    pos = np.arange(SEQ)
    tx, ty, tpos, tmask = (torch.tensor(a) for a in (xi, yi, pos, mask))
    rx, ry, rpos, rmask = (rg.tensor(a) for a in (xi, yi, pos, mask))

    def torch_step():
        loss = torch.nn.functional.cross_entropy(tm(tx, tpos, tmask).reshape(-1, VOCAB), ty)
        tm.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def rg_step():
        loss = rg.nn.functional.cross_entropy(rm(rx, rpos, rmask).reshape(-1, VOCAB), ry)
        rm.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    return rg_step, torch_step, rm, tm


def main() -> None:
    from common import run_model_step_bench

    run_model_step_bench(step_fns, f"GPT step (2 layers, d128, 4 heads, seq {SEQ}, batch {BATCH})", 1.5)


if __name__ == "__main__":
    main()
