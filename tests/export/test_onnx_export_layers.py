"""rg.onnx.export of the ops and layers mapped for issue 16's remainder: Tensor.max/min(dim) with
indices, cumsum, einsum, GroupNorm and RMSNorm, transposed convolutions, interpolate (Resize) and
nn.MultiheadAttention. Each: onnx.checker (full check) and onnxruntime against retrograd to 1e-5
(float32) on other batch sizes / lengths than the example's (dynamic axes)."""
import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.nn import functional as F

pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
from test_onnx_export import ExportError, Uses, _rand, export_and_compare  # noqa: E402  (same folder)


class Fn(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *xs):
        return self.f(*xs)


def _ops(proto):
    return [n.op_type for n in proto.graph.node]


def test_max_min_with_indices_and_cumsum(tmp_path):
    def f(x):
        v, i = x.max(1)
        w, j = rg.min(x, -1, keepdim=True)
        return v, i, w, j, x.max(), x.argmin(0), x.cumsum(1), rg.cumsum(x.long(), 0), x.max(-x)
    x = _rand(3, 5)
    x[0, 1] = x[0, 3] = 9.0  # ties: the first index, as retrograd
    proto, _ = export_and_compare(tmp_path, Fn(f), (rg.tensor(x),), ["x"], {"x": [0, 1]},
                                  [(x,), (_rand(2, 7, seed=1),), (_rand(6, 1, seed=2),)])
    ops = _ops(proto)
    assert {"ReduceMax", "ArgMax", "ReduceMin", "ArgMin", "CumSum", "Max"} <= set(ops)


def test_einsum(tmp_path):
    def f(a, b):
        return rg.einsum("bij,bjk->bik", a, b), rg.einsum("...ij->...ji", a), rg.einsum("bij,bij", a, a), \
            rg.einsum("bij,bjk", [a, b])
    proto, _ = export_and_compare(tmp_path, Fn(f), (rg.randn(2, 3, 4), rg.randn(2, 4, 5)), ["a", "b"],
                                  {"a": [0, 1], "b": [0, 2]},
                                  [(_rand(3, 2, 4, seed=1), _rand(3, 4, 6, seed=2)),
                                   (_rand(1, 5, 4, seed=3), _rand(1, 4, 1, seed=4))])
    eqs = [a.s.decode() for n in proto.graph.node if n.op_type == "Einsum" for a in n.attribute]
    assert eqs == ["bij,bjk->bik", "aij->aji", "bij,bij->", "bij,bjk->ik"]  # '...' and implicit outputs written out


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_group_norm_and_rms_norm(tmp_path, opset):
    rg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3), nn.GroupNorm(3, 6), nn.RMSNorm([5]), nn.GroupNorm(2, 6, affine=False))
    with rg.no_grad():  # away from the initial ones and zeros
        for p in (model[1].weight, model[1].bias, model[2].weight):
            p.normal_()
    proto, _ = export_and_compare(tmp_path, model, (rg.randn(2, 4, 7, 7),), ["x"], {"x": [0, 2]},
                                  [(_rand(1, 4, 9, 7, seed=1),), (_rand(3, 4, 5, 7, seed=2) * 3 + 1,)],
                                  opset_version=opset)
    ops = _ops(proto)
    assert ops.count("GroupNormalization") == (2 if opset >= 21 else 0)  # opset 18's scales per group
    rms = Fn(lambda x: (F.rms_norm(x, (4, 3), eps=1e-3), F.rms_norm(x, [3])))  # eps None: float32's epsilon
    export_and_compare(tmp_path, rms, (rg.randn(2, 4, 3),), ["x"], {"x": [0]}, [(_rand(5, 4, 3, seed=3) * 1e-3,)],
                       opset_version=opset)


def test_transposed_convolutions(tmp_path):
    rg.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                          nn.ConvTranspose2d(4, 2, (2, 3), groups=2, dilation=2, bias=False))
    proto, _ = export_and_compare(tmp_path, model, (rg.randn(2, 3, 5, 6),), ["x"], {"x": [0, 2, 3]},
                                  [(_rand(1, 3, 4, 4, seed=1),), (_rand(3, 3, 7, 5, seed=2),)])
    assert _ops(proto).count("ConvTranspose") == 2
    export_and_compare(tmp_path, nn.ConvTranspose1d(3, 4, 3, stride=3, padding=1), (rg.randn(2, 3, 5),), ["x"],
                       {"x": [0, 2]}, [(_rand(1, 3, 4, seed=3),), (_rand(3, 3, 8, seed=4),)])
    export_and_compare(tmp_path, nn.ConvTranspose1d(3, 2, 2), (rg.randn(3, 5),), ["x"], {"x": [1]},  # unbatched
                       [(_rand(3, 9, seed=5),)])


