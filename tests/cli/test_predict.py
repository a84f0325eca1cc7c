"""A trained run back in Python (`rg.train.load_run`) and `retrograd predict RUN INPUT` (issue 13 item 4):
the model is rebuilt from the run folder alone and gives exactly the outputs the trained model gave."""
import csv
import json

import numpy as np
import pytest

import retrograd as rg
from retrograd.data.presets import build_data
from retrograd.train import Callback
from retrograd.train.config import ConfigError, validate
from retrograd.train.model_code import UntrustedModelCode

from cli_helpers import DIGITS_MLP, TINY_MODEL

# BatchNorm and Dropout: eval mode and the running statistics (buffers) must come back too
BN_MLP = DIGITS_MLP.replace("sizes = [64, 64, 10]", "sizes = [64, 32, 10]\nbatchnorm = true\ndropout = 0.2")
TINY_CNN = DIGITS_MLP.replace('name = "mlp"\nsizes = [64, 64, 10]', 'name = "cnn"\nchannels = [4]\nkernel_size = 3') \
    .replace('name = "digits"', 'name = "digits"\nimages = true').replace("epochs = 2", "epochs = 1")
TINY_GPT = """
[model]
name = "gpt"
n_layer = 1
n_head = 2
d_model = 8

[data]
name = "shakespeare"
block_size = 8
batch_size = 16
train_samples = 32
val_samples = 16

[train]
epochs = 1
progress = false
"""


def _digits(n: int = 40, images: bool = False) -> np.ndarray:
    cfg = validate({"model": {"name": "mlp", "sizes": [64, 10]}, "data": {"name": "digits", "images": images}})
    x = build_data(cfg["data"], 0).test.tensors[0]
    return np.asarray(x)[:n].astype(np.float32)


class _Outputs(Callback):
    """The model's eval-mode outputs on ``x`` at the end of every epoch, as training left it."""

    def __init__(self, x):
        self.x, self.by_epoch = x, []

    def on_epoch_end(self, trainer, epoch, logs):
        was = trainer.model.training
        trainer.model.eval()
        with rg.no_grad():
            self.by_epoch.append(np.asarray(trainer.model(rg.Tensor(self.x)).numpy()))
        trainer.model.train(was)


def _train(run_cli, config, callbacks=()):
    rc, _, err = run_cli("train", config, "--quiet", callbacks=callbacks)
    assert rc == 0, err


@pytest.mark.parametrize("text, images", [(BN_MLP, False), (TINY_CNN, True)], ids=["mlp-batchnorm", "cnn"])
def test_load_run_gives_exactly_the_trained_models_outputs(write_config, run_cli, tmp_path, text, images):
    x = _digits(images=images)
    seen = _Outputs(x)
    _train(run_cli, write_config(text), [seen])
    run_dir = tmp_path / "runs" / "c"
    trainer = json.loads((run_dir / "checkpoints" / "best" / "trainer.json").read_text())
    best = trainer["callbacks"]["2:ModelCheckpoint"]["best_epoch"]
    epochs = len(seen.by_epoch)
    default = rg.train.load_run(run_dir)
    assert default.which == "best" and default.checkpoint == run_dir / "checkpoints" / "best"
    assert default.epoch == best + 1 and not default.model.training and default.task == "classification"
    assert np.array_equal(default.outputs(x, batch_size=len(x)), seen.by_epoch[best])
    last = rg.train.load_run(run_dir, "last")
    assert last.which == "last" and last.epoch == epochs and last.step == epochs * 41 and last.batch_in_epoch == 0
    assert np.array_equal(last.outputs(x, batch_size=len(x)), seen.by_epoch[-1])
    assert np.array_equal(last.model(rg.Tensor(x)).detach().numpy(), seen.by_epoch[-1])  # the model itself
    assert last.describe() == f"last checkpoint (after {epochs} epoch{'s' if epochs > 1 else ''}, step {epochs * 41})"
    # a checkpoint given by its path; the config's model arguments (data-derived included) are written out
    assert np.array_equal(rg.train.load_run(run_dir, str(run_dir / "checkpoints" / "last")).outputs(x, len(x)),
                          seen.by_epoch[-1])
    assert last.config["model"] == validate(rg.train.config.load_config(run_dir / "config.toml"))["model"]
    p = last.predict_proba(x)
    assert p.shape == (len(x), 10) and np.allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(last.predict(x), seen.by_epoch[-1].argmax(axis=1))


