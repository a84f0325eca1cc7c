"""Transfer learning in configs (retrograd.train.transfer): [model] init_from starts from another run's
weights with a new head, trainable_layers freezes the layers below the top ones of any model, and
unfreeze_every schedules GradualUnfreezing; every bad value is refused naming the key."""
import shutil

import numpy as np
import pytest

import retrograd as rg
from retrograd.models.finetune import num_layers, set_trainable_layers, weight_layers
from retrograd.train import config, recipe
from retrograd.train.config import ConfigError
from retrograd.train.predict import load_run
from retrograd.train.transfer import init_from, resolve_source

CNN = {"name": "cnn", "channels": [4, 8], "input_size": 8, "padding": 1}


def _cfg(tmp_path, name, model=None, epochs=1, **train):
    return config.validate({
        "model": {**CNN, **(model or {})},
        "data": {"name": "digits", "images": True, "batch_size": 64, "train_samples": 256, "val_samples": 64},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"epochs": epochs, "seed": 0, "progress": False, **train},
        "run": {"dir": str(tmp_path / "runs"), "name": name}}, config_path=tmp_path / f"{name}.toml")


def _train(cfg, tmp_path, callbacks=()):
    setup = recipe.prepare(cfg)
    run_dir = tmp_path / "runs" / cfg["run"]["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(config.dumps(cfg))  # the resolved config, as retrograd train writes it
    trainer = recipe.make_trainer(setup, run_dir, quiet=True, extra_callbacks=callbacks)
    trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"])
    return setup.model, run_dir


@pytest.fixture
def source(tmp_path):
    model, run_dir = _train(_cfg(tmp_path, "src"), tmp_path)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}, run_dir


def _state(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_weight_layers_group_norms_with_their_layer_and_set_trainable_layers_counts_below_the_head():
    m = rg.models.CNN(channels=(4, 8), input_size=8, padding=1, batchnorm=True)
    assert weight_layers(m) == [["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias"],
                                ["net.4.weight", "net.4.bias", "net.5.weight", "net.5.bias"],
                                ["net.9.weight", "net.9.bias"]]
    assert num_layers(m) == 2
    assert set_trainable_layers(m, 1) == [1, 2]
    assert [n for n, p in m.named_parameters() if p.requires_grad] == weight_layers(m)[1] + weight_layers(m)[2]
    assert set_trainable_layers(m, 0) == [2]
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["net.9.weight", "net.9.bias"]
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 2\] \(CNN has 2 layers with parameters below"):
        set_trainable_layers(m, 3)


def test_init_from_copies_all_but_the_new_head(source, tmp_path):
    src, run_dir = source
    cfg = _cfg(tmp_path, "dst", {"init_from": "runs/src"})
    assert cfg["model"]["init_from"] == str(run_dir)  # made absolute, relative to the config's folder
    got = _state(recipe.prepare(cfg).model)
    rg.manual_seed(0)
    fresh = _state(rg.models.CNN(in_channels=1, num_classes=10, channels=(4, 8), input_size=8, padding=1))
    for k in got:
        ref = fresh[k] if k.startswith("net.7.") else src[k]  # net.7 = the head Linear
        np.testing.assert_array_equal(got[k], ref, err_msg=k)
    assert not np.array_equal(src["net.7.weight"], fresh["net.7.weight"])
    kept = _state(recipe.prepare(_cfg(tmp_path, "dst2", {"init_from": "runs/src", "init_head": "keep"})).model)
    for k in kept:
        np.testing.assert_array_equal(kept[k], src[k], err_msg=k)


def test_init_from_takes_a_checkpoint_folder_or_a_safetensors_file(source, tmp_path):
    src, run_dir = source
    best = run_dir / "checkpoints" / "best"
    assert resolve_source(run_dir) == best / "model.safetensors"
    assert resolve_source(run_dir / "checkpoints" / "last") == run_dir / "checkpoints" / "last" / "model.safetensors"
    rg.manual_seed(3)
    m = rg.models.CNN(channels=(4, 8), input_size=8, padding=1)
    report = init_from(m, best / "model.safetensors", head="keep")
    assert report["kept"] == [] and len(report["copied"]) == 6
    np.testing.assert_array_equal(m.net[0].weight.detach().numpy(), src["net.0.weight"])


def test_init_from_errors_name_what_does_not_fit(source, tmp_path):
    _, run_dir = source
    with pytest.raises(ConfigError, match=r"model.init_from: .*nowhere' not found"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "nowhere"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is neither a run folder with checkpoints/best or checkpoints/last"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "empty"}))
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file but not a .safetensors file"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "w.npz"}))
    with pytest.raises(ConfigError, match=r"init_from: .* does not fit CNN: another shape: net.0.weight "
                                          r"\(4, 1, 3, 3\) \(the model's: \(6, 1, 3, 3\)\)"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "runs/src", "channels": [6, 8]}))
    with pytest.raises(ConfigError, match=r"does not fit CNN: another shape: net.7.weight \(10, 32\) \(the model's: "
                                          r"\(5, 32\)\); net.7.bias"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "runs/src", "hidden": [5]}))
    with pytest.raises(ConfigError, match=r"does not fit CNN: missing net.9.weight, net.9.bias; another shape: "
                                          r"net.7.weight.*\(init_head = 'new' leaves the head out\)"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "runs/src", "init_head": "keep", "hidden": [5]}))
    # a checkpoint whose files changed is refused before it is read
    (run_dir / "checkpoints" / "best" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"model.init_from: .*model.safetensors"):
        recipe.prepare(_cfg(tmp_path, "x", {"init_from": "runs/src"}))


