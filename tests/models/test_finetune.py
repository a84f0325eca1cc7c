"""Fine-tuning a pretrained BERT: LoRA (against the formula in torch), merge/unmerge, adapters saved
apart, freezing layer by layer and the GradualUnfreezing schedule, layer-wise LR decay groups, heads
driven by the Trainer, and a checkpoint of only the changed weights with the base's SHA-256."""
import json

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.io.pretrained import PretrainedError
from retrograd.models import BertModel
from retrograd.models.finetune import (SequenceClassifier, SequenceRegressor, layerwise_lr_groups, load_finetuned,
                                       save_finetuned, set_trainable_layers)
from retrograd.models.lora import (LoRALinear, apply_lora, load_lora, lora_state_dict, merge_lora, save_lora,
                                   unmerge_lora)
from retrograd.train import Trainer
from retrograd.train.finetune import GradualUnfreezing

TINY = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 40, "hidden_size": 16,
        "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 16,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}
IDS = np.array([[1, 5, 9, 13, 2, 0, 0], [1, 7, 7, 8, 9, 10, 2]])


@pytest.fixture
def base(tmp_path):
    rg.manual_seed(0)
    model = BertModel(TINY)
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    rg.io.save_safetensors({k: v for k, v in model.state_dict().items()}, folder / "model.safetensors")
    return folder


def _out(model, ids=IDS):
    with rg.no_grad():
        out = model(ids)
    return (out.last_hidden_state if hasattr(out, "last_hidden_state") else out).numpy()


