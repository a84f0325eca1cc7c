"""Run under mpiexec by tests/distributed (mpi_launch.run_ranks) (also with plain python as the one-process reference).

``python mpi_worker.py MODE OUT [key=value ...]``: trains or checks, writes rank 0's result to OUT
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
        dist.init_process_group("mpi", timeout=float(kw["timeout"]) if "timeout" in kw else None)
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
    out = {"unused|message": np.array(msg), "unused|idle_grad_is_none": np.array(model.idle.weight.grad is None),
           "unused|used_grad": np.array(model.used.weight.grad._array)}
    # the idle layer used by the last rank alone: the others find it unused, that rank does not; every
    # rank still takes part in the same collectives, and the average counts the others' zeros
    for p in model.parameters():
        p.grad = None
    last = dist.get_rank() == dist.get_world_size() - 1
    for _ in range(2):
        for p in model.parameters():
            p.grad = None
        y = ddp(x)
        loss = y.sum() + (model.idle(x).sum() if last else 0.0)
        loss.backward()
    out["unused|idle_grad_one_rank"] = np.array(model.idle.weight.grad._array)
    return out


DTYPES = ["float16", "bfloat16", "float32", "float64", "complex64", "complex128", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool"]
NUMPY_OPS = {"SUM": np.add, "PRODUCT": np.multiply, "MIN": np.minimum, "MAX": np.maximum, "BAND": np.bitwise_and,
             "BOR": np.bitwise_or, "BXOR": np.bitwise_xor}


def _valid(op: str, dt: np.dtype) -> bool:
    k = dt.kind if dt.name != "bfloat16" else "f"
    return not (op == "AVG" and k not in "fc" or op in ("BAND", "BOR", "BXOR") and k not in "iub"
                or op in ("MIN", "MAX") and k == "c")


def rank_values(r: int, dt: np.dtype, shape=(3, 4)) -> np.ndarray:
    """Small integers (exact in every dtype; products of 3 ranks stay below 128)."""
    v = np.random.default_rng(r).integers(1, 5, shape)
    return (v % 2).astype(bool) if dt == np.bool_ else v.astype(dt)


def collectives(kw: dict) -> dict:
    """Every ReduceOp on every dtype against NumPy's reduction of all ranks' values, on Tensors and
    NumPy arrays (also non-contiguous and async); the other collectives; an op/dtype that does not fit
    raises ValueError. Raises AssertionError on any difference."""
    import ml_dtypes
    n, r = dist.get_world_size(), dist.get_rank()
    checks = 0
    for name in DTYPES:
        dt = np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
        allv = [rank_values(k, dt) for k in range(n)]
        for op in dist.ReduceOp:
            if not _valid(op.name, dt):
                try:
                    dist.all_reduce(allv[r].copy(), op)
                except ValueError as e:
                    assert op.name in str(e) or "AVG" in str(e), str(e)
                    checks += 1
                    continue
                raise AssertionError(f"all_reduce {op} on {name} did not raise")
            if op.name == "AVG":
                want = (np.sum([a.astype(np.complex128 if dt.kind == "c" else np.float64) for a in allv], 0) / n)
            else:
                f = NUMPY_OPS[op.name]
                if dt == np.bool_ and op.name in ("SUM", "PRODUCT", "MIN", "MAX"):
                    f = np.logical_or if op.name in ("SUM", "MAX") else np.logical_and
                want = allv[0]
                for a in allv[1:]:
                    want = f(want, a)
            want = np.asarray(want).astype(dt)
            mine = allv[r].copy()
            dist.all_reduce(mine, op)
            tol = float(np.finfo(np.float32 if name == "bfloat16" else dt).eps) * 4 if dt.kind in "fcV" \
                or name == "bfloat16" else 0.0
            ok = np.allclose(mine.astype(np.complex128 if dt.kind == "c" else np.float64),
                             want.astype(np.complex128 if dt.kind == "c" else np.float64), rtol=tol, atol=0)
            assert ok and mine.dtype == dt, f"all_reduce {op} {name}: {mine} != {want}"
            # a non-contiguous view, asynchronously
            big = np.zeros((3, 8), dt)
            big[:, ::2] = allv[r][:, :4]
            view = big[:, ::2]
            work = dist.all_reduce(view, op, async_op=True)
            work.wait()
            assert work.is_completed() and np.array_equal(view.astype(np.float64 if dt.kind != "c" else complex),
                                                           mine.astype(np.float64 if dt.kind != "c" else complex))
            assert not big[:, 1::2].any()
            checks += 2
    # on Tensors: in place, version counter bumped
    t = rg.tensor(rank_values(r, np.dtype("float64")))
    v0 = t._vc[0]
    dist.all_reduce(t, dist.ReduceOp.SUM)
    assert np.array_equal(t.numpy(), np.sum([rank_values(k, np.dtype("float64")) for k in range(n)], 0))
    assert t._vc[0] > v0
    for name in ("float32", "int64", "bfloat16"):
        dt = np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
        allv = [rank_values(k, dt) for k in range(n)]
        b = allv[r].copy()
        dist.broadcast(b, src=n - 1)
        assert np.array_equal(b, allv[n - 1]), "broadcast"
        outs = [np.zeros_like(allv[0]) for _ in range(n)]
        dist.all_gather(outs, allv[r])
        assert all(np.array_equal(o, a) for o, a in zip(outs, allv)), "all_gather"
        stacked = np.zeros((n,) + allv[0].shape, dt)
        dist.all_gather_into_tensor(stacked, allv[r])
        assert np.array_equal(stacked, np.stack(allv)), "all_gather_into_tensor"
        red = allv[r].copy()
        dist.reduce(red, dst=1 % n, op=dist.ReduceOp.MAX)
        assert np.array_equal(red, np.max(np.stack(allv), 0) if r == 1 % n else allv[r]), "reduce"
        got = [np.zeros_like(allv[0]) for _ in range(n)] if r == 0 else None
        dist.gather(allv[r], got, dst=0)
        assert r != 0 or all(np.array_equal(o, a) for o, a in zip(got, allv)), "gather"
        mine = np.zeros_like(allv[0])
        dist.scatter(mine, [a * 1 for a in allv] if r == n - 1 else None, src=n - 1)
        assert np.array_equal(mine, allv[r]), "scatter"
        checks += 6
    objs = [None] * n
    dist.all_gather_object(objs, {"rank": r, "text": "x" * r})
    assert objs == [{"rank": k, "text": "x" * k} for k in range(n)]
    lst = [r, "only rank 0's"] if r == 0 else [None, None]
    dist.broadcast_object_list(lst, src=0)
    assert lst == [0, "only rank 0's"]
    dist.barrier()
    return {"checks": np.array(checks + 2), "world": np.array(n)}


def timeout(kw: dict) -> dict:
    """Rank 1 never joins the all-reduce: rank 0, whose group has a 2 s timeout, must raise."""
    import time
    if dist.get_rank() == 1:
        time.sleep(float(kw.get("sleep", 20)))
        return {}
    dist.all_reduce(np.ones(3))
    raise AssertionError("all_reduce returned without rank 1")


def killed(kw: dict) -> dict:
    """Rank 1 is killed (SIGKILL) while rank 0 waits for it in an all-reduce without a timeout."""
    import os
    import signal
    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(np.ones(3))
    raise AssertionError("all_reduce returned without rank 1")


MODES = {"train": train, "suite": suite, "collectives": collectives, "timeout": timeout, "killed": killed}

if __name__ == "__main__":
    main()