def test_load_run_without_best_loads_last_and_a_model_file_keeps_its_trust_rules(write_config, run_cli, tmp_path):
    model = tmp_path / "m.py"
    model.write_text(TINY_MODEL)
    text = DIGITS_MLP.replace('name = "mlp"\nsizes = [64, 64, 10]', 'name = "m.py:Tiny"\nhidden = 8') \
        .replace("epochs = 2", "epochs = 1\nsave_best = false")
    x = _digits()
    seen = _Outputs(x)
    _train(run_cli, write_config(text), [seen])
    run_dir = tmp_path / "runs" / "c"
    run = rg.train.load_run(run_dir)
    assert run.which == "last" and type(run.model).__name__ == "Tiny"
    assert np.array_equal(run.outputs(x, len(x)), seen.by_epoch[-1])
    with pytest.raises(ConfigError, match="no checkpoint 'best' \\(found: last\\)"):
        rg.train.load_run(run_dir, "best")
    model.write_text(TINY_MODEL + "\n# changed\n")
    with pytest.raises(UntrustedModelCode, match="the model file changed since the run recorded it"):
        rg.train.load_run(run_dir)
    run = rg.train.load_run(run_dir, trust_model_code=True)
    assert np.array_equal(run.outputs(x, len(x)), seen.by_epoch[-1])


def test_predict_writes_csv_npy_and_npz(write_config, run_cli, tmp_path):
    _train(run_cli, write_config())
    run_dir = tmp_path / "runs" / "c"
    x = _digits(37)
    np.save(tmp_path / "new.npy", x * 16)  # digits' raw pixel values (0-16): inputs.json divides them by 16
    assert np.array_equal(rg.train.load_run(run_dir).read_inputs(tmp_path / "new.npy")[0], x)  # as in training
    rc, out, err = run_cli("predict", run_dir, tmp_path / "new.npy", "--batch-size", "8")
    default = run_dir / "predictions_new.csv"
    assert rc == 0 and err == "" and f"{run_dir}: best checkpoint (after 2 epochs, step 82)" in out, err
    assert f"wrote 37 predictions of {tmp_path / 'new.npy'} to {default} " in out
    with open(default, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "predicted"] + [f"prob_{k}" for k in range(10)]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(37)]
    probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    expected = rg.train.load_run(run_dir).predict_proba(x, batch_size=8)  # the same batches
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-7) and np.allclose(probs, expected, rtol=1e-7, atol=1e-12)
    assert [r[1] for r in rows[1:]] == [str(k) for k in expected.argmax(axis=1)]
    # .npy: the (N, C) probabilities and the predicted labels beside them; the last checkpoint
    rc, out, err = run_cli("predict", run_dir, tmp_path / "new.npy", "-o", tmp_path / "p.npy", "--checkpoint", "last")
    assert rc == 0 and "last checkpoint" in out, err
    last = rg.train.load_run(run_dir, "last").predict_proba(x)
    assert np.allclose(np.load(tmp_path / "p.npy"), last, rtol=1e-6, atol=1e-7)
    assert (tmp_path / "p.labels.txt").read_text().split() == [str(k) for k in last.argmax(axis=1)]
    # .npz input (one array) and output (everything)
    np.savez(tmp_path / "new.npz", x=x[:5] * 16, other=np.zeros(3))
    rc, _, err = run_cli("predict", run_dir, tmp_path / "new.npz", "-o", tmp_path / "p.npz")
    assert rc == 0, err
    with np.load(tmp_path / "p.npz") as z:
        assert z["probabilities"].shape == (5, 10) and list(z["classes"]) == [str(k) for k in range(10)]
        assert list(z["ids"]) == ["0", "1", "2", "3", "4"] and z["outputs"].shape == (5, 10)


def test_predict_of_an_mse_classifier_writes_scores(write_config, run_cli, tmp_path):
    # mse on class ids trains on one-hot targets: scores, not probabilities
    _train(run_cli, write_config(DIGITS_MLP.replace("epochs = 2", 'epochs = 1\nloss = "mse"')))
    np.save(tmp_path / "new.npy", _digits(4))
    rc, _, err = run_cli("predict", tmp_path / "runs" / "c", tmp_path / "new.npy", "-o", tmp_path / "s.csv")
    assert rc == 0, err
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert header == ["id", "predicted"] + [f"score_{k}" for k in range(10)]
    with pytest.raises(ValueError, match="gives no class probabilities"):
        rg.train.load_run(tmp_path / "runs" / "c").predict_proba(_digits(4))


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("retrograd predict: error: ") and "Traceback" not in err, err
    return lines[0]


