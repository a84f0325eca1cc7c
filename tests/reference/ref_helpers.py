"""Run one function on retrograd and on PyTorch tensors and compare them.

In the spirit of tinygrad's ``helper_test_op``: a table entry is a function of
tensors (``lambda x, y: x * y``) that is valid in both libraries; ``ns(x)``
gives the library of ``x`` (``ns(x).cat(...)``), ``const(x, arr)`` turns a
NumPy constant (an index, a mask) into a tensor of that library.

``compare_with_torch`` builds the inputs in float64 from a seeded generator,
casts them to the dtype under test, runs the function in both libraries, and
compares the results' dtypes, shapes and values and the gradients of
``sum(out_i * R_i)`` for fixed random ``R_i``. ``finite_difference_check``
checks retrograd's float64 gradient against central differences.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

import retrograd as rg

TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class In:
    """One input: its shape, how its values are drawn, whether it needs grad."""

    shape: tuple
    kind: str = "normal"  # normal | pos | nonzero | unit | distinct | ties
    grad: bool = True

    def __repr__(self) -> str:
        s = "x".join(str(d) for d in self.shape) or "scalar"
        return s if self.kind == "normal" else f"{self.kind}{s}"


def _as_in(spec: Any) -> In:
    return spec if isinstance(spec, In) else In(tuple(spec))


def draw(spec: In, rng: np.random.Generator) -> np.ndarray:
    shape, n = spec.shape, int(np.prod(spec.shape, dtype=np.int64))
    if spec.kind == "normal":
        a = rng.standard_normal(shape)
    elif spec.kind == "pos":  # domain of log, sqrt, pow base: away from 0
        a = rng.uniform(0.5, 2.0, shape)
    elif spec.kind == "nonzero":  # away from the kink of abs, sign, relu and the pole of 1/x
        a = rng.uniform(0.3, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    elif spec.kind == "unit":
        a = rng.uniform(-0.9, 0.9, shape)
    elif spec.kind == "ties":  # few distinct values: max/min/maximum split the gradient among ties
        a = np.round(rng.standard_normal(shape)) / 2
    elif spec.kind == "distinct":  # max/min/sort/topk: no ties, gaps far above the FD step
        a = (rng.permutation(n) - n / 2) * 0.3 + rng.uniform(0, 0.05, n)
        a = a.reshape(shape)
    else:
        raise ValueError(spec.kind)
    return np.asarray(a, dtype=np.float64)


def seed_of(text: str) -> int:
    return zlib.crc32(text.encode())


# ---------------------------------------------------------------- both libraries
class _TorchNS:
    """``torch`` plus the functional names retrograd exposes at top level."""

    pad = staticmethod(F.pad)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


TORCH_NS = _TorchNS()


def ns(x: Any) -> Any:
    return rg if isinstance(x, rg.Tensor) else TORCH_NS


def const(x: Any, arr: Any) -> Any:
    """A constant (index array, mask) in the library of ``x``."""
    arr = np.asarray(arr)
    if isinstance(x, rg.Tensor):
        return rg.tensor(arr)
    return torch.from_numpy(arr.copy())


def is_rg(x: Any) -> bool:
    return isinstance(x, rg.Tensor)


def to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, rg.Tensor):
        return np.asarray(t.data)
    if t._is_zerotensor():  # torch's symbolic zeros (e.g. the second derivative of abs)
        return np.zeros(tuple(t.shape))
    return t.detach().numpy()


def dtype_name(t: Any) -> str:
    if isinstance(t, rg.Tensor):
        return np.dtype(t.dtype).name
    return str(t.dtype).replace("torch.", "")


def flatten_outputs(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res += flatten_outputs(o)
        return res
    return [out]


def _is_float(t: Any) -> bool:
    return dtype_name(t).startswith("float")


# ---------------------------------------------------------------- one table entry
@dataclass
class Case:
    name: str
    fn: Callable
    inputs: tuple
    tfn: Callable | None = None  # the torch spelling, where it differs
    tol: dict = field(default_factory=dict)  # per-dtype overrides: {"float32": {...}}
    fd: bool = True  # finite-difference check of retrograd's float64 gradient
    dtypes: tuple = ("float64", "float32")

    @property
    def id(self) -> str:
        return f"{self.name}[{','.join(repr(i) for i in self.inputs)}]"


def cases(name: str, fn: Callable, input_sets: list, **kw: Any) -> list[Case]:
    """One Case per input set; an input set is a tuple of shapes/In."""
    out = []
    for s in input_sets:
        if not isinstance(s, tuple) or (s and not isinstance(s[0], (tuple, In))) or s == ():
            s = (s,)
        out.append(Case(name, fn, tuple(_as_in(x) for x in s), **kw))
    return out


def make_inputs(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(seed_of(case.id))
    return [draw(spec, rng) for spec in case.inputs]


def _run(lib: str, fn: Callable, arrays: list, specs: tuple, dtype: str) -> tuple[list, list]:
    xs = []
    for a, spec in zip(arrays, specs):
        a = a.astype(dtype)
        if lib == "rg":
            xs.append(rg.tensor(a, requires_grad=spec.grad))
        else:
            xs.append(torch.from_numpy(a.copy()).requires_grad_(spec.grad))
    return xs, flatten_outputs(fn(*xs))


def compare_with_torch(case: Case, dtype: str) -> None:
    arrays = make_inputs(case)
    tol = dict(TOL[dtype], **case.tol.get(dtype, {}))
    rx, rout = _run("rg", case.fn, arrays, case.inputs, dtype)
    tx, tout = _run("torch", case.tfn or case.fn, arrays, case.inputs, dtype)
    assert len(rout) == len(tout), f"{case.id}: {len(rout)} outputs, torch gives {len(tout)}"
    rng = np.random.default_rng(seed_of(case.id) + 1)
    r_loss = t_loss = None
    for i, (r, t) in enumerate(zip(rout, tout)):
        assert isinstance(r, rg.Tensor), f"{case.id}: output {i} is {type(r).__name__}, not a Tensor"
        assert dtype_name(r) == dtype_name(t), \
            f"{case.id}: output {i} dtype {dtype_name(r)}, torch gives {dtype_name(t)}"
        assert tuple(r.shape) == tuple(t.shape), \
            f"{case.id}: output {i} shape {tuple(r.shape)}, torch gives {tuple(t.shape)}"
        rv, tv = to_numpy(r), to_numpy(t)
        if _is_float(t):
            np.testing.assert_allclose(rv, tv, equal_nan=True, err_msg=f"{case.id}: output {i}", **tol)
        else:
            np.testing.assert_array_equal(rv, tv, err_msg=f"{case.id}: output {i}")
        assert bool(r.requires_grad) == bool(t.requires_grad), \
            f"{case.id}: output {i} requires_grad={r.requires_grad}, torch says {t.requires_grad}"
        if t.requires_grad:
            R = rng.standard_normal(tuple(t.shape))
            r_term = (r * rg.tensor(R.astype(dtype))).sum()
            t_term = (t * torch.from_numpy(R.astype(dtype))).sum()
            r_loss = r_term if r_loss is None else r_loss + r_term
            t_loss = t_term if t_loss is None else t_loss + t_term
    if t_loss is None:
        return
    r_loss.backward()
    t_loss.backward()
    for i, (a, b, spec) in enumerate(zip(rx, tx, case.inputs)):
        if not spec.grad:
            continue
        tg = b.grad
        rgd = a.grad
        if tg is None:
            assert rgd is None or not np.any(to_numpy(rgd)), f"{case.id}: grad {i} should be None/zero"
            continue
        assert rgd is not None, f"{case.id}: input {i} got no gradient, torch gives one"
        assert dtype_name(rgd) == dtype_name(tg), f"{case.id}: grad {i} dtype {dtype_name(rgd)}"
        assert tuple(rgd.shape) == tuple(tg.shape), f"{case.id}: grad {i} shape {tuple(rgd.shape)}"
        np.testing.assert_allclose(to_numpy(rgd), to_numpy(tg), equal_nan=True,
                                   err_msg=f"{case.id}: grad of input {i}", **tol)


# ---------------------------------------------------------------- finite differences
def _float_outputs(fn: Callable) -> Callable:
    # clone: a view's output shares memory with the input that gradcheck perturbs in place
    def f(*xs):
        outs = [o.clone() for o in flatten_outputs(fn(*xs)) if _is_float(o) and o.requires_grad]
        return outs[0] if len(outs) == 1 else tuple(outs)
    return f


def differentiable_outputs(case: Case) -> bool:
    """Whether torch finds a differentiable output (decides which cases get a gradcheck)."""
    arrays = make_inputs(case)
    try:
        _, outs = _run("torch", case.tfn or case.fn, arrays, case.inputs, "float64")
    except Exception:  # a broken table entry: keep it, so that its test reports the error
        return True
    return any(_is_float(o) and o.requires_grad and o.numel() for o in outs)


def gradcheck_float64(case: Case) -> None:
    """retrograd's float64 Jacobian against central finite differences."""
    arrays = make_inputs(case)
    xs = [rg.tensor(a, requires_grad=s.grad) for a, s in zip(arrays, case.inputs)]
    assert rg.autograd.gradcheck(_float_outputs(case.fn), tuple(xs), eps=1e-6, atol=1e-5, rtol=1e-3)


