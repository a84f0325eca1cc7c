"""`retrograd train` end to end, resume, evaluate, plot, lr-find and generate."""
import json
import pathlib
import re

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import config as rgconfig
from retrograd.train import Callback

from cli_helpers import DIGITS_MLP, TINY_MODEL, FirstStep, summary


def test_train_digits_reaches_accuracy_and_writes_run_folder(write_config, run_cli, tmp_path):
    rc, out, err = run_cli("train", write_config(), "--quiet")
    assert rc == 0, err
    run = tmp_path / "runs" / "c"
    for f in ("config.toml", "metrics.jsonl", "metrics.csv", "summary.json", "run.png",
              "checkpoints/best/model.safetensors", "checkpoints/last/model.safetensors"):
        assert (run / f).is_file(), f
    s = summary(run)
    assert s["epochs"] == 2 and s["parameters"] == 64 * 64 + 64 + 64 * 10 + 10
    assert s["test"]["test_accuracy"] >= 0.90          # measured 0.93 (2 epochs, 1294 training images)
    assert s["final"]["train_loss"] < 1.0 and s["samples_per_sec"] > 0
    assert re.search(r"test:\s+test_loss [0-9.]+\s+test_accuracy 0\.9\d\d", out)
    # the resolved config has every default written out and reloads to the same config
    resolved = rgconfig.load_config(run / "config.toml")
    assert resolved["data"]["val_fraction"] == 0.1 and resolved["train"]["loss"] == "cross_entropy"
    assert rgconfig.validate(resolved) == rgconfig.validate(rgconfig.load_config(run / "config.toml"))
    # a second run of the same config gets its own folder
    rc, out, _ = run_cli("train", write_config(), "--quiet", "--set", "train.epochs=1")
    assert rc == 0 and (tmp_path / "runs" / "c-2" / "summary.json").is_file()


def test_set_overrides_reach_the_resolved_config(write_config, run_cli, tmp_path):
    rc, _, err = run_cli("train", write_config(), "--quiet", "--set", "optim.lr=0.01", "--set", "train.epochs=1",
                         "--set", "optim.name=SGD", "--set", "optim.momentum=0.9", "--set", "train.grad_clip=1",
                         "--set", "model.sizes=[64, 32, 10]", "--set", "run.name=over")
    assert rc == 0, err
    cfg = rgconfig.load_config(tmp_path / "runs" / "over" / "config.toml")
    assert cfg["optim"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9}
    assert isinstance(cfg["train"]["grad_clip"], float) and cfg["train"]["grad_clip"] == 1.0
    assert cfg["model"]["sizes"] == [64, 32, 10] and cfg["train"]["epochs"] == 1
    assert summary(tmp_path / "runs" / "over")["parameters"] == 64 * 32 + 32 + 32 * 10 + 10


