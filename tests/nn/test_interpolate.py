"""F.interpolate's resampling modes against torch: forward and input gradient for every mode x
align_corners x (size | scale_factor, up and down, non-integer, recompute_scale_factor) x dtype;
float64 gradcheck and gradgradcheck per mode; torch's argument errors.

torch's CPU kernels are built with fused multiply-adds (the source index ``scale * (dst + 0.5) - 0.5``
and the weighted sums round once where NumPy rounds twice), so results agree to a few ulps, not bit
for bit: 1e-6 of the largest value in float32, 1e-12 in float64."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import retrograd as rg
import retrograd.nn.functional as F
from retrograd.autograd import gradcheck, gradgradcheck

SHAPES = {"linear": (2, 3, 7), "bilinear": (2, 3, 5, 6), "bicubic": (2, 3, 5, 6), "trilinear": (1, 2, 4, 5, 3)}
ARGS = [dict(size=13), dict(size=(11, 4)), dict(size=3), dict(size=1), dict(scale_factor=2),
        dict(scale_factor=1.7), dict(scale_factor=0.6), dict(scale_factor=0.37), dict(scale_factor=3.3),
        dict(scale_factor=(1.5, 0.75)), dict(scale_factor=1.1),
        dict(scale_factor=2.3, recompute_scale_factor=True), dict(scale_factor=0.6, recompute_scale_factor=True),
        dict(scale_factor=1.7, recompute_scale_factor=False)]
TOL = {np.float32: 1e-6, np.float64: 1e-12}
# torch evaluates the cubic weights with fused multiply-adds too: up to ~6e-7 apart per float32 weight,
# summed over 16 taps
BICUBIC_F32_TOL = 2e-6


def _fit(args: dict, nd: int) -> dict:
    """Give a tuple argument one entry per spatial dim (cycling), so one list serves every rank."""
    return {k: tuple(v[i % len(v)] for i in range(nd)) if isinstance(v, tuple) else v for k, v in args.items()}


def _close(ours: np.ndarray, ref: np.ndarray, tol: float) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-30) if ref.size else 1.0
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * scale)


def _torch_jacobian(fn, x: np.ndarray) -> np.ndarray:
    """``(out.size, x.size)`` from torch's forward on basis inputs (not its backward); ``x`` of batch 1."""
    basis = torch.eye(x.size, dtype=torch.float64).reshape((x.size, *x.shape[1:]))
    return fn(basis).reshape(x.size, -1).numpy().T


def _both(x: np.ndarray, mode: str, g_seed: int = 1, **kw):
    tx = torch.tensor(x, requires_grad=True)
    ty = TF.interpolate(tx, mode=mode, **kw)
    g = np.random.default_rng(g_seed).standard_normal(tuple(ty.shape)).astype(x.dtype)
    ty.backward(torch.tensor(g))
    rx = rg.tensor(x, requires_grad=True)
    ry = F.interpolate(rx, mode=mode, **kw)
    ry.backward(rg.tensor(g))
    return (ry.detach().numpy(), ty.detach().numpy()), (rx.grad.numpy(), tx.grad.numpy()), g


