"""One table per kind: a data set, a loss or a model added to its table is accepted by config
validation and built by the recipe, with no other edit (the CLI, tune and Python all read them)."""
import numpy as np

import retrograd as rg
from retrograd.data.presets import PRESETS, DataPreset, build_data
from retrograd.models import MODELS
from retrograd.train import config as rgconfig
from retrograd.train import recipe
from retrograd.train.losses import LOSSES, NamedLoss

BLOBS = """
[model]
name = "tiny_linear"
in_features = 2
out_features = 3

[data]
name = "blobs"
batch_size = 16

[optim]
name = "sgd"
lr = 0.5

[train]
epochs = 5
loss = "cross_entropy_x2"
progress = false
"""


def _blobs(data: dict) -> tuple:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    centres = np.array([[0.0, 4.0], [4.0, 0.0], [-4.0, -4.0]])
    x = (centres[y] + rng.standard_normal((300, 2))).astype(np.float32)
    return x, y.astype(np.int64), None, None


class TinyLinear(rg.nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = rg.nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.fc(x)


def _register(monkeypatch):
    monkeypatch.setitem(PRESETS, "blobs", DataPreset(_blobs, standardize=False))
    monkeypatch.setitem(LOSSES, "cross_entropy_x2",
                        NamedLoss(lambda out, y: 2 * rg.nn.functional.cross_entropy(out, y), class_targets=True))
    monkeypatch.setitem(MODELS, "tiny_linear", TinyLinear)


def test_entries_added_to_the_tables_are_validated_and_built(monkeypatch):
    _register(monkeypatch)
    cfg = rgconfig.validate(rgconfig.tomllib.loads(BLOBS))
    data = build_data(cfg["data"], cfg["train"]["seed"])
    assert data.in_shape == (2,) and data.num_classes == 3
    assert (len(data.train), len(data.val), len(data.test)) == (216, 24, 60)  # 20% test, then 10% validation
    setup = recipe.prepare(cfg, data)
    assert isinstance(setup.model, TinyLinear)
    x, y = next(iter(setup.train_loader))
    expected = 2 * rg.nn.functional.cross_entropy(setup.model(x), y).item()
    assert np.isclose(setup.loss_fn(setup.model(x), y).item(), expected)
    history = recipe.make_trainer(setup, None, quiet=True).fit(setup.train_loader, setup.val_loader, epochs=5)
    assert history["val_accuracy"][-1] > 0.9  # three well separated blobs


def test_the_command_reads_the_same_tables(monkeypatch, write_config, run_cli):
    rc, _, err = run_cli("train", write_config(BLOBS), "--quiet")
    assert rc == 2 and "model.name: 'tiny_linear' is not one of: mlp, cnn, gpt, pretrained, or " in err
    _register(monkeypatch)
    rc, out, err = run_cli("train", write_config(BLOBS), "--quiet")
    assert rc == 0, err
    assert "tiny_linear on blobs with sgd" in out
