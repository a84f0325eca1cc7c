"""rg.autograd.gradcheck / gradgradcheck: they pass on correct gradients and name the culprit on wrong ones."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.autograd import GradcheckError, gradcheck, gradgradcheck


def _x(*shape, seed=0, requires_grad=True):
    return rg.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad)


def test_passes_on_composite_function_with_broadcasting():
    x, w, b = _x(4, 3), _x(3, 2, seed=1), _x(2, seed=2)
    assert gradcheck(lambda x, w, b: (x @ w + b).tanh() * x.sum(), (x, w, b)) is True
    assert gradgradcheck(lambda x, w, b: (x @ w + b).tanh() * x.sum(), (x, w, b)) is True


def test_tuple_outputs_and_non_tensor_args():
    x = _x(3)
    assert gradcheck(lambda x, k: (x.exp() * k, x.sin()), (x, 2.5)) is True


def test_single_tensor_input_and_scalar_output():
    assert gradcheck(lambda x: (x * x).sum(), _x(2, 2)) is True


class _WrongSin(rg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos() * 1.5  # deliberately wrong by a factor of 1.5


def test_reports_input_index_element_and_values():
    x = rg.tensor([0.1, 0.2, 0.3], dtype=rg.float64, requires_grad=True)
    y = rg.tensor([1.0], dtype=rg.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(3,\)\)") as info:
        gradcheck(lambda y, x: _WrongSin.apply(x) * y, (y, x))
    msg = str(info.value)
    # worst element: largest cos -> x[0]; analytical 1.5*cos(0.1), numerical cos(0.1)
    assert "input element (0,)" in msg and "output element (0,)" in msg
    ana = float(msg.split("analytical ")[1].split(" ")[0])
    num = float(msg.split("numerical ")[1].split(" ")[0])
    assert ana == pytest.approx(1.5 * np.cos(0.1), rel=1e-12)
    assert num == pytest.approx(np.cos(0.1), rel=1e-8)
    assert isinstance(info.value, RuntimeError)


def test_raise_exception_false_returns_false():
    x = rg.tensor([0.5, 1.0], dtype=rg.float64, requires_grad=True)
    assert gradcheck(_WrongSin.apply, (x,), raise_exception=False) is False


def test_tolerances_are_used():
    class Off(rg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * (2 + 1e-4)

    x = rg.tensor([1.0, 2.0], dtype=rg.float64, requires_grad=True)
    assert gradcheck(Off.apply, (x,), atol=1e-3, rtol=0) is True
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(Off.apply, (x,), atol=1e-5, rtol=1e-6)


def test_refuses_float32_inputs():
    x = rg.tensor([1.0, 2.0], dtype=rg.float32, requires_grad=True)
    with pytest.raises(ValueError, match=r"input 0 .* float32.*float64"):
        gradcheck(lambda x: x * x, (x,))


def test_refuses_when_nothing_requires_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda x: x * x, (_x(2, requires_grad=False),))


def test_inputs_are_restored_after_perturbation():
    x = _x(5)
    before = x.detach().numpy().copy()
    gradcheck(lambda x: x.exp(), (x,))
    np.testing.assert_array_equal(x.data, before)


def test_gradgradcheck_catches_wrong_second_derivative():
    class BadSquare(rg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            # right value, but x.detach() hides the dependence on x from double backward
            return 2 * g * x.detach()

    x = _x(3)
    assert gradcheck(BadSquare.apply, (x,)) is True
    with pytest.raises(GradcheckError, match="gradgradcheck: Jacobian mismatch.*input 0"):
        gradgradcheck(BadSquare.apply, (x,))


def test_gradgradcheck_with_given_grad_outputs():
    x = _x(2, 3)
    go = rg.tensor(np.ones((2, 3)), requires_grad=True)
    assert gradgradcheck(lambda x: x.sigmoid() * x, (x,), grad_outputs=(go,)) is True


def test_unused_input_has_zero_jacobian():
    x, y = _x(2), _x(2, seed=3)
    assert gradcheck(lambda x, y: x * 3.0, (x, y)) is True
