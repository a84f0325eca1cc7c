"""A cheap real training problem for the tune tests: a small MLP on scikit-learn's digits,
trained for a few epochs with rg.nn / rg.optim / rg.train (not through the CLI)."""
from __future__ import annotations

import functools
import os
import pathlib
import time

import numpy as np

import retrograd as rg
from retrograd.train import Trainer
from retrograd.tune import PruningCallback

BASE_CONFIG = {"model": {"hidden": 32}, "optim": {"name": "sgd", "lr": 0.05}, "data": {"batch_size": 64},
               "train": {"epochs": 2, "seed": 0}}


@functools.lru_cache(maxsize=1)
def digits_split():
    x, y = rg.data.sklearn_dataset("digits").arrays
    perm = np.random.default_rng(0).permutation(len(y))
    tr, va = perm[:1200], perm[1200:1600]
    return x[tr], y[tr], x[va], y[va]


def make_optimizer(o: dict, params):
    name = o["name"]
    if name == "sgd":
        return rg.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0))
    if name == "adam":
        return rg.optim.Adam(params, lr=o["lr"])
    raise ValueError(name)


def train_digits(cfg: dict, reporter) -> dict:
    """train_fn(trial_config, reporter): the final validation metrics of one training run."""
    x, y, xv, yv = digits_split()
    seed = cfg["train"]["seed"]
    rg.manual_seed(seed)
    h = cfg["model"]["hidden"]
    model = rg.nn.Sequential(rg.nn.Linear(64, h), rg.nn.ReLU(), rg.nn.Linear(h, 10))
    opt = make_optimizer(cfg["optim"], model.parameters())
    train = rg.data.DataLoader(rg.data.TensorDataset(x, y), batch_size=cfg["data"]["batch_size"], shuffle=True,
                               generator=rg.Generator(seed))
    val = rg.data.DataLoader(rg.data.TensorDataset(xv, yv), batch_size=400)
    trainer = Trainer(model, opt, rg.nn.CrossEntropyLoss(), metrics=("accuracy",),
                      callbacks=[PruningCallback(reporter, "val_accuracy")], seed=seed)
    history = trainer.fit(train, val, epochs=cfg["train"]["epochs"])
    return {"val_accuracy": history["val_accuracy"][-1], "val_loss": history["val_loss"][-1]}


class HangOnCall:
    """A train_fn that trains normally but, on its ``n``-th call in this process, writes ``marker`` and
    sleeps (so a test can kill the process in the middle of that trial)."""

    def __init__(self, n: int, marker: str) -> None:
        self.n, self.marker, self.calls = n, marker, 0

    def __call__(self, cfg: dict, reporter) -> dict:
        self.calls += 1
        if self.calls == self.n:
            reporter(0, {"val_accuracy": 0.5})  # the trial has started reporting when it is killed
            pathlib.Path(self.marker).write_text(str(os.getpid()))
            time.sleep(120)
        return train_digits(cfg, reporter)


class SleepyMetric:
    """A tiny train_fn for the crash tests: writes ``marker_dir/<pid>-<n>`` when a call starts (the
    test reads worker pids and progress from these), sleeps ``delay`` seconds, returns a metric of lr."""

    def __init__(self, delay: float, marker_dir: str) -> None:
        self.delay, self.marker_dir, self.calls = delay, marker_dir, 0

    def __call__(self, cfg: dict, reporter) -> dict:
        self.calls += 1
        pathlib.Path(self.marker_dir, f"{os.getpid()}-{self.calls}").touch()
        time.sleep(self.delay)
        return {"val_accuracy": 1.0 / (1.0 + abs(cfg["optim"]["lr"] - 0.1))}