# ---------------------------------------------------------------- second derivatives
def _hvp(lib: str, case: Case, arrays: list, Rs: list | None, Vs: list | None) -> tuple[list, list, list]:
    """Hessian-vector products of ``sum(out * R)`` along ``V``, by double backward."""
    grad_fn = rg.grad if lib == "rg" else torch.autograd.grad
    xs, outs = _run(lib, case.fn if lib == "rg" else case.tfn or case.fn, arrays, case.inputs, "float64")
    outs = [o for o in outs if _is_float(o) and o.requires_grad]
    if Rs is None:
        rng = np.random.default_rng(seed_of(case.id) + 2)
        Rs = [rng.standard_normal(tuple(o.shape)) for o in outs]
        Vs = [rng.standard_normal(a.shape) for a in arrays]
    wrap = rg.tensor if lib == "rg" else torch.from_numpy
    loss = sum((o * wrap(R)).sum() for o, R in zip(outs, Rs))
    wrt = [x for x, s in zip(xs, case.inputs) if s.grad]
    vs = [V for V, s in zip(Vs, case.inputs) if s.grad]
    gs = grad_fn(loss, wrt, create_graph=True, allow_unused=True)
    terms = [(g * wrap(V)).sum() for g, V in zip(gs, vs) if g is not None and g.requires_grad]
    if not terms:  # the gradient does not depend on the inputs: the Hessian is zero
        return [None] * len(wrt), Rs, Vs
    hv = grad_fn(sum(terms), wrt, allow_unused=True)
    return list(hv), Rs, Vs


