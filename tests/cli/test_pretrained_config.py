"""`retrograd train` on a pretrained BERT folder: [model] name = "pretrained" with the top layers
trainable and layer-wise LR decay, or LoRA; checkpoints hold only what training changed plus the
base weights' SHA-256; the run comes back with load_run and refuses a base that changed."""
import json

import numpy as np
import pytest

import retrograd as rg
from retrograd.cli import main
from retrograd.models import BertModel

TINY = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 40, "hidden_size": 16,
        "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 16,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}
CONFIG = """
[model]
name = "pretrained"
path = "base"
dropout = 0.0
{model}

[data]
path = "toy.npz"
task = "classification"
standardize = false
batch_size = 16

[optim]
name = "adamw"
lr = 0.003

[train]
epochs = 2
seed = 0
progress = false

[run]
dir = "runs"
name = "{name}"
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    rg.manual_seed(0)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps(TINY))
    rg.io.save_safetensors(dict(BertModel(TINY).state_dict()), tmp_path / "base" / "model.safetensors")
    g = np.random.default_rng(0)
    ids, y = np.zeros((96, 8), np.int64), g.integers(0, 2, 96)
    for i in range(96):  # label 1: token 5 occurs
        k = g.integers(3, 8)
        ids[i, :k] = g.integers(6, 40, k)
        if y[i]:
            ids[i, g.integers(0, k)] = 5
    np.savez(tmp_path / "toy.npz", x=ids, y=y)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name, model, saved", [
    ("top", "trainable_layers = 1\nlayer_lr_decay = 0.8", "layer.2."),
    ("lora", "lora_r = 2\nlora_targets = [\"query\"]", ".lora_"),
])
def test_train_a_pretrained_classifier_from_a_config(folder, name, model, saved):
    (folder / "cfg.toml").write_text(CONFIG.format(model=model, name=name))
    assert main(["train", "cfg.toml"]) == 0
    run = folder / "runs" / name
    cfg = (run / "config.toml").read_text()
    assert f'path = "{folder / "base"}"' in cfg and "num_labels = 2" in cfg and 'task = "classification"' in cfg
    keys = list(rg.io.load_safetensors(run / "checkpoints" / "last" / "model.safetensors"))
    assert "base_sha256" in keys and "head.weight" in keys
    assert all(k in ("base_sha256", "head.weight", "head.bias") or saved in k or k.startswith("encoder.pooler.")
               for k in keys), keys
    # frozen base weights are not copied
    assert not any(("embeddings" in k or "layer.0." in k) and ".lora_" not in k for k in keys)
    loaded = rg.train.load_run(run)
    probs = loaded.predict_proba(np.load(folder / "toy.npz")["x"][:4])
    assert probs.shape == (4, 2)
    # the base changed under the run: loading says so
    sd = rg.io.load_safetensors(folder / "base" / "model.safetensors")
    sd["embeddings.LayerNorm.bias"] = sd["embeddings.LayerNorm.bias"] + 1
    rg.io.save_safetensors(sd, folder / "base" / "model.safetensors")
    with pytest.raises(rg.train.CheckpointError, match=r"trained on base weights with SHA-256 .*\(the base "
                                                        r"model\.safetensors changed\)"):
        rg.train.load_run(run)


def test_layer_lr_decay_groups_reach_the_optimizer(folder):
    from retrograd.train import config, recipe
    (folder / "cfg.toml").write_text(CONFIG.format(model="layer_lr_decay = 0.5", name="g"))
    cfg = config.validate(config.load_config(folder / "cfg.toml"), config_path=folder / "cfg.toml")
    setup = recipe.prepare(cfg, config_path=str(folder / "cfg.toml"))
    lrs = sorted({g["lr"] for g in setup.optimizer.param_groups})
    np.testing.assert_allclose(lrs, sorted(0.003 * 0.5 ** d for d in range(5)))  # embeddings .. head
