"""Bad configs give messages that name the key and what is allowed; --set coerces types."""
import subprocess
import sys

import pytest
from cli_helpers import DIGITS_MLP, to_toml

from retrograd.train import config as rgconfig
from retrograd.train.config import ConfigError, tomllib  # tomli on Python 3.10


def _config(**changes) -> str:
    """DIGITS_MLP with ``section__key=value`` changes."""
    cfg = tomllib.loads(DIGITS_MLP)
    for sk, v in changes.items():
        section, key = sk.split("__")
        cfg.setdefault(section, {})[key] = v
    return to_toml(cfg)


BAD = [
    ("optim.name", {"optim__name": "adamm"},
     "optim.name: 'adamm' is not one of: sgd, momentum, nesterov, adam, adamw, "),
    ("unknown data key", {"data__batchsize": 32},
     "data.batchsize: unknown key; known keys for [data]: name, batch_size, eval_batch_size, val_fraction"),
    ("int type", {"train__epochs": 'ten'}, "train.epochs: expected an int, got 'ten' (str)"),
    ("unknown section", {"trainer__epochs": 3},
     "config: unknown section [trainer]; known sections: model, data, optim, schedule, train, run"),
    ("unknown model kwarg", {"model__hidden": [32]},
     "model.hidden: unknown key for model 'mlp'; known keys: name, sizes, activation, batchnorm, dropout, init"),
    ("optimizer kwarg", {"optim__momentum": 0.9},
     "optim.momentum: unknown key for optimizer Adam; known keys: name, lr, betas, eps, weight_decay, amsgrad"),
    ("optimizer kwarg type", {"optim__lr": 'fast'}, "optim.lr: expected a number, got 'fast' (str)"),
    ("bool type", {"train__progress": 1}, "train.progress: expected true or false, got 1 (int)"),
    ("data name", {"data__name": 'cifar10'},
     "data.name: 'cifar10' is not one of: fashion_mnist, mnist_5k, digits, iris, breast_cancer, wine, shakespeare"),
    ("loss name", {"train__loss": 'hinge'},
     "train.loss: 'hinge' is not one of: cross_entropy, nll, mse, l1, smooth_l1, huber, bce_with_logits"),
    ("metric name", {"train__metrics": ['acuracy']}, "train.metrics[0]: 'acuracy' is not one of: accuracy, "),
    ("schedule name", {"schedule__name": 'cosine'}, "schedule.name: 'cosine' is not one of: StepLR, MultiStepLR"),
    ("schedule kwarg", {"schedule__name": 'StepLR', "schedule__step": 3},
     "schedule.step: unknown key for schedule 'StepLR'; known keys: name, step_size, gamma"),
    ("monitor", {"train__monitor": "val_acc"},
     "train.monitor: 'val_acc' is not one of: train_loss, val_loss, val_accuracy"),
    ("monitor without validation", {"data__val_fraction": 0.0},
     "train.monitor: 'val_loss' needs validation data (data.val_fraction > 0); use 'train_loss'"),
    ("val_fraction range", {"data__val_fraction": 1.5}, "data.val_fraction: must be in [0, 1), got 1.5"),
    ("model name", {"model__name": 'resnet'}, "model.name: 'resnet' is not one of: mlp, cnn, gpt, pretrained, or "
     "'path/to/file.py:ClassName'"),
]


