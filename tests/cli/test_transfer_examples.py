"""The transfer examples run in a short form: examples/transfer_mnist.py (a CNN pretrained on a few
Fashion-MNIST images, fine-tuned on MNIST digits with few labels: results.json and the plot) and
examples/shakespeare_genre.py's validation-based selection (TF-IDF and a small BERT from scratch).
The full runs are the README's figures."""
import json
import math
import os
import pathlib
import subprocess
import sys

from cli_helpers import EXAMPLES

import retrograd as rg

ENV = {**os.environ, "PYTHONPATH": str(pathlib.Path(rg.__file__).resolve().parents[1]), "MPLBACKEND": "Agg"}


def test_transfer_mnist_short(tmp_path):
    p = subprocess.run([sys.executable, str(EXAMPLES / "transfer_mnist.py"), "--labels", "2,5", "--seeds", "0,1",
                        "--steps", "3", "--pretrain-samples", "300", "--pretrain-epochs", "1",
                        "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600, env=ENV)
    assert p.returncode == 0, p.stderr
    out = json.loads((tmp_path / "results.json").read_text())
    runs = out["runs"]
    assert sorted({(r["method"], r["labels_per_class"], r["seed"]) for r in runs}) == sorted(
        (m, k, s) for m in ("scratch", "finetune", "frozen") for k in (2, 5) for s in (0, 1))
    assert all(r["train_images"] == 10 * r["labels_per_class"] and r["steps"] >= 3 for r in runs)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"]) for r in runs)
    # frozen: only the new head (1600 * 10 + 10 weights) trains
    assert {r["trainable_parameters"] for r in runs if r["method"] == "frozen"} == {16010}
    assert {r["trainable_parameters"] for r in runs if r["method"] != "frozen"} == {34826}
    assert (tmp_path / "runs" / "fashion_cnn" / "checkpoints" / "last" / "manifest.json").is_file()
    assert (tmp_path / "accuracy_vs_labels.png").stat().st_size > 10_000


def test_shakespeare_genre_short(tmp_path):
    out = tmp_path / "genre.json"
    p = subprocess.run([sys.executable, str(EXAMPLES / "shakespeare_genre.py"), "--methods", "tfidf,scratch",
                        "--train", "60", "--val", "30", "--test", "30", "--scratch-epochs", "2", "--max-len", "16",
                        "--no-tfidf-all", "--out", str(out)], capture_output=True, text=True, timeout=600, env=ENV)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["tfidf"]["C"] in (1.0, 10.0, 100.0) and r["tfidf"]["train_speeches"] == 60
    s = r["scratch"]
    assert len(s["val_accuracy_per_epoch"]) == 2 and s["val_accuracy"] == max(s["val_accuracy_per_epoch"])
    assert s["best_epoch"] == 1 + s["val_accuracy_per_epoch"].index(s["val_accuracy"])
