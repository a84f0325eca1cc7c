"""Callbacks: logging (JSONL, CSV, TensorBoard), progress, early stopping, checkpoints, NaNGuard."""
import csv
import io
import json
import re
import struct

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import Trainer
from retrograd.train import callbacks as callbacks_module
from retrograd.train.callbacks import EarlyStopping, MetricLogger, ModelCheckpoint, NaNGuard, ProgressBar, RunClock
from retrograd.train.formatting import format_duration
from retrograd.train.tensorboard import read_scalars

from train_helpers import mlp


def _loaders(ds, n=200, bs=50):
    train = rg.data.DataLoader(rg.data.Subset(ds, np.arange(n)), batch_size=bs, shuffle=True)
    val = rg.data.DataLoader(rg.data.Subset(ds, np.arange(1500, 1700)), batch_size=100)
    return train, val


def _fit(ds, callbacks, epochs=3, lr=1e-2, bs=50, **kw):
    model = mlp(0)
    tr = Trainer(model, rg.optim.Adam(model.parameters(), lr=lr), rg.nn.CrossEntropyLoss(), callbacks=callbacks,
                 seed=0, **kw)
    return tr, tr.fit(*_loaders(ds, bs=bs), epochs=epochs)


def test_metric_logger_jsonl_csv_and_tensorboard(digits, tmp_path):
    tr, h = _fit(digits, [MetricLogger(tmp_path)])
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(steps) == 12 and [r["step"] for r in steps] == list(range(1, 13))
    assert [r["val_loss"] for r in epochs] == h["val_loss"]
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 15 and {"kind", "loss", "val_accuracy", "lr"} <= set(table[0])
    assert float(table[-1]["val_accuracy"]) == pytest.approx(h["val_accuracy"][-1])
    # TensorBoard reads the event files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "epoch/val_loss", "epoch/val_accuracy", "epoch/train_loss"} <= set(tags)
    ev = acc.Scalars("epoch/val_loss")
    assert [e.step for e in ev] == [1, 2, 3]
    np.testing.assert_allclose([e.value for e in ev], h["val_loss"], rtol=1e-6)
    loss = acc.Scalars("train/loss")
    np.testing.assert_allclose([e.value for e in loss], [r["loss"] for r in steps], rtol=1e-6)
    # and so does our own reader of the TFRecord framing (CRCs checked)
    (event_file,) = (tmp_path / "tb").iterdir()
    ours = read_scalars(event_file)
    assert [s for s, _ in ours["train/loss"]] == list(range(1, 13))


def test_progress_bar_on_a_terminal_draws_a_bar_with_the_run_eta(digits):
    buf = io.StringIO()
    _fit(digits, [ProgressBar(file=buf, plain=False)], epochs=2)
    out = buf.getvalue()
    assert "epoch 1/2" in out and "epoch 2/2" in out and "samples/s" in out and "4/4" in out and "run left=" in out
    assert "val_loss=" in out and "train_loss=" in out


def _mask(line: str) -> str:
    """A progress line with its timings (which vary) replaced by T."""
    line = re.sub(r"[0-9,]+ samples/s", "T samples/s", line)
    line = re.sub(r"\d+\.\d\d s \|", "T s |", line)
    return re.sub(r"\d+:\d\d", "T", line)


def test_progress_bar_off_a_terminal_prints_plain_lines(digits):
    buf = io.StringIO()  # not a terminal: no tqdm frames
    tr, h = _fit(digits, [ProgressBar(file=buf, every_s=0)], epochs=2, bs=20)
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and len(lines) == 2 * 10
    fmt = rg.train.formatting.format_value
    for e in range(2):
        mid, end = lines[10 * e:10 * e + 9], lines[10 * e + 9]
        assert [_mask(x) for x in mid] == [
            f"epoch {e + 1}/2: {10 * k}% ({k}/10 batches) loss {x.split(' loss ')[1][:6]}, T samples/s | run T "
            f"elapsed, T left" for k, x in zip(range(1, 10), mid)]
        assert _mask(end) == (f"epoch {e + 1}/2: train_loss={fmt(h['train_loss'][e])} val_loss={fmt(h['val_loss'][e])} "
                              f"val_accuracy={fmt(h['val_accuracy'][e])} lr=0.01 | step {10 * (e + 1)}, T samples/s, "
                              f"T s | run T elapsed" + (", T left" if e == 0 else ""))
    # by default a line within an epoch comes at most every 30 s: these short epochs print one line each
    buf = io.StringIO()
    _fit(digits, [ProgressBar(file=buf)], epochs=3, bs=20)
    assert [x.split(":")[0] for x in buf.getvalue().splitlines()] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    buf = io.StringIO()
    _fit(digits, [ProgressBar(file=buf, disable=True)], epochs=1)
    assert buf.getvalue() == ""


