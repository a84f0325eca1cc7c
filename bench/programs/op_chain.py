# Per-op overhead as a user meets it: a chain of elementwise ops on a 16-element float32 tensor that
# requires grad (y*1.0001; y+x; y.tanh(); y-0.001, repeated), forward + .sum().backward().
# bench/op_overhead.py times the same chain with both libraries in one process.
#   python op_chain.py --ops 1000
import argparse

import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--ops", type=int, default=1000, help="ops in the chain (a multiple of 4)")
parser.add_argument("--size", type=int, default=16)
args = parser.parse_args()

x = torch.tensor(np.random.default_rng(0).standard_normal(args.size).astype(np.float32), requires_grad=True)


def chain(x):
    y = x
    for _ in range(args.ops // 4):
        y = y * 1.0001
        y = y + x
        y = y.tanh()
        y = y - 0.001
    return y


def step():
    x.grad = None
    loss = chain(x).sum()
    loss.backward()
    return loss.detach()
