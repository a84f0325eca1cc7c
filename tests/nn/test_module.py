"""Module API against torch.nn.Module: names and order, modes, hooks, reprs, containers, dtype moves."""
import copy

import numpy as np
import pytest
import torch

import retrograd as rg


def _net(nn, lib):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4, padding_idx=0)
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.GELU()) for _ in range(3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 3, bias=False)})
            self.norm = nn.BatchNorm1d(4)
            self.extra = nn.ParameterList([nn.Parameter(lib.zeros(2)), nn.Parameter(lib.ones(3, 2))])
            self.scale = nn.Parameter(lib.ones(1))
            self.register_buffer("step", lib.zeros(()))
            self.register_buffer("scratch", lib.zeros(()), persistent=False)
            self.shared = self.blocks[0]  # the same module twice: listed once
            self.act = nn.Dropout(0.1)

        def forward(self, idx):
            h = self.embed(idx).mean(1)
            for b in self.blocks:
                h = b(h)
            return self.heads["a"](self.norm(h)) * self.scale

    return Net()


def test_names_and_order_match_torch():
    t, r = _net(torch.nn, torch), _net(rg.nn, rg)
    names = lambda it: [n for n, _ in it]  # noqa: E731
    assert names(r.named_parameters()) == names(t.named_parameters())
    assert names(r.named_buffers()) == names(t.named_buffers())
    assert names(r.named_modules()) == names(t.named_modules())
    assert names(r.named_children()) == names(t.named_children())
    assert list(r.state_dict()) == list(t.state_dict())
    assert "scratch" not in r.state_dict() and "step" in r.state_dict()
    assert names(r.named_parameters(prefix="model")) == names(t.named_parameters(prefix="model"))
    assert names(r.named_parameters(recurse=False)) == ["scale"]
    assert len(list(r.parameters())) == len(list(t.parameters())) == 15
    assert len(list(r.children())) == len(list(t.children()))
    assert len(list(r.modules())) == len(list(t.modules()))


def test_whole_model_matches_torch_after_state_dict_copy():
    t, r = _net(torch.nn, torch), _net(rg.nn, rg)
    r.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    idx = np.random.default_rng(0).integers(0, 10, (6, 5))
    t.eval(), r.eval()
    to, ro = t(torch.tensor(idx)), r(rg.tensor(idx))
    np.testing.assert_allclose(ro.detach().numpy(), to.detach().numpy(), rtol=1e-5, atol=1e-6)
    to.sum().backward()
    ro.sum().backward()
    tp = dict(t.named_parameters())
    for n, p in r.named_parameters():
        if tp[n].grad is None:
            assert p.grad is None, n
        else:
            np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=n)
    assert np.all(r.embed.weight.grad.numpy()[0] == 0)


def test_repr_matches_torch():
    t, r = _net(torch.nn, torch), _net(rg.nn, rg)
    assert repr(r) == repr(t).replace("torch.float32", "retrograd.float32")
    assert repr(rg.nn.Linear(3, 2)) == "Linear(in_features=3, out_features=2, bias=True)"
    for build in [lambda nn: nn.LayerNorm((2, 3)), lambda nn: nn.GELU("tanh"), lambda nn: nn.Softmax(-1),
                  lambda nn: nn.LeakyReLU(0.2, inplace=True), lambda nn: nn.Flatten(0), lambda nn: nn.ReLU(),
                  lambda nn: nn.Unflatten(1, (2, 3)), lambda nn: nn.RMSNorm(4), lambda nn: nn.GroupNorm(2, 4),
                  lambda nn: nn.Embedding(5, 2, max_norm=1.0), lambda nn: nn.Hardtanh(-2.0, 3.0),
                  lambda nn: nn.Softplus(2.0), lambda nn: nn.PReLU(3), lambda nn: nn.CELU(0.5),
                  lambda nn: nn.Bilinear(2, 3, 4), lambda nn: nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Tanh()]),
                  lambda nn: nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Tanh()))]:
        assert repr(build(rg.nn)) == repr(build(torch.nn))


def test_parameter():
    p = rg.nn.Parameter(rg.zeros(2, 3))
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert p.requires_grad and p.is_leaf and isinstance(p, rg.Tensor)
    assert rg.nn.Parameter(rg.zeros(2), requires_grad=False).requires_grad is False
    out = p * 2 + 1
    assert type(out) is rg.Tensor and type(p.detach()) is rg.Tensor and type(p.sum()) is rg.Tensor
    q = copy.deepcopy(p)
    assert type(q) is rg.nn.Parameter and q._array is not p._array and q.requires_grad
    m = rg.nn.Linear(2, 2)
    m2 = copy.deepcopy(m)
    assert m2.weight is not m.weight and np.array_equal(m2.weight.detach().numpy(), m.weight.detach().numpy())
    assert [n for n, _ in m2.named_parameters()] == ["weight", "bias"]


