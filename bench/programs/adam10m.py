# The Adam step alone: 10 million float32 parameters in 50 tensors, gradients already in place.
#   python adam10m.py [--fused]     (--fused: torch.optim.Adam(fused=True); default: torch's foreach)
import argparse

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--fused", action="store_true")
args = parser.parse_args()

torch.manual_seed(0)
params = [nn.Parameter(torch.randn(200_000)) for _ in range(50)]
for p in params:
    p.grad = torch.randn(200_000) * 1e-3
optimizer = torch.optim.Adam(params, lr=1e-3, fused=True if args.fused else None)


def step():
    optimizer.step()
