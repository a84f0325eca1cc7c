"""Small CNN training step (batch 64x1x28x28; conv3x3 32 -> ReLU -> maxpool2 ->
conv3x3 64 -> ReLU -> maxpool2 -> linear 10; cross-entropy), forward+backward,
retrograd vs PyTorch eager with identical weights.

Run: python bench/cnn.py [--repeat 15] [--threads N]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

BATCH = 64


def build(nn):
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 10))


def step_fns():
    import numpy as np
    import torch

    import retrograd as rg

    torch.manual_seed(0)
    tm = build(torch.nn)
    rm = build(rg.nn)
    rm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    tx, ty, rx, ry = torch.tensor(x), torch.tensor(y), rg.tensor(x), rg.tensor(y)

    def torch_step():
        loss = torch.nn.functional.cross_entropy(tm(tx), ty)
        tm.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def rg_step():
        loss = rg.nn.functional.cross_entropy(rm(rx), ry)
        rm.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    return rg_step, torch_step, rm, tm


def main() -> None:
    from common import run_model_step_bench

    run_model_step_bench(step_fns, f"CNN step (batch {BATCH}x1x28x28, conv32-pool-conv64-pool-linear)", 1.5)


if __name__ == "__main__":
    main()
