"""``data.labels_per_class``: a stratified training subset (the first N of a seeded permutation of
each class's training indices), the same for the same seed, with validation and test unchanged;
clear errors; a run with it resumes bit-exact."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.data.presets import build_data
from retrograd.train.config import ConfigError, validate

from cli_helpers import DIGITS_MLP


def _data(seed=0, **data):
    cfg = validate({"model": {"name": "mlp", "sizes": [64, 10]}, "data": {"name": "digits", **data}})
    return build_data(dict(cfg["data"]), seed), cfg


def test_class_counts_determinism_and_other_splits_unchanged():
    full, _ = _data()
    sub, cfg = _data(labels_per_class=7)
    assert cfg["data"]["labels_per_class"] == 7
    x, y = sub.train.arrays
    assert np.bincount(y, minlength=10).tolist() == [7] * 10
    fx, fy = full.train.arrays
    rows = {r.tobytes(): lbl for r, lbl in zip(fx, fy)}
    assert all(rows[r.tobytes()] == lbl for r, lbl in zip(x, y))  # a subset of the full training split
    for a, b in ((sub.val, full.val), (sub.test, full.test)):
        assert all(np.array_equal(p, q) for p, q in zip(a.arrays, b.arrays))
    again, _ = _data(labels_per_class=7)
    assert np.array_equal(again.train.arrays[0], x)
    other, _ = _data(seed=1, labels_per_class=7)
    assert not np.array_equal(other.train.arrays[0], x)
    # the first N of each class's permutation: a larger N keeps the smaller N's samples
    bigger = {r.tobytes() for r in _data(labels_per_class=20)[0].train.arrays[0]}
    assert {r.tobytes() for r in x} <= bigger


def test_errors_name_the_key_the_class_and_its_count():
    with pytest.raises(ConfigError, match="data.labels_per_class"):
        _data(labels_per_class=0)
    full, _ = _data()
    counts = np.bincount(full.train.arrays[1], minlength=10)
    c, n = int(np.argmin(counts)), int(counts.min()) + 1  # only the smallest class falls short
    with pytest.raises(ConfigError, match=rf"data.labels_per_class: class {c} has {counts[c]} training samples, "
                                          rf"fewer than labels_per_class = {n}$"):
        _data(labels_per_class=n)
    assert np.bincount(_data(labels_per_class=n - 1)[0].train.arrays[1]).tolist() == [n - 1] * 10
    with pytest.raises(ConfigError, match="give data.labels_per_class or data.train_samples, not both"):
        _data(labels_per_class=5, train_samples=100)
    cfg = validate({"model": {"name": "gpt"}, "data": {"name": "shakespeare", "labels_per_class": 5}})
    with pytest.raises(ConfigError, match="data.labels_per_class: only for classification, not for the text set"):
        build_data(dict(cfg["data"]), 0)


def test_a_run_with_it_resumes_bit_exact(write_config, run_cli, tmp_path):
    text = DIGITS_MLP.replace('batch_size = 32', 'batch_size = 16\nlabels_per_class = 5')
    rc, _, err = run_cli("train", write_config(text.replace("epochs = 2", "epochs = 1"), "cut"), "--quiet")
    assert rc == 0, err
    rc, _, err = run_cli("resume", tmp_path / "runs" / "cut", "--epochs", "2", "--quiet")
    assert rc == 0, err
    rc, _, err = run_cli("train", write_config(text, "full"), "--quiet")
    assert rc == 0, err
    last = [rg.io.load_safetensors(tmp_path / "runs" / r / "checkpoints" / "last" / "model.safetensors")
            for r in ("cut", "full")]
    assert sorted(last[0]) == sorted(last[1])
    for k in last[0]:
        assert np.array_equal(np.asarray(last[0][k]), np.asarray(last[1][k])), k
    assert "labels_per_class = 5" in (tmp_path / "runs" / "cut" / "config.toml").read_text()
