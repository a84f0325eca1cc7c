"""Run under mpiexec by tests/distributed (also with plain python as the one-process reference).

``python worker.py MODE OUT [key=value ...]``: trains or checks, writes rank 0's result to OUT
(.npz), raises (exit code != 0) on a failed check."""
from __future__ import annotations

import hashlib
import sys

import numpy as np

import retrograd as rg
import retrograd.distributed as dist
from retrograd import nn


def make_model(kind: str, dtype) -> nn.Module:
    rg.manual_seed(0)
    if kind == "mlp":
        m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    else:  # no bias right before a BatchNorm: its gradient is rounding noise that AdamW would amplify
        m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 8, bias=False), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    return m.to(dtype)


def data(kind: str, n: int, step: int, dtype):
    g = np.random.default_rng(1000 + step)
    x = g.standard_normal((n, 6) if kind == "mlp" else (n, 2, 8, 8))
    y = g.integers(0, 3, n)
    return x.astype(dtype), y


def make_opt(name: str, params):
    if name == "sgd":
        return rg.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
    return rg.optim.AdamW(params, lr=1e-2, weight_decay=0.05)


def digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for t in list(model.parameters()) + [b for b in model.buffers() if b is not None]:
        h.update(np.ascontiguousarray(t._array).tobytes())
    return h.hexdigest()


def state(model: nn.Module) -> dict:
    return {k: np.array(v._array) for k, v in model.state_dict().items()}


def train(kw: dict) -> dict:
    """``ref=big``: one process, batch W*B; ``ref=chunks``: one process, W chunks of B accumulated
    (plain BatchNorm's per-rank statistics, buffers of chunk 0); else DDP on the launched ranks."""
    kind, opt, steps, b = kw["model"], kw["optim"], int(kw["steps"]), int(kw["batch"])
    dtype = {"float64": np.float64, "float32": np.float32}[kw["dtype"]]
    world = int(kw.get("world", 0)) or dist.get_world_size()
    ref = kw.get("ref", "")
    accum = int(kw.get("accum", 1))
    model = make_model(kind, rg.float64 if dtype == np.float64 else rg.float32)
    if kw.get("sync") == "1":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model if ref else nn.parallel.DistributedDataParallel(model, bucket_cap_mb=float(kw.get("cap", 0.001)))
    optim = make_opt(opt, net.parameters())
    rank = 0 if ref else dist.get_rank()
    loss_fn = nn.CrossEntropyLoss()
    for step in range(steps):
        optim.zero_grad()
        for a in range(accum):
            x, y = data(kind, world * b, step * accum + a, dtype)
            if ref == "big":
                loss = loss_fn(net(rg.tensor(x)), rg.tensor(y)) / accum
                loss.backward()
            elif ref == "chunks":
                keep = None
                for k in range(world):
                    sl = slice(k * b, (k + 1) * b)
                    (loss_fn(net(rg.tensor(x[sl])), rg.tensor(y[sl])) / (world * accum)).backward()
                    if k == 0:
                        keep = [np.array(t._array) for t in model.buffers()]
                for t, v in zip(model.buffers(), keep):
                    t._array[...] = v
            else:
                sl = slice(rank * b, (rank + 1) * b)
                ctx = net.no_sync() if a < accum - 1 else rg.no_grad.__new__(_Nothing)
                with ctx:
                    (loss_fn(net(rg.tensor(x[sl])), rg.tensor(y[sl])) / accum).backward()
        optim.step()
        if not ref:
            hashes = [None] * dist.get_world_size()
            dist.all_gather_object(hashes, digest(model))
            if len(set(hashes)) != 1 and kind == "mlp" or len({h for h in hashes}) != 1 and kw.get("sync") == "1":
                raise AssertionError(f"step {step}: ranks differ: {hashes}")
            if len(set(hashes)) != 1:  # plain BatchNorm: buffers are per rank; parameters must agree
                ph = [None] * dist.get_world_size()
                dist.all_gather_object(ph, hashlib.sha256(b"".join(
                    np.ascontiguousarray(p._array).tobytes() for p in model.parameters())).hexdigest())
                if len(set(ph)) != 1:
                    raise AssertionError(f"step {step}: parameters differ between ranks: {ph}")
    return state(model)


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    kw = dict(a.split("=", 1) for a in sys.argv[3:])
    if kw.get("ref"):
        result = train(kw)
    else:
        dist.init_process_group("mpi")
        result = MODES[mode](kw)
    if kw.get("ref") or dist.get_rank() == 0:
        np.savez(out, **result)
    if not kw.get("ref"):
        dist.destroy_process_group()


# (name, settings): every one runs on the launched ranks in one `suite` launch
CONFIGS = [
    ("mlp-sgd-f64", dict(model="mlp", optim="sgd", dtype="float64")),
    ("mlp-adamw-f64", dict(model="mlp", optim="adamw", dtype="float64")),
    ("mlp-adamw-f32", dict(model="mlp", optim="adamw", dtype="float32")),
    ("cnn-sgd-f64", dict(model="cnn", optim="sgd", dtype="float64")),
    ("cnn-adamw-f64", dict(model="cnn", optim="adamw", dtype="float64")),
    ("cnnsync-sgd-f64", dict(model="cnn", optim="sgd", dtype="float64", sync="1")),
    ("cnnsync-adamw-f64", dict(model="cnn", optim="adamw", dtype="float64", sync="1")),
    ("cnnsync-sgd-f32", dict(model="cnn", optim="sgd", dtype="float32", sync="1")),
    ("mlp-nosync3-f64", dict(model="mlp", optim="sgd", dtype="float64", accum="3", steps="8")),
    ("mlp-bigbucket-f64", dict(model="mlp", optim="adamw", dtype="float64", cap="25")),
]


def suite(kw: dict) -> dict:
    out = {}
    for name, cfg in CONFIGS:
        settings = {"steps": "20", "batch": "4", **cfg, **kw}
        for k, v in train(settings).items():
            out[f"{name}|{k}"] = v
    out.update(unused_parameters())
    return out


class _OneHeadUsed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.idle = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        return self.used(x)


def unused_parameters() -> dict:
    """A layer the loss does not use: PyTorch's kind of error at the end of backward; with
    find_unused_parameters=True a backward after which the unused layer keeps grad None."""
    rg.manual_seed(0)
    model = _OneHeadUsed().double()
    x = rg.ones(4, 3, dtype=rg.float64)
    msg = ""
    try:
        nn.parallel.DistributedDataParallel(model)(x).sum().backward()
    except RuntimeError as e:
        msg = str(e)
    for p in model.parameters():
        p.grad = None
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    (ddp(x) * (dist.get_rank() + 1)).sum().backward()
    return {"unused|message": np.array(msg), "unused|idle_grad_is_none": np.array(model.idle.weight.grad is None),
            "unused|used_grad": np.array(model.used.weight.grad._array)}


MODES = {"train": train, "suite": suite}

if __name__ == "__main__":
    main()