@pytest.mark.parametrize("what,changes,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_messages(what, changes, message, write_config, run_cli):
    rc, out, err = run_cli("train", write_config(_config(**changes)), "--quiet")
    assert rc == 2
    assert err.startswith("retrograd train: error: ") and message in err, err
    assert "Traceback" not in err


def test_schedule_missing_required_argument(write_config, run_cli):
    rc, _, err = run_cli("train", write_config(_config(schedule__name="StepLR")), "--quiet")
    assert rc == 2 and "schedule.step_size: a value is required for StepLR (required: step_size)" in err


def test_mlp_sizes_must_fit_the_data(write_config, run_cli):
    rc, _, err = run_cli("train", write_config(DIGITS_MLP.replace("[64, 64, 10]", "[784, 64, 10]")), "--quiet")
    assert rc == 2 and "model.sizes: the first size must be the input size of digits (64 features), got 784" in err
    rc, _, err = run_cli("train", write_config(DIGITS_MLP.replace("[64, 64, 10]", "[64, 64, 3]")), "--quiet")
    assert rc == 2 and "model.sizes: the last size must be the number of classes of digits (10 classes), got 3" in err


def test_set_errors(write_config, run_cli):
    rc, _, err = run_cli("train", write_config(), "--set", "optim.lr")
    assert rc == 2 and "--set 'optim.lr': expected section.key=value, e.g. optim.lr=0.01" in err
    rc, _, err = run_cli("train", write_config(), "--set", "optimizer.lr=0.1")
    assert rc == 2 and "--set 'optimizer.lr=0.1': unknown section [optimizer]; known sections: model, data" in err
    rc, _, err = run_cli("train", write_config(), "--set", "data.batch_size=1.5")
    assert rc == 2 and "data.batch_size: expected an int, got 1.5 (float)" in err
    rc, _, err = run_cli("train", write_config(), "--set", "data.batch_size=lots")
    assert rc == 2 and "data.batch_size: expected an int, got 'lots' (str)" in err


@pytest.mark.parametrize("text,expected", [
    ("optim.lr=0.01", ("optim", "lr", 0.01)),
    ("optim.lr=1e-3", ("optim", "lr", 0.001)),
    ("train.epochs=3", ("train", "epochs", 3)),
    ("train.progress=false", ("train", "progress", False)),
    ("model.sizes=[64, 32, 10]", ("model", "sizes", [64, 32, 10])),
    ("optim.betas=[0.9,0.95]", ("optim", "betas", [0.9, 0.95])),
    ("optim.name=adamw", ("optim", "name", "adamw")),
    ('run.name="my run"', ("run", "name", "my run")),
    ("data.name = digits", ("data", "name", "digits")),
])
def test_parse_override_reads_toml_values(text, expected):
    assert rgconfig.parse_override(text) == expected


def test_override_coercion_against_the_schema():
    raw = rgconfig.apply_overrides(rgconfig.load_config(_digits_file()), [
        "optim.lr=1", "train.grad_clip=2", "train.grad_clip=none", "optim.weight_decay=0", "data.val_fraction=0",
        "train.monitor=train_loss"])
    cfg = rgconfig.validate(raw)
    assert cfg["optim"]["lr"] == 1 and cfg["train"]["grad_clip"] is None
    assert cfg["data"]["val_fraction"] == 0.0 and isinstance(cfg["data"]["val_fraction"], float)
    # an int where the schema says float becomes a float; where the signature says float, a number is kept
    assert isinstance(rgconfig.validate(rgconfig.apply_overrides(raw, ["train.label_smoothing=0"]))
                      ["train"]["label_smoothing"], float)
    with pytest.raises(ConfigError, match=r"train.epochs: expected an int, got True \(bool\)"):
        rgconfig.validate(rgconfig.apply_overrides(raw, ["train.epochs=true"]))


_DIGITS_PATH = []


def _digits_file():
    import pathlib
    import tempfile
    if not _DIGITS_PATH:
        d = pathlib.Path(tempfile.mkdtemp())
        (d / "digits.toml").write_text(DIGITS_MLP)
        _DIGITS_PATH.append(d / "digits.toml")
    return _DIGITS_PATH[0]


def test_resolved_config_round_trips_through_toml():
    cfg = rgconfig.validate(rgconfig.apply_overrides(rgconfig.load_config(_digits_file()), [
        "optim.betas=[0.8, 0.9]", 'run.name="a \\"quoted\\" name"', "train.metrics=['accuracy', 'f1']"]))
    from retrograd.train.config import tomllib
    again = rgconfig.validate(tomllib.loads(rgconfig.dumps(cfg)))
    assert again == cfg and again["optim"]["betas"] == [0.8, 0.9] and again["run"]["name"] == 'a "quoted" name'


def test_command_line_entry_point_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(DIGITS_MLP.replace('name = "adam"', 'name = "adamm"'))
    p = subprocess.run([sys.executable, "-m", "retrograd.cli", "train", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("retrograd train: error: optim.name: 'adamm' is not one of: sgd, momentum")
    p = subprocess.run([sys.executable, "-m", "retrograd.cli", "train", str(tmp_path / "missing.toml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and f"config: file '{tmp_path / 'missing.toml'}' not found" in p.stderr
    bad.write_text("[model\nname = 1")
    p = subprocess.run([sys.executable, "-m", "retrograd.cli", "train", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and f"config: {bad} is not valid TOML" in p.stderr


def test_pyproject_declares_the_command():
    import pathlib
    from retrograd.train.config import tomllib
    meta = tomllib.loads((pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["retrograd"] == "retrograd.cli:main"
    assert "tomli>=1.1; python_version < '3.11'" in meta["project"]["dependencies"]


@pytest.mark.parametrize("name", ["fashion_mlp", "fashion_cnn", "shakespeare_gpt", "vanishing_gradients_sigmoid",
                                  "vanishing_gradients_relu_bn"])
def test_example_configs_validate(name):
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / f"{name}.toml"
    cfg = rgconfig.validate(rgconfig.load_config(path), config_path=path)
    assert cfg["run"]["dir"] == "runs" and cfg["train"]["seed"] == 0
    assert cfg["model"]["name"] in ("mlp", "cnn", "gpt")