def _torch_backward_is_wrong(mode: str, x: np.ndarray, args: dict, align_corners) -> bool:
    """torch's bicubic backward copies the gradient when every output size equals its input size,
    although its forward still resamples by 1 / scale_factor: its gradient is not the adjoint there."""
    if mode != "bicubic" or align_corners or "scale_factor" not in args or args.get("recompute_scale_factor"):
        return False
    sf = args["scale_factor"] if isinstance(args["scale_factor"], tuple) else (args["scale_factor"],) * 2
    return all(int(np.floor(n * f)) == n for n, f in zip(x.shape[2:], sf)) and any(f != 1 for f in sf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("align_corners", [None, False, True], ids=["ac=None", "ac=False", "ac=True"])
@pytest.mark.parametrize("mode", list(SHAPES))
def test_matches_torch(mode, align_corners, dtype):
    rng = np.random.default_rng(0)
    shape = SHAPES[mode]
    tol = BICUBIC_F32_TOL if (mode, dtype) == ("bicubic", np.float32) else TOL[dtype]
    for args in ARGS:
        args = _fit(args, len(shape) - 2)
        x = rng.standard_normal(shape).astype(dtype)
        (y, ty), (gx, tgx), _ = _both(x, mode, align_corners=align_corners, **args)
        assert y.dtype == dtype, (mode, args)
        _close(y, ty, tol)
        if not _torch_backward_is_wrong(mode, x, args, align_corners):
            _close(gx, tgx, tol)


def test_bicubic_same_size_backward_is_the_adjoint_of_torchs_forward():
    # (5, 6) * 1.1 -> (5, 6): torch's forward resamples with scale 1/1.1, its backward copies g.
    x = np.random.default_rng(2).standard_normal((1, 1, 5, 6))
    (y, ty), (gx, tgx), g = _both(x, "bicubic", scale_factor=1.1)
    _close(y, ty, 1e-12)
    jac = _torch_jacobian(lambda e: TF.interpolate(e, scale_factor=1.1, mode="bicubic"), x)
    _close(gx.ravel(), jac.T @ g.ravel(), 1e-12)
    assert not np.allclose(tgx, gx)  # documents torch's copy; drop if torch fixes it


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_area_matches_torch(dtype):
    rng = np.random.default_rng(3)
    for shape in [(2, 3, 7), (2, 3, 5, 6), (1, 2, 4, 5, 3)]:
        for args in [dict(size=3), dict(size=(9, 2)), dict(scale_factor=1.7), dict(scale_factor=0.6),
                     dict(scale_factor=(0.5, 2.0)), dict(scale_factor=2, recompute_scale_factor=False)]:
            args = _fit(args, len(shape) - 2)
            x = rng.standard_normal(shape).astype(dtype)
            (y, ty), (gx, tgx), _ = _both(x, "area", **args)
            _close(y, ty, TOL[dtype])
            _close(gx, tgx, TOL[dtype])


def test_equal_sizes_give_a_copy_and_identity_gradient():
    x = rg.tensor(np.arange(12.0).reshape(1, 1, 3, 4), requires_grad=True)
    y = F.interpolate(x, size=(3, 4), mode="bilinear")
    assert y is not x and np.array_equal(y.detach().numpy(), x.detach().numpy())
    y.sum().backward()
    assert np.array_equal(x.grad.data, np.ones((1, 1, 3, 4)))


def test_integer_input_is_resampled_in_the_default_float():
    x = np.arange(6).reshape(1, 1, 6)
    y = F.interpolate(rg.tensor(x), size=4, mode="linear")
    assert y.dtype == rg.float32
    _close(y.data, TF.interpolate(torch.tensor(x, dtype=torch.float32), size=4, mode="linear").numpy(), 1e-6)


def test_upsample_module_matches_torch():
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for kw in [dict(scale_factor=2, mode="bilinear", align_corners=True), dict(size=(7, 3), mode="bicubic"),
               dict(scale_factor=0.5, mode="area")]:
        ours = rg.nn.Upsample(**kw)(rg.tensor(x)).data
        _close(ours, torch.nn.Upsample(**kw)(torch.tensor(x)).numpy(), BICUBIC_F32_TOL)


GRAD_CASES = [("linear", (2, 2, 5), dict(scale_factor=1.7)), ("linear", (1, 2, 6), dict(size=4)),
              ("bilinear", (1, 2, 4, 5), dict(size=(7, 3))), ("bicubic", (1, 2, 4, 5), dict(scale_factor=1.6)),
              ("bicubic", (1, 1, 5, 4), dict(size=(3, 2))), ("trilinear", (1, 1, 3, 4, 3), dict(size=(5, 2, 4))),
              ("area", (1, 2, 5, 4), dict(size=(3, 3))), ("area", (1, 1, 4, 3, 5), dict(scale_factor=0.7))]


@pytest.mark.parametrize("mode,shape,kw", GRAD_CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(GRAD_CASES)])
def test_gradcheck_and_gradgradcheck(mode, shape, kw):
    x = rg.tensor(np.random.default_rng(5).standard_normal(shape), requires_grad=True)
    for ac in ([None] if mode == "area" else [False, True]):
        fn = lambda t: F.interpolate(t, mode=mode, align_corners=ac, **kw)  # noqa: E731
        assert gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)
        assert gradgradcheck(fn, (x,))


def test_second_derivative_goes_through_the_backward_rule():
    x = rg.tensor(np.random.default_rng(6).standard_normal((1, 1, 4, 5)), requires_grad=True)
    y = F.interpolate(x, scale_factor=1.5, mode="bilinear")
    (gx,) = rg.grad((y * y).sum(), x, create_graph=True)
    (hx,) = rg.grad(gx.sum(), x)
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    ty = TF.interpolate(tx, scale_factor=1.5, mode="bilinear")
    (tgx,) = torch.autograd.grad((ty * ty).sum(), tx, create_graph=True)
    (thx,) = torch.autograd.grad(tgx.sum(), tx)
    _close(gx.data, tgx.detach().numpy(), 1e-12)
    _close(hx.data, thx.numpy(), 1e-12)


