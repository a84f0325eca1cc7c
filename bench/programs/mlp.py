# MLP training step with Adam: Linear-ReLU-...-Linear, cross-entropy.
#   python mlp.py --sizes 784,512,256,10 --batch 128     (the MLP)
#   python mlp.py --sizes 32,64,64,2 --batch 32          (the tiny MLP: per-op overhead rules)
import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--sizes", default="784,512,256,10")
parser.add_argument("--batch", type=int, default=128)
args = parser.parse_args()
sizes = [int(s) for s in args.sizes.split(",")]

torch.manual_seed(0)
layers = []
for n_in, n_out in zip(sizes[:-1], sizes[1:]):
    layers += [nn.Linear(n_in, n_out), nn.ReLU()]
model = nn.Sequential(*layers[:-1])
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((args.batch, sizes[0])).astype(np.float32))
y = torch.from_numpy(rng.integers(0, sizes[-1], args.batch))


def step():
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss
