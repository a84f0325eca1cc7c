"""A user's own data (``[data] path``): tables, arrays, image folders and text become the same
bundles the presets give, and ``InputSpec.read`` preprocesses new inputs exactly as training did."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import retrograd as rg
from retrograd.data import DataFileError, ImageFolder, InputSpec, load_image
from retrograd.data.presets import build_data
from retrograd.train import config as rgconfig

BASE = {"model": {"name": "mlp", "sizes": [2, 2]}, "train": {"progress": False}}


def _data(tmp_path, **data) -> dict:
    """The validated [data] table of a config written to tmp_path (paths relative to it)."""
    cfg = {**BASE, "data": data}
    return rgconfig.validate(cfg, config_path=tmp_path / "c.toml")["data"]


def _table(n=60, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n),
        "size": rng.normal(10, 3, n).round(3),
        "colour": rng.choice(["red", "green", "blue"], n),
        "count": rng.integers(0, 5, n),
        "kind": rng.choice(["cat", "dog"], n),
    })


def _rows(a: np.ndarray) -> list:
    return sorted(r.tobytes() for r in a.reshape(len(a), -1))


def _all_rows(bundle) -> list:
    return _rows(np.concatenate([d.arrays[0] for d in (bundle.train, bundle.val, bundle.test) if d is not None]))


# ---------------------------------------------------------------------- tables
def test_csv_table_one_hot_standardised_and_read_back_exactly(tmp_path):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    data = _data(tmp_path, path="t.csv", target="kind")
    assert data["path"] == str(tmp_path / "t.csv") and data["format"] == "csv" and data["task"] == "classification"
    bundle = build_data(data, 0)
    spec = bundle.inputs
    assert spec.classes == ["cat", "dog"] and bundle.num_classes == 2 and bundle.task == "classification"
    assert spec.feature_names == ["id", "size", "colour=blue", "colour=green", "colour=red", "count"]
    assert data["features"] == ["id", "size", "colour", "count"] and data["categorical"] == ["colour"]
    assert bundle.in_shape == (6,) and (len(bundle.train), len(bundle.val), len(bundle.test)) == (43, 5, 12)
    # labels: classes sorted, ids by position in that order
    y = np.concatenate([d.arrays[1] for d in (bundle.train, bundle.val, bundle.test)])
    assert sorted(y.tolist()) == sorted((df["kind"] == "dog").astype(int).tolist())
    # standardised with the statistics of train + val (the training part), one-hot columns untouched
    trval = np.concatenate([bundle.train.arrays[0], bundle.val.arrays[0]])
    np.testing.assert_allclose(trval[:, [0, 1, 5]].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(trval[:, [0, 1, 5]].std(0), 1, atol=1e-5)
    assert set(np.unique(trval[:, 2:5])) == {0.0, 1.0} and (trval[:, 2:5].sum(1) == 1).all()
    # InputSpec.read of the same file gives exactly the rows training saw, in file order
    x, ids = spec.read(tmp_path / "t.csv")
    assert x.dtype == np.float32 and x.shape == (60, 6) and ids == [str(i) for i in range(60)]
    assert _rows(x) == _all_rows(bundle)
    # without the target column, and through JSON
    df.drop(columns="kind").to_csv(tmp_path / "new.csv", index=False)
    spec2 = InputSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert spec2 == spec
    np.testing.assert_array_equal(spec2.read(tmp_path / "new.csv")[0], x)


def test_tsv_and_parquet_give_the_same_bundle_as_csv(tmp_path):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    bundles = [build_data(_data(tmp_path, path=f"t.{s}", target="kind"), 3) for s in ("csv", "tsv", "parquet")]
    for b in bundles[1:]:
        for split in ("train", "val", "test"):
            for a, e in zip(getattr(b, split).arrays, getattr(bundles[0], split).arrays):
                np.testing.assert_array_equal(a, e)
    x, _ = bundles[2].inputs.read(tmp_path / "t.parquet")
    assert _rows(x) == _all_rows(bundles[2])


def test_regression_target_features_and_categorical_overrides(tmp_path):
    df = _table()
    df["price"] = df["size"] * 2.5 + df["count"]
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = rgconfig.validate({**BASE, "data": {"path": "t.csv", "target": "price", "features": ["size", "count"],
                                              "categorical": ["count"]}}, config_path=tmp_path / "c.toml")
    assert cfg["data"]["task"] == "regression"
    assert cfg["train"]["loss"] == "mse" and cfg["train"]["metrics"] == ["mae", "r2"]
    bundle = build_data(cfg["data"], 0)
    assert bundle.task == "regression" and bundle.num_outputs == 1 and bundle.num_classes == 0
    assert bundle.inputs.classes is None and bundle.inputs.outputs == ["price"]
    assert bundle.inputs.feature_names == ["size", "count=0", "count=1", "count=2", "count=3", "count=4"]
    assert bundle.train.arrays[1].dtype == np.float32 and bundle.train.arrays[1].shape[1:] == (1,)
    np.testing.assert_array_equal(np.sort(np.concatenate([d.arrays[1][:, 0] for d in (bundle.train, bundle.val,
                                                                                         bundle.test)])),
                                  np.sort(df["price"].to_numpy(np.float32)))
    # an integer target is classification, classes sorted; task = "regression" makes it a regression
    assert _data(tmp_path, path="t.csv", target="count")["task"] == "classification"
    assert build_data(_data(tmp_path, path="t.csv", target="count"), 0).inputs.classes == ["0", "1", "2", "3", "4"]
    assert _data(tmp_path, path="t.csv", target="count", task="regression")["task"] == "regression"
    # a classification loss or metric on a regression is refused
    with pytest.raises(rgconfig.ConfigError, match=r"train.loss: 'cross_entropy' needs class labels, but data.task "
                                                   r"is 'regression'"):
        rgconfig.validate({**BASE, "data": {"path": "t.csv", "target": "price"},
                           "train": {"loss": "cross_entropy"}}, config_path=tmp_path / "c.toml")
    with pytest.raises(rgconfig.ConfigError, match=r"train.metrics\[0\]: 'accuracy' needs class labels"):
        rgconfig.validate({**BASE, "data": {"path": "t.csv", "target": "price"},
                           "train": {"metrics": ["accuracy"]}}, config_path=tmp_path / "c.toml")


def test_unknown_category_and_missing_column_at_read_time(tmp_path):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    spec = build_data(_data(tmp_path, path="t.csv", target="kind"), 0).inputs
    df.loc[4, "colour"] = "purple"
    df.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataFileError, match=r"new.csv: column 'colour', row 5 \(line 6 of the file\): unknown "
                                            r"category 'purple'; the run knows: blue, green, red$"):
        spec.read(tmp_path / "new.csv")
    df.drop(columns="size").to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataFileError, match=r"new.csv: no column 'size'; the run was trained on columns id, size, "
                                            r"colour, count"):
        spec.read(tmp_path / "new.csv")
    df = _table()
    df["size"] = df["size"].astype(str)
    df.loc[2, "size"] = "big"
    df.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataFileError, match=r"column 'size', row 3 \(line 4 of the file\): 'big' is not a number"):
        spec.read(tmp_path / "new.csv")


TABLE_ERRORS = [
    ("missing target key", {"target": None}, r"data.target: a value is required for a table: the column to "
                                             r"predict \(columns of t.csv: id, size, colour, count, kind\)"),
    ("missing target column", {"target": "label"}, r"data.target: t.csv has no column 'label'; its columns: id, "
                                                   r"size, colour, count, kind$"),
    ("unknown feature", {"features": ["size", "weight"]}, r"data.features: t.csv has no column 'weight'"),
    ("target as feature", {"features": ["size", "kind"]}, r"data.features: the target column 'kind' cannot be a "
                                                          r"feature too"),
    ("categorical outside", {"features": ["size"], "categorical": ["colour"]},
     r"data.categorical: 'colour' is not among the features \(size\)"),
    ("both name and path", {"name": "iris"}, r"data: give data.name \(a built-in data set\) or data.path \(your "
                                             r"own data\), not both"),
    ("npy key on a table", {"target_path": "y.npy"}, r"data.target_path: does not apply to csv data \(only to: "
                                                     r"npy\)"),
    ("image key on a table", {"image_size": [8, 8]}, r"data.image_size: does not apply to csv data"),
    ("unknown format", {"format": "xlsx"}, r"data.format: 'xlsx' is not one of: csv, tsv, parquet, jsonl, npy, npz, "
                                           r"imagefolder, text"),
]


@pytest.mark.parametrize("what,changes,message", TABLE_ERRORS, ids=[e[0] for e in TABLE_ERRORS])
def test_table_config_errors(tmp_path, what, changes, message):
    _table().to_csv(tmp_path / "t.csv", index=False)
    data = {"path": "t.csv", "target": "kind", **changes}
    with pytest.raises(rgconfig.ConfigError, match=message):
        build_data(_data(tmp_path, **{k: v for k, v in data.items() if v is not None}), 0)


def test_missing_value_names_column_and_row(tmp_path):
    df = _table()
    df.loc[6, "colour"] = None
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataFileError, match=r"t.csv: missing value in column 'colour', row 7 \(line 8 of the file\);"
                                            r" fill it in or drop the row$"):
        build_data(_data(tmp_path, path="t.csv", target="kind"), 0)
    df = _table()
    df["kind"] = df["kind"].astype(object)
    df.loc[0, "kind"] = None
    df.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataFileError, match=r"t.parquet: missing value in column 'kind', row 1;"):
        _data(tmp_path, path="t.parquet", target="kind")


def test_path_errors(tmp_path):
    with pytest.raises(rgconfig.ConfigError, match=r"data.path: '.*nope.csv' not found \(relative paths are "
                                                   r"relative to the config's folder"):
        _data(tmp_path, path="nope.csv", target="y")
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(rgconfig.ConfigError, match=r"data.path: '.*t.xlsx': unknown suffix '.xlsx'; expected a "
                                                   r"folder of images or a file ending in .csv, .tsv"):
        _data(tmp_path, path="t.xlsx")
    with pytest.raises(rgconfig.ConfigError, match=r"data.name: a value is required; one of: fashion_mnist, .*; "
                                                   r"or set data.path to your own data"):
        _data(tmp_path)
    with pytest.raises(rgconfig.ConfigError, match=r"data.target: only for your own data \(data.path\), not for "
                                                   r"data.name = 'iris'"):
        _data(tmp_path, name="iris", target="y")
    with pytest.raises(rgconfig.ConfigError, match=r"data.root: only for fashion_mnist \(the other built-in sets "
                                                   r"come with installed packages\), not 'iris'"):
        _data(tmp_path, name="iris", root="somewhere")


# ---------------------------------------------------------------------- arrays
def test_npz_features_with_a_test_split_and_npy_pairs(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    xt, yt = rng.normal(size=(10, 4)), rng.integers(0, 3, 10)
    np.savez(tmp_path / "a.npz", x=x, y=y, x_test=xt, y_test=yt)
    data = _data(tmp_path, path="a.npz")
    bundle = build_data(data, 0)
    assert bundle.inputs.kind == "features" and bundle.inputs.classes == ["0", "1", "2"]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (45, 5, 10)
    np.testing.assert_array_equal(bundle.test.arrays[1], yt)
    np.testing.assert_array_equal(bundle.test.arrays[0], bundle.inputs.standardize(xt.astype(np.float32)))
    got, ids = bundle.inputs.read(tmp_path / "a.npz")  # key x
    assert ids == [str(i) for i in range(50)]
    assert _rows(got) == sorted(_rows(bundle.train.arrays[0]) + _rows(bundle.val.arrays[0]))
    assert "test_fraction" not in rgconfig.dumps({**BASE, "data": data})
    # .npy: x in data.path, y in data.target_path
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    b2 = build_data(_data(tmp_path, path="x.npy", target_path="y.npy"), 0)
    assert len(b2.train) + len(b2.val) + len(b2.test) == 50 and b2.inputs.shape == [4]
    assert _rows(b2.inputs.read(tmp_path / "x.npy")[0]) == _all_rows(b2)


ARRAY_ERRORS = [
    ("mismatched lengths", lambda p: np.savez(p / "a.npz", x=np.zeros((5, 2)), y=np.zeros(4, int)),
     {"path": "a.npz"}, r"a.npz: x and y differ in length: 5 samples and 4 targets$"),
    ("no y", lambda p: np.savez(p / "a.npz", x=np.zeros((5, 2))), {"path": "a.npz"},
     r"a.npz: no array 'y'"),
    ("x_test alone", lambda p: np.savez(p / "a.npz", x=np.zeros((5, 2)), y=np.zeros(5, int), x_test=np.zeros((2, 2))),
     {"path": "a.npz"}, r"a.npz: has x_test without y_test; give both or neither$"),
    ("npy without targets", lambda p: np.save(p / "x.npy", np.zeros((5, 2))), {"path": "x.npy"},
     r"data.target_path: a value is required with a .npy data.path"),
    ("npy lengths", lambda p: (np.save(p / "x.npy", np.zeros((5, 2))), np.save(p / "y.npy", np.zeros(6, int))),
     {"path": "x.npy", "target_path": "y.npy"}, r"x.npy and y.npy: x and y differ in length: 5 samples and 6"),
]


@pytest.mark.parametrize("what,write,data,message", ARRAY_ERRORS, ids=[e[0] for e in ARRAY_ERRORS])
def test_array_errors(tmp_path, what, write, data, message):
    write(tmp_path)
    with pytest.raises(rgconfig.ConfigError, match=message):
        build_data(_data(tmp_path, **data), 0)


def test_npz_images_scaled_and_regression_arrays(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 6, 5), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=x, y=np.array(["a", "b", "c"])[rng.integers(0, 3, 30)])
    data = _data(tmp_path, path="img.npz")
    bundle = build_data(data, 0)
    assert bundle.in_shape == (1, 6, 5) and bundle.inputs.kind == "images" and bundle.inputs.classes == ["a", "b", "c"]
    assert _rows(np.divide(x, 255, dtype=np.float32)) == _all_rows(bundle)
    assert _rows(bundle.inputs.read(tmp_path / "img.npz")[0]) == _all_rows(bundle)
    text = rgconfig.dumps({**BASE, "data": data})
    assert "augment = false" in text and "standardize" not in text
    np.savez(tmp_path / "r.npz", x=rng.normal(size=(20, 3)), y=rng.normal(size=(20, 2)))
    b = build_data(_data(tmp_path, path="r.npz"), 0)
    assert b.task == "regression" and b.num_outputs == 2 and b.inputs.outputs == ["y"]


# ---------------------------------------------------------------------- image folders
def _png(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)


def test_image_folder_has_torchvisions_semantics(tmp_path):
    _png(tmp_path / "dog" / "b.png", np.full((4, 4), 10), "L")
    _png(tmp_path / "dog" / "A.PNG", np.full((4, 4), 20), "L")
    _png(tmp_path / "cat" / "sub" / "x.jpg", np.zeros((4, 4, 3)), "RGB")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert ds.samples == [(str(tmp_path / "cat" / "sub" / "x.jpg"), 0), (str(tmp_path / "dog" / "A.PNG"), 1),
                          (str(tmp_path / "dog" / "b.png"), 1)]
    assert ds.targets == [0, 1, 1] and ds.imgs == ds.samples and ".png" in ds.extensions and len(ds) == 3
    img, target = ds[1]
    assert img.mode == "RGB" and img.size == (4, 4) and target == 1 and np.asarray(img)[0, 0].tolist() == [20] * 3
    arr, _ = ImageFolder(tmp_path, transform=load_image)[2]
    np.testing.assert_array_equal(arr, np.full((3, 4, 4), np.float32(10) / np.float32(255)))
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder in"):
        ImageFolder(tmp_path / "dog")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes empty. Supported extensions"):
        ImageFolder(tmp_path)


def test_load_image_known_pixels_resize_and_channels(tmp_path):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    _png(tmp_path / "c.png", rgb, "RGB")
    a = load_image(tmp_path / "c.png")
    assert a.shape == (3, 2, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, np.divide(rgb.transpose(2, 0, 1), 255, dtype=np.float32))
    gray = load_image(tmp_path / "c.png", channels=1)
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.float32) / np.float32(255)
    np.testing.assert_array_equal(gray, expected[None])
    small = load_image(tmp_path / "c.png", size=(1, 2))
    resized = np.asarray(Image.fromarray(rgb, "RGB").resize((2, 1), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(small, (resized / np.float32(255)).transpose(2, 0, 1))


def test_image_folder_config_splits_sizes_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("circle", "square"):
            for i in range(n):
                _png(tmp_path / "imgs" / split / c / f"{i}.png", rng.integers(0, 256, (5, 7)), "L")
    data = _data(tmp_path, path="imgs")
    assert data["format"] == "imagefolder" and data["task"] is None
    bundle = build_data(data, 0)
    assert data["image_size"] == [5, 7] and data["channels"] == 1
    assert bundle.in_shape == (1, 5, 7) and bundle.inputs.classes == ["circle", "square"] and len(bundle.test) == 4
    text = rgconfig.dumps({**BASE, "data": data})
    assert "image_size = [5, 7]" in text and "channels = 1" in text and "test_fraction" not in text
    x, ids = bundle.inputs.read(tmp_path / "imgs" / "test")
    assert ids == ["circle/0.png", "circle/1.png", "square/0.png", "square/1.png"]
    np.testing.assert_array_equal(x, bundle.test.arrays[0])
    one, ids = bundle.inputs.read(tmp_path / "imgs" / "test" / "square" / "1.png")
    np.testing.assert_array_equal(one, x[3:])
    assert ids == ["1.png"]
    # sizes that differ need data.image_size; an RGB image among grayscale ones makes all RGB
    _png(tmp_path / "imgs" / "train" / "circle" / "big.png", rng.integers(0, 256, (8, 8, 3)), "RGB")
    with pytest.raises(DataFileError, match=r"data.path: images differ in size: .*0.png is 5x7, .*big.png is 8x8 "
                                            r"\(height x width\); set data.image_size = \[H, W\]"):
        build_data(_data(tmp_path, path="imgs"), 0)
    data = _data(tmp_path, path="imgs", image_size=[4, 4])
    bundle = build_data(data, 0)
    assert bundle.in_shape == (3, 4, 4) and data["channels"] == 3


def test_image_folder_errors(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataFileError, match=r"data.path: .*imgs: Couldn't find any class folder in .*imgs. "
                                            r"\(expected one folder per class holding image files"):
        build_data(_data(tmp_path, path="imgs"), 0)
    (tmp_path / "imgs" / "a").mkdir()
    with pytest.raises(DataFileError, match=r"Found no valid file for the classes a"):
        build_data(_data(tmp_path, path="imgs"), 0)


# ---------------------------------------------------------------------- text
def test_text_file_for_a_char_model(tmp_path):
    text = "to be or not to be, that is the question.\n" * 5
    (tmp_path / "t.txt").write_text(text)
    data = _data(tmp_path, path="t.txt", block_size=8)
    bundle = build_data(data, 0)
    vocab = sorted(set(text))
    assert bundle.vocab.itos == vocab and bundle.num_classes == len(vocab) and bundle.in_shape == (8,)
    assert bundle.task == "language_model" and bundle.test is None
    cut = int(len(text) * 0.9)
    assert len(bundle.train) == cut - 8 and len(bundle.val) == len(text) - cut - 8
    x, y = bundle.train[3]
    assert bundle.vocab.decode(x) == text[3:11] and bundle.vocab.decode(y) == text[4:12]
    (tmp_path / "p.txt").write_text("not to be")
    ids, names = bundle.inputs.read(tmp_path / "p.txt")
    assert ids.dtype == np.int64 and ids.shape == (1, 8) and bundle.vocab.decode(ids[0]) == "ot to be"
    assert names == ["p.txt"]
    (tmp_path / "p.txt").write_text("Zebra")
    with pytest.raises(DataFileError, match=r"p.txt: characters not in the run's vocabulary: 'Z'$"):
        bundle.inputs.read(tmp_path / "p.txt")
    text_cfg = rgconfig.dumps({**BASE, "data": data})
    assert "block_size = 8" in text_cfg and "test_fraction" not in text_cfg and "augment" not in text_cfg
    (tmp_path / "s.txt").write_text("abc")
    with pytest.raises(DataFileError, match=r"the train part has 2 characters, too few for block_size=8"):
        build_data(_data(tmp_path, path="s.txt", block_size=8), 0)


# ---------------------------------------------------------------------- presets: InputSpec and resolved keys
def test_preset_input_specs_read_raw_inputs_as_training_did(tmp_path):
    from sklearn.datasets import load_iris, load_digits

    base = {"name": "iris"}
    bundle = build_data(_data(tmp_path, **base), 0)
    spec = InputSpec.from_dict(json.loads(json.dumps(bundle.inputs.to_dict())))
    assert spec.classes == ["setosa", "versicolor", "virginica"] and spec.columns[0] == "sepal length (cm)"
    iris = load_iris(as_frame=True).frame
    iris.to_csv(tmp_path / "iris.csv", index=False)
    x, _ = spec.read(tmp_path / "iris.csv")  # the target column is ignored, features picked by name
    assert _rows(x) == _all_rows(bundle)
    np.save(tmp_path / "iris.npy", load_iris().data)
    assert _rows(spec.read(tmp_path / "iris.npy")[0]) == _all_rows(bundle)
    digits = build_data(_data(tmp_path, name="digits", images=True), 0)
    assert digits.inputs.scale == 16.0 and digits.inputs.shape == [1, 8, 8]
    np.save(tmp_path / "d.npy", load_digits().images)  # raw pixels 0-16, (N, 8, 8)
    assert _rows(digits.inputs.read(tmp_path / "d.npy")[0]) == _all_rows(digits)


def test_mnist_5k_spec_reads_raw_uint8_images(tmp_path):
    bundle = build_data(_data(tmp_path, name="mnist_5k", train_samples=100), 0)
    spec = bundle.inputs
    assert spec.kind == "images" and spec.shape == [1, 28, 28] and spec.classes == [str(d) for d in range(10)]
    raw = np.rint(bundle.test.arrays[0][:, 0] * 255).astype(np.uint8)  # (N, 28, 28) as a user has them
    np.save(tmp_path / "raw.npy", raw)
    np.testing.assert_array_equal(spec.read(tmp_path / "raw.npy")[0], bundle.test.arrays[0])
    _png(tmp_path / "one.png", raw[0], "L")
    np.testing.assert_array_equal(spec.read(tmp_path / "one.png")[0], bundle.test.arrays[0][:1])


FULL_OLD_DATA = {"batch_size": 64, "val_fraction": 0.1, "test_fraction": 0.2, "augment": False, "images": False,
                 "block_size": 64}


@pytest.mark.parametrize("name,kept,dropped", [
    ("fashion_mnist", ["augment"], ["test_fraction", "block_size", "images", "standardize"]),
    ("mnist_5k", ["test_fraction", "augment"], ["block_size", "images", "standardize"]),
    ("digits", ["test_fraction", "augment", "images"], ["block_size"]),
    ("iris", ["test_fraction"], ["block_size", "images", "augment"]),
    ("shakespeare", ["block_size"], ["test_fraction", "augment", "images"]),
])
def test_resolved_config_keeps_only_keys_that_apply(name, kept, dropped):
    """A run folder's config.toml from before had every key: it still validates, and is written back tidy."""
    cfg = rgconfig.validate({**BASE, "data": {"name": name, **FULL_OLD_DATA}})
    data = rgconfig.tomllib.loads(rgconfig.dumps(cfg))["data"]
    assert all(k in data for k in kept) and not any(k in data for k in dropped), data
    assert data["name"] == name and data["batch_size"] == 64