def test_predict_errors_are_one_line(write_config, run_cli, tmp_path):
    _train(run_cli, write_config(DIGITS_MLP.replace("epochs = 2", "epochs = 1")))
    run_dir = tmp_path / "runs" / "c"
    np.save(tmp_path / "bad.npy", np.zeros((3, 65), np.float32))
    rc, _, err = run_cli("predict", run_dir, tmp_path / "bad.npy")
    assert rc == 2 and "expected 64 features per row (shape (64,)), got an array of shape (3, 65)" in _one_error(err)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    rc, _, err = run_cli("predict", run_dir, tmp_path / "x.csv")
    assert rc == 2 and "expected 64 features per row" in _one_error(err)
    np.save(tmp_path / "ok.npy", np.zeros((2, 64), np.float32))
    cases = [
        (("--checkpoint", "nope"), f"checkpoint: 'nope' is neither a checkpoint of {run_dir} (found: best, last)"),
        (("-o", tmp_path / "p.txt"), "expected a .csv, .npy or .npz file name"),
        (("-o", tmp_path / "ok.npy"), "is the input file; choose another name"),
        (("--batch-size", "0"), "--batch-size: must be >= 1, got 0"),
    ]
    for extra, message in cases:
        rc, _, err = run_cli("predict", run_dir, tmp_path / "ok.npy", *extra)
        assert rc == 2 and message in _one_error(err), (extra, err)
    assert np.array_equal(np.load(tmp_path / "ok.npy"), np.zeros((2, 64), np.float32))  # the input is untouched
    rc, _, err = run_cli("predict", tmp_path / "nowhere", tmp_path / "ok.npy")
    assert rc == 2 and "not a run folder (no config.toml)" in _one_error(err)
    rc, _, err = run_cli("predict", run_dir, tmp_path / "missing.npy")
    assert rc == 2 and "missing.npy' not found" in _one_error(err)
    rc, _, err = run_cli("generate", run_dir)  # generate on a classifier points to predict
    assert rc == 2 and err.strip().endswith(f"this one is mlp on digits; for its predictions: retrograd predict "
                                            f"{run_dir} INPUT"), err


def test_a_run_folder_without_inputs_json_takes_arrays_in_the_models_input_shape(write_config, run_cli, tmp_path):
    """Run folders written before inputs.json existed: .npy/.npz inputs as the model saw its data."""
    _train(run_cli, write_config(DIGITS_MLP.replace("epochs = 2", "epochs = 1")))
    run_dir = tmp_path / "runs" / "c"
    (run_dir / "inputs.json").unlink()
    run = rg.train.load_run(run_dir)
    assert run.inputs is None and run.classes is None and run.task == "classification"
    x = _digits(6)
    np.save(tmp_path / "x.npy", x)
    assert np.array_equal(run.read_inputs(tmp_path / "x.npy")[0], x)
    rc, _, err = run_cli("predict", run_dir, tmp_path / "x.npy", "-o", tmp_path / "p.csv")
    assert rc == 0, err
    assert (tmp_path / "p.csv").read_text().splitlines()[0].split(",")[2:] == [f"prob_{k}" for k in range(10)]
    np.save(tmp_path / "bad.npy", np.zeros((3, 65), np.float32))
    rc, _, err = run_cli("predict", run_dir, tmp_path / "bad.npy")
    assert rc == 2 and "expected shape (N, 64) (or (N, ...) with 64 values per row), got (3, 65)" in _one_error(err)
    np.save(tmp_path / "one.npy", np.zeros(64, np.float32))
    rc, _, err = run_cli("predict", run_dir, tmp_path / "one.npy")
    assert rc == 2 and "expected a batch of shape (N, 64)" in _one_error(err) and "got shape (64,)" in err
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    rc, _, err = run_cli("predict", run_dir, tmp_path / "x.csv")
    assert rc == 2 and "has no inputs.json" in _one_error(err) and "so inputs are .npy or .npz arrays" in err


