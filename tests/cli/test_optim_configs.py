"""Optimizers that hold others, from a config: muon (+ its fallback for the rest) and lookahead (+ the
optimizer it wraps) in train, resume, compare and tune; data.seed."""
import json

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import config as rgconfig
from retrograd.train.recipe import prepare

from cli_helpers import DIGITS_MLP, FirstStep, summary
from test_train_cli import _Interrupt

MUON = DIGITS_MLP.replace('name = "adam"\nlr = 0.003', 'name = "muon"\nlr = 0.02\n\n[optim.fallback]\nlr = 0.003')
LOOKAHEAD = DIGITS_MLP.replace('name = "adam"\nlr = 0.003', 'name = "lookahead"\nk = 3\n\n[optim.inner]\nname = "adam"'
                                                          '\nlr = 0.003')
LOOKAHEAD_MUON = DIGITS_MLP.replace('name = "adam"\nlr = 0.003', 'name = "lookahead"\n\n[optim.inner]\nname = "muon"'
                                                               '\nlr = 0.02\nfallback = "adam"')


def _weights(run_dir):
    return rg.io.load_safetensors(run_dir / "checkpoints" / "last" / "model.safetensors")


@pytest.mark.parametrize("kind,schedule", [("muon", "warmup_cosine"), ("lookahead", "CosineAnnealingLR"),
                                           ("lookahead-muon", None)])
def test_train_and_resume_bit_identically(write_config, run_cli, tmp_path, kind, schedule):
    """Ctrl-C at step 53, resume from the checkpoint of step 50: the same weights and metrics as the
    uninterrupted run, bit for bit (Muon's momentum, AdamW's moments, Lookahead's slow weights and a
    schedule's step all travel in the checkpoint)."""
    text = {"muon": MUON, "lookahead": LOOKAHEAD, "lookahead-muon": LOOKAHEAD_MUON}[kind].replace(
        "epochs = 2", "epochs = 2\ncheckpoint_every_n_steps = 5")
    if schedule:
        text += f'\n[schedule]\nname = "{schedule}"\ninterval = "step"\n' + \
            ("warmup_steps = 10\n" if schedule == "warmup_cosine" else "")
    rc, _, err = run_cli("train", write_config(text, "full"), "--quiet")
    assert rc == 0, err
    assert run_cli("train", write_config(text, "cut"), "--quiet", callbacks=[_Interrupt(53)])[0] == 130
    start = FirstStep()
    rc, _, err = run_cli("resume", tmp_path / "runs" / "cut", "--quiet", callbacks=[start])
    assert rc == 0, err
    assert start.first == (1, 9, 50)
    full, cut = _weights(tmp_path / "runs" / "full"), _weights(tmp_path / "runs" / "cut")
    for k in full:
        assert np.array_equal(np.asarray(full[k]), np.asarray(cut[k])), k
    a, b = summary(tmp_path / "runs" / "full"), summary(tmp_path / "runs" / "cut")
    assert a["final"] == b["final"] and a["test"] == b["test"]
    assert a["test"]["test_accuracy"] >= 0.75, a["test"]  # measured: muon 0.852, lookahead 0.808, lookahead-muon 0.825
    resolved = rgconfig.load_config(tmp_path / "runs" / "full" / "config.toml")["optim"]
    if kind == "muon":  # the fallback's name defaults to adamw
        assert resolved == {"name": "muon", "lr": 0.02, "fallback": {"name": "adamw", "lr": 0.003}}
    if kind == "lookahead-muon":
        assert resolved == {"name": "lookahead", "inner": {"name": "muon", "lr": 0.02, "fallback": {"name": "adam"}}}