def test_lora_linear_forward_and_gradients_match_the_formula_in_torch():
    rg.manual_seed(1)
    base = rg.nn.Linear(6, 4)
    w0 = base.weight.detach().numpy().copy()
    lora = LoRALinear(base, r=2, alpha=6.0)
    assert lora.weight is base.weight and not lora.weight.requires_grad and lora.lora_A.requires_grad
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(lora(rg.tensor(x)).detach().numpy(), base(rg.tensor(x)).detach().numpy())  # B = 0
    lora.lora_B._array[...] = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    y = lora(rg.tensor(x))
    (y * y).sum().backward()
    tA = torch.tensor(lora.lora_A.detach().numpy(), requires_grad=True)
    tB = torch.tensor(lora.lora_B.detach().numpy(), requires_grad=True)
    ty = torch.from_numpy(x) @ torch.from_numpy(w0).T + torch.from_numpy(base.bias.detach().numpy()) \
        + 3.0 * (torch.from_numpy(x) @ tA.T @ tB.T)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lora.lora_A.grad.numpy(), tA.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lora.lora_B.grad.numpy(), tB.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert lora.weight.grad is None
    lora.merge()
    assert lora.merged
    np.testing.assert_allclose(lora(rg.tensor(x)).detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    lora.unmerge()
    np.testing.assert_allclose(lora.weight.detach().numpy(), w0, atol=1e-6)
    with pytest.raises(ValueError, match="r must be a positive int"):
        LoRALinear(rg.nn.Linear(2, 2), r=0)
    with pytest.raises(TypeError, match="already has a LoRA adapter"):
        LoRALinear(lora)


def test_apply_lora_keeps_base_keys_trains_only_adapters_and_saves_them_apart(base, tmp_path):
    model = BertModel.from_pretrained(base)
    ref = _out(model)
    keys = list(model.state_dict())
    names = apply_lora(model, ["query", "value"], r=4, alpha=8)
    assert names == [f"encoder.layer.{i}.attention.self.{k}" for i in range(3) for k in ("query", "value")]
    sd = model.state_dict()
    assert [k for k in sd if not k.endswith(("lora_A", "lora_B"))] == keys
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == sorted(
        f"{n}.lora_{x}" for n in names for x in "AB")
    np.testing.assert_array_equal(_out(model), ref)  # B starts at zero
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.lora_B._array[...] = 0.1
    adapted = _out(model)
    assert np.abs(adapted - ref).max() > 1e-3
    merge_lora(model)
    np.testing.assert_allclose(_out(model), adapted, atol=1e-5)
    unmerge_lora(model)
    np.testing.assert_allclose(_out(model), adapted, atol=1e-5)
    save_lora(model, tmp_path / "adapter.safetensors")
    saved = rg.io.load_safetensors(tmp_path / "adapter.safetensors")
    assert sorted(saved) == sorted(lora_state_dict(model)) and len(saved) == 12  # adapters only
    fresh = BertModel.from_pretrained(base)
    assert load_lora(fresh, tmp_path / "adapter.safetensors") == names
    np.testing.assert_allclose(_out(fresh), adapted, atol=1e-6)
    with pytest.raises(ValueError, match=r"no nn.Linear of BertModel matches \['nope'\]"):
        apply_lora(BertModel(TINY), ["nope"])
    rg.io.save_safetensors({"a": np.zeros(2, np.float32)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not a LoRA adapter file"):
        load_lora(fresh, tmp_path / "plain.safetensors")


def test_set_trainable_layers_counts_from_the_top(base):
    clf = SequenceClassifier(BertModel.from_pretrained(base), 3)

    def trainable():
        return {n.split(".")[1] + ("." + n.split(".")[3] if ".layer." in n else "")
                for n, p in clf.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert set_trainable_layers(clf, 0) == [] and trainable() == set()
    assert clf.head.weight.requires_grad
    assert set_trainable_layers(clf, 1) == [3, 4] and trainable() == {"encoder.2", "pooler"}
    assert set_trainable_layers(clf, 4) == [0, 1, 2, 3, 4]
    assert trainable() == {"embeddings", "encoder.0", "encoder.1", "encoder.2", "pooler"}
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 4\]"):
        set_trainable_layers(clf, 5)


def test_layerwise_lr_groups(base):
    clf = SequenceClassifier(BertModel.from_pretrained(base), 2)
    groups = layerwise_lr_groups(clf, 1e-3, 0.5, weight_decay=0.01)
    lr = {n: g["lr"] for g in groups for n in g["param_names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert lr["head.weight"] == lr["encoder.pooler.dense.weight"] == 1e-3
    assert lr["encoder.encoder.layer.2.output.dense.weight"] == 5e-4
    assert lr["encoder.encoder.layer.0.attention.self.query.weight"] == 1e-3 * 0.5 ** 3
    assert lr["encoder.embeddings.word_embeddings.weight"] == 1e-3 * 0.5 ** 4
    assert wd["head.weight"] == 0.01 and wd["head.bias"] == 0.0
    assert wd["encoder.embeddings.LayerNorm.weight"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(clf.parameters()))
    opt = rg.optim.AdamW(groups)  # any optimizer takes them
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    set_trainable_layers(clf, 0)
    assert sum(len(g["params"]) for g in layerwise_lr_groups(clf, 1e-3)) == 2
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]"):
        layerwise_lr_groups(clf, 1e-3, 1.5)


def _toy_loader(n=64, seed=0):
    """Label 1 when token 5 occurs: sequences of lengths 3..7 padded to 8."""
    g = np.random.default_rng(seed)
    ids = np.zeros((n, 8), dtype=np.int64)
    y = g.integers(0, 2, n)
    for i in range(n):
        k = g.integers(3, 8)
        ids[i, :k] = g.integers(6, 40, k)
        if y[i]:
            ids[i, g.integers(0, k)] = 5
    ds = rg.data.TensorDataset(rg.tensor(ids), rg.tensor(y))
    return rg.data.DataLoader(ds, batch_size=16, shuffle=True, generator=rg.Generator(seed))


def test_classifier_with_gradual_unfreezing_trains_under_the_trainer(base):
    clf = SequenceClassifier(BertModel.from_pretrained(base), 2, dropout=0.0)
    frozen_before = clf.encoder.encoder.layer[0].attention.self.query.weight.detach().numpy().copy()
    emb_before = clf.encoder.embeddings.word_embeddings.weight.detach().numpy().copy()
    opt = rg.optim.AdamW(layerwise_lr_groups(clf, 3e-3, 0.8, include_frozen=True))
    unfreeze = GradualUnfreezing(every_n_epochs=2)
    seen = []

    class Record(rg.train.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(list(unfreeze.trainable))
    trainer = Trainer(clf, opt, rg.nn.CrossEntropyLoss(), callbacks=[unfreeze, Record()], seed=0)
    hist = trainer.fit(_toy_loader(), _toy_loader(seed=1), epochs=5)
    assert seen == [[], [], [3, 4], [3, 4], [2, 3, 4]]
    # layers never unfrozen are bit-for-bit the base; the loss went down
    np.testing.assert_array_equal(clf.encoder.encoder.layer[0].attention.self.query.weight.detach().numpy(),
                                  frozen_before)
    np.testing.assert_array_equal(clf.encoder.embeddings.word_embeddings.weight.detach().numpy(), emb_before)
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_regressor_output_shape_and_padding_trim(base):
    reg = SequenceRegressor(BertModel.from_pretrained(base), dropout=0.0).eval()
    with rg.no_grad():
        y = reg(IDS).numpy()
        wide = reg(np.pad(IDS, ((0, 0), (0, 5)))).numpy()  # extra padding columns change nothing
    assert y.shape == (2,)
    np.testing.assert_allclose(wide, y, atol=1e-6)
    with pytest.raises(ValueError, match="pooling must be 'mean', 'cls' or 'pooler'"):
        SequenceRegressor(BertModel(TINY), pooling="max")


def test_save_finetuned_stores_only_changes_and_checks_the_base(base, tmp_path):
    clf = SequenceClassifier(BertModel.from_pretrained(base), 2)
    apply_lora(clf, ["query"], r=2, trainable=("head.",))
    for m in clf.modules():
        if isinstance(m, LoRALinear):
            m.lora_B._array[...] = 0.05
    clf.encoder.encoder.layer[2].output.dense.bias._array[...] += 1.0
    info = save_finetuned(clf, tmp_path / "run", base)
    saved = rg.io.load_safetensors(tmp_path / "run" / "finetuned.safetensors")
    assert sorted(saved) == sorted(["head.weight", "head.bias", "encoder.encoder.layer.2.output.dense.bias"]
                                   + [f"encoder.encoder.layer.{i}.attention.self.query.lora_{x}"
                                      for i in range(3) for x in "AB"])
    assert info["base_folder"] == str(base.resolve()) and len(info["base_sha256"]) == 64
    fresh = SequenceClassifier(BertModel.from_pretrained(base), 2)
    load_finetuned(fresh, tmp_path / "run")
    clf.eval()
    fresh.eval()
    with rg.no_grad():
        np.testing.assert_array_equal(fresh(IDS).numpy(), clf(IDS).numpy())
    sd = rg.io.load_safetensors(base / "model.safetensors")
    sd["pooler.dense.bias"] = sd["pooler.dense.bias"] + 1
    rg.io.save_safetensors(sd, base / "model.safetensors")
    with pytest.raises(PretrainedError, match=r"base weights .* changed: SHA-256"):
        load_finetuned(SequenceClassifier(BertModel.from_pretrained(base), 2), tmp_path / "run")