def test_setattr_registration_and_errors():
    m = rg.nn.Module()
    m.w = rg.nn.Parameter(rg.ones(2))
    m.sub = rg.nn.Linear(2, 2)
    m.register_buffer("buf", rg.zeros(2))
    m.plain = rg.ones(2)  # a plain Tensor attribute is not registered
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and list(m._buffers) == ["buf"]
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = rg.ones(2)
    m.w = None
    assert m.w is None and [n for n, _ in m.named_parameters()] == ["sub.weight", "sub.bias"]
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nope'"):
        m.nope  # noqa: B018
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        m.register_buffer("plain", rg.zeros(1))
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", None)

    class Early(rg.nn.Module):
        def __init__(self):
            self.w = rg.nn.Parameter(rg.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()
    del m.sub
    assert list(m._modules) == []
    m.add_module("lin", rg.nn.Linear(1, 1))
    assert m.get_submodule("lin") is m.lin and m.get_parameter("lin.bias") is m.lin.bias
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        rg.nn.Module()(1)


def test_train_eval_requires_grad_zero_grad_apply():
    m = rg.nn.Sequential(rg.nn.Linear(3, 3), rg.nn.Dropout(), rg.nn.Sequential(rg.nn.BatchNorm1d(3)))
    assert all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    m.train(False)
    assert not m[2][0].training
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    m.requires_grad_()
    m(rg.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    seen = []
    assert m.apply(lambda mod: seen.append(type(mod).__name__)) is m
    assert seen == ["Linear", "Dropout", "BatchNorm1d", "Sequential", "Sequential"]  # children first, as torch


def test_to_dtype_keeps_parameter_objects():
    m = rg.nn.Sequential(rg.nn.Linear(3, 2), rg.nn.BatchNorm1d(2))
    w = m[0].weight
    assert m.double() is m and m[0].weight is w and w.dtype == np.float64
    assert m[1].running_mean.dtype == np.float64 and m[1].num_batches_tracked.dtype == np.int64
    assert m(rg.randn(4, 3, dtype=rg.float64)).dtype == np.float64
    m.to(rg.float32)
    assert w.dtype == np.float32 and m.float() is m
    m.to("cpu")
    assert w.dtype == np.float32
    with pytest.raises(TypeError, match="floating point"):
        m.to(rg.int64)


def test_forward_hooks():
    m = rg.nn.Linear(3, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append((mod, args[0].numpy().copy())) or out + 1)
    y = m(rg.ones(1, 3))
    np.testing.assert_allclose(y.detach().numpy(), m.bias.detach().numpy()[None] + 1, rtol=1e-6)
    assert calls[0][0] is m and not calls[0][1].any()  # the forward hook sees the pre-hook's args
    h1.remove()
    h2.remove()
    np.testing.assert_allclose(m(rg.ones(1, 3)).detach().numpy(),
                               (m.weight.detach().numpy().sum(1) + m.bias.detach().numpy())[None], rtol=1e-6)
    assert len(calls) == 1


@pytest.mark.parametrize("replace", [False, True])
def test_full_backward_hook_matches_torch(replace):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    seeds = rng.standard_normal((4, 2)).astype(np.float32)
    results = {}
    for lib, nn in ((torch, torch.nn), (rg, rg.nn)):
        if lib is torch:
            torch.manual_seed(0)
        pre = nn.Linear(3, 3)
        m = nn.Linear(3, 2)
        if lib is rg:  # same weights as the torch modules
            pre.load_state_dict(results["torch_pre"])
            m.load_state_dict(results["torch_m"])
        else:
            results["torch_pre"] = {k: v.detach().numpy().copy() for k, v in pre.state_dict().items()}
            results["torch_m"] = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
        seen = []

        def hook(mod, grad_input, grad_output):
            seen.append((mod, [g.detach().numpy().copy() for g in grad_input],  # noqa: B023
                         [g.detach().numpy().copy() for g in grad_output]))
            return (grad_input[0] * 3,) if replace else None

        m.register_full_backward_hook(hook)
        xi = lib.tensor(x, requires_grad=True)
        out = m(pre(xi))
        (out * lib.tensor(seeds)).sum().backward()
        assert len(seen) == 1 and seen[0][0] is m
        results[lib.__name__] = (seen[0][1], seen[0][2], xi.grad.numpy().copy(), pre.weight.grad.numpy().copy())
    t, r = results["torch"], results["retrograd"]
    for a, b in zip(r, t):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)


def test_full_backward_hook_input_without_grad():
    m = rg.nn.Linear(3, 2)
    tm = torch.nn.Linear(3, 2)
    m.load_state_dict(tm.state_dict())
    got = {}
    m.register_full_backward_hook(lambda mod, gi, go: got.update(rg=(gi, go[0].numpy().copy())))
    tm.register_full_backward_hook(lambda mod, gi, go: got.update(torch=(gi, go[0].numpy().copy())))
    with pytest.warns(UserWarning, match="no inputs require gradients"):
        m(rg.ones(2, 3)).sum().backward()
    with pytest.warns(UserWarning, match="no inputs require gradients"):
        tm(torch.ones(2, 3)).sum().backward()
    assert got["rg"][0] == got["torch"][0] == (None,)
    np.testing.assert_array_equal(got["rg"][1], got["torch"][1])


def test_backward_pre_hook_replaces_grad_output():
    m = rg.nn.Linear(2, 2)
    m.register_full_backward_pre_hook(lambda mod, go: (go[0] * 0,))
    m(rg.ones(1, 2, requires_grad=True)).sum().backward()
    assert not m.weight.grad.numpy().any()


def test_sequential():
    a, b, c = rg.nn.Linear(2, 3), rg.nn.ReLU(), rg.nn.Linear(3, 1)
    s = rg.nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b
    s.append(c)
    assert len(s) == 3 and s[2] is c and list(s) == [a, b, c]
    sl = s[1:]
    assert type(sl) is rg.nn.Sequential and list(sl) == [b, c] and list(sl._modules) == ["1", "2"]
    from collections import OrderedDict
    named = rg.nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    x = rg.randn(4, 2)
    np.testing.assert_allclose(s(x).detach().numpy(), c(b(a(x))).detach().numpy())
    del s[0]
    assert list(s._modules) == ["0", "1"] and s[0] is b
    s.insert(0, a)
    assert list(s) == [a, b, c]
    with pytest.raises(IndexError, match="out of range"):
        s[3]


def test_module_list_dict_parameter_list():
    ml = rg.nn.ModuleList([rg.nn.Linear(2, 2)])
    ml.append(rg.nn.Tanh())
    ml += [rg.nn.ReLU()]
    assert len(ml) == 3 and isinstance(ml[-1], rg.nn.ReLU) and type(ml[:2]) is rg.nn.ModuleList
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias"]
    md = rg.nn.ModuleDict({"x": rg.nn.Linear(1, 1)})
    md["y"] = rg.nn.Linear(1, 2)
    assert list(md.keys()) == ["x", "y"] and "y" in md and len(md) == 2
    assert [n for n, _ in md.named_parameters()] == ["x.weight", "x.bias", "y.weight", "y.bias"]
    assert md.pop("x").out_features == 1 and list(md) == ["y"]
    pl = rg.nn.ParameterList([rg.zeros(2), rg.nn.Parameter(rg.ones(3))])
    pl.append(rg.ones(1))
    assert len(pl) == 3 and all(isinstance(p, rg.nn.Parameter) for p in pl)
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    assert pl[1].shape == (3,)


def test_identity_flatten_unflatten():
    x = rg.randn(2, 3, 4)
    assert rg.nn.Identity(5, foo=1)(x) is x
    assert rg.nn.Flatten()(x).shape == (2, 12)
    assert rg.nn.Flatten(0, 1)(x).shape == (6, 4)
    assert rg.nn.Unflatten(2, (2, 2))(x).shape == (2, 3, 2, 2)


def test_dropout():
    rg.manual_seed(0)
    x = rg.ones(200, 500, requires_grad=True)
    d = rg.nn.Dropout(0.3)
    y = d(x)
    kept = y.detach().numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.005
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.detach().numpy(), rtol=1e-6)  # grad is the scaled mask
    rg.manual_seed(0)
    np.testing.assert_array_equal(d(x).detach().numpy(), y.detach().numpy())  # seeded: reproducible
    g = rg.Generator(5)
    a = rg.nn.functional.dropout(x, 0.5, generator=g).detach().numpy()
    b = rg.nn.functional.dropout(x, 0.5, generator=rg.Generator(5)).detach().numpy()
    np.testing.assert_array_equal(a, b)
    d.eval()
    assert d(x) is x
    assert not rg.nn.functional.dropout(x, 1.0).detach().numpy().any()
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        rg.nn.Dropout(1.5)


def test_functional_alias_and_module_import():
    import retrograd.nn.functional as F
    from retrograd.nn import functional as F2
    assert F is F2 is rg.nn.functional
    assert not hasattr(rg, "functional")  # torch.nn.functional's home is rg.nn.functional only
    assert callable(F.cross_entropy) and callable(rg.nn.init.kaiming_uniform_)


def test_softmax_implicit_dim_warns_like_torch():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        r = rg.nn.Softmax()(rg.tensor(x))
    with pytest.warns(UserWarning):
        t = torch.nn.Softmax()(torch.tensor(x))
    np.testing.assert_allclose(r.numpy(), t.numpy(), rtol=1e-6)