def test_progress_bar_without_a_batch_count(digits):
    class NoLen:  # a loader without len(): no percentages, a line every every_s seconds
        def __init__(self, loader):
            self.loader = loader

        def __iter__(self):
            return iter(self.loader)

    buf = io.StringIO()
    model = mlp(0)
    train, val = _loaders(digits, bs=50)
    Trainer(model, rg.optim.Adam(model.parameters()), rg.nn.CrossEntropyLoss(), seed=0,
            callbacks=[ProgressBar(file=buf, every_s=0)]).fit(NoLen(train), val, epochs=1)
    lines = [_mask(x) for x in buf.getvalue().splitlines()]
    assert [x.split(", loss")[0] for x in lines[:4]] == [f"epoch 1/1: batch {k}" for k in range(1, 5)]
    assert lines[0].endswith("T samples/s | run T elapsed") and lines[4].startswith("epoch 1/1: train_loss=")


def test_run_clock_estimates_the_time_left(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(callbacks_module.time, "perf_counter", lambda: now[0])
    clock = RunClock()
    assert clock.remaining(3, 0, 0, 10) is None  # nothing timed yet
    clock.batches, clock.eval_time, clock.evals = 10, 2.0, 1
    now[0] = 122.0  # 20 s for 10 batches, 2 s for one validation pass
    assert clock.elapsed() == 22.0
    # 6 batches of epoch 2 and 10 of epoch 3 at 2 s, then two validation passes at 2 s
    assert clock.remaining(3, 1, 4, 10) == 36.0
    assert clock.remaining(3, 3, 0, 10) == 0.0 and clock.remaining(None, 1, 4, 10) is None
    assert clock.remaining(3, 1, 4, None) is None
    assert [format_duration(x) for x in (0, 36.4, 600, 3725, None)] == ["0:00", "0:36", "10:00", "1:02:05", "?"]


def test_early_stopping(digits):
    es = EarlyStopping(monitor="val_loss", patience=2, mode="min")
    tr, h = _fit(digits, [es], epochs=50, lr=0.0)  # lr 0: val_loss never improves after epoch 1
    assert len(h["val_loss"]) == 3 and es.stopped_epoch == 2 and es.wait == 2
    es = EarlyStopping(monitor="val_accuracy", patience=1, mode="max", min_delta=0.5)
    tr, h = _fit(digits, [es], epochs=50)
    assert len(h["val_loss"]) == 2
    with pytest.raises(KeyError, match="monitor 'val_f1' is not among the epoch logs"):
        _fit(digits, [EarlyStopping(monitor="val_f1")], epochs=1)


def test_model_checkpoint_best_and_last(digits, tmp_path):
    mc = ModelCheckpoint(tmp_path, monitor="val_loss", mode="min")
    tr, h = _fit(digits, [mc], epochs=3)
    best_epoch = int(np.argmin(h["val_loss"]))
    assert mc.best == pytest.approx(min(h["val_loss"])) and mc.best_epoch == best_epoch
    for name in ("best", "last"):
        assert (tmp_path / "checkpoints" / name / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "checkpoints" / "best" / "trainer.json").read_text())["meta"]
    assert meta["epoch"] == best_epoch and meta["monitor"] == "val_loss"
    last = rg.load(tmp_path / "checkpoints" / "last" / "model.safetensors")
    for k, v in tr.model.state_dict().items():
        np.testing.assert_array_equal(last[k].numpy(), v.numpy())


def test_model_checkpoint_every_n_steps(digits, tmp_path):
    mc = ModelCheckpoint(tmp_path, save_best=False, every_n_epochs=100, every_n_steps=5)
    tr, _ = _fit(digits, [mc], epochs=2)  # 8 steps: saved at step 5
    st = json.loads((tmp_path / "checkpoints" / "last" / "trainer.json").read_text())["state"]
    assert st["global_step"] == 5 and st["epoch"] == 1 and st["batch_in_epoch"] == 1


class _LogOf(rg.nn.Module):
    """A model that takes the log of a linear layer's output: NaN wherever it is negative."""

    def __init__(self):
        super().__init__()
        self.fc = rg.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x).log()