def test_the_muon_run_gives_muon_the_hidden_weights_and_adamw_the_rest(write_config):
    cfg = rgconfig.validate(rgconfig.load_config(write_config(MUON.replace("sizes = [64, 64, 10]",
                                                                           "sizes = [64, 32, 16, 10]"))))
    setup = prepare(cfg)
    muon, adamw = setup.optimizer.optimizers
    assert isinstance(muon, rg.optim.Muon) and isinstance(adamw, rg.optim.AdamW)
    assert [tuple(p.shape) for g in muon.param_groups for p in g["params"]] == [(32, 64), (16, 32)]
    assert [tuple(p.shape) for g in adamw.param_groups for p in g["params"]] == [(32,), (16,), (10, 16), (10,)]
    assert adamw.defaults["lr"] == 0.003 and adamw.defaults["weight_decay"] == 0.01 and muon.defaults["lr"] == 0.02
    # a schedule function drives both: the fallback's lr follows it, scaled by fallback.lr / lr
    cfg["schedule"] = {"name": "linear_warmup", "interval": "step", "warmup_steps": 4}
    setup = prepare(cfg)
    assert [g["lr"] for g in setup.optimizer.param_groups] == [0.0, 0.0]
    muon_schedule = setup.optimizer.param_groups[0]["lr_schedule"]
    assert setup.optimizer.param_groups[1]["lr_schedule"](2) == muon_schedule(2) * (0.003 / 0.02) == 0.0015


def test_compare_runs_muon_and_lookahead_by_name(write_config, run_cli, tmp_path):
    rc, out, err = run_cli("compare", write_config(), "--optimizers", "adam,muon,lookahead", "--quiet",
                           "--lr", "lookahead=0.003",
                           "--set", "train.epochs=1")
    assert rc == 0, err
    assert "== muon (lr 0.01)" in out and "== lookahead (lr 0.003)" in out
    rows = json.loads((tmp_path / "runs" / "c-compare" / "comparison.json").read_text())["rows"]
    assert [r["optimizer"] for r in rows] == ["adam", "muon", "lookahead"]
    la = rgconfig.load_config(tmp_path / "runs" / "c-compare" / "lookahead" / "config.toml")["optim"]
    assert la == {"name": "lookahead", "inner": {"name": "adam", "lr": 0.003}}
    assert all(r["val_accuracy"] > 0.5 for r in rows), rows


def test_tune_searches_the_wrapped_optimizer_and_its_best_config_repeats_the_trial(write_config, run_cli,
                                                                                    tmp_path):
    import optuna

    text = LOOKAHEAD.replace("epochs = 2", "epochs = 1") + \
        '\n[search]\nmethod = "grid"\npruner = "none"\n"optim.inner.lr" = {choice = [0.001, 0.01]}\n' \
        '"optim.k" = {choice = [2, 5]}\n'
    rc, out, err = run_cli("tune", write_config(text, "la"))
    assert rc == 0, err
    assert "4 trials: 4 COMPLETE" in out
    study_dir = tmp_path / "runs" / "la-tune"
    best = optuna.load_study(study_name="la", storage=f"sqlite:///{study_dir / 'study.db'}").best_trial
    cfg = rgconfig.load_config(study_dir / "la-best.toml")
    assert cfg["optim"]["inner"]["lr"] == best.params["optim.inner.lr"] and cfg["optim"]["k"] == best.params["optim.k"]
    assert run_cli("train", study_dir / "la-best.toml", "--quiet")[0] == 0
    assert summary(tmp_path / "runs" / "la-best")["final"]["val_accuracy"] == best.value