def test_data_root_is_where_fashion_mnist_is_read(tmp_path):
    data = _data(tmp_path, name="fashion_mnist", root="fm")
    assert data["root"] == str(tmp_path / "fm")
    with pytest.raises(rg.data.DataNotInstalledError, match=r"fm/train-images-idx3-ubyte\(.gz\) not found; .*or "
                                                           r"point data.root in a config, or root= in Python"):
        build_data(data, 0)


def test_a_separate_test_table(tmp_path):
    df = _table(80)
    df[:60].to_csv(tmp_path / "train.csv", index=False)
    test = df[60:].copy()
    test.loc[test.index[0], "colour"] = "black"  # a category only the test file has
    test.to_parquet(tmp_path / "test.parquet")
    data = _data(tmp_path, path="train.csv", target="kind", test_path="test.parquet")
    assert data["test_path"] == str(tmp_path / "test.parquet")
    bundle = build_data(data, 0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (54, 6, 20)
    assert bundle.inputs.categorical["colour"] == ["black", "blue", "green", "red"]
    x, _ = bundle.inputs.read(tmp_path / "test.parquet")
    np.testing.assert_array_equal(x, bundle.test.arrays[0])
    np.testing.assert_array_equal(bundle.test.arrays[1], (test["kind"] == "dog").to_numpy().astype(np.int64))
    text = rgconfig.dumps({**BASE, "data": data})
    assert "test_path = " in text and "test_fraction" not in text
    test.drop(columns="kind").to_csv(tmp_path / "t2.csv", index=False)
    with pytest.raises(DataFileError, match=r"data.test_path: .*t2.csv has no column 'kind'; it needs the columns "
                                            r"of train.csv"):
        build_data(_data(tmp_path, path="train.csv", target="kind", test_path="t2.csv"), 0)


def test_input_spec_read_and_from_dict_errors(tmp_path):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    spec = build_data(_data(tmp_path, path="t.csv", target="kind"), 0).inputs
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(DataFileError, match=r"input: '.*x.xlsx': unknown suffix '.xlsx'; expected a folder of "
                                            r"images, an image file \(.jpg"):
        spec.read(tmp_path / "x.xlsx")
    np.save(tmp_path / "x.npy", np.zeros((2, 6)))
    with pytest.raises(DataFileError, match=r"x.npy: this run was trained on a table \(.*t.csv\); give a CSV file "
                                            r"with columns id, size, colour, count$"):
        spec.read(tmp_path / "x.npy")
    with pytest.raises(DataFileError, match=r"nope.csv: no such file or folder"):
        spec.read(tmp_path / "nope.csv")
    images = InputSpec("images", shape=[1, 2, 2], source="mnist_5k")
    with pytest.raises(DataFileError, match=r"t.csv: this run was trained on images of shape \(1, 2, 2\) "
                                            r"\(mnist_5k\), not a table"):
        images.read(tmp_path / "t.csv")
    np.save(tmp_path / "i.npy", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(DataFileError, match=r"i.npy: expected images of shape \(N, 1, 2, 2\) or \(N, 2, 2\), got "
                                            r"\(3, 3, 3\)"):
        images.read(tmp_path / "i.npy")
    with pytest.raises(ValueError, match=r"InputSpec.from_dict: unknown keys \['colour'\]"):
        InputSpec.from_dict({"kind": "table", "colour": 1})
    with pytest.raises(ValueError, match=r"InputSpec.from_dict: version 2 is not supported"):
        InputSpec.from_dict({"kind": "table", "version": 2})
    with pytest.raises(ValueError, match=r"InputSpec: kind 'audio' is not one of: table, features, images, text"):
        InputSpec.from_dict({"kind": "audio"})