@pytest.mark.parametrize("model, message", [
    ({"init_head": "new"}, "model.init_head: only with model.init_from"),
    ({"init_from": "runs/src", "init_head": "old"}, "model.init_head: expected 'new' or 'keep', got 'old'"),
    ({"trainable_layers": -2}, r"model.trainable_layers: expected an int >= -1, got -2"),
    ({"trainable_layers": 1.5}, r"model.trainable_layers: expected an int >= -1, got 1.5"),
    ({"unfreeze_every": 1}, r"model.unfreeze_every: needs model.trainable_layers >= 0"),
    ({"trainable_layers": 0, "unfreeze_every": 0}, r"model.unfreeze_every: expected an int >= 1, got 0"),
    ({"init_from": 3}, r"model.init_from: expected a path"),
])
def test_bad_transfer_keys_are_refused(source, tmp_path, model, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, "x", model)


def test_trainable_layers_out_of_range_is_refused_when_the_model_is_built(tmp_path):
    with pytest.raises(ConfigError, match=r"model.trainable_layers: CNN has 2 layers below its head; expected -1 "
                                          r"\(all\) or 0-2, got 3"):
        recipe.prepare(_cfg(tmp_path, "x", {"trainable_layers": 3}))


def test_frozen_layers_stay_bit_for_bit_and_the_run_reloads(source, tmp_path):
    src, _ = source
    model, run_dir = _train(_cfg(tmp_path, "dst", {"init_from": "runs/src", "trainable_layers": 1}), tmp_path)
    after = _state(model)
    np.testing.assert_array_equal(after["net.0.weight"], src["net.0.weight"])  # frozen
    np.testing.assert_array_equal(after["net.0.bias"], src["net.0.bias"])
    assert not np.array_equal(after["net.3.weight"], src["net.3.weight"])     # the top conv trains
    # load_run rebuilds the model without reading the source run again
    (tmp_path / "runs" / "src" / "checkpoints" / "best" / "model.safetensors").unlink()
    run = load_run(run_dir, "last")
    for k, v in run.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), after[k], err_msg=k)


def test_unfreeze_every_unfreezes_one_layer_per_period_and_resumes_bit_identical(source, tmp_path):
    seen = []

    class Record(rg.train.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append([n for n, p in trainer.model.named_parameters() if p.requires_grad])

    keys = {"init_from": "runs/src", "trainable_layers": 0, "unfreeze_every": 2}
    model, _ = _train(_cfg(tmp_path, "full", keys, epochs=5), tmp_path, [Record()])
    head, top, bottom = ["net.7.weight", "net.7.bias"], ["net.3.weight", "net.3.bias"], ["net.0.weight", "net.0.bias"]
    assert seen == [head, head, top + head, top + head, bottom + top + head]
    # stopped after 3 epochs and resumed to 5: the same weights, bit for bit
    cfg = _cfg(tmp_path, "part", keys, epochs=3)
    _, run_dir = _train(cfg, tmp_path)
    shutil.rmtree(tmp_path / "runs" / "src")  # resume does not read init_from again
    cfg5 = _cfg(tmp_path, "part", keys, epochs=5)
    setup = recipe.prepare(cfg5, init_weights=False)
    trainer = recipe.make_trainer(setup, run_dir, quiet=True)
    trainer.fit(setup.train_loader, setup.val_loader, epochs=5,
                resume_from=str(run_dir / "checkpoints" / "last"))
    full, resumed = _state(model), _state(setup.model)
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k], err_msg=k)
