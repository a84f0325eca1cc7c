"""new_* factories, repeat_interleave, unique, narrow, outer, F.normalize, F.one_hot, pixel shuffle,
channel dropout and RNN.flatten_parameters, against PyTorch 2.13 (values, dtypes, gradients, errors)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import retrograd as rg
import retrograd.nn as nn
import retrograd.nn.functional as F

RNG = np.random.default_rng(0)


def _dt(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check(r, t, tol=1e-12):
    assert _dt(r) == _dt(t) and tuple(r.shape) == tuple(t.shape)
    np.testing.assert_allclose(r.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


def _grad_vs_torch(fn_rg, fn_torch, *arrays, tol=1e-12):
    """Run one function in both libraries on float64 copies of ``arrays``; compare outputs and the
    gradients of ``sum(out * w)`` for a random ``w``."""
    xs = [rg.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    r, t = fn_rg(*xs), fn_torch(*ts)
    _check(r, t, tol)
    w = RNG.standard_normal(tuple(t.shape))
    (r * rg.tensor(w)).sum().backward()
    (t * torch.tensor(w)).sum().backward()
    for x, tt in zip(xs, ts):
        np.testing.assert_allclose(x.grad.numpy(), tt.grad.numpy(), rtol=tol, atol=tol)


# ------------------------------------------------------------------ new_* factories
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
def test_new_factories_as_torch(dtype):
    r = rg.zeros(2, dtype=getattr(rg, dtype))
    t = torch.zeros(2, dtype=getattr(torch, dtype))
    for call in (lambda x, m: x.new_zeros(2, 3), lambda x, m: x.new_zeros((2, 3)), lambda x, m: x.new_ones([3]),
                 lambda x, m: x.new_full((2, 2), 1), lambda x, m: x.new_tensor([1, 0, 2]),
                 lambda x, m: x.new_tensor([[1.5, 0.0]]), lambda x, m: x.new_zeros(2, dtype=m.float64),
                 lambda x, m: x.new_ones(2, dtype=m.int32), lambda x, m: x.new_tensor([1.5], dtype=m.float64)):
        _check(call(r, rg), call(t, torch))
    _check(r.new_empty(2, 3).zero_(), t.new_empty(2, 3).zero_())


def test_new_factories_are_fresh_leaves():
    x = rg.ones(3, requires_grad=True)
    y = x.new_zeros(3)
    assert y.is_leaf and not y.requires_grad
    z = x.new_ones(3, requires_grad=True)
    assert z.requires_grad and z.is_leaf
    src = rg.tensor([1.0, 2.0])
    c = x.new_tensor(src)
    c.add_(1)
    assert src.tolist() == [1.0, 2.0]  # new_tensor copies
    with pytest.raises(RuntimeError, match="negative dimension"):
        x.new_zeros(-1)


# ------------------------------------------------------------------ repeat_interleave
@pytest.mark.parametrize("repeats,dim", [(2, None), (3, 0), (2, 1), (2, -1), ([1, 0, 2], 1), ([2, 1], 0),
                                         ([0, 0, 0], 1), ("scalar_tensor", 1)])
def test_repeat_interleave_values_and_grads(repeats, dim):
    a = RNG.standard_normal((2, 3))

    def make(lib):
        if repeats == "scalar_tensor":
            rep = lib.tensor(2)
        elif isinstance(repeats, list):
            rep = lib.tensor(repeats)
        else:
            rep = repeats
        return lambda x: x.repeat_interleave(rep, dim=dim)
    _grad_vs_torch(make(rg), make(torch), a)
    _grad_vs_torch(lambda x: rg.repeat_interleave(x, 2, dim), lambda x: torch.repeat_interleave(x, 2, dim), a)


def test_repeat_interleave_counts_only_and_ints():
    c = [2, 0, 3]
    _check(rg.repeat_interleave(rg.tensor(c)), torch.repeat_interleave(torch.tensor(c)))
    _check(rg.tensor([[1, 2], [3, 4]]).repeat_interleave(2), torch.tensor([[1, 2], [3, 4]]).repeat_interleave(2))
    _check(rg.tensor(5.0).repeat_interleave(3), torch.tensor(5.0, dtype=torch.float32).repeat_interleave(3),
           tol=0)
    _check(rg.tensor([1, 2]).repeat_interleave(2, dim=0, output_size=4),
           torch.tensor([1, 2]).repeat_interleave(2, dim=0, output_size=4))


@pytest.mark.parametrize("call", [
    lambda m: m.ones(2, 3).repeat_interleave(m.tensor([1, 2]), dim=1),
    lambda m: m.ones(3).repeat_interleave(-1),
    lambda m: m.ones(3).repeat_interleave(m.tensor([1, -1, 1])),
    lambda m: m.ones(3).repeat_interleave(m.tensor([[1, 1, 1]])),
])
def test_repeat_interleave_errors_as_torch(call):
    with pytest.raises(RuntimeError):
        call(torch)
    with pytest.raises(RuntimeError, match="repeat_interleave"):
        call(rg)


# ------------------------------------------------------------------ unique
@pytest.mark.parametrize("data", [[3, 1, 2, 3, 1, 1], [[2.5, 0.0], [2.5, -1.0]], [True, False, True], []])
@pytest.mark.parametrize("inv,counts", [(False, False), (True, False), (False, True), (True, True)])
def test_unique_as_torch(data, inv, counts):
    r = rg.tensor(data).unique(return_inverse=inv, return_counts=counts)
    t = torch.tensor(data).unique(return_inverse=inv, return_counts=counts)
    r, t = (r, t) if isinstance(t, tuple) else ((r,), (t,))
    assert len(r) == len(t)
    for a, b in zip(r, t):
        _check(a, b, tol=0)
    f = rg.unique(rg.tensor(data), sorted=True, return_inverse=inv, return_counts=counts)
    assert len(f if isinstance(f, tuple) else (f,)) == len(t)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_unique_dim_as_torch(dim):
    data = [[1, 2, 1, 2], [3, 4, 3, 0], [1, 2, 1, 2]]
    r = rg.tensor(data).unique(dim=dim, return_inverse=True, return_counts=True)
    t = torch.tensor(data).unique(dim=dim, return_inverse=True, return_counts=True)
    for a, b in zip(r, t):
        _check(a, b, tol=0)


def test_unique_sorted_false_gives_the_same_set():
    r = rg.tensor([3, 1, 2, 3]).unique(sorted=False)
    t = torch.tensor([3, 1, 2, 3]).unique(sorted=False)
    assert sorted(r.tolist()) == sorted(t.tolist())


# ------------------------------------------------------------------ narrow and outer
@pytest.mark.parametrize("dim,start,length", [(0, 0, 2), (1, 1, 2), (-1, -3, 3), (1, 4, 0), (0, 1, 2)])
def test_narrow_as_torch(dim, start, length):
    a = RNG.standard_normal((3, 4))
    _grad_vs_torch(lambda x: x.narrow(dim, start, length), lambda x: x.narrow(dim, start, length), a)
    _grad_vs_torch(lambda x: rg.narrow(x, dim, rg.tensor(start), length),
                   lambda x: torch.narrow(x, dim, torch.tensor(start), length), a)


@pytest.mark.parametrize("dim,start,length,kind", [(0, 2, 2, RuntimeError), (1, 5, 0, IndexError),
                                                   (2, 0, 1, IndexError), (0, 0, -1, RuntimeError)])
def test_narrow_errors_as_torch(dim, start, length, kind):
    with pytest.raises(kind):
        torch.ones(3, 4).narrow(dim, start, length)
    with pytest.raises(kind):
        rg.ones(3, 4).narrow(dim, start, length)
    with pytest.raises(RuntimeError, match="0-dim"):
        rg.tensor(1.0).narrow(0, 0, 1)


def test_narrow_is_a_view():
    x = rg.zeros(4)
    x.narrow(0, 1, 2).fill_(1.0)
    assert x.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_outer_as_torch():
    a, b = RNG.standard_normal(3), RNG.standard_normal(4)
    _grad_vs_torch(lambda x, y: x.outer(y), lambda x, y: x.outer(y), a, b)
    _grad_vs_torch(lambda x, y: rg.outer(x, y), lambda x, y: torch.outer(x, y), a, b)
    _grad_vs_torch(lambda x, y: x.ger(y), lambda x, y: x.outer(y), a, b)
    _check(rg.tensor([1, 2]).outer(rg.tensor([0.5, 1.0])), torch.tensor([1, 2]).outer(torch.tensor([0.5, 1.0])))
    with pytest.raises(RuntimeError):
        torch.ones(2, 2).outer(torch.ones(2))
    with pytest.raises(RuntimeError, match="outer: expected 1-D"):
        rg.ones(2, 2).outer(rg.ones(2))


# ------------------------------------------------------------------ F.normalize, F.one_hot
@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, 0), (2.0, -1), (3.0, 1)])
def test_normalize_as_torch(p, dim):
    a = RNG.standard_normal((3, 4))
    a[1] = 0.0  # a zero row: eps keeps it finite
    _grad_vs_torch(lambda x: F.normalize(x, p=p, dim=dim), lambda x: TF.normalize(x, p=p, dim=dim), a)


def test_normalize_float32_default():
    a = RNG.standard_normal((2, 5)).astype(np.float32)
    _check(F.normalize(rg.tensor(a)), TF.normalize(torch.tensor(a)), tol=1e-6)


@pytest.mark.parametrize("data,n", [([0, 2, 1], -1), ([[0, 3], [1, 1]], 5), ([], 3)])
def test_one_hot_as_torch(data, n):
    _check(F.one_hot(rg.tensor(data, dtype=rg.int64), n), TF.one_hot(torch.tensor(data, dtype=torch.int64), n),
           tol=0)


@pytest.mark.parametrize("data,n,match", [([0.0, 1.0], -1, "LongTensor"), ([0, 5], 3, "smaller than num_classes"),
                                          ([-1, 0], -1, "non-negative"), ([], -1, "empty")])
def test_one_hot_errors_as_torch(data, n, match):
    dt = (torch.float32, rg.float32) if isinstance(data[:1] and data[0], float) else (torch.int64, rg.int64)
    with pytest.raises(RuntimeError):
        TF.one_hot(torch.tensor(data, dtype=dt[0]), n)
    with pytest.raises(RuntimeError, match=match):
        F.one_hot(rg.tensor(data, dtype=dt[1]), n)


# ------------------------------------------------------------------ pixel shuffle
@pytest.mark.parametrize("shape,r", [((1, 8, 2, 3), 2), ((2, 9, 2, 2), 3), ((4, 3, 3), 1), ((2, 2, 4, 1, 1), 2)])
def test_pixel_shuffle_as_torch(shape, r):
    a = RNG.standard_normal(shape)
    _grad_vs_torch(lambda x: F.pixel_shuffle(x, r), lambda x: TF.pixel_shuffle(x, r), a)
    up = TF.pixel_shuffle(torch.tensor(a), r).numpy()
    _grad_vs_torch(lambda x: F.pixel_unshuffle(x, r), lambda x: TF.pixel_unshuffle(x, r), up)
    _grad_vs_torch(lambda x: nn.PixelShuffle(r)(x), lambda x: torch.nn.PixelShuffle(r)(x), a)
    _grad_vs_torch(lambda x: nn.PixelUnshuffle(r)(x), lambda x: torch.nn.PixelUnshuffle(r)(x), up)
    assert repr(nn.PixelShuffle(r)) == repr(torch.nn.PixelShuffle(r))
    assert repr(nn.PixelUnshuffle(r)) == repr(torch.nn.PixelUnshuffle(r))


@pytest.mark.parametrize("fn,shape,r,match", [("pixel_shuffle", (1, 5, 2, 2), 2, "divisible by the square"),
                                              ("pixel_unshuffle", (1, 1, 3, 4), 2, "height to be divisible"),
                                              ("pixel_unshuffle", (1, 1, 4, 3), 2, "width to be divisible"),
                                              ("pixel_shuffle", (4, 4), 2, "at least 3 dimensions")])
def test_pixel_shuffle_errors_as_torch(fn, shape, r, match):
    with pytest.raises(RuntimeError, match=match):
        getattr(TF, fn)(torch.ones(shape), r)
    with pytest.raises(RuntimeError, match=match):
        getattr(F, fn)(rg.ones(shape), r)


# ------------------------------------------------------------------ channel dropout
@pytest.mark.parametrize("fn,module,shape,mask_dims", [
    ("dropout1d", nn.Dropout1d, (4, 6, 5), 2), ("dropout1d", nn.Dropout1d, (6, 5), 1),
    ("dropout2d", nn.Dropout2d, (4, 6, 3, 3), 2), ("dropout2d", nn.Dropout2d, (4, 6, 5), 2),
    ("dropout3d", nn.Dropout3d, (2, 6, 2, 2, 2), 2), ("dropout3d", nn.Dropout3d, (6, 2, 2, 2), 1)])
@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input")  # the (N, C, L) case warns, as torch
def test_channel_dropout_zeroes_whole_channels(fn, module, shape, mask_dims):
    x = rg.ones(*shape, dtype=rg.float64)
    out = getattr(F, fn)(x, 0.5, training=True, generator=rg.Generator(1)).numpy()
    per_channel = out.reshape(shape[:mask_dims] + (-1,))
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))  # whole channels, scaled 1/(1-p)
    assert 0 < (per_channel[..., 0] == 0).mean() < 1
    m = module(0.5)
    assert repr(m) == repr(getattr(torch.nn, module.__name__)(0.5))
    m.eval()
    assert m(x) is x
    assert getattr(F, fn)(x, 0.5, training=False) is x and getattr(F, fn)(x, 0.0) is x
    assert np.all(getattr(F, fn)(x, 1.0).numpy() == 0)


def test_channel_dropout_rate_and_grad():
    x = rg.ones(400, 50, 2, 2, dtype=rg.float64, requires_grad=True)
    y = F.dropout2d(x, 0.3, generator=rg.Generator(0))
    y.sum().backward()
    kept = (y.detach().numpy()[:, :, 0, 0] != 0)
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(x.grad.numpy(), y.detach().numpy())  # gradient is the mask / (1 - p)


@pytest.mark.parametrize("fn,shape", [("dropout1d", (3,)), ("dropout1d", (2, 3, 4, 5)), ("dropout2d", (3,))])
def test_channel_dropout_rank_errors_as_torch(fn, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the rank before it raises
        with pytest.raises(RuntimeError):
            getattr(TF, fn)(torch.ones(shape), 0.5)
        with pytest.raises(RuntimeError, match=fn):
            getattr(F, fn)(rg.ones(shape), 0.5)


@pytest.mark.parametrize("fn,shape", [("dropout2d", (4, 6)), ("dropout2d", (4, 6, 5)), ("dropout3d", (6, 2, 2)),
                                      ("dropout3d", (2, 2, 6, 2, 2, 2))])
def test_channel_dropout_deprecated_ranks_warn_and_run_as_torch(fn, shape):
    with pytest.warns(UserWarning, match=fn):
        t = getattr(TF, fn)(torch.ones(shape, dtype=torch.float64), 0.5)
    with pytest.warns(UserWarning, match=fn):
        r = getattr(F, fn)(rg.ones(*shape, dtype=rg.float64), 0.5, generator=rg.Generator(0))
    assert tuple(r.shape) == tuple(t.shape)
    # the elements that share one draw: (N, C) pairs for dropout2d; the first dim for unbatched dropout3d
    groups = shape[0] * shape[1] if fn == "dropout2d" else shape[0]
    for out in (r.numpy(), t.numpy()):
        flat = out.reshape(groups, -1)
        assert np.all((flat == 0).all(-1) | (flat == 2.0).all(-1))


def test_channel_dropout_bad_p():
    with pytest.raises(ValueError):
        TF.dropout2d(torch.ones(2, 2, 2, 2), 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout2d(rg.ones(2, 2, 2, 2), 1.5)


# ------------------------------------------------------------------ RNN.flatten_parameters
@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_flatten_parameters_is_a_no_op(cls):
    m = getattr(nn, cls)(3, 4, batch_first=True)
    before = [p.detach().numpy().copy() for p in m.parameters()]
    x = rg.randn(2, 5, 3)
    out = m(x)[0].detach().numpy().copy()
    assert m.flatten_parameters() is None
    assert getattr(torch.nn, cls)(3, 4).flatten_parameters() is None
    for b, p in zip(before, m.parameters()):
        np.testing.assert_array_equal(b, p.detach().numpy())
    np.testing.assert_array_equal(m(x)[0].detach().numpy(), out)