class _Interrupt(Callback):
    """Ctrl-C after optimizer step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, trainer, batch_idx, logs):
        if trainer.state.global_step == self.at:
            raise KeyboardInterrupt


def _params(run_dir: pathlib.Path) -> dict:
    return rg.io.load_safetensors(run_dir / "checkpoints" / "last" / "model.safetensors")


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_resume_after_interruption_is_bit_identical(write_config, run_cli, tmp_path, augment):
    # digits: 1294 training images, 41 batches of 32 per epoch; checkpoint every 5 steps
    text = DIGITS_MLP.replace("epochs = 2", "epochs = 2\ncheckpoint_every_n_steps = 5") + \
        '\n[schedule]\nname = "CosineAnnealingLR"\ninterval = "step"\n'
    if augment:  # random crops drawn from the transform's own generator must resume too
        text = text.replace("batch_size = 32", "batch_size = 32\nimages = true\naugment = true")
    rc, _, err = run_cli("train", write_config(text, "full"), "--quiet")
    assert rc == 0, err
    rc, _, err = run_cli("train", write_config(text, "cut"), "--quiet", callbacks=[_Interrupt(53)])
    # a KeyboardInterrupt that did not come through the trainer's Ctrl-C handler saves nothing; the
    # message says which checkpoint resume continues from and that the steps after it are lost
    assert rc == 130 and ("interrupted at epoch 2, batch 12 (optimizer step 53) without saving; the last "
                          "checkpoint is at epoch 2, batch 9 (optimizer step 50) and the training after it is "
                          "lost; continue with: retrograd resume") in err, err
    cut = tmp_path / "runs" / "cut"
    assert not (cut / "summary.json").exists()
    start = FirstStep()
    rc, out, err = run_cli("resume", cut, "--quiet", callbacks=[start])
    assert rc == 0, err
    assert start.first == (1, 9, 50)      # the checkpoint of step 50: epoch 2, its 10th batch
    full, resumed = _params(tmp_path / "runs" / "full"), _params(cut)
    assert sorted(full) == sorted(resumed)
    for k in full:
        assert np.array_equal(np.asarray(full[k]), np.asarray(resumed[k])), k
    a, b = summary(tmp_path / "runs" / "full"), summary(cut)
    assert a["final"] == b["final"] and a["test"] == b["test"]


def test_evaluate_and_plot_a_run(write_config, run_cli, tmp_path):
    assert run_cli("train", write_config(), "--quiet")[0] == 0
    run = tmp_path / "runs" / "c"
    rc, out, err = run_cli("evaluate", run, "--checkpoint", "last")
    assert rc == 0, err
    ev = json.loads((run / "evaluate_last.json").read_text())
    s = summary(run)
    assert ev["val_loss"] == s["final"]["val_loss"] and ev["test_accuracy"] == s["test"]["test_accuracy"]
    assert f"test_accuracy {ev['test_accuracy']:.4f}" in out
    (run / "run.png").unlink()
    rc, out, _ = run_cli("plot", run)
    assert rc == 0 and (run / "run.png").stat().st_size > 10_000 and str(run / "run.png") in out
    rc, _, err = run_cli("evaluate", tmp_path / "nowhere")
    assert rc == 2 and "not a run folder (no config.toml)" in err


def test_lr_find_prints_a_suggestion_and_saves_the_plot(write_config, run_cli, tmp_path):
    out_png = tmp_path / "lr.png"
    rc, out, err = run_cli("lr-find", write_config(), "--num-iter", "40", "--out", out_png)
    assert rc == 0, err
    m = re.search(r"suggested lr: ([0-9.e+-]+) \(adam, (\d+) iterations", out)
    assert m, out
    lr = float(m.group(1))
    assert 1e-6 <= lr <= 10 and out_png.stat().st_size > 10_000
    saved = json.loads(out_png.with_suffix(".json").read_text())
    assert abs(saved["suggested_lr"] - lr) <= 1e-3 * lr and len(saved["lr"]) == int(m.group(2))


def test_gpt_on_shakespeare_then_generate(write_config, run_cli, tmp_path):
    text = """
[model]
name = "gpt"
n_layer = 1
n_head = 2
d_model = 32

[data]
name = "shakespeare"
block_size = 16
batch_size = 16
train_samples = 320
val_samples = 64

[optim]
name = "adamw"
lr = 0.003

