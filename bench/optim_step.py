"""Optimizer step time, retrograd vs PyTorch 2.13 in the same process.

1. Adam and AdamW step over 10 million float32 parameters in 50 tensors
   (gradients already in place): against torch.optim.Adam(fused=True) and the
   default (foreach) implementation.
2. Whole MLP training step (784-512-256-10, batch 128, cross-entropy, Adam):
   forward, backward, step, against PyTorch eager with default Adam.
3. Tiny MLP (32-64-64-2, batch 32) the same way: here per-op overhead rules.

Run: python bench/optim_step.py [--repeat 15] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

N_TENSORS, TOTAL = 50, 10_000_000


def big_params(rg, torch, cls_name):
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = [TOTAL // N_TENSORS] * N_TENSORS
    arrays = [rng.standard_normal(s).astype(np.float32) for s in sizes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in sizes]
    rp = [rg.tensor(a, requires_grad=True) for a in arrays]
    tp = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, g in zip(rp, grads):
        p.grad = rg.tensor(g)
    for p, g in zip(tp, grads):
        p.grad = torch.tensor(g)
    ro = getattr(rg.optim, cls_name)(rp, lr=1e-3)
    tf = getattr(torch.optim, cls_name)(tp, lr=1e-3, fused=True)
    tp2 = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, g in zip(tp2, grads):
        p.grad = torch.tensor(g)
    td = getattr(torch.optim, cls_name)(tp2, lr=1e-3)
    return ro, tf, td


def mlp_steps(rg, torch, sizes, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)

    def build(nn):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    tm = build(torch.nn)
    rm = build(rg.nn)
    rm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    ro = rg.optim.Adam(rm.parameters(), lr=1e-3)
    to = torch.optim.Adam(tm.parameters(), lr=1e-3)
    rx, ry, tx, ty = rg.tensor(x), rg.tensor(y), torch.tensor(x), torch.tensor(y)
    rF, tF = rg.nn.functional, torch.nn.functional

    def rs():
        ro.zero_grad()
        loss = rF.cross_entropy(rm(rx), ry)
        loss.backward()
        ro.step()
        return loss

    def ts():
        to.zero_grad()
        loss = tF.cross_entropy(tm(tx), ty)
        loss.backward()
        to.step()
        return loss

    return rs, ts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    import torch

    import retrograd as rg
    from common import interleaved

    if args.threads:
        torch.set_num_threads(args.threads)
        rg.set_num_threads(args.threads)
    kernels = f"Numba, {rg.get_num_threads()} threads" if rg.accel.available() else "off (NumPy update)"
    print(f"retrograd compiled kernels: {kernels}")
    for name in ("Adam", "AdamW"):
        ro, tf, td = big_params(rg, torch, name)
        for settle in (False, True):
            t = interleaved({"rg": ro.step, "fused": tf.step, "foreach": td.step}, repeat=args.repeat, warmup=2,
                            settle=settle)
            how = "each after an untimed call of its own (as alone)" if settle else "alternating"
            print(f"{name} step, 10M float32 params in 50 tensors, {how}: retrograd {t['rg'] * 1e3:.1f} ms, "
                  f"torch fused {t['fused'] * 1e3:.1f} ms (ratio {t['rg'] / t['fused']:.2f}x, target <= 1.0x), "
                  f"torch foreach {t['foreach'] * 1e3:.1f} ms (ratio {t['rg'] / t['foreach']:.2f}x)")
        del ro, tf, td
    for label, sizes, batch, target in (("MLP 784-512-256-10, batch 128", (784, 512, 256, 10), 128, 0.9),
                                        ("tiny MLP 32-64-64-2, batch 32", (32, 64, 64, 2), 32, 0.5)):
        rs, ts = mlp_steps(rg, torch, sizes, batch)
        for _ in range(3):
            lr, lt = rs().item(), ts().item()
            assert abs(lr - lt) < 1e-4 * max(1.0, abs(lt)), (lr, lt)
        t = interleaved({"rg": rs, "torch": ts}, repeat=args.repeat * 2, number=5 if batch < 64 else 1,
                        warmup=3)
        print(f"{label}, Adam training step: retrograd {t['rg'] * 1e3:.3f} ms, torch {t['torch'] * 1e3:.3f} ms, "
              f"ratio {t['rg'] / t['torch']:.2f}x (target <= {target}x)")
    print(f"torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