@pytest.mark.parametrize("optim,message", [
    ('name = "lookahead"\nlr = 0.1', "optim.lr: lookahead has no lr of its own; set optim.inner.lr"),
    ('name = "lookahead"\nsteps = 3', "optim.steps: unknown key for lookahead (keys: name, k, alpha and the table "
                                      "inner); known keys: name, k, alpha"),
    ('name = "lookahead"\ninner = "lookahead"', "optim.inner.name: lookahead cannot hold 'lookahead'"),
    ('name = "lookahead"\n[optim.inner]\nname = "adamm"', "optim.inner.name: 'adamm' is not one of: sgd,"),
    ('name = "lookahead"\n[optim.inner]\nname = "sgd"\nmomentun = 0.9', "optim.inner.momentun: unknown key for "
                                                                       "optimizer SGD; known keys: name, lr,"),
    ('name = "lookahead"\nk = 0', "optim: Lookahead: Lookahead: invalid k 0: expected an integer >= 1"),
    ('name = "muon"\nfallback = "muon"', "optim.fallback.name: muon cannot hold 'muon'; expected another optimizer, "
                                         "e.g. 'adamw'"),
    ('name = "muon"\nfallback = 3', "optim.fallback: expected a table of keys or an optimizer name, got 3 (int)"),
    ('name = "muon"\n[optim.fallback]\nlr = -1', "optim.fallback.lr: must be in [0, 3.4e38 (float32's largest)], got -1"),
    ('name = "adam"\n[optim.inner]\nname = "sgd"', "optim.inner: unknown key for optimizer Adam"),
])
def test_config_errors_name_the_nested_key(write_config, run_cli, optim, message):
    text = DIGITS_MLP.replace('[optim]\nname = "adam"\nlr = 0.003', "[optim]\n" + optim)
    rc, _, err = run_cli("train", write_config(text))
    assert rc == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_muon_on_a_model_without_a_hidden_layer_says_so(write_config, run_cli):
    rc, _, err = run_cli("train", write_config(MUON.replace("sizes = [64, 64, 10]", "sizes = [64, 10]")))
    assert rc == 2 and "optim: Muon: muon_param_groups: MLP has no hidden 2-D weight for Muon" in err, err


def test_set_reaches_nested_optimizer_tables(write_config, run_cli, tmp_path):
    rc, _, err = run_cli("train", write_config(LOOKAHEAD_MUON), "--quiet", "--set", "train.epochs=1",
                         "--set", "optim.inner.fallback.lr=0.002", "--set", "optim.inner.lr=0.01",
                         "--set", "optim.alpha=0.8")
    assert rc == 0, err
    assert rgconfig.load_config(tmp_path / "runs" / "c" / "config.toml")["optim"] == \
        {"name": "lookahead", "alpha": 0.8, "inner": {"name": "muon", "lr": 0.01,
                                                      "fallback": {"name": "adam", "lr": 0.002}}}
    rc, _, err = run_cli("train", write_config(), "--set", "optim.lr.x=1")
    assert rc == 2 and "--set 'optim.lr.x=1': optim.lr is 0.003 (float), not a table" in err, err


def test_data_seed_splits_the_data_and_train_seed_the_rest(write_config):
    def setup(data_seed, train_seed):
        text = DIGITS_MLP.replace("seed = 0", f"seed = {train_seed}")
        if data_seed is not None:
            text = text.replace("batch_size = 32", f"batch_size = 32\nseed = {data_seed}")
        return prepare(rgconfig.validate(rgconfig.load_config(write_config(text))))

    a, b, c = setup(5, 0), setup(None, 5), setup(None, 0)
    assert np.array_equal(a.data.val.tensors[0].numpy(), b.data.val.tensors[0].numpy())  # split of seed 5
    assert not np.array_equal(a.data.val.tensors[0].numpy(), c.data.val.tensors[0].numpy())
    first = [np.asarray(p.data) for p in a.model.parameters()]
    assert all(np.array_equal(x, np.asarray(y.data)) for x, y in zip(first, c.model.parameters()))  # init: seed 0
    with pytest.raises(rgconfig.ConfigError, match=r"data.seed: must be in \[0, 18446744073709551615\], got -1"):
        setup(-1, 0)


def test_a_scheduler_s_max_lr_scales_for_the_fallback(write_config):
    """OneCycleLR's max_lr (filled in from optim.lr) is Muon's; the fallback's peaks at its own lr, not
    at Muon's, as it does under a schedule function."""
    text = MUON + '\n[schedule]\nname = "OneCycleLR"\ninterval = "step"\n'
    setup = prepare(rgconfig.validate(rgconfig.load_config(write_config(text))))
    assert setup.cfg["schedule"]["max_lr"] == 0.02
    assert [g["max_lr"] for g in setup.optimizer.param_groups] == [0.02, 0.02 * 0.003 / 0.02]
    assert [g["lr"] for g in setup.optimizer.param_groups] == pytest.approx([0.02 / 25, 0.003 / 25], rel=1e-12)