@pytest.mark.parametrize("kw", [
    dict(scale_factor=2), dict(scale_factor=3, mode="nearest"), dict(size=(7, 11)), dict(size=(3, 4)),
    dict(size=(7, 11), mode="nearest-exact"), dict(scale_factor=2, mode="bilinear"),
    dict(scale_factor=2, mode="bilinear", align_corners=True), dict(size=(7, 11), mode="bilinear"),
    dict(size=(3, 4), mode="bilinear", align_corners=True), dict(scale_factor=1.7, mode="bilinear"),
    dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True), dict(size=(9, 13), mode="bicubic"),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_interpolate(tmp_path, kw):
    proto, _ = export_and_compare(tmp_path, Fn(lambda x: F.interpolate(x, **kw)), (rg.randn(2, 3, 5, 6),), ["x"],
                                  {"x": [0]}, [(_rand(1, 3, 5, 6, seed=1),), (_rand(3, 3, 5, 6, seed=2),)])
    nearest = kw.get("mode", "nearest").startswith("nearest")  # those: Gathers of retrograd's indices
    assert ("Resize" in _ops(proto)) != nearest


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_nearest_indices_for_every_input_size(tmp_path, mode):
    """The nearest modes are Gathers of retrograd's float32 indices: exact for all input sizes of a
    dynamic axis (Resize's out / in scale rounds differently, e.g. 14 -> 2 or 30 -> 9)."""
    for kw in (dict(size=2), dict(size=9), dict(scale_factor=1.7), dict(scale_factor=0.4, recompute_scale_factor=True)):
        model = Fn(lambda x: F.interpolate(x, mode=mode, **kw))
        export_and_compare(tmp_path, model, (rg.randn(1, 2, 6),), ["x"], {"x": [2]},
                           [(np.arange(2 * n, dtype=np.float32).reshape(1, 2, n),) for n in range(3, 33)])


def test_upsample_with_dynamic_spatial_sizes(tmp_path):
    model = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Upsample(scale_factor=2, mode="bilinear"))
    export_and_compare(tmp_path, model, (rg.randn(2, 3, 5, 6),), ["x"], {"x": [0, 2, 3]},
                       [(_rand(1, 3, 4, 9, seed=1),), (_rand(3, 3, 7, 3, seed=2),)])
    export_and_compare(tmp_path, Fn(lambda x: F.interpolate(x, scale_factor=2.0, mode="linear")),
                       (rg.randn(2, 3, 5),), ["x"], {"x": [0, 2]},
                       [(_rand(1, 3, 4, seed=3),), (_rand(3, 3, 7, seed=4),)])


def _mha(batch_first, **kw):
    rg.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=batch_first, **kw)
    with rg.no_grad():
        m.out_proj.bias.normal_()
        if m.in_proj_bias is not None:
            m.in_proj_bias.normal_()
    return m


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_self_attention_with_masks_and_weights(tmp_path, batch_first):
    m = _mha(batch_first)
    model = Fn(lambda x, kpm, am: m(x, x, x, key_padding_mask=kpm, attn_mask=am))
    model.m = m

    def inputs(n, t, seed):
        x = _rand(n, t, 8, seed=seed) if batch_first else _rand(t, n, 8, seed=seed)
        kpm = np.zeros((n, t), bool)
        kpm[0, t - 1:] = True  # the first sequence's last position is padding
        return x, kpm, _rand(t, t, seed=seed + 1)
    x_axes = [0, 1] if batch_first else [1, 0]
    proto, _ = export_and_compare(tmp_path, model, tuple(rg.tensor(a) for a in inputs(2, 5, 0)), ["x", "kpm", "am"],
                                  {"x": x_axes, "kpm": [0, 1], "am": [0, 1]}, [inputs(3, 4, 5), inputs(1, 7, 9)])
    assert _ops(proto).count("MatMul") == 4  # one fused in-projection, two attention products, out_proj
    assert len(proto.graph.output) == 2  # output and the head-averaged weights


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_cross_attention_without_weights(tmp_path, batch_first):
    m = _mha(batch_first)
    model = Fn(lambda q, k, kpm: m(q, k, k, key_padding_mask=kpm, need_weights=False)[0])
    model.m = m

    def inputs(n, length, t, seed):
        shape = (lambda s: (n, s, 8)) if batch_first else (lambda s: (s, n, 8))
        kpm = np.zeros((n, t), np.float32)
        kpm[-1, 1:] = -np.inf  # a float key padding mask: added to the scores
        return _rand(*shape(length), seed=seed), _rand(*shape(t), seed=seed + 3), kpm
    export_and_compare(tmp_path, model, tuple(rg.tensor(a) for a in inputs(2, 3, 5, 0)), ["q", "k", "kpm"],
                       {"q": [0, 1], "k": [0, 1], "kpm": [0, 1]}, [inputs(3, 4, 6, 5), inputs(1, 2, 7, 9)])


