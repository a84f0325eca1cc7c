"""Train the same small network with a retrograd optimizer and with its
``torch.optim`` namesake from identical weights, and compare.

The network is a 2-layer MLP with tanh, ``(16, 4) -> 8 -> 3``, MSE loss on fixed
random data, plus an extra bias ``c`` that only even steps use (``use_c``), so
that on odd steps it has no gradient: optimizers must skip it as PyTorch does,
which also leaves its step count behind the others (the per-parameter path).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

import retrograd as rg

# relative tolerance per dtype: max |rg - torch| / max |torch|, per parameter
TOL = {"float32": 1e-5, "float64": 1e-10}


def initial_weights(dtype: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w = {
        "W1": rng.standard_normal((4, 8)) * 0.5,
        "b1": rng.standard_normal(8) * 0.1,
        "W2": rng.standard_normal((8, 3)) * 0.5,
        "b2": rng.standard_normal(3) * 0.1,
        "c": rng.standard_normal(3) * 0.1,
        "X": rng.standard_normal((16, 4)),
        "Y": rng.standard_normal((16, 3)),
    }
    return {k: v.astype(dtype) for k, v in w.items()}


NAMES = ("W1", "b1", "W2", "b2", "c")


@contextlib.contextmanager
def default_dtype(dtype: str):
    """Both libraries' default dtype (it sets PyTorch's scalar-state dtype)."""
    t_prev, r_prev = torch.get_default_dtype(), rg.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    rg.set_default_dtype(getattr(rg, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(t_prev)
        rg.set_default_dtype(r_prev)


class Net:
    """The MLP in one library: ``lib`` is ``rg`` or ``torch``."""

    def __init__(self, lib, w: dict, use_c: bool = False) -> None:
        self.lib = lib
        self.params = [lib.tensor(w[k].copy(), requires_grad=True) for k in NAMES]
        self.X, self.Y = lib.tensor(w["X"]), lib.tensor(w["Y"])
        self.use_c = use_c

    def loss(self, step: int, sign: float = 1.0):
        W1, b1, W2, b2, c = self.params
        out = (self.X @ W1 + b1).tanh() @ W2 + b2
        if self.use_c and step % 2 == 0:
            out = out + c
        return ((out - self.Y) ** 2).mean() * sign

    def values(self) -> list[np.ndarray]:
        if self.lib is torch:
            return [p.detach().numpy().copy() for p in self.params]
        return [p.detach().numpy().copy() for p in self.params]

    def groups(self, split: dict | None):
        """All parameters in one group, or two groups with ``split`` options for the second."""
        if split is None:
            return self.params
        return [{"params": self.params[:2]}, {"params": self.params[2:], **split}]


def train(lib, opt_name: str, kwargs: dict, w: dict, steps: int, *, sign: float = 1.0, use_c: bool = False,
          split: dict | None = None, net: Net | None = None, opt=None, start: int = 0):
    """Run ``steps`` steps; returns ``(net, optimizer)`` to continue from."""
    if net is None:
        net = Net(lib, w, use_c)
    if opt is None:
        kw = dict(kwargs)
        if lib is torch:
            kw["foreach"] = False  # PyTorch's reference single-tensor path
        opt = getattr(lib.optim, opt_name)(net.groups(split), **kw)
    for i in range(start, start + steps):
        opt.zero_grad()
        net.loss(i, sign).backward()
        opt.step()
    return net, opt


def rel_errors(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    return [float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)) for x, y in zip(a, b)]


def assert_close(rg_vals: list, torch_vals: list, dtype: str) -> None:
    errs = rel_errors(rg_vals, torch_vals)
    assert max(errs) <= TOL[dtype], f"relative errors per parameter {errs} exceed {TOL[dtype]}"
    for x, y in zip(rg_vals, torch_vals):
        assert x.dtype == y.dtype, (x.dtype, y.dtype)


def state_to_numpy(sd: dict) -> dict:
    """A PyTorch optimizer state dict with every tensor converted by ``.numpy()``."""
    state = {k: {n: (v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v) for n, v in s.items()}
             for k, s in sd["state"].items()}
    groups = [dict(g) for g in sd["param_groups"]]
    return {"state": state, "param_groups": groups}


def snapshot(sd: dict) -> dict:
    """A deep copy of a retrograd state dict (its Tensors are live views)."""
    state = {k: {n: rg.tensor(v.detach().numpy().copy()) for n, v in s.items()} for k, s in sd["state"].items()}
    groups = [{k: (list(v) if isinstance(v, list) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return {"state": state, "param_groups": groups}