[train]
epochs = 1
progress = false
metrics = ["accuracy", "perplexity"]
"""
    rc, out, err = run_cli("train", write_config(text, "gpt"), "--quiet")
    assert rc == 0, err
    run = tmp_path / "runs" / "gpt"
    cfg = rgconfig.load_config(run / "config.toml")
    vocab = json.loads((run / "vocab.json").read_text())
    assert cfg["model"]["vocab_size"] == len(vocab) and cfg["model"]["block_size"] == 16
    s = summary(run)
    assert s["final"]["train_loss"] < np.log(len(vocab))       # it learned something from uniform
    assert s["final"]["val_perplexity"] < len(vocab)
    rc, out, err = run_cli("generate", run, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "1")
    assert rc == 0, err
    sample = out[:-1]  # print's newline
    assert sample.startswith("ROMEO:") and len(sample) == len("ROMEO:") + 40
    assert set(sample) <= set(vocab)
    rc2, out2, _ = run_cli("generate", run, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "1")
    assert out2 == out                                          # seeded sampling
    rc, _, err = run_cli("generate", run, "--prompt", "ROMEO:\u2603")
    assert rc == 2 and "is not in the vocabulary" in err
    weights = run / "checkpoints" / "best" / "model.safetensors"   # generate checks the manifest too
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    rc, _, err = run_cli("generate", run, "--prompt", "ROMEO:")
    assert rc == 2 and str(weights) in err and "corrupted" in err   # the file named, no traceback


def test_model_from_a_user_file(write_config, run_cli, tmp_path):
    (tmp_path / "mymodel.py").write_text(TINY_MODEL)
    text = DIGITS_MLP.replace('name = "mlp"\nsizes = [64, 64, 10]', 'name = "mymodel.py:Tiny"\nhidden = 8')
    rc, _, err = run_cli("train", write_config(text), "--quiet", "--set", "train.epochs=1")
    assert rc == 0, err
    cfg = rgconfig.load_config(tmp_path / "runs" / "c" / "config.toml")
    assert cfg["model"] == {"name": f"{tmp_path / 'mymodel.py'}:Tiny", "hidden": 8}   # absolute: the run is self-contained
    assert summary(tmp_path / "runs" / "c")["parameters"] == 64 * 8 + 8 + 8 * 10 + 10
    rc, _, err = run_cli("train", write_config(text.replace(":Tiny", ":Big")), "--quiet")
    assert rc == 2 and f"model.name: {tmp_path / 'mymodel.py'} has no class 'Big'; it defines: Tiny" in err
    rc, _, err = run_cli("train", write_config(text.replace("hidden = 8", "width = 8")), "--quiet")
    assert rc == 2 and "model.width: unknown key for model" in err and "known keys: name, hidden" in err


def test_threads_limits_numpys_blas_for_the_run(write_config, run_cli):
    from threadpoolctl import threadpool_info, threadpool_limits

    def numpy_blas_threads():
        import numpy.linalg  # noqa: F401
        return [i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas" and "numpy" in i["filepath"]]

    import retrograd as rg

    kernel_threads = rg.get_num_threads()
    with threadpool_limits(limits=None):          # restores the original limits on exit
        try:
            rc, _, err = run_cli("train", write_config(), "--quiet", "--set", "train.threads=1",
                                 "--set", "train.epochs=1")
            assert rc == 0, err
            assert numpy_blas_threads() == [1]
            assert rg.get_num_threads() == 1  # the compiled kernels' threads too
        finally:
            rg.set_num_threads(kernel_threads)
    rc, _, err = run_cli("train", write_config(), "--quiet", "--set", "train.threads=0")
    assert rc == 2 and "train.threads: must be >= 1, got 0" in err



class _Garbage:
    """A cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_train_collects_the_start_up_garbage_before_the_first_batch(write_config, run_cli):
    import gc
    import weakref

    seen = []

    class Probe(Callback):
        def on_batch_start(self, trainer, batch_idx, logs):
            if batch_idx == 0:
                seen.append(ref() is None)

    thresholds = gc.get_threshold()
    junk = _Garbage()
    ref = weakref.ref(junk)
    gc.collect()  # junk survives into the oldest generation: only a full collection frees it now
    del junk
    gc.set_threshold(10**8, 1000, 1000)  # no automatic collection in this run
    try:
        rc, _, err = run_cli("train", write_config(), "--quiet", "--set", "train.epochs=1", callbacks=[Probe()])
        assert rc == 0, err
        assert seen == [True]
        # a program that turned the collector off gets no collection
        junk = _Garbage()
        ref = weakref.ref(junk)
        del junk
        seen.clear()
        gc.disable()
        try:
            rc, _, err = run_cli("train", write_config(), "--quiet", "--set", "train.epochs=1", callbacks=[Probe()])
        finally:
            gc.enable()
        assert rc == 0, err
        assert seen == [False]
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()