def test_metric_logger_rows_reach_the_disk_by_each_checkpoint(digits, tmp_path):
    # rows are flushed at most every flush_every_s (here: never by time), and always before a
    # checkpoint is saved, with each epoch's row and at the end of fit
    seen, folder = [], [tmp_path]

    def on_disk():
        return sum('"kind": "step"' in line for line in (folder[0] / "metrics.jsonl").read_text().splitlines())

    class Probe(rg.train.Callback):
        def on_batch_end(self, trainer, batch_idx, logs):
            before = on_disk()
            if batch_idx == 2:
                trainer.save_checkpoint(tmp_path / "ck")
            seen.append((before, on_disk()))

        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(("epoch", on_disk()))

    _fit(digits, [MetricLogger(tmp_path, flush_every_s=1e9), Probe()], epochs=1)
    assert seen == [(0, 0), (0, 0), (0, 3), (3, 3), ("epoch", 4)]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["step"] * 4 + ["epoch"]
    seen.clear()
    folder[0] = tmp_path / "every"  # flush_every_s=0: every row at once
    _fit(digits, [MetricLogger(folder[0], flush_every_s=0.0), Probe()], epochs=1)
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 4), ("epoch", 4)]


def test_nan_guard_names_the_op_and_stops_before_the_step(digits, tmp_path):
    rg.manual_seed(0)
    model = _LogOf()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    guard = NaNGuard(run_dir=tmp_path)
    tr = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.CrossEntropyLoss(), callbacks=[guard])
    with np.errstate(invalid="ignore"):  # the NaN the guard is there to catch
        tr.fit(rg.data.DataLoader(digits, batch_size=32), epochs=2)
    assert guard.triggered and tr.stop_training and tr.state.global_step == 0
    rep = (tmp_path / "nan_report.txt").read_text()
    assert "epoch 0, batch 0" in rep and "loss is nan" in rep and "gradient of fc.weight" in rep
    assert "op 'log' produced nan" in rep and "test_callbacks.py" in rep
    for k, v in model.state_dict().items():  # no update with NaN gradients
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_nan_guard_quiet_on_healthy_run(digits):
    guard = NaNGuard()
    _fit(digits, [guard], epochs=1)
    assert not guard.triggered and guard.report is None


def test_nan_guard_catches_an_inf_gradient_under_a_finite_loss(digits):
    # sqrt at 0: a finite loss, an infinite gradient; Adam keeps its gradients in one flat buffer
    class SqrtOf(rg.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = rg.nn.Linear(64, 10)
            self.fc.weight.data.zero_()
            self.fc.bias.data.zero_()

        def forward(self, x):
            return self.fc(x).sqrt()

    model = SqrtOf()
    guard = NaNGuard()
    opt = rg.optim.Adam(model.parameters(), lr=0.1)
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), callbacks=[guard])
    with np.errstate(all="ignore"):
        tr.fit(rg.data.DataLoader(digits, batch_size=32), epochs=1)
    assert all(p.grad._array.base is opt.param_groups[0]["params"][0].grad._array.base for p in model.parameters())
    assert guard.triggered and tr.state.global_step == 0
    assert "loss is" not in guard.report and "gradient of fc.weight" in guard.report


@pytest.mark.parametrize("tag", ["train/loss", "t", "x" * 200])
def test_tensorboard_records_are_the_protobuf_framing(tag):
    # the cached per-tag bytes and per-length headers give the encoding spelled out field by field
    from retrograd.train import tensorboard as tb

    assert tb.crc32c(b"123456789") == 0xE3069283  # CRC-32C's check value
    for step, v, v2 in ((0, 0.5, 1e-3), (1234, -3e39, float("nan")), (2**40, float("inf"), 7.0)):
        def value(t, x):
            return tb._bytes_field(1, tb._bytes_field(1, t.encode()) + tb._field(2, 5) + tb._float32(x))

        data = (tb._field(1, 1) + struct.pack("<d", 1.7e9) + tb._field(2, 0) + tb._varint(step)
                + tb._bytes_field(5, value(tag, v) + value("train/lr", v2)))
        header = struct.pack("<Q", len(data))
        framed = header + struct.pack("<I", tb.masked_crc(header)) + data + struct.pack("<I", tb.masked_crc(data))
        for _ in range(2):  # first call fills the caches, the second reads them
            assert tb._record(tb._event(1.7e9, step, scalars=[(tag, v), ("train/lr", v2)])) == framed
