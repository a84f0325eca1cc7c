"""nn.Transformer and its encoder/decoder family against torch.nn in float64: state_dict keys, init scheme,
outputs and gradients (inputs and every parameter) over batch_first, norm_first, activations, masks,
causal hints, train/eval, the encoder's nested-tensor zeros, and torch's errors and warnings."""
import math
import re
import warnings

import numpy as np
import pytest
import torch

import retrograd as rg

TOL = 1e-10


@pytest.fixture(autouse=True)
def _float64():
    old_t, old_r = torch.get_default_dtype(), rg.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    rg.set_default_dtype(rg.float64)
    yield
    torch.set_default_dtype(old_t)
    rg.set_default_dtype(old_r)


def _pair(build, seed=0):
    """The same module in both libraries: torch's weights copied into retrograd through state_dict."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = build(torch.nn, torch)
        r = build(rg.nn, rg)
    # randomise every parameter (LayerNorm's ones/zeros and zero biases would hide mistakes)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    r.load_state_dict(t.state_dict())
    return t, r


def _inputs(rng, *shapes):
    arrs = [rng.standard_normal(s) for s in shapes]
    return ([torch.tensor(a, requires_grad=True) for a in arrs], [rg.tensor(a, requires_grad=True) for a in arrs])


def _mask(m, lib):
    return None if m is None else lib.tensor(m)


def _close(a, b, what, tol=TOL):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, rg.Tensor) else np.asarray(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    np.testing.assert_allclose(b, a, rtol=TOL, atol=tol, err_msg=what)


def _compare(t, r, t_ins, r_ins, call, train=True):
    t.train(train)
    r.train(train)
    out_t, out_r = call(t, torch, *t_ins), call(r, rg, *r_ins)
    _close(out_t, out_r, "output")
    w = np.random.default_rng(7).standard_normal(tuple(out_t.shape))
    (out_t * torch.tensor(w)).sum().backward()
    (out_r * rg.tensor(w)).sum().backward()
    for i, (a, b) in enumerate(zip(t_ins, r_ins)):
        _close(a.grad, b.grad, f"input {i} grad")
    grads_t = {n: p.grad for n, p in t.named_parameters()}
    for n, p in r.named_parameters():
        assert (grads_t[n] is None) == (p.grad is None), n
        if p.grad is not None:
            _close(grads_t[n], p.grad, f"grad of {n}")
    return out_t, out_r


def _act(name, nn):
    return {"relu": "relu", "gelu": "gelu", "fn_gelu": nn.functional.gelu, "silu": nn.functional.silu,
            "module": nn.Tanh()}[name]


def test_state_dict_keys_shapes_and_load_from_torch():
    t = torch.nn.Transformer(8, 2, 2, 1, 16, dropout=0.0)
    r = rg.nn.Transformer(8, 2, 2, 1, 16, dropout=0.0)
    ts, rs = t.state_dict(), r.state_dict()
    assert list(ts) == list(rs)
    assert all(tuple(ts[k].shape) == tuple(rs[k].shape) for k in ts)
    assert str(r.load_state_dict(ts)) == "<All keys matched successfully>"
    for k in ts:
        np.testing.assert_array_equal(rs[k].numpy() if not rs[k].requires_grad else rs[k].detach().numpy(),
                                      ts[k].numpy())
    tb, rb = torch.nn.Transformer(8, 2, 1, 1, 16, bias=False), rg.nn.Transformer(8, 2, 1, 1, 16, bias=False)
    assert list(tb.state_dict()) == list(rb.state_dict())
    assert (r.d_model, r.nhead, r.batch_first) == (8, 2, False)


def test_init_scheme_xavier_on_every_matrix():
    rg.manual_seed(0)
    r = rg.nn.Transformer(16, 4, 2, 2, 48, dropout=0.0)
    for name, p in r.named_parameters():
        a = p.detach().numpy()
        if a.ndim > 1:
            bound = math.sqrt(6.0 / (a.shape[0] + a.shape[1]))
            assert np.abs(a).max() <= bound, name
            assert np.abs(a).max() > 0.9 * bound, name  # filled, not left at a narrower default init
            assert abs(a.std() - bound / math.sqrt(3)) < 0.15 * bound, name
        elif name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "norm.weight")):
            np.testing.assert_array_equal(a, 1.0)
        elif "in_proj_bias" in name or "out_proj.bias" in name or "norm" in name:
            np.testing.assert_array_equal(a, 0.0)
        else:  # linear1/linear2 biases keep Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            fan_in = 16 if "linear1" in name else 48
            assert np.abs(a).max() <= 1 / math.sqrt(fan_in) and np.abs(a).max() > 0, name
    # the layers of a stack start as deep copies but Transformer re-draws each one
    w = [layer.linear1.weight.detach().numpy() for layer in r.encoder.layers]
    assert not np.array_equal(w[0], w[1])
    torch.manual_seed(0)
    t = torch.nn.Transformer(16, 4, 2, 2, 48, dropout=0.0)
    assert sorted(n for n, p in t.named_parameters() if p.dim() > 1) == \
        sorted(n for n, p in r.named_parameters() if p.ndim > 1)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", "fn_gelu", "silu"])
def test_transformer_matches_torch(batch_first, norm_first, activation):
    t, r = _pair(lambda nn, T: nn.Transformer(8, 2, 2, 2, 12, dropout=0.0, activation=_act(activation, nn),
                                              batch_first=batch_first, norm_first=norm_first))
    S, T_, N = 5, 4, 3
    shp = (lambda L: (N, L, 8)) if batch_first else (lambda L: (L, N, 8))
    t_ins, r_ins = _inputs(np.random.default_rng(1), shp(S), shp(T_))
    kpm = np.zeros((N, S), bool)
    kpm[0, 3:] = True
    tkpm = np.zeros((N, T_), bool)
    tkpm[2, 2:] = True
    src_mask = np.zeros((S, S), bool)
    src_mask[1, 4] = True

    def call(m, lib, src, tgt):
        return m(src, tgt, src_mask=_mask(src_mask, lib), tgt_mask=lib.nn.Transformer.generate_square_subsequent_mask(T_),
                 src_key_padding_mask=_mask(kpm, lib), tgt_key_padding_mask=_mask(tkpm, lib),
                 memory_key_padding_mask=_mask(kpm, lib))
    _compare(t, r, t_ins, r_ins, call, train=True)
    t.zero_grad()
    r.zero_grad()
    t_ins, r_ins = _inputs(np.random.default_rng(2), shp(S), shp(T_))
    _compare(t, r, t_ins, r_ins, call, train=False)


@pytest.mark.parametrize("mask_kind", ["float", "bool", "float_kpm"])
def test_float_and_bool_masks_3d_and_memory_mask(mask_kind):
    H, N, S, T_ = 2, 2, 4, 3
    t, r = _pair(lambda nn, T: nn.Transformer(6, H, 1, 2, 10, dropout=0.0))
    t_ins, r_ins = _inputs(np.random.default_rng(3), (S, N, 6), (T_, N, 6))
    rng = np.random.default_rng(4)
    if mask_kind == "bool":
        src_mask = rng.random((N * H, S, S)) < 0.3
        src_mask[..., 0] = False  # no fully masked row
        mem_mask = rng.random((T_, S)) < 0.3
        mem_mask[:, 1] = False
        kpm = None
    else:
        src_mask = rng.standard_normal((N * H, S, S))
        mem_mask = rng.standard_normal((T_, S))
        kpm = np.array([[0.0, 0.0, -1.5, -np.inf], [0.0, 0.3, 0.0, 0.0]]) if mask_kind == "float_kpm" else None

    def call(m, lib, src, tgt):
        return m(src, tgt, src_mask=_mask(src_mask, lib), memory_mask=_mask(mem_mask, lib),
                 src_key_padding_mask=_mask(kpm, lib))
    _compare(t, r, t_ins, r_ins, call)


def test_causal_hints_explicit_detected_and_trusted():
    t, r = _pair(lambda nn, T: nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True))
    N, S = 2, 5
    causal = np.triu(np.full((S, S), -np.inf), 1)
    for src_causal, tgt_causal, tgt_mask in [(True, True, causal), (None, None, causal), (False, False, causal),
                                              (None, None, causal == -np.inf)]:
        t.zero_grad()
        r.zero_grad()
        t_ins, r_ins = _inputs(np.random.default_rng(5), (N, S, 8), (N, S, 8))

        def call(m, lib, src, tgt):
            return m(src, tgt, src_mask=_mask(causal, lib), tgt_mask=_mask(tgt_mask, lib),
                     src_is_causal=src_causal, tgt_is_causal=tgt_causal, memory_mask=_mask(causal, lib),
                     memory_is_causal=True)
        _compare(t, r, t_ins, r_ins, call)
    # a wrong hint: torch trusts is_causal=True over the mask given (without key padding), so does retrograd
    wrong = np.zeros((S, S))
    wrong[0, 1] = -2.0
    t_ins, r_ins = _inputs(np.random.default_rng(6), (N, S, 8), (N, S, 8))
    out_t, _ = _compare(t, r, t_ins, r_ins, lambda m, lib, s, g: m(s, g, tgt_mask=_mask(wrong, lib),
                                                                     tgt_is_causal=True))
    plain = t(t_ins[0], t_ins[1], tgt_mask=torch.tensor(wrong))
    assert (out_t - plain).abs().max() > 1e-3  # the hint really changed torch's result
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        r(r_ins[0], r_ins[1], tgt_is_causal=True)


def test_unbatched_and_custom_encoder_decoder():
    t, r = _pair(lambda nn, T: nn.Transformer(6, 3, 1, 1, 8, dropout=0.0))
    t_ins, r_ins = _inputs(np.random.default_rng(8), (4, 6), (3, 6))
    _compare(t, r, t_ins, r_ins, lambda m, lib, s, g: m(s, g, src_key_padding_mask=_mask(np.array(
        [False, False, True, False]), lib)))

    def build(nn, T):
        enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(6, 2, 8, 0.0, batch_first=True), 2)
        dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(6, 2, 8, 0.0, batch_first=True), 1, nn.LayerNorm(6))
        return nn.Transformer(6, 2, custom_encoder=enc, custom_decoder=dec, batch_first=True)
    t, r = _pair(build)
    assert list(t.state_dict()) == list(r.state_dict())
    t_ins, r_ins = _inputs(np.random.default_rng(9), (2, 4, 6), (2, 3, 6))
    _compare(t, r, t_ins, r_ins, lambda m, lib, s, g: m(s, g))


@pytest.mark.parametrize("batch_first", [False, True])
def test_decoder_stack_and_layers_alone(batch_first):
    def build(nn, T):
        layer = nn.TransformerDecoderLayer(8, 4, 16, 0.0, activation="gelu", batch_first=batch_first)
        return nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(8))
    t, r = _pair(build)
    shp = (lambda L: (2, L, 8)) if batch_first else (lambda L: (L, 2, 8))
    t_ins, r_ins = _inputs(np.random.default_rng(10), shp(3), shp(5))
    mkpm = np.array([[False] * 4 + [True], [False] * 5])
    _compare(t, r, t_ins, r_ins, lambda m, lib, g, mem: m(g, mem, tgt_mask=lib.nn.Transformer.
                                                          generate_square_subsequent_mask(3),
                                                          memory_key_padding_mask=_mask(mkpm, lib)))
    t, r = _pair(lambda nn, T: nn.TransformerEncoderLayer(8, 2, 16, 0.0, norm_first=True, batch_first=batch_first))
    t_ins, r_ins = _inputs(np.random.default_rng(11), shp(4))
    _compare(t, r, t_ins, r_ins, lambda m, lib, x: m(x, src_mask=lib.nn.Transformer.
                                                     generate_square_subsequent_mask(4), is_causal=True))


@pytest.mark.parametrize("grad", [False, True])
def test_encoder_nested_tensor_path_zeroes_padding_in_eval(grad):
    def build(nn, T):
        return nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True), 2,
                                     norm=nn.LayerNorm(8))
    t, r = _pair(build)
    t.eval()
    r.eval()
    x = np.random.default_rng(12).standard_normal((3, 4, 8))
    kpm = np.array([[False, False, True, True], [False, False, False, False], [False, True, True, True]])
    ctx_t = torch.enable_grad() if grad else torch.no_grad()
    ctx_r = rg.enable_grad() if grad else rg.no_grad()
    with ctx_t:
        a = t(torch.tensor(x), src_key_padding_mask=torch.tensor(kpm))
    with ctx_r:
        b = r(rg.tensor(x), src_key_padding_mask=rg.tensor(kpm))
    _close(a, b, "encoder output")
    # torch's fast path gives zeros before the final norm at padded positions only without grad
    pad_rows = a.detach().numpy()[0, 2]
    assert (np.allclose(pad_rows, t.norm.bias.detach().numpy())) == (not grad)
    # not left-aligned: no nested path (mask_check) in either library
    kpm2 = np.array([[True, False, False, False]] * 3)
    with torch.no_grad():
        a = t(torch.tensor(x), src_key_padding_mask=torch.tensor(kpm2))
    with rg.no_grad():
        b = r(rg.tensor(x), src_key_padding_mask=rg.tensor(kpm2))
    _close(a, b, "encoder output, right-aligned padding")


def test_generate_square_subsequent_mask_matches_torch():
    for dtype in ("float32", "float64", "bool"):
        a = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=getattr(torch, dtype))
        b = rg.nn.Transformer.generate_square_subsequent_mask(4, dtype=getattr(rg, dtype))
        assert str(b.dtype).replace("retrograd.", "") == str(a.dtype).replace("torch.", "")
        np.testing.assert_array_equal(b.numpy(), a.numpy())
    b = rg.nn.Transformer.generate_square_subsequent_mask(3, device="cpu")
    assert b.dtype == rg.float64 and b.device.type == "cpu"
    from retrograd.nn.modules.transformer import _generate_square_subsequent_mask
    np.testing.assert_array_equal(_generate_square_subsequent_mask(3).numpy(), b.numpy())
    # an instance call works too (a staticmethod)
    assert rg.nn.Transformer(4, 2, 1, 1, 8).generate_square_subsequent_mask(2).shape == (2, 2)


def test_errors_and_warnings_as_torch():
    r = rg.nn.Transformer(8, 2, 1, 1, 16)
    t = torch.nn.Transformer(8, 2, 1, 1, 16)
    cases = [((5, 3, 8), (4, 2, 8), "the batch number of src and tgt must be equal"),
             ((5, 3, 8), (4, 3, 6), "the feature number of src and tgt must be equal to d_model"),
             ((5, 3, 6), (4, 3, 6), "the feature number of src and tgt must be equal to d_model")]
    for s, g, msg in cases:
        with pytest.raises(RuntimeError, match=re.escape(msg)):
            t(torch.zeros(*s), torch.zeros(*g))
        with pytest.raises(RuntimeError, match=re.escape(msg)):
            r(rg.zeros(*s), rg.zeros(*g))
    rb = rg.nn.Transformer(8, 2, 1, 1, 16, batch_first=True)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        rb(rg.zeros(3, 5, 8), rg.zeros(2, 5, 8))
    with pytest.raises(RuntimeError, match=re.escape("expected src of shape (L, N, E) or (L, E), got (8,)")):
        r(rg.zeros(8), rg.zeros(8))
    # integer masks: torch's _canonical_mask AssertionError
    with pytest.raises(AssertionError, match="only bool and floating types of src_key_padding_mask are supported"):
        t(torch.zeros(5, 3, 8), torch.zeros(4, 3, 8), src_key_padding_mask=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(AssertionError, match="only bool and floating types of src_key_padding_mask are supported"):
        r(rg.zeros(5, 3, 8), rg.zeros(4, 3, 8), src_key_padding_mask=rg.zeros(3, 5, dtype=rg.int64))
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        rg.nn.Transformer(8, 2, 1, 1, 16, activation="tanh")
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        rg.nn.Transformer(8, 3, 1, 1, 16)
    # mismatched mask types warn as torch
    with pytest.warns(UserWarning, match="Support for mismatched src_key_padding_mask and mask is deprecated"):
        r(rg.zeros(5, 3, 8), rg.zeros(4, 3, 8), src_mask=rg.zeros(5, 5), src_key_padding_mask=rg.zeros(3, 5) > 1)
    # the construction warning torch gives about the nested-tensor fast path, and its absence
    with pytest.warns(UserWarning, match=re.escape("enable_nested_tensor is True, but self.use_nested_tensor is "
                                                   "False because encoder_layer.norm_first was True")):
        rg.nn.TransformerEncoder(rg.nn.TransformerEncoderLayer(8, 2, norm_first=True, batch_first=True), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc = rg.nn.TransformerEncoder(rg.nn.TransformerEncoderLayer(8, 2, batch_first=True), 1)
        rg.nn.TransformerEncoder(rg.nn.TransformerEncoderLayer(8, 2), 1, enable_nested_tensor=False)
    assert enc.use_nested_tensor and enc.enable_nested_tensor and enc.mask_check


def test_module_activation_survives_the_decoder_deepcopy():
    """torch 2.13's ``TransformerDecoderLayer.__setstate__`` puts ``F.relu`` into ``__dict__`` when it finds no
    plain ``activation`` attribute, so every deep-copied decoder layer silently uses relu instead of a Module
    activation (the encoder layer checks with hasattr and keeps it). retrograd keeps the activation given:
    this test records the difference so that a torch fix shows up here."""
    t = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 12, 0.0, activation=torch.nn.Tanh()), 1)
    assert t.layers[0].activation is torch.nn.functional.relu  # torch's bug
    r = rg.nn.TransformerDecoder(rg.nn.TransformerDecoderLayer(8, 2, 12, 0.0, activation=rg.nn.Tanh()), 1)
    assert isinstance(r.layers[0].activation, rg.nn.Tanh)
    # with the encoder (hasattr check) both keep the module, and the numbers agree
    t, r = _pair(lambda nn, T: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 12, 0.0, activation=nn.Tanh()),
                                                     2, enable_nested_tensor=False))
    assert isinstance(t.layers[1].activation, torch.nn.Tanh)
    t_ins, r_ins = _inputs(np.random.default_rng(13), (4, 2, 8))
    _compare(t, r, t_ins, r_ins, lambda m, lib, x: m(x))


def test_encoder_layer_attributes_as_torch():
    for act, code in [("relu", 1), ("gelu", 2), (None, 0)]:
        kw = {} if act is None else {"activation": act}
        if act is None:
            kw = {"activation": "fn"}
        rl = rg.nn.TransformerEncoderLayer(8, 2, **({"activation": rg.nn.functional.silu} if act is None else kw))
        tl = torch.nn.TransformerEncoderLayer(8, 2, **({"activation": torch.nn.functional.silu} if act is None
                                                        else kw))
        assert rl.activation_relu_or_gelu == tl.activation_relu_or_gelu == code
    assert rg.nn.TransformerEncoderLayer(8, 2, activation=rg.nn.GELU()).activation_relu_or_gelu == 2
    assert rg.nn.TransformerEncoderLayer(8, 2).activation is rg.nn.functional.relu
    assert rg.nn.Transformer is rg.nn.modules.Transformer is rg.nn.modules.transformer.Transformer


def test_no_bias_eps_and_dropout_in_eval():
    t, r = _pair(lambda nn, T: nn.Transformer(8, 2, 1, 1, 16, dropout=0.3, bias=False, layer_norm_eps=1e-3,
                                              batch_first=True, norm_first=True))
    t_ins, r_ins = _inputs(np.random.default_rng(14), (2, 5, 8), (2, 3, 8))
    _compare(t, r, t_ins, r_ins, lambda m, lib, s, g: m(s, g, tgt_mask=lib.nn.Transformer.
                                                         generate_square_subsequent_mask(3)), train=False)
    assert r.encoder.layers[0].norm1.eps == 1e-3 and r.decoder.norm.bias is None
