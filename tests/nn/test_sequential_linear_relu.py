"""Sequential runs a plain Linear followed by a plain ReLU as one node (``F.linear_relu``): the same
bits as the two modules called one by one, forward and backward, PyTorch's numbers, and the two
modules called as such whenever something could see the step between them."""
import io

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import nn
from retrograd.nn.functional import dense


def _pair(sizes, dtype=np.float32, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    layers_rg, layers_t = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        w = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(dtype)
        bv = rng.standard_normal(b).astype(dtype)
        lr, lt = nn.Linear(a, b, bias=bias, dtype=dtype), torch.nn.Linear(a, b, bias=bias, dtype=torch.from_numpy(w).dtype)
        lr.weight.data = rg.tensor(w)
        with torch.no_grad():
            lt.weight.copy_(torch.from_numpy(w))
            if bias:
                lt.bias.copy_(torch.from_numpy(bv))
        if bias:
            lr.bias.data = rg.tensor(bv)
        layers_rg += [lr, nn.ReLU()]
        layers_t += [lt, torch.nn.ReLU()]
    return nn.Sequential(*layers_rg[:-1]), torch.nn.Sequential(*layers_t[:-1])


def _one_by_one(model, x):
    for m in model:
        x = m(x)
    return x


def _grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("shape,sizes,dtype", [
    ((32, 32), (32, 64, 64, 2), np.float32),
    ((128, 784), (784, 512, 256, 10), np.float32),  # large: the threaded ReLU kernel, in place
    ((5, 3, 16), (16, 24, 8), np.float32),  # a stacked input
    ((7, 9), (9, 6, 4), np.float64),
])
def test_fused_gives_the_bits_of_the_two_modules_and_torchs_numbers(shape, sizes, dtype):
    model, tmodel = _pair(sizes, dtype)
    xa = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    xa[..., 0] = 0.0  # exact zeros reach the ReLU where the first layer's weights see only them: no matter
    x, xr = rg.tensor(xa, requires_grad=True), rg.tensor(xa, requires_grad=True)
    y = model(x)
    assert y.grad_fn.next_functions[0][0].name() == "LinearReluBackward"
    ref = _one_by_one(model, xr)
    assert ref.grad_fn.next_functions[0][0].name() == "ReluBackward"
    np.testing.assert_array_equal(y.detach().numpy(), ref.detach().numpy())
    g = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    y.backward(rg.tensor(g))
    fused_grads, fused_x = _grads(model), x.grad.numpy().copy()
    model.zero_grad()
    ref.backward(rg.tensor(g))
    for a, b in zip(fused_grads, _grads(model)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused_x, xr.grad.numpy())
    xt = torch.tensor(xa, requires_grad=True)
    yt = tmodel(xt)
    yt.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(fused_x, xt.grad.numpy(), **tol)
    for a, p in zip(fused_grads, tmodel.parameters()):
        np.testing.assert_allclose(a, p.grad.numpy(), **tol)


def test_no_bias_and_second_order():
    model, tmodel = _pair((6, 5, 3), np.float64, bias=False)
    xa = np.random.default_rng(3).standard_normal((4, 6))
    x, xt = rg.tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True)
    (gx,) = rg.autograd.grad(model(x).pow(2).sum(), x, create_graph=True)
    (gxt,) = torch.autograd.grad(tmodel(xt).pow(2).sum(), xt, create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), gxt.detach().numpy(), rtol=1e-12)
    gx.sum().backward()
    gxt.sum().backward()
    for p, pt in zip(model.parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), rtol=1e-10, atol=1e-12)


def _fused(model, x):
    return model(x).grad_fn.next_functions[0][0].name() == "LinearReluBackward"


def test_hooks_and_patched_forwards_see_the_modules():
    model, _ = _pair((4, 3, 2))
    x = rg.randn(2, 4)
    assert _fused(model, x)
    seen = []
    h = model[1].register_forward_hook(lambda m, i, o: seen.append(o.detach().numpy().copy()))
    y = model(x)
    assert len(seen) == 1 and (seen[0] >= 0).all()
    assert y.grad_fn.next_functions[0][0].name() == "ReluBackward"
    h.remove()
    h = model[0].register_forward_pre_hook(lambda m, i: (i[0] * 2,))
    np.testing.assert_array_equal(model(x).detach().numpy(), _one_by_one(model, x).detach().numpy())
    h.remove()
    model[0].forward = lambda inp: rg.zeros(inp.shape[0], 3)
    np.testing.assert_array_equal(model(x).detach().numpy(), model[2](rg.zeros(2, 3)).detach().numpy())
    del model[0].forward
    assert _fused(model, x)


def test_other_modules_inputs_and_dtypes_are_not_fused():
    class MyLinear(nn.Linear):
        def forward(self, input):  # noqa: A002
            return super().forward(input) + 1

    model = nn.Sequential(MyLinear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = rg.randn(2, 4)
    assert model(x).grad_fn.next_functions[0][0].name() == "ReluBackward"
    ref = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(RuntimeError) as fused_err:
        ref(rg.randn(2, 5))
    with pytest.raises(RuntimeError) as own_err:
        ref[0](rg.randn(2, 5))
    assert str(fused_err.value) == str(own_err.value)  # the Linear's own error
    half = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).to(rg.bfloat16)
    out = half(rg.randn(2, 4).to(rg.bfloat16))
    assert out.dtype == rg.bfloat16 and out.grad_fn.name() == "ReluBackward"
    x64 = rg.randn(2, 4, dtype=rg.float64)
    np.testing.assert_array_equal(dense.linear_relu(x64, rg.randn(3, 4), rg.randn(3)).shape, (2, 3))  # mixed: two ops


def test_onnx_export_still_sees_linear_and_relu():
    pytest.importorskip("onnx")
    model, _ = _pair((4, 3, 2))
    buf = io.BytesIO()
    rg.onnx.export(model, (rg.randn(1, 4),), buf)
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
    assert "Relu" in ops and ops.count("MatMul") + ops.count("Gemm") == 2
