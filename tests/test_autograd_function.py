"""rg.autograd.Function: user-defined ops, compared with torch.autograd.Function and finite differences."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.autograd import Function, gradcheck, gradgradcheck


def _pair(*shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return rg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


class Cube(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x ** 3 * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x ** 2 * ctx.scale, None


class TCube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x ** 3 * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x ** 2 * ctx.scale, None


class Exp(Function):
    """Saves its output, as torch's exp does."""

    @staticmethod
    def forward(ctx, x):
        r = x.exp()
        ctx.save_for_backward(r)
        return r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return g * r


def test_forward_backward_against_torch():
    x, tx = _pair(3, 4)
    y, ty = Cube.apply(x, 2.0), TCube.apply(tx, 2.0)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-14)
    assert type(y.grad_fn).__name__ == "Node" and y.grad_fn.name() == "CubeBackward"
    (y.sin().sum()).backward()
    ty.sin().sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-13)


def test_gradcheck_and_double_backward_vs_torch():
    x, tx = _pair(5, seed=1)
    assert gradcheck(lambda x: Cube.apply(x, 0.5), (x,))
    assert gradgradcheck(lambda x: Cube.apply(x, 0.5), (x,))
    (g,) = rg.grad(Cube.apply(x, 0.5).sum(), x, create_graph=True)
    (tg,) = torch.autograd.grad(TCube.apply(tx, 0.5).sum(), tx, create_graph=True)
    (h,) = rg.grad((g * g).sum(), x)
    (th,) = torch.autograd.grad((tg * tg).sum(), tx)
    np.testing.assert_allclose(h.data, th.numpy(), rtol=1e-13)


def test_saved_output_is_differentiable_under_create_graph():
    x, tx = _pair(4, seed=2)
    (g,) = rg.grad(Exp.apply(x).sum(), x, create_graph=True)
    (h,) = rg.grad(g.sum(), x)
    np.testing.assert_allclose(h.data, np.exp(x.data), rtol=1e-14)
    assert gradgradcheck(Exp.apply, (x,))


def test_needs_input_grad_and_non_tensor_args():
    seen = {}

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen["needs"] = ctx.needs_input_grad
            ctx.save_for_backward(a, b)
            ctx.k = k
            return a * b * k

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            ga = g * b * ctx.k if ctx.needs_input_grad[0] else None
            gb = g * a * ctx.k if ctx.needs_input_grad[1] else None
            return ga, gb, None

    a = rg.tensor([1.0, 2.0], requires_grad=True)
    b = rg.tensor([3.0, 4.0])
    Mul.apply(a, b, 3).sum().backward()
    assert seen["needs"] == (True, False, False)
    np.testing.assert_array_equal(a.grad.data, [9.0, 12.0])
    assert b.grad is None


def test_broadcast_gradient_is_summed_back_and_kwargs_bind():
    class AddBias(Function):
        @staticmethod
        def forward(ctx, x, bias, alpha=1.0):
            ctx.alpha = alpha
            return x + bias * alpha

        @staticmethod
        def backward(ctx, g):
            return g, g * ctx.alpha, None  # g has x's shape; the engine sums it to bias's

    x = rg.ones(3, 2, requires_grad=True)
    b = rg.zeros(2, requires_grad=True)
    AddBias.apply(x, b, alpha=2.0).sum().backward()
    np.testing.assert_array_equal(b.grad.data, [6.0, 6.0])
    np.testing.assert_array_equal(x.grad.data, np.ones((3, 2)))