def test_multihead_attention_with_the_causal_hint(tmp_path):
    m = _mha(True)
    model = Fn(lambda x, am: m(x, x, x, attn_mask=am, need_weights=False, is_causal=True)[0])
    model.m = m

    def inputs(n, t, seed):
        return _rand(n, t, 8, seed=seed), np.triu(np.ones((t, t), bool), 1)
    proto, _ = export_and_compare(tmp_path, model, tuple(rg.tensor(a) for a in inputs(2, 5, 0)), ["x", "am"],
                                  {"x": [0, 1], "am": [0, 1]}, [inputs(3, 4, 1), inputs(1, 9, 2)])
    assert "Trilu" in _ops(proto)


def test_multihead_attention_kdim_vdim_unbatched_per_head_weights(tmp_path):
    rg.manual_seed(0)
    m = nn.MultiheadAttention(8, 4, kdim=5, vdim=6, bias=False)
    model = Fn(lambda q, k, v, am: m(q, k, v, attn_mask=am, average_attn_weights=False))
    model.m = m

    def inputs(length, t, seed):
        am = np.zeros((4, length, t), bool)
        am[:, :, -1] = True  # bool: True blocks; every row keeps its other keys
        return _rand(length, 8, seed=seed), _rand(t, 5, seed=seed + 1), _rand(t, 6, seed=seed + 2), am
    export_and_compare(tmp_path, model, tuple(rg.tensor(a) for a in inputs(3, 4, 0)), ["q", "k", "v", "am"],
                       {"q": [0], "k": [0], "v": [0], "am": [1, 2]}, [inputs(2, 5, 1), inputs(6, 3, 7)])


def test_transformer_encoder_layer(tmp_path):
    rg.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    model = Fn(lambda x, kpm: layer(x, src_key_padding_mask=kpm))
    model.layer = layer

    def inputs(n, t, seed):
        kpm = np.zeros((n, t), bool)
        kpm[0, -1] = True
        return _rand(n, t, 8, seed=seed), kpm
    export_and_compare(tmp_path, model, tuple(rg.tensor(a) for a in inputs(2, 5, 0)), ["x", "kpm"],
                       {"x": [0, 1], "kpm": [0, 1]}, [inputs(3, 4, 1), inputs(1, 6, 2)])


def test_what_stays_unmapped_is_named(tmp_path):
    p = tmp_path / "x.onnx"
    with pytest.raises(ExportError, match="MultiheadAttention with add_bias_kv or add_zero_attn"):
        m = nn.MultiheadAttention(4, 2, add_zero_attn=True)
        rg.onnx.export(Uses(lambda x: m(x, x, x)[0]), (rg.randn(3, 1, 4),), p)
    with pytest.raises(ExportError, match="interpolate with mode='area'"):
        rg.onnx.export(Uses(lambda x: F.interpolate(x, size=(2, 2), mode="area")), (rg.randn(1, 1, 4, 4),), p)
    assert not p.exists()
    s = rg.onnx.supported()
    assert {"F.group_norm", "F.rms_norm", "F.conv_transpose1d", "F.conv_transpose2d", "F.interpolate",
            "F.multi_head_attention_forward", "rg.einsum", "rg.cumsum", "rg.max", "rg.min"} <= set(s["functions"])
    assert {"max", "min", "cumsum", "argmin"} <= set(s["tensor_methods"])
    assert {"GroupNorm", "RMSNorm", "ConvTranspose1d", "ConvTranspose2d", "MultiheadAttention",
            "Upsample"} <= set(s["modules"])