ERRORS = [
    (NotImplementedError, "interpolate: Got 4D input, but linear mode needs 3D input", (1, 2, 3, 3),
     dict(size=4, mode="linear")),
    (NotImplementedError, "interpolate: Got 5D input, but linear mode needs 3D input", (1, 2, 3, 3, 3),
     dict(size=4, mode="linear")),
    (NotImplementedError, "interpolate: Got 3D input, but bilinear mode needs 4D input", (1, 2, 3),
     dict(size=4, mode="bilinear")),
    (NotImplementedError, "interpolate: Got 5D input, but bicubic mode needs 4D input", (1, 2, 3, 3, 3),
     dict(size=4, mode="bicubic")),
    (NotImplementedError, "interpolate: Got 4D input, but trilinear mode needs 5D input", (1, 2, 3, 3),
     dict(size=4, mode="trilinear")),
    (NotImplementedError, "Only 3D, 4D and 5D input Tensors supported (got 2D)", (2, 3), dict(size=4, mode="linear")),
    (NotImplementedError, "Only 3D, 4D and 5D input Tensors supported (got 6D)", (1, 1, 2, 2, 2, 2), dict(size=4)),
    (NotImplementedError, "interpolate: mode 'cubic' is not implemented", (1, 2, 3), dict(size=4, mode="cubic")),
    (NotImplementedError, "interpolate: antialias=True is not implemented (mode 'bilinear')", (1, 2, 3, 3),
     dict(size=4, mode="bilinear", antialias=True)),
    (ValueError, "Anti-alias option is restricted to bilinear and bicubic modes", (1, 2, 3),
     dict(size=4, mode="linear", antialias=True)),
    (ValueError, "align_corners option can only be set with the interpolating modes", (1, 2, 3, 3),
     dict(size=4, mode="area", align_corners=True)),
    (ValueError, "align_corners option can only be set with the interpolating modes", (1, 2, 3, 3),
     dict(size=4, mode="nearest", align_corners=False)),
    (ValueError, "only one of size or scale_factor should be defined", (1, 2, 3, 3),
     dict(size=4, scale_factor=2, mode="bilinear")),
    (ValueError, "either size or scale_factor should be defined", (1, 2, 3, 3), dict(mode="bilinear")),
    (ValueError, "Input and output must have the same number of spatial dimensions, but got input with spatial "
                 "dimensions of [3, 3] and output size of (2, 2, 2)", (1, 2, 3, 3),
     dict(size=(2, 2, 2), mode="bilinear")),
    (ValueError, "Input and scale_factor must have the same number of spatial dimensions, but got input with "
                 "spatial dimensions of [3, 3] and scale_factor of shape (2, 2, 2)", (1, 2, 3, 3),
     dict(scale_factor=(2, 2, 2), mode="bicubic")),
    (TypeError, "expected size to be one of int or Tuple[int]", (1, 2, 3, 3), dict(size=(2.0, 2), mode="bilinear")),
    (ValueError, "recompute_scale_factor is not meaningful with an explicit size", (1, 2, 3, 3),
     dict(size=4, mode="bilinear", recompute_scale_factor=True)),
    (RuntimeError, "Input and output sizes should be greater than 0, but got input (H: 3, W: 3) output (H: 0, W: 2)",
     (1, 2, 3, 3), dict(size=(0, 2), mode="bilinear")),
    (RuntimeError, "Input and output sizes should be greater than 0, but got input (W: 3) output (W: 0)",
     (1, 2, 3), dict(scale_factor=0.1, mode="linear")),
    (RuntimeError, "Input and output sizes should be greater than 0, but got input (D: 2, H: 2, W: 2) output "
                   "(D: -4, H: -4, W: -4)", (1, 1, 2, 2, 2), dict(scale_factor=-2, mode="trilinear")),
    (RuntimeError, "Input and output sizes should be greater than 0, but got input (H: 0, W: 3)", (1, 2, 0, 3),
     dict(size=4, mode="bicubic")),
    (RuntimeError, "scale_factor must be finite", (1, 2, 3), dict(scale_factor=float("nan"), mode="linear")),
]


@pytest.mark.parametrize("exc,msg,shape,kw", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors(exc, msg, shape, kw):
    with pytest.raises(exc, match=re.escape(msg)):
        F.interpolate(rg.zeros(*shape), **kw)
    # ours only: unknown mode, antialias, NaN scale; torch names no mode for a 3-D/5-D bicubic input
    if not msg.startswith(("interpolate: mode", "interpolate: antialias", "scale_factor must be finite",
                           "interpolate: Got 5D input, but bicubic")):
        # the same arguments fail in torch with the same type and (prefix aside) the same text
        with pytest.raises(exc, match=re.escape(msg.removeprefix("interpolate: ").split(" (")[0]
                                                if "Anti-alias" not in msg else "Anti-alias option")):
            TF.interpolate(torch.zeros(*shape), **kw)


def test_empty_batch_and_area_to_zero():
    y = F.interpolate(rg.zeros(0, 2, 3, 3), size=4, mode="bilinear")
    assert y.shape == (0, 2, 4, 4)
    assert F.interpolate(rg.zeros(1, 2, 3, 3), scale_factor=0.3, mode="area").shape == (1, 2, 0, 0)
