"""Exact resume: interrupted at any batch and resumed from the checkpoint, training
ends with bit-identical parameters (and the same history) as an uninterrupted run."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.train import CheckpointError, Trainer
from retrograd.train.callbacks import Callback, ModelCheckpoint

from train_helpers import mlp

EPOCHS = 3


class Interrupt(Callback):
    """Save a checkpoint after the ``at``-th batch of the run and stop."""

    def __init__(self, path, at):
        self.path, self.at, self.n = path, at, 0

    def on_batch_end(self, trainer, batch_idx, logs):
        self.n += 1
        if self.n == self.at:
            trainer.save_checkpoint(self.path)
            trainer.stop_training = True


def _setup(kind, ds, seed):
    model = mlp(seed, dropout=0.2)  # dropout: the default generator must be restored too
    if kind == "sgd":
        opt = rg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        sched = rg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
        interval = "epoch"
    else:
        opt = rg.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
        sched = rg.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-2, total_steps=EPOCHS * 8)
        interval = "step"
    loader = rg.data.DataLoader(ds, batch_size=256, shuffle=True)  # 8 batches per epoch, the last short
    return model, opt, sched, interval, loader


def _run(kind, ds, *, accumulate=1, interrupt=None, resume=None, seed=0):
    model, opt, sched, interval, loader = _setup(kind, ds, seed)
    cbs = [Interrupt(*interrupt)] if interrupt else []
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, scheduler_interval=interval,
                 callbacks=cbs, accumulate=accumulate, seed=None if resume else 7)
    hist = tr.fit(loader, loader, epochs=EPOCHS, resume_from=resume)
    return model, hist, tr


def _params(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_resume_is_bit_identical(kind, digits, tmp_path):
    ref_model, ref_hist, _ = _run(kind, digits)
    ref = _params(ref_model)
    # mid-epoch, the last batch of an epoch, the first batch of the next, deep in the last epoch
    for at in (3, 8, 9, 20):
        ck = tmp_path / f"ck{at}"
        _run(kind, digits, interrupt=(ck, at))
        model, hist, tr = _run(kind, digits, resume=ck, seed=123)  # a differently initialised model
        got = _params(model)
        for k in ref:
            assert np.array_equal(got[k], ref[k]), f"{kind}: resumed at batch {at}: {k} differs"
        assert hist["train_loss"] == ref_hist["train_loss"]
        assert hist["val_accuracy"] == ref_hist["val_accuracy"]
        assert hist["lr"] == ref_hist["lr"]
        assert tr.state.epoch == EPOCHS and tr.state.global_step == EPOCHS * 8


def test_resume_mid_accumulation_group(digits, tmp_path):
    ref = _params(_run("adam", digits, accumulate=3)[0])
    for at in (4, 10):  # inside an accumulation group: the pending gradients are saved
        ck = tmp_path / f"ck{at}"
        _run("adam", digits, accumulate=3, interrupt=(ck, at))
        assert (ck / "grads.safetensors").exists()
        got = _params(_run("adam", digits, accumulate=3, resume=ck, seed=5)[0])
        for k in ref:
            assert np.array_equal(got[k], ref[k]), f"resumed at batch {at}: {k} differs"


def test_resume_from_model_checkpoint_last(digits, tmp_path):
    ref = _params(_run("sgd", digits)[0])
    model, opt, sched, interval, loader = _setup("sgd", digits, 0)
    mc = ModelCheckpoint(tmp_path, monitor="val_accuracy", mode="max")
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, callbacks=[mc], seed=7)
    tr.fit(loader, loader, epochs=2)
    assert (tmp_path / "checkpoints" / "last" / "model.safetensors").exists()
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").exists()
    model, opt, sched, interval, loader = _setup("sgd", digits, 3)
    mc2 = ModelCheckpoint(tmp_path, monitor="val_accuracy", mode="max")
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, callbacks=[mc2])
    meta = tr.load_checkpoint(tmp_path / "checkpoints" / "last")
    assert meta["epoch"] == 1 and mc2.best == mc.best
    tr.fit(loader, loader, epochs=EPOCHS)
    got = _params(model)
    for k in ref:
        assert np.array_equal(got[k], ref[k])


def test_failed_save_keeps_previous_checkpoint(digits, tmp_path, monkeypatch):
    from retrograd.train import checkpoint as tck
    model, opt, sched, interval, loader = _setup("sgd", digits, 0)
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, seed=7)
    tr.fit(loader, epochs=1)
    tr.save_checkpoint(tmp_path / "ck")
    saved = _params(model)
    tr.fit(loader, epochs=2)
    real = tck.save_tree

    def failing(folder, name, obj):
        if name == "rng":  # after model and optimizer files are written
            raise OSError("No space left on device")
        return real(folder, name, obj)

    monkeypatch.setattr(tck, "save_tree", failing)
    with pytest.raises(OSError, match="No space left"):
        tr.save_checkpoint(tmp_path / "ck")
    monkeypatch.setattr(tck, "save_tree", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    model2, opt2, sched2, _, _ = _setup("sgd", digits, 9)
    tr2 = Trainer(model2, opt2, rg.nn.CrossEntropyLoss(), scheduler=sched2)
    tr2.load_checkpoint(tmp_path / "ck")
    assert tr2.state.epoch == 1
    for k, v in _params(model2).items():
        assert np.array_equal(v, saved[k])


def test_corrupted_checkpoint_raises_naming_file_and_changes_nothing(digits, tmp_path):
    model, opt, sched, interval, loader = _setup("adam", digits, 0)
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, scheduler_interval="step", seed=7)
    tr.fit(loader, epochs=1)
    tr.save_checkpoint(tmp_path / "ck")
    f = tmp_path / "ck" / "optimizer.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    model2, opt2, sched2, _, _ = _setup("adam", digits, 4)
    before = _params(model2)
    tr2 = Trainer(model2, opt2, rg.nn.CrossEntropyLoss(), scheduler=sched2, scheduler_interval="step")
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: corrupted"):
        tr2.load_checkpoint(tmp_path / "ck")
    assert tr2.state.epoch == 0
    for k, v in _params(model2).items():
        assert np.array_equal(v, before[k])
    # truncation of the model file
    g = tmp_path / "ck" / "model.safetensors"
    g.write_bytes(g.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        tr2.fit(loader, epochs=2, resume_from=tmp_path / "ck")


def test_checkpoint_contents(digits, tmp_path):
    model, opt, sched, interval, loader = _setup("adam", digits, 0)
    tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched, scheduler_interval="step", seed=7,
                 config={"model": "mlp", "lr": 1e-2})
    tr.fit(loader, epochs=1)
    tr.save_checkpoint(tmp_path / "ck")
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["config.json", "loader.json", "manifest.json", "model.safetensors", "optimizer.json",
                     "optimizer.safetensors", "rng.json", "rng.safetensors", "scheduler.json", "trainer.json"]
    import json

    assert json.loads((tmp_path / "ck" / "config.json").read_text()) == {"model": "mlp", "lr": 1e-2}
    sd = rg.io.load_safetensors(tmp_path / "ck" / "optimizer.safetensors")
    assert "state.0.exp_avg" in sd and sd["state.0.exp_avg"].shape == (32, 64)
    st = json.loads((tmp_path / "ck" / "trainer.json").read_text())
    assert st["state"]["epoch"] == 1 and st["state"]["global_step"] == 8


def test_resume_restores_loader_and_transform_generators(tmp_path):
    """Shuffling from the loader's own generator and a random transform with its own generator."""
    def run(interrupt=None, resume=None, seed=0):
        ds = rg.data.sklearn_dataset("digits", images=True,
                                     transform=rg.data.transforms.RandomHorizontalFlip(generator=rg.Generator(3)))
        loader = rg.data.DataLoader(ds, batch_size=256, shuffle=True, generator=rg.Generator(5))
        rg.manual_seed(seed)
        model = rg.nn.Sequential(rg.nn.Flatten(), rg.nn.Linear(64, 10))
        opt = rg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        tr = Trainer(model, opt, rg.nn.CrossEntropyLoss(), callbacks=[Interrupt(*interrupt)] if interrupt else [])
        tr.fit(loader, epochs=2, resume_from=resume)
        return _params(model)

    ref = run()
    run(interrupt=(tmp_path / "ck", 5))
    import json

    gens = json.loads((tmp_path / "ck" / "rng.json").read_text())["generators"]
    assert set(gens) == {"dataset.transform.generator", "generator"}
    got = run(resume=tmp_path / "ck", seed=1)
    for k in ref:
        assert np.array_equal(got[k], ref[k]), k