def compare_hvp_with_torch(case: Case) -> None:
    arrays = make_inputs(case)
    t_hv, Rs, Vs = _hvp("torch", case, arrays, None, None)
    r_hv, _, _ = _hvp("rg", case, arrays, Rs, Vs)
    tol = TOL["float64"]
    for i, (r, t) in enumerate(zip(r_hv, t_hv)):
        if t is None:
            assert r is None or not np.any(to_numpy(r)), f"{case.id}: second derivative {i} should be zero"
            continue
        rv = np.zeros(tuple(t.shape)) if r is None else to_numpy(r)  # None: not connected, i.e. zero
        np.testing.assert_allclose(rv, to_numpy(t), err_msg=f"{case.id}: Hessian-vector product {i}",
                                   **tol)


def gradgradcheck_float64(case: Case) -> None:
    arrays = make_inputs(case)
    xs = [rg.tensor(a, requires_grad=s.grad) for a, s in zip(arrays, case.inputs)]
    assert rg.autograd.gradgradcheck(_float_outputs(case.fn), tuple(xs), eps=1e-6, atol=1e-5, rtol=1e-3)


# ---------------------------------------------------------------- errors
def compare_errors(case: Case) -> None:
    """Where PyTorch rejects a call, retrograd rejects it too."""
    arrays = make_inputs(case)
    try:
        _run("torch", case.tfn or case.fn, arrays, case.inputs, "float64")
    except Exception as e:  # noqa: BLE001
        t_exc = e
    else:
        raise AssertionError(f"{case.id}: torch accepts this call; the case belongs in the main table")
    try:
        _run("rg", case.fn, arrays, case.inputs, "float64")
    except Exception as e:  # noqa: BLE001
        r_exc = e
    else:
        raise AssertionError(f"{case.id}: torch raises {type(t_exc).__name__} ({t_exc}); retrograd does not")
    assert isinstance(r_exc, (RuntimeError, IndexError, TypeError, ValueError)), \
        f"{case.id}: retrograd raises {type(r_exc).__name__}: {r_exc}"
