"""`retrograd train` on a user's own data, one format at a time, from small files in tmp_path:
each run trains, writes a tidy resolved config and an inputs.json that reads new inputs exactly as
training read its data; a realistic table (scikit-learn's wine with string class names and a
categorical column) reaches a known accuracy."""
import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from cli_helpers import summary
from PIL import Image

from retrograd.data import InputSpec
from retrograd.train import config as rgconfig


def _train(write_config, run_cli, text: str, name: str = "own") -> tuple:
    rc, out, err = run_cli("train", write_config(text, name), "--quiet")
    assert rc == 0, err
    run_dir = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run folder: "))
    return rc, out, err, pathlib.Path(run_dir)


def _spec(run_dir) -> InputSpec:
    return InputSpec.from_dict(json.loads((run_dir / "inputs.json").read_text()))


def _wine_csv(path) -> pd.DataFrame:
    from sklearn.datasets import load_wine

    w = load_wine()
    df = pd.DataFrame(w.data, columns=w.feature_names)
    df.insert(3, "region", np.random.default_rng(0).choice(["north", "south", "east"], len(df)))
    df["cultivar"] = np.array(["barolo", "grignolino", "barbera"])[w.target]
    df.to_csv(path, index=False)
    return df


def test_wine_csv_with_string_classes_trains_to_a_known_accuracy(tmp_path, write_config, run_cli):
    _wine_csv(tmp_path / "wine.csv")
    _, out, _, run_dir = _train(write_config, run_cli, """
[model]
name = "mlp"
sizes = [16, 32, 3]
[data]
path = "wine.csv"
target = "cultivar"
batch_size = 16
[optim]
name = "adam"
lr = 0.01
[train]
epochs = 15
progress = false
""", "wine")
    s = summary(run_dir)
    assert s["data"] == str(tmp_path / "wine.csv") and s["status"] == "completed"
    assert 0.94 <= s["test"]["test_accuracy"] <= 1.0, s["test"]  # 36 held-out wines
    data = rgconfig.tomllib.loads((run_dir / "config.toml").read_text())["data"]
    assert list(data) == ["path", "format", "target", "features", "categorical", "task", "batch_size",
                          "val_fraction", "test_fraction", "standardize"]
    assert data["categorical"] == ["region"] and data["task"] == "classification" and data["standardize"] is True
    spec = _spec(run_dir)
    assert spec.classes == ["barbera", "barolo", "grignolino"] and spec.task == "classification"
    assert spec.feature_names[3:6] == ["region=east", "region=north", "region=south"]
    # the run folder resumes from its resolved config (paths absolute, derived values written out)
    rc, out, err = run_cli("resume", run_dir, "--epochs", 16, "--quiet")
    assert rc == 0, err
    assert summary(run_dir)["epochs"] == 16


def test_parquet_regression_trains_with_mse_and_regression_metrics(tmp_path, write_config, run_cli):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "shop": rng.choice(["x", "y"], 200)})
    df["price"] = 3 * df["a"] - 2 * df["b"] + (df["shop"] == "x") + 0.1 * rng.normal(size=200)
    df.to_parquet(tmp_path / "p.parquet")
    _, out, _, run_dir = _train(write_config, run_cli, """
[model]
name = "mlp"
sizes = [4, 16, 1]
[data]
path = "p.parquet"
target = "price"
batch_size = 16
[optim]
lr = 0.01
[train]
epochs = 30
progress = false
""")
    s = summary(run_dir)
    assert set(s["test"]) == {"test_loss", "test_mae", "test_r2"} and s["test"]["test_r2"] > 0.95, s["test"]
    cfg = rgconfig.tomllib.loads((run_dir / "config.toml").read_text())
    assert cfg["train"]["loss"] == "mse" and cfg["train"]["metrics"] == ["mae", "r2"]
    assert _spec(run_dir).task == "regression" and _spec(run_dir).outputs == ["price"]


def test_npz_images_train_a_cnn_with_derived_shapes(tmp_path, write_config, run_cli):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = rng.integers(0, 60, (120, 8, 8)).astype(np.uint8)
    x[y == 1, 2:6, 2:6] += 150  # class 1: a bright square
    np.savez(tmp_path / "sq.npz", x=x, y=y)
    _, _, _, run_dir = _train(write_config, run_cli, """
[model]
name = "cnn"
channels = [4]
hidden = [16]
[data]
path = "sq.npz"
batch_size = 16
augment = true
[train]
epochs = 2
progress = false
""")
    cfg = rgconfig.tomllib.loads((run_dir / "config.toml").read_text())
    assert cfg["model"]["in_channels"] == 1 and cfg["model"]["input_size"] == [8, 8] and cfg["model"]["num_classes"] == 2
    assert "standardize" not in cfg["data"] and cfg["data"]["augment"] is True
    assert _spec(run_dir).shape == [1, 8, 8]


