"""Training throughput of `retrograd train` on the Fashion-MNIST MLP and CNN
example configs, against an equivalent PyTorch training loop, and the share of
the time per batch spent outside the model step (data pipeline + callbacks).

For each config, on the same training images (a seeded subset of
``--samples`` images, one epoch) and with the same initial weights:

- ``retrograd train``: the CLI command itself (in-process), with the CLI's
  callbacks (progress bar, metric logger with TensorBoard files, checkpoints,
  LR monitor, NaN guard); time per batch from the metric logger's batch-end
  timestamps (training batches only; validation and checkpoint saving at the
  epoch's end are reported separately as "epoch end").
- ``retrograd step``: the bare model step (forward, loss, backward,
  ``optimizer.step()``, ``zero_grad``) over the same batches, pre-fetched.
- ``torch loop``: ``torch.utils.data.DataLoader(TensorDataset, shuffle=True)``
  and the standard loop with ``torch.optim.AdamW``.
- ``torch step``: the bare PyTorch step over pre-fetched batches.

The outside-the-step share is ``(time per batch in the Trainer - bare step
time) / bare step time`` (target < 10 %). Every timing leaves out the first
5 batches (warm-up). Runs alternate ``--repeat`` times; medians are printed.

Run: python bench/train_throughput.py [--repeat 3] [--mlp-samples 20000] [--cnn-samples 4000] [--threads N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
WARMUP = 5  # batches left out of every timing (first-touch allocations, BLAS thread start-up)


def timed(batches, step) -> float:
    """Seconds per batch of ``step(x, y)`` over ``batches``, leaving out the first WARMUP."""
    for x, y in batches[:WARMUP]:
        step(x, y)
    t0 = time.perf_counter()
    for x, y in batches[WARMUP:]:
        step(x, y)
    return (time.perf_counter() - t0) / (len(batches) - WARMUP)


def torch_twin(rg_model, torch):
    """A torch.nn.Sequential with the layers of ``rg_model.net`` and its weights."""
    nn = torch.nn
    layers = []
    for m in rg_model.net:
        kind = type(m).__name__
        if kind == "Flatten":
            layers.append(nn.Flatten())
        elif kind == "Linear":
            layers.append(nn.Linear(m.in_features, m.out_features))
        elif kind == "Conv2d":
            layers.append(nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding))
        elif kind == "MaxPool2d":
            layers.append(nn.MaxPool2d(2))
        elif kind == "ReLU":
            layers.append(nn.ReLU())
        elif kind == "Dropout":
            layers.append(nn.Dropout(m.p))
        elif kind == "BatchNorm1d":
            layers.append(nn.BatchNorm1d(m.num_features))
        else:
            raise NotImplementedError(kind)
    tm = nn.Sequential(*layers)
    tm.load_state_dict({k.removeprefix("net."): torch.tensor(v.detach().numpy() if hasattr(v, "detach") else v)
                        for k, v in rg_model.state_dict().items()})
    return tm


def run_cli_train(config: pathlib.Path, overrides: list[str], run_root: pathlib.Path) -> dict:
    from retrograd import cli

    args = ["train", str(config), "--set", f'run.dir="{run_root.as_posix()}"',
            "--set", "run.overwrite=true"] + [a for o in overrides for a in ("--set", o)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):  # the progress bar runs
        rc = cli.main(args)
    if rc != 0:
        raise SystemExit(f"retrograd train failed ({rc}): {buf.getvalue()}")
    s = json.loads((run_root / config.stem / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_root / config.stem / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in rows if r["kind"] == "epoch"][-1]
    steps = [r for r in rows if r["kind"] == "step"]
    # seconds per batch from the logger's batch-end timestamps, after WARMUP batches
    per_batch = (steps[-1]["time"] - steps[WARMUP - 1]["time"]) / (len(steps) - WARMUP)
    return {"per_batch": per_batch, "batches": len(steps), "epoch_time": epoch["epoch_time"],
            "train_time": len(steps) * per_batch, "wall": s["time_s"]}


def bare_rg_step(config: pathlib.Path, overrides: list[str]) -> tuple[float, int, object]:
    """Seconds per batch of the bare retrograd step over the epoch's batches, and the setup."""
    from retrograd.train import config as rgconfig
    from retrograd.train import recipe

    cfg = rgconfig.validate(rgconfig.apply_overrides(rgconfig.load_config(config), overrides), config_path=config)
    setup = recipe.prepare(cfg, config_path=str(config))
    batches = list(setup.train_loader)
    model, opt, loss_fn = setup.model, setup.optimizer, setup.loss_fn
    model.train()

    def step(x, y):
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()
    return timed(batches, step), len(batches[0][1]), setup


