"""Bits of the per-op path, for comparing two trees byte for byte (what bench/op_instructions.py's
speed changes must not move).

    python bench/op_bits.py --src /work/main/src --out /tmp/a.npz   # one tree's arrays
    python bench/op_bits.py --out /tmp/b.npz                        # this checkout's src
    python bench/op_bits.py --compare /tmp/a.npz /tmp/b.npz         # byte for byte

The arrays: the op chain and a 12-op mixed chain in float32/float64/float16/bfloat16 with ``.grad``
accumulated over two backwards; every tensor-scalar operator (reflected too) with edge numbers;
broadcasting with ``retain_graph``; second order through ``rg.autograd.grad``; hooks and ``retain_grad``;
an in-place op; integer tensors; a 40,000-element chain (the ``edges`` path); sums with the leaf first and
second, a broadcast leaf and two-leaf products. Each array's bytes, dtype and shape are stored.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np


def dump(path: str) -> None:
    import retrograd as rg

    out = {}

    out = {}
    def put(k, t):
        a = t._array if isinstance(t, rg.Tensor) else np.asarray(t)
        out[k] = np.ascontiguousarray(a).view(np.uint8).copy() if a.dtype != object else a
        out[k + ".meta"] = np.array([str(a.dtype), str(a.shape)])
    rng = np.random.default_rng(0)
    for dt in ["float32", "float64", "float16", "bfloat16"]:
        base = rng.standard_normal(16).astype(np.float32)
        x = rg.tensor(base, requires_grad=True).to(getattr(rg, dt))
        x = x.detach().requires_grad_()
        y = x
        for i in range(40):
            y = y * 1.0001; y = y + x; y = y.tanh(); y = y - 0.001
            y = y / 1.5; y = 2.0 - y; y = y.exp() if i % 5 == 0 else y.sigmoid(); y = 3 * y; y = y + 0.25; y = -y
            y = y * y if i % 7 == 0 else y; y = (y.abs() + 1).log().sqrt() + y
        put(f"{dt}.y", y)
        y.sum().backward()
        put(f"{dt}.g1", x.grad)
        y2 = (x * 0.5).tanh() * x
        y2.sum().backward()
        put(f"{dt}.g2", x.grad)
        for s in [0.0, -0.0, 1e-40, 1e300, float("inf"), 2**60, 3, True, 1.0001, -2.5]:
            for op in ["add", "sub", "mul", "truediv", "radd", "rsub", "rmul", "rtruediv"]:
                z = x.detach().requires_grad_()
                try:
                    with np.errstate(all="ignore"):
                        r = getattr(z, f"__{op}__")(s)
                        r.sum().backward()
                except Exception as e:
                    out[f"{dt}.{op}.{s}.err"] = np.array([type(e).__name__]); continue
                put(f"{dt}.{op}.{s}", r); put(f"{dt}.{op}.{s}.g", z.grad)
    # broadcasting, leaves, retain_graph, second order, hooks
    a = rg.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    b = rg.tensor(rng.standard_normal((4,)).astype(np.float32), requires_grad=True)
    c = (a * b + b).tanh() - a
    c.sum().backward(retain_graph=True); c.sum().backward()
    put("bc.a", a.grad); put("bc.b", b.grad)
    x = rg.tensor(rng.standard_normal(5), requires_grad=True)
    y = (x * x * x).tanh().sum()
    g, = rg.autograd.grad(y, x, create_graph=True)
    g2, = rg.autograd.grad(g.sum(), x)
    put("hg.g", g); put("hg.g2", g2)
    x = rg.tensor(rng.standard_normal(6).astype(np.float32), requires_grad=True)
    h = x * 2.0
    h.register_hook(lambda g: g * 3)
    h.retain_grad()
    (h.tanh() + x).sum().backward()
    put("hook.x", x.grad); put("hook.h", h.grad)
    # int inputs, in-place
    x = rg.tensor(rng.standard_normal(8).astype(np.float32), requires_grad=True)
    y = x * 1.5; z = y.clone(); z.add_(1.0); w = (z * y).tanh().sum(); w.backward(); put("inpl.x", x.grad)
    i = rg.tensor(np.arange(6)); put("int.mul", i * 1.5); put("int.add", i + 2); put("int.div", i / 2)
    # large arrays (edges path)
    x = rg.tensor(rng.standard_normal(40000).astype(np.float32), requires_grad=True)
    y = ((x * 1.1 + x).tanh() - 0.5).exp()
    y.sum().backward(); put("big.y", y); put("big.g", x.grad)
    # leaf first / second, shapes broadcasting with leaf, two leaves, heap paths
    for order in range(4):
        x = rg.tensor(rng.standard_normal(16).astype(np.float32), requires_grad=True)
        w = rg.tensor(rng.standard_normal(16).astype(np.float32), requires_grad=True)
        bb = rg.tensor(rng.standard_normal(1).astype(np.float32), requires_grad=True)
        for rep in range(2):
            y = x * 0.7
            for i in range(30):
                if order == 0: y = x + y.tanh()
                elif order == 1: y = y.tanh() + x; y = y + bb
                elif order == 2: y = (y * w).tanh() + (y - x)
                else: y = bb + y.tanh(); y = y * x
            y.sum().backward()
        for name, t in (("x", x), ("w", w), ("b", bb)):
            put(f"ord{order}.{name}", t.grad if t.grad is not None else np.zeros(1))

    np.savez(path, **out)
    print(f"{len(out)} arrays ({os.path.dirname(rg.__file__)}) -> {path}")


def compare(a_path: str, b_path: str) -> None:
    a, b = np.load(a_path), np.load(b_path)
    if set(a.files) != set(b.files):
        raise SystemExit(f"different arrays: {sorted(set(a.files) ^ set(b.files))[:10]}")
    bad = [k for k in a.files if not (a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]))]
    print(f"{len(a.files)} arrays compared: " + (f"DIFFERENT {bad[:10]}" if bad else "identical"))
    if bad:
        raise SystemExit(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--src", default=os.path.join(root, "src"), help="retrograd tree to import")
    ap.add_argument("--out", help="where the arrays go (.npz)")
    ap.add_argument("--compare", nargs=2, metavar="NPZ", help="compare two dumps byte for byte")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.child:
        dump(args.out)
    elif args.out:
        env = dict(os.environ, PYTHONPATH=args.src, RETROGRAD_NO_JIT="1")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--out", args.out], env=env, check=True)
    else:
        ap.error("give --out or --compare")


if __name__ == "__main__":
    main()