def test_image_folder_trains_and_npy_features_train(tmp_path, write_config, run_cli):
    rng = np.random.default_rng(0)
    for c, level in (("dark", 30), ("light", 200)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(level - 30, level + 30, (6, 6, 3)).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "imgs" / c / f"{i}.png")
    _, _, _, run_dir = _train(write_config, run_cli, """
[model]
name = "cnn"
channels = [4]
hidden = [8]
[data]
path = "imgs"
image_size = [4, 4]
batch_size = 8
[train]
epochs = 2
progress = false
""", "folder")
    cfg = rgconfig.tomllib.loads((run_dir / "config.toml").read_text())
    assert cfg["data"]["channels"] == 3 and cfg["model"]["input_size"] == [4, 4] and cfg["model"]["in_channels"] == 3
    x, ids = _spec(run_dir).read(tmp_path / "imgs")
    assert x.shape == (24, 3, 4, 4) and ids[0] == "dark/0.png"
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, 40))
    _train(write_config, run_cli, """
[model]
name = "mlp"
sizes = [3, 2]
[data]
path = "x.npy"
target_path = "y.npy"
[train]
epochs = 1
progress = false
""", "arrays")


def test_text_file_trains_a_char_gpt_and_generates(tmp_path, write_config, run_cli):
    (tmp_path / "poem.txt").write_text("the cat sat on the mat. " * 40)
    _, _, _, run_dir = _train(write_config, run_cli, """
[model]
name = "gpt"
n_layer = 1
n_head = 2
d_model = 16
[data]
path = "poem.txt"
block_size = 16
batch_size = 16
train_samples = 64
[train]
epochs = 1
progress = false
""", "poem")
    cfg = rgconfig.tomllib.loads((run_dir / "config.toml").read_text())
    assert cfg["model"]["vocab_size"] == len(set("the cat sat on the mat. ")) and cfg["model"]["block_size"] == 16
    assert sorted(cfg["data"]) == ["batch_size", "block_size", "format", "path", "train_samples", "val_fraction"]
    rc, out, err = run_cli("generate", run_dir, "--prompt", "the ", "--max-new-tokens", 5)
    assert rc == 0 and out.startswith("the ") and len(out.rstrip("\n")) == 9, err


ERRORS = [
    ("missing target column", 'path = "t.csv"\ntarget = "label"',
     "data.target: t.csv has no column 'label'; its columns: a, b, y"),
    ("unknown suffix", 'path = "t.xlsx"', "data.path: '{tmp}/t.xlsx': unknown suffix '.xlsx'; expected a folder of "
                                          "images or a file ending in .csv"),
    ("empty folder", 'path = "empty"', "data.path: {tmp}/empty: Couldn't find any class folder in {tmp}/empty."),
    ("missing value", 'path = "gap.csv"\ntarget = "y"',
     "{tmp}/gap.csv: missing value in column 'b', row 2 (line 3 of the file); fill it in or drop the row"),
    ("both name and path", 'name = "iris"\npath = "t.csv"', "data: give data.name (a built-in data set) or "
                                                             "data.path (your own data), not both"),
    ("mismatched lengths", 'path = "bad.npz"', "{tmp}/bad.npz: x and y differ in length: 3 samples and 2 targets"),
    ("mlp sizes", 'path = "t.csv"\ntarget = "y"', "model.sizes: the first size must be the input size of your data "
                                                   "t.csv (2 features), got 64"),
]


@pytest.mark.parametrize("what,data,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_own_data_errors_are_one_line(tmp_path, write_config, run_cli, what, data, message):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,x\n3,4,z\n")
    (tmp_path / "gap.csv").write_text("a,b,y\n1,2,x\n3,,z\n")
    (tmp_path / "t.xlsx").write_text("")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)), y=np.zeros(2, int))
    rc, out, err = run_cli("train", write_config(f'[model]\nname = "mlp"\nsizes = [64, 3]\n[data]\n{data}\n'),
                           "--quiet")
    assert rc == 2 and err.startswith(f"retrograd train: error: {message.format(tmp=tmp_path)}"), err
    assert err.count("\n") == 1 and err.endswith("\n")
