"""Per-op overhead: a chain of 1000 elementwise ops on a 16-element float32
tensor with grad, forward + backward, retrograd vs PyTorch eager.

Run: python bench/op_overhead.py [--repeat 15]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import retrograd as rg  # noqa: E402

N_OPS = 1000


def chain(x):
    y = x
    for i in range(N_OPS // 4):  # a mix of scalar and tensor-tensor ops
        y = y * 1.0001
        y = y + x
        y = y.tanh()
        y = y - 0.001
    return y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    xr = rg.tensor(data, requires_grad=True)
    xt = torch.tensor(data, requires_grad=True)

    def run_rg():
        chain(xr).sum().backward()

    def run_torch():
        chain(xt).sum().backward()

    def fwd_rg():
        with rg.no_grad():
            chain(xr)

    def fwd_np():
        y = data
        for _ in range(N_OPS // 4):
            y = np.tanh(y * np.float32(1.0001) + data) - np.float32(0.001)

    t = interleaved({"retrograd": run_rg, "torch": run_torch, "retrograd_fwd_nograd": fwd_rg, "numpy_fwd": fwd_np},
                    repeat=args.repeat)
    per = {k: v / N_OPS * 1e6 for k, v in t.items()}
    print(f"per-op forward+backward: retrograd {per['retrograd']:.2f} us, torch {per['torch']:.2f} us, "
          f"ratio {per['retrograd'] / per['torch']:.2f}x (target <= 0.5x)")
    print(f"forward only, no grad: retrograd {per['retrograd_fwd_nograd']:.2f} us/op; plain numpy "
          f"{per['numpy_fwd']:.2f} us/op")


if __name__ == "__main__":
    main()
