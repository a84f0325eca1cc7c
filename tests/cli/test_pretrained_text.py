"""`retrograd train` on a user's raw text: a CSV or JSONL table with a text column and a label column,
tokenised with the pretrained model's own tokenizer.json ([data] text = "COLUMN"), then `retrograd
predict` on new rows; and the errors for what does not fit, each naming the key."""
import json

import numpy as np
import pytest

import retrograd as rg
from retrograd.data.bundle import DataFileError
from retrograd.data.tokens import text_token_ids
from retrograd.models import BertModel
from test_pretrained_config import CONFIG as PRETRAINED_CONFIG

tokenizers = pytest.importorskip("tokenizers", reason="the pretrained extra's tokenizers is not installed")

TINY = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 40, "hidden_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 16,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}
WORDS = ["good", "bad", "film", "plot", "actor", "great", "awful", "the", "a", "was", "very", "not", "it", "is"]
# test_pretrained_config's config, on a table of raw text instead of a .npz of ids
CONFIG = PRETRAINED_CONFIG.replace("{model}", "trainable_layers = 1").replace(
    'path = "toy.npz"\ntask = "classification"\nstandardize = false\nbatch_size = 16\n',
    'path = "{data}"\ntarget = "label"\ntext = "review"\nbatch_size = 16\n{extra}\n').replace(
    "lr = 0.003", "lr = 0.01").replace("epochs = 2", "epochs = 8")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(TINY))
    rg.manual_seed(0)
    rg.io.save_safetensors(dict(BertModel(TINY).state_dict()), base / "model.safetensors")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                                  special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(base / "tokenizer.json"))
    g = np.random.default_rng(0)
    rows = []
    for i in range(80):  # positive reviews say "good" or "great"
        label = ["neg", "pos"][i % 2]
        words = list(g.choice(WORDS[2:5] + WORDS[7:], g.integers(2, 6)))
        words.insert(int(g.integers(0, len(words))), str(g.choice(["good", "great"] if label == "pos" else
                                                                   ["bad", "awful"])))
        rows.append({"review": " ".join(words), "label": label})
    lines = ["review,label"] + [f"{r['review']},{r['label']}" for r in rows]
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "new.csv").write_text("id,review\n1,the film was good\n2,awful plot\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(folder, name, data="reviews.csv", extra="", model=""):
    text = CONFIG.format(data=data, extra=extra, name=name)
    if model:
        text = text.replace("trainable_layers = 1\n", f"trainable_layers = 1\n{model}\n")
    (folder / f"{name}.toml").write_text(text)
    return f"{name}.toml"


def test_token_ids_are_the_tokenizers_with_padding_and_truncation(folder):
    ids = text_token_ids(["the film was good", "awful"], folder / "base")
    assert ids.tolist() == [[2, 11, 6, 13, 4, 3], [2, 10, 3, 0, 0, 0]]
    assert text_token_ids(["the film was very good"], folder / "base", max_tokens=4).tolist() == [[2, 11, 6, 3]]
    bad = folder / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataFileError, match=r"data.tokenizer: .*tokenizer.json is not a readable tokenizer file"):
        text_token_ids(["x"], bad)
    (bad / "tokenizer.json").write_text((folder / "base" / "tokenizer.json").read_text())
    (bad / "config.json").write_text("[1, 2")
    with pytest.raises(DataFileError, match=r"config.json: cannot read it as JSON"):
        text_token_ids(["x"], bad)


@pytest.mark.parametrize("data", ["reviews.csv", "reviews.jsonl"])
def test_train_and_predict_on_raw_text(folder, run_cli, data):
    rc, out, err = run_cli("train", _write(folder, "t", data), "--quiet")
    assert rc == 0, err
    run = folder / "runs" / "t"
    spec = json.loads((run / "inputs.json").read_text())
    assert spec["kind"] == "tokens" and spec["columns"] == ["review"] and spec["classes"] == ["neg", "pos"]
    assert spec["tokenizer"] == str(folder / "base")
    resolved = (run / "config.toml").read_text()
    assert 'text = "review"' in resolved and f'tokenizer = "{folder / "base"}"' in resolved
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["val_accuracy"] >= 0.75, summary  # the token "good"/"great" decides the label
    rc, out, err = run_cli("predict", run, "new.csv", "-o", "pred.csv")
    assert rc == 0, err
    lines = (folder / "pred.csv").read_text().splitlines()
    assert lines[0] == "id,predicted,prob_neg,prob_pos" and len(lines) == 3
    assert [r.split(",")[1] for r in lines[1:]] == ["pos", "neg"]
    # the loaded run gives the same numbers on the same ids
    loaded = rg.train.load_run(run)
    x, _ = loaded.inputs.read(folder / "new.csv")
    assert x.tolist() == [[2, 11, 6, 13, 4, 3], [2, 10, 7, 3, 0, 0]]