def test_multiple_outputs_vs_torch():
    class SinCos(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin(), x.cos()

        @staticmethod
        def backward(ctx, gs, gc):
            (x,) = ctx.saved_tensors
            return gs * x.cos() - gc * x.sin()

    class TSinCos(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin(), x.cos()

        @staticmethod
        def backward(ctx, gs, gc):
            (x,) = ctx.saved_tensors
            return gs * x.cos() - gc * x.sin()

    x, tx = _pair(2, 3, seed=3)
    s, c = SinCos.apply(x)
    ts, tc = TSinCos.apply(tx)
    np.testing.assert_allclose(c.data, tc.detach().numpy(), rtol=1e-14)
    (s * 2 + c * c).sum().backward()
    (ts * 2 + tc * tc).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-13)
    # only one output used: the other's gradient is zero, as torch materialises it
    x2, tx2 = _pair(3, seed=4)
    SinCos.apply(x2)[1].sum().backward()
    TSinCos.apply(tx2)[1].sum().backward()
    np.testing.assert_allclose(x2.grad.data, tx2.grad.numpy(), rtol=1e-13)
    assert gradcheck(SinCos.apply, (x,)) and gradgradcheck(SinCos.apply, (x,))


def test_mark_non_differentiable_output():
    class SortWithIdx(Function):
        @staticmethod
        def forward(ctx, x):
            idx = rg.tensor(np.argsort(x.data))
            ctx.idx = idx.data
            mask = x > 0
            ctx.mark_non_differentiable(mask)
            return x[idx], idx, mask

        @staticmethod
        def backward(ctx, g, gidx, gmask):
            assert gidx is None and gmask is None  # integer/bool outputs get no gradient
            out = np.zeros_like(g.data)
            out[ctx.idx] = g.data
            return rg.tensor(out)

    x = rg.tensor([3.0, -1.0, 2.0], requires_grad=True)
    v, i, m = SortWithIdx.apply(x)
    assert not i.requires_grad and not m.requires_grad and v.requires_grad
    (v * rg.tensor([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [100.0, 1.0, 10.0])


def test_setup_context_style():
    class Square(Function):
        @staticmethod
        def forward(x):
            return x * x

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * g * x

    x = rg.tensor([1.5, -2.0], requires_grad=True)
    Square.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, -4.0])


def test_no_graph_when_nothing_requires_grad_or_under_no_grad():
    x = rg.tensor([1.0, 2.0])
    y = Cube.apply(x, 1.0)
    assert not y.requires_grad and y.grad_fn is None
    xg = rg.tensor([1.0, 2.0], requires_grad=True)
    with rg.no_grad():
        y2 = Cube.apply(xg, 1.0)
    assert not y2.requires_grad
    np.testing.assert_array_equal(y2.data, [1.0, 8.0])


def test_forward_runs_without_recording():
    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            y = x * 2
            ctx.recorded = y.requires_grad
            return y

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = rg.tensor([1.0], requires_grad=True)
    y = Probe.apply(x)
    assert y.grad_fn.kw["ctx"].recorded is False


def test_wrong_number_of_gradients():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g

    x = rg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"BadBackward returned an incorrect number of gradients \(expected 2, got 1\)"):
        Bad.apply(x, 2.0).sum().backward()


def test_gradient_for_non_tensor_argument_rejected():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g, g

    x = rg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="gradient different than None at position 1"):
        Bad.apply(x, 2.0).sum().backward()


def test_wrong_gradient_shape_rejected():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return rg.ones(5)

    x = rg.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"invalid gradient at index 0: got shape \(5,\).*\(2, 3\)"):
        Bad.apply(x).sum().backward()


def test_forward_must_return_tensors():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return 3.0

    with pytest.raises(TypeError, match="output 0 is a float"):
        Bad.apply(rg.ones(1, requires_grad=True))


def test_save_for_backward_rejects_non_tensors():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, 3)
            return x

    with pytest.raises(TypeError, match="argument 1 is a int"):
        Bad.apply(rg.ones(1, requires_grad=True))


def test_saved_tensor_modified_in_place_is_detected():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x, 1.0)
    with rg.no_grad():
        x.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()


def test_graph_is_freed_and_second_backward_needs_retain_graph():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x, 1.0).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [6.0, 24.0])
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_cannot_instantiate():
    with pytest.raises(RuntimeError, match="call the static method Cube.apply"):
        Cube()