def torch_runs(setup, torch) -> tuple[float, float]:
    """(seconds per batch of the torch DataLoader loop, seconds per batch of the bare torch step)."""
    import numpy as np

    tm = torch_twin(setup.model, torch)
    o = setup.cfg["optim"]
    opt = torch.optim.AdamW(tm.parameters(), lr=o.get("lr", 1e-3), weight_decay=o.get("weight_decay", 0.01))
    x, y = (np.asarray(a) for a in setup.data.train.arrays)
    ds = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=setup.cfg["data"]["batch_size"], shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    F = torch.nn.functional
    tm.train()

    def step(xb, yb):
        loss = F.cross_entropy(tm(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()
    bare = timed(list(loader), step)
    n = 0
    for xb, yb in loader:  # the standard loop, data loading included
        if n == WARMUP:
            t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(tm(xb), yb)
        loss.backward()
        opt.step()
        loss.item()
        n += 1
    return (time.perf_counter() - t0) / (n - WARMUP), bare


def bench(name: str, config: pathlib.Path, samples: int, repeat: int, torch) -> None:
    overrides = [f"data.train_samples={samples}", "data.val_samples=1000", "train.epochs=1",
                 "train.progress=true"]
    res: dict[str, list[float]] = {k: [] for k in ("cli", "step", "tloop", "tstep", "epoch_end")}
    bs = None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            r = run_cli_train(config, overrides, pathlib.Path(tmp))
            step, bs, setup = bare_rg_step(config, overrides)
            tloop, tstep = torch_runs(setup, torch)
            res["cli"].append(r["per_batch"])   # seconds per batch inside the Trainer, callbacks included
            res["step"].append(step)
            res["tloop"].append(tloop)
            res["tstep"].append(tstep)
            res["epoch_end"].append(max(0.0, r["epoch_time"] - r["train_time"]))
    med = {k: statistics.median(v) for k, v in res.items()}
    sps = {k: bs / med[k] for k in ("cli", "step", "tloop", "tstep")}
    share = (med["cli"] - med["step"]) / med["step"]
    print(f"{name} (batch {bs}, {samples} samples, 1 epoch, median of {repeat}):")
    print(f"  retrograd train : {sps['cli']:8.0f} samples/s  ({med['cli'] * 1e3:.2f} ms/batch)")
    print(f"  retrograd step  : {sps['step']:8.0f} samples/s  ({med['step'] * 1e3:.2f} ms/batch)")
    print(f"  torch loop      : {sps['tloop']:8.0f} samples/s  ({med['tloop'] * 1e3:.2f} ms/batch)  "
          f"ratio retrograd train / torch loop: {sps['cli'] / sps['tloop']:.2f}x throughput")
    print(f"  torch step      : {sps['tstep']:8.0f} samples/s  ({med['tstep'] * 1e3:.2f} ms/batch)")
    print(f"  outside the model step (data pipeline + callbacks): {share * 100:+.1f} % of step time "
          f"(target < 10 %); epoch end (validation on 1000 images + checkpoints): {med['epoch_end']:.2f} s")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mlp-samples", type=int, default=20000)
    ap.add_argument("--cnn-samples", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--only", choices=("mlp", "cnn"))
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    if args.only in (None, "mlp"):
        bench("Fashion-MNIST MLP 784-512-256-10 (examples/fashion_mlp.toml)", ROOT / "examples" / "fashion_mlp.toml",
              args.mlp_samples, args.repeat, torch)
    if args.only in (None, "cnn"):
        bench("Fashion-MNIST CNN conv32-pool-conv64-pool-linear (examples/fashion_cnn.toml)",
              ROOT / "examples" / "fashion_cnn.toml", args.cnn_samples, args.repeat, torch)


if __name__ == "__main__":
    main()