@pytest.mark.parametrize("extra, model, message", [
    ('tokenizer = "nowhere"', "", r"data.tokenizer: '.*nowhere' is not a folder"),
    ('tokenizer = "."', "", r"data.tokenizer: no tokenizer.json in"),
    ('features = ["review"]', "", r"data.features: not with data.text"),
    ("standardize = true", "", r"data.standardize: applies to tables and feature arrays, not to token ids"),
    ("max_tokens = 40", "", r"data.max_tokens: expected 2 to 16 \(the model's positions"),
])
def test_text_errors_name_the_key(folder, run_cli, extra, model, message):
    rc, out, err = run_cli("train", _write(folder, "e", extra=extra, model=model), "--quiet")
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith("retrograd train: error: ")
    import re
    assert re.search(message, err), err


def test_text_column_missing_or_without_a_tokenizer(folder, run_cli):
    (folder / "m.toml").write_text(CONFIG.format(data="reviews.csv", extra="", name="m").replace(
        'text = "review"', 'text = "body"'))
    rc, out, err = run_cli("train", "m.toml", "--quiet")
    assert rc == 2 and "data.text: reviews.csv has no column 'body'; its columns: review, label" in err, err
    mlp = ('[model]\nname = "mlp"\nsizes = [4, 2]\n[data]\npath = "reviews.csv"\ntarget = "label"\ntext = "review"\n'
           '[train]\nprogress = false\n')
    (folder / "n.toml").write_text(mlp)
    rc, out, err = run_cli("train", "n.toml", "--quiet")
    assert rc == 2 and "data.text: needs a tokenizer: data.tokenizer = a model folder with tokenizer.json" in err, err
    (folder / "o.toml").write_text(mlp.replace('text = "review"\n', 'max_tokens = 8\n'))
    rc, out, err = run_cli("train", "o.toml", "--quiet")
    assert rc == 2 and "data.max_tokens: only with data.text" in err, err


def test_unfreeze_every_on_a_pretrained_encoder_saves_the_unfrozen_layers(folder, run_cli):
    cfg = _write(folder, "u", extra="", model="unfreeze_every = 1\nlayer_lr_decay = 0.9")
    text = (folder / cfg).read_text().replace("trainable_layers = 1", "trainable_layers = 0").replace(
        "epochs = 8", "epochs = 3")
    (folder / cfg).write_text(text)
    rc, out, err = run_cli("train", cfg, "--quiet")
    assert rc == 0, err
    saved = rg.io.load_safetensors(folder / "runs" / "u" / "checkpoints" / "last" / "model.safetensors")
    layers = {k.split(".")[3] for k in saved if k.startswith("encoder.encoder.layer.")}
    # epoch 0: the head; epoch 1: + the top block (layer 1); epoch 2: + layer 0; the embeddings never
    assert layers == {"0", "1"} and "head.weight" in saved and "base_sha256" in saved
    assert not any(k.startswith("encoder.embeddings.") for k in saved)
    base = rg.io.load_safetensors(folder / "base" / "model.safetensors")
    assert not np.array_equal(saved["encoder.encoder.layer.0.output.dense.weight"],
                              base["encoder.layer.0.output.dense.weight"])
    run = rg.train.load_run(folder / "runs" / "u", "last")
    params = dict(run.model.named_parameters())
    for k, v in saved.items():
        if k != "base_sha256":
            np.testing.assert_array_equal(params[k].detach().numpy(), v, err_msg=k)
    (folder / "l.toml").write_text(text.replace("layer_lr_decay = 0.9", "lora_r = 2"))
    rc, out, err = run_cli("train", "l.toml", "--quiet")
    assert rc == 2 and "model.unfreeze_every: not with LoRA" in err, err