def test_a_language_model_run_loads_but_predict_points_to_generate(write_config, run_cli, tmp_path):
    _train(run_cli, write_config(TINY_GPT, "gpt"))
    run_dir = tmp_path / "runs" / "gpt"
    run = rg.train.load_run(run_dir)
    assert run.task == "language_model" and type(run.model).__name__ == "GPT"
    np.save(tmp_path / "ok.npy", np.zeros((2, 8), np.float32))
    rc, _, err = run_cli("predict", run_dir, tmp_path / "ok.npy")
    assert rc == 2 and _one_error(err) == (
        f"retrograd predict: error: {run_dir} is a language model (gpt on shakespeare); to sample text from it "
        f"use: retrograd generate {run_dir} --prompt TEXT")


# ---------------------------------------------------------------------- own data (data.path), inputs.json
FRUIT = """
[model]
name = "mlp"
sizes = [5, 16, 3]

[data]
path = "fruit.csv"
target = "fruit"
batch_size = 16

[optim]
name = "adam"
lr = 0.01

[train]
epochs = 3
progress = false
"""


def test_own_csv_data_predict_and_evaluate(write_config, run_cli, tmp_path):
    from cli_helpers import fruit_table

    (tmp_path / "fruit.csv").write_text(fruit_table(400))
    _train(run_cli, write_config(FRUIT))
    run_dir = tmp_path / "runs" / "c"
    new = fruit_table(30, seed=1)
    (tmp_path / "new.csv").write_text(new)  # with the target column: predict ignores it
    rc, out, err = run_cli("predict", run_dir, tmp_path / "new.csv", "-o", tmp_path / "p.csv")
    assert rc == 0, err
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "predicted", "prob_apple", "prob_banana", "prob_cherry"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(30)]
    run = rg.train.load_run(run_dir)
    assert run.classes == ["apple", "banana", "cherry"] and run.inputs.kind == "table"
    probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.allclose(probs, run.predict_proba(run.read_inputs(tmp_path / "new.csv")[0]), rtol=1e-8, atol=1e-12)
    truth = [line.split(",")[-1] for line in new.splitlines()[1:]]
    assert np.mean([r[1] == t for r, t in zip(rows[1:], truth)]) >= 0.8
    # an unknown category is named with its column and row
    (tmp_path / "odd.csv").write_text("weight,length,color\n150,8,purple\n")
    rc, _, err = run_cli("predict", run_dir, tmp_path / "odd.csv")
    assert rc == 2 and "column 'color'" in _one_error(err) and "unknown category 'purple'" in err
    # evaluate works on an own-data run: the best checkpoint's val_accuracy is the best epoch's
    rc, _, err = run_cli("evaluate", run_dir)
    assert rc == 0, err
    ev = json.loads((run_dir / "evaluate_best.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = min((r for r in epochs if r["kind"] == "epoch"), key=lambda r: r["val_loss"])
    assert ev["val_accuracy"] == best["val_accuracy"] and 0.5 < ev["test_accuracy"] <= 1, ev
    # predict needs neither the training data nor the folder where it was trained
    before = (tmp_path / "p.csv").read_text()
    (tmp_path / "fruit.csv").rename(tmp_path / "gone.csv")
    run_dir.rename(tmp_path / "moved")
    rc, _, err = run_cli("predict", tmp_path / "moved", tmp_path / "new.csv", "-o", tmp_path / "q.csv")
    assert rc == 0 and (tmp_path / "q.csv").read_text() == before, err


def test_own_csv_regression_predicts_values(write_config, run_cli, tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    table = "a,b,y\n" + "".join(f"{u:.4f},{v:.4f},{3 * u - 2 * v + 0.1 * rng.normal():.4f}\n" for u, v in zip(a, b))
    (tmp_path / "t.csv").write_text(table)
    text = FRUIT.replace("sizes = [5, 16, 3]", "sizes = [2, 8, 1]").replace('"fruit.csv"', '"t.csv"') \
        .replace('"fruit"', '"y"')
    _train(run_cli, write_config(text))
    run_dir = tmp_path / "runs" / "c"
    (tmp_path / "new.csv").write_text("b,a\n0.5,1.0\n-1.0,0.0\n")  # columns by name, in any order
    rc, _, err = run_cli("predict", run_dir, tmp_path / "new.csv", "-o", tmp_path / "p.csv")
    assert rc == 0, err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    run = rg.train.load_run(run_dir)
    assert run.task == "regression" and run.classes is None and rows[0] == "id,prediction"
    (tmp_path / "ordered.csv").write_text("a,b\n1.0,0.5\n0.0,-1.0\n")
    x, ids = run.read_inputs(tmp_path / "new.csv")
    assert np.array_equal(x, run.read_inputs(tmp_path / "ordered.csv")[0]) and ids == ["0", "1"]
    assert np.allclose([float(r.split(",")[1]) for r in rows[1:]], run.outputs(x)[:, 0], rtol=1e-8)
    rc, _, err = run_cli("evaluate", run_dir)
    assert rc == 0, err
    ev = json.loads((run_dir / "evaluate_best.json").read_text())
    assert {"val_loss", "val_mae", "val_r2", "test_r2"} <= set(ev) and ev["val_r2"] > 0.5, ev
    with pytest.raises(ValueError, match="gives no class probabilities"):
        run.predict_proba(run.read_inputs(tmp_path / "new.csv")[0])


def test_own_image_folder_predicts_a_folder_of_images(write_config, run_cli, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, level in (("dark", 40), ("light", 200)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(level, 30, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "new" / "sub").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 30, np.uint8)).save(tmp_path / "new" / "a.png")
    Image.fromarray(np.full((8, 8), 220, np.uint8)).save(tmp_path / "new" / "sub" / "b.png")
    text = FRUIT.replace('name = "mlp"\nsizes = [5, 16, 3]', 'name = "cnn"\nchannels = [4]') \
        .replace('path = "fruit.csv"\ntarget = "fruit"', 'path = "imgs"')
    _train(run_cli, write_config(text))
    run_dir = tmp_path / "runs" / "c"
    rc, out, err = run_cli("predict", run_dir, tmp_path / "new")
    assert rc == 0, err
    rows = (run_dir / "predictions_new.csv").read_text().splitlines()
    assert rows[0] == "id,predicted,prob_dark,prob_light" and [r.split(",")[0] for r in rows[1:]] == \
        ["a.png", "sub/b.png"]
    run = rg.train.load_run(run_dir)
    x, _ = run.read_inputs(tmp_path / "new")
    assert x.shape == (2, 1, 8, 8) and np.allclose(x[:, 0, 0, 0], [30 / 255, 220 / 255])
    p = np.array([[float(v) for v in r.split(",")[2:]] for r in rows[1:]])
    assert np.allclose(p, run.predict_proba(x), rtol=1e-8, atol=1e-12)
    rc, _, err = run_cli("predict", run_dir, tmp_path / "new" / "a.png", "-o", tmp_path / "one.csv")  # one image
    assert rc == 0, err
    one = (tmp_path / "one.csv").read_text().splitlines()[1].split(",")
    assert one[:2] == rows[1].split(",")[:2] and np.allclose([float(v) for v in one[2:]], p[0], rtol=1e-6)


def test_fashion_mnist_run_names_its_classes_and_reads_raw_pixels(write_config, run_cli, tmp_path):
    try:
        images, _ = rg.data.fashion_mnist("test").arrays
    except rg.data.DataNotInstalledError as e:
        pytest.skip(f"Fashion-MNIST is not installed: {e}")
    text = DIGITS_MLP.replace("sizes = [64, 64, 10]", "sizes = [784, 16, 10]") \
        .replace('name = "digits"', 'name = "fashion_mnist"\ntrain_samples = 128\nval_samples = 64') \
        .replace("epochs = 2", "epochs = 1")
    _train(run_cli, write_config(text))
    run_dir = tmp_path / "runs" / "c"
    raw = np.rint(np.asarray(images[:3]) * 255).astype(np.uint8)   # pixels as a file holds them, 0-255
    np.save(tmp_path / "x.npy", raw[:, 0])                          # (N, 28, 28)
    rc, _, err = run_cli("predict", run_dir, tmp_path / "x.npy", "-o", tmp_path / "p.csv")
    assert rc == 0, err
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert header == ["id", "predicted"] + [f"prob_{n}" for n in names]
    run = rg.train.load_run(run_dir)
    assert np.array_equal(run.read_inputs(tmp_path / "x.npy")[0], raw.astype(np.float32) / 255)
    (run_dir / "inputs.json").unlink()  # a run folder from before inputs.json: the names still come
    assert rg.train.load_run(run_dir).classes == names
