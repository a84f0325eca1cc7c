# The plain loop a PyTorch user writes for examples/fashion_cnn.toml's model and data: Fashion-MNIST
# read from its IDX files, a DataLoader(TensorDataset, batch 64, shuffle), the standard small CNN,
# AdamW(lr 1e-3, weight decay 0.01), the loss read back each batch. step() runs one batch.
#   python fashion_cnn_loop.py [--samples 7360] [--root /usr/share/datasets/fashion-mnist]
import argparse
import gzip
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--samples", type=int, default=7360)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
args = parser.parse_args()


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


images = read_idx(os.path.join(args.root, "train-images-idx3-ubyte.gz"))[:args.samples]
labels = read_idx(os.path.join(args.root, "train-labels-idx1-ubyte.gz"))[:args.samples]
x = torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32) / 255)
y = torch.from_numpy(labels.astype(np.int64))
loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(1600, 10))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
model.train()


def batches():
    while True:  # epoch after epoch
        for xb, yb in loader:
            yield xb, yb


stream = batches()
running_loss = 0.0


def step():
    global running_loss
    xb, yb = next(stream)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    optimizer.step()
    running_loss += loss.item()
    return loss
