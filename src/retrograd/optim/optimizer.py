"""``Optimizer``: parameter groups, state, state_dict and hooks, on flat buffers.

At construction the parameters of each (param group, dtype) are handed to a
``retrograd.flat.FlatParams``: their values move into one contiguous 1-D buffer
that their ``.data`` become views of, and ``backward`` writes their gradients
straight into a matching flat gradient buffer (the memory model is described
there). Optimizer state (``exp_avg`` ...) lives in flat buffers of the same
layout. A step is then a handful of whole-buffer NumPy operations, written once
in each optimizer's ``_update`` and run either on the whole buffers (every
parameter has a gradient: the common case) or on gathered copies of the
parameters that have one (the others are skipped, as in PyTorch).

Per-parameter scalar state (``step``, NAdam's ``mu_product``) is one small array
per bucket; ``state[p]["step"]`` is a 0-d view into it. When every selected
parameter has the same step (the common case) an update sees Python floats,
exactly as PyTorch's single-tensor code does; otherwise it sees per-element
arrays built with ``StepArrays.expand``.

The layout is PyTorch's: ``param_groups`` (dicts of hyperparameters plus
``params``), ``state`` (a dict keyed by parameter), ``state_dict()`` with
integer parameter indices, ``load_state_dict()`` that accepts a PyTorch
optimizer's state dict whose tensors were converted with ``.numpy()``.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict, defaultdict
from itertools import chain
from typing import Any, Callable, Iterable

import numpy as np

from .. import backend as B
from ..engine import enable_grad
from ..flat import FlatParams
from ..hooks import RemovableHandle, add_hook
from ..tensor import Tensor, wrap_array

__all__ = ["Optimizer", "StepArrays", "required", "register_optimizer_step_pre_hook",
           "register_optimizer_step_post_hook"]


class _RequiredParameter:
    """Singleton marking a hyperparameter a param group must give (PyTorch's ``required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()

# keys PyTorch adds for its own implementation choices; an older or foreign state
# dict may lack them, so load_state_dict fills them from the defaults
_OPTIONAL_KEYS = frozenset({"foreach", "capturable", "differentiable", "fused", "maximize",
                            "decoupled_weight_decay"})

_global_pre_hooks: OrderedDict = OrderedDict()
_global_post_hooks: OrderedDict = OrderedDict()


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """Register ``hook(optimizer, args, kwargs)`` to run before every optimizer's step."""
    return add_hook(_global_pre_hooks, hook)


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """Register ``hook(optimizer, args, kwargs)`` to run after every optimizer's step."""
    return add_hook(_global_post_hooks, hook)


def _hooked(func: Callable) -> Callable:
    """Wrap a ``step`` so the pre/post hooks run around it (once, even when a
    subclass's step calls its parent's)."""

    @functools.wraps(func)
    def step(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if self._in_step:
            return func(*args, **kwargs)
        if _global_pre_hooks or self._step_pre_hooks:
            for hook in chain(_global_pre_hooks.values(), self._step_pre_hooks.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if isinstance(result, tuple) and len(result) == 2:
                        args, kwargs = result
                    else:
                        raise RuntimeError(f"{func} must return None or a tuple of (new_args, new_kwargs), "
                                           f"but got {result}.")
        self._in_step = True
        try:
            _apply_lr_schedules(self, 0)
            out = func(*args, **kwargs)
            _apply_lr_schedules(self, 1)
        finally:
            self._in_step = False
        if self._step_post_hooks or _global_post_hooks:
            for hook in chain(self._step_post_hooks.values(), _global_post_hooks.values()):
                hook(self, args, kwargs)
        return out

    step._hooked = True
    return step


def _apply_lr_schedules(opt: "Optimizer", advance: int) -> None:
    """Groups built with ``lr=schedule`` (a callable of the step, see
    ``optim.schedules``): set ``lr`` to ``schedule(schedule_step)``, after moving
    ``schedule_step`` on by ``advance``. Run before a step (0: the lr of this
    step) and after it (1: the lr of the next step, so ``group["lr"]`` always
    shows the lr the next step uses)."""
    for group in opt.param_groups:
        schedule = group.get("lr_schedule")
        if schedule is not None:
            group["schedule_step"] += advance
            group["lr"] = float(schedule(group["schedule_step"]))


def _scalar_dtype() -> np.dtype:
    # PyTorch keeps ``step`` (and NAdam's ``mu_product``) in float64 only when the
    # default dtype is float64; float32 otherwise. Matching it matters for NAdam.
    return B.float64 if B.get_default_dtype() == B.float64 else B.float32


def _typename(x: Any) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# --------------------------------------------------------------------------- buckets
class _Bucket(FlatParams):
    """The parameters of one (param group, dtype) in flat buffers (``FlatParams``:
    ``data``, ``grad`` and their per-parameter views), plus this optimizer's state
    in buffers of the same layout.

    ``buffers`` maps a state name to its flat buffer; ``scalars`` a scalar state
    name to its ``(n_params,)`` array; ``initialized`` which parameters have
    state (PyTorch creates state lazily, at a parameter's first step with a
    gradient).
    """

    __slots__ = ("buffers", "fills", "scalars", "scalar_dtype", "initialized", "all_initialized", "_full")

    def __init__(self, params: list) -> None:
        super().__init__(params)
        self.buffers: dict[str, np.ndarray] = {}
        self.fills: dict[str, float] = {}
        self.scalar_dtype = _scalar_dtype()
        self.scalars: dict[str, np.ndarray] = {}
        self.initialized = np.zeros(len(params), dtype=bool)
        self.all_initialized = False
        self._full = np.ones(len(params), dtype=bool)

    def buffer(self, name: str, fill: float) -> np.ndarray:
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = np.full(self._array.shape, fill, self.dtype)
            self.fills[name] = fill
        return buf

    def scalar(self, name: str, fill: float) -> np.ndarray:
        arr = self.scalars.get(name)
        if arr is None:
            arr = self.scalars[name] = np.full(len(self.params), fill, self.scalar_dtype)
            self.fills[name] = fill
        return arr

    def state_view(self, name: str, i: int) -> Tensor:
        """The ``state[p][name]`` Tensor of parameter ``i``: a view into the buffer."""
        if name in self.scalars:
            return wrap_array(self.scalars[name][i:i + 1].reshape(()))
        return wrap_array(self.buffers[name][self.segment(i)].reshape(self.views[i].shape))

    def reset(self, i: int) -> None:
        """Forget parameter ``i``'s state: its slices go back to their initial values."""
        seg = self.segment(i)
        for name, buf in self.buffers.items():
            buf[seg] = self.fills[name]
        for name, arr in self.scalars.items():
            arr[i] = self.fills[name]
        self.initialized[i] = False
        self.all_initialized = False


class StepArrays:
    """What one update reads and writes, as flat 1-D arrays.

    ``param``, ``grad`` and each ``state[name]`` cover the parameters taking part
    in this step (the whole buffers, or gathered copies when some parameters have
    no gradient); ``scalars[name]`` holds their per-parameter scalar state;
    ``fresh`` says whose state was just created: None (nobody's), True
    (everybody's) or a per-element boolean mask. ``sizes``/``shapes`` let
    structure-aware optimizers (LAMB, LARS, Muon, Adafactor) work per parameter
    via ``split``/``segment_sum``. Updates write ``param``, ``state`` and
    ``scalars`` in place and never write ``grad``.
    """

    __slots__ = ("param", "grad", "state", "scalars", "fresh", "sizes", "shapes", "dtype")

    def __init__(self, param: np.ndarray, grad: np.ndarray, state: dict, scalars: dict, fresh: Any,
                 sizes: np.ndarray, shapes: list) -> None:
        self.param, self.grad, self.state, self.scalars = param, grad, state, scalars
        self.fresh, self.sizes, self.shapes = fresh, sizes, shapes
        self.dtype = param.dtype

    def scalar(self, name: str) -> Any:
        """``scalars[name]`` as one Python float when all parameters agree (the
        common case, PyTorch's ``.item()``), else as a float64 array per parameter."""
        arr = self.scalars[name]
        vals = arr.tolist()  # (a few floats: Python's compare, not three NumPy calls)
        first = vals[0]
        if vals.count(first) == len(vals) and first == first:  # every one equal (NaN never is)
            return float(first)
        return arr.astype(np.float64)

    def grad_with_decay(self, group: dict, lr: float = 0.0, decoupled: bool = False) -> np.ndarray:
        """The gradient, negated when ``group["maximize"]``, after the group's
        ``weight_decay`` (``weight_decay``: L2 into the returned gradient, or
        decoupled into ``param``). Never writes ``grad``."""
        g = -self.grad if group["maximize"] else self.grad
        return weight_decay(self.param, g, float(group["weight_decay"]), lr=lr, decoupled=decoupled)

    def expand(self, x: Any) -> Any:
        """A per-parameter quantity as something that broadcasts against the flat
        arrays: a Python float stays one, an array becomes one value per element."""
        if isinstance(x, np.ndarray):
            return np.repeat(x.astype(self.dtype), self.sizes)
        return x

    def split(self, arr: np.ndarray) -> list[np.ndarray]:
        """Per-parameter views of a flat array, shaped like the parameters."""
        out, o = [], 0
        for s, shape in zip(self.sizes.tolist(), self.shapes):
            out.append(arr[o:o + s].reshape(shape))
            o += s
        return out

    def segment_sum(self, arr: np.ndarray) -> np.ndarray:
        """Per-parameter sums of a flat array (for per-parameter norms), shape ``(n_params,)``."""
        sizes = self.sizes
        out = np.zeros(len(sizes), dtype=arr.dtype)
        nonempty = sizes > 0
        if nonempty.any():  # reduceat misreads empty segments: leave them out
            out[nonempty] = np.add.reduceat(arr, (np.cumsum(sizes) - sizes)[nonempty])
        return out


def weight_decay(param: np.ndarray, grad: Any, wd: Any, *, lr: float = 0.0, decoupled: bool = False,
                 inplace: bool = False) -> Any:
    """Weight decay, written once for every optimizer; returns the gradient to use.

    L2 (``decoupled=False``; ``weight_decay`` of SGD, Adam, Adagrad ...) adds the
    decay to the gradient: ``grad + wd * param``, a new array, or added into
    ``grad`` with ``inplace`` (for a temporary the caller owns, never the
    gradient buffer). ``wd`` may be an array broadcasting against ``param``
    (LARS: zero for the excluded parameters). Decoupled (AdamW, Lion, Muon,
    Sophia, Adafactor; Loshchilov & Hutter, ICLR 2019) shrinks the parameter
    instead, ``param *= 1 - lr * wd``, and returns ``grad`` unchanged. A ``wd``
    of 0 does nothing. Python-float ``wd``/``lr`` keep the arrays' dtype."""
    if isinstance(wd, np.ndarray) or wd != 0:
        if decoupled:
            param *= 1 - lr * wd
        elif inplace:
            grad += wd * param
        else:
            grad = grad + wd * param
    return grad


def bf16(x: Any) -> np.ndarray:
    """A float32 result rounded to bfloat16 (kept as float32): one PyTorch bfloat16 op's rounding."""
    return B.round_bfloat16(x)


def bf16_alpha(s: float) -> float:
    """A Python-number ``alpha`` (or addend) of PyTorch's bfloat16 ``add``/``sub``: rounded to bfloat16
    first (``mul``, ``div``, ``lerp``, ``addcmul``, ``addcdiv`` keep their scalar in float32)."""
    return float(B.round_bfloat16(np.array([s], np.float32))[0])


def lerp_(a: np.ndarray, b: np.ndarray, w: Any) -> None:
    """``a.lerp_(b, w)`` with PyTorch's formula: ``a + w (b - a)`` for |w| < 0.5,
    ``b - (b - a)(1 - w)`` otherwise (the branches keep ends exact)."""
    if isinstance(w, np.ndarray):
        small = np.abs(w) < 0.5
        np.copyto(a, np.where(small, a + w * (b - a), b - (b - a) * (1 - w)))
    elif abs(w) < 0.5:
        a += w * (b - a)
    else:
        t = a.dtype.type
        np.subtract(b, (b - a) * (t(1) - t(w)), out=a)


# --------------------------------------------------------------------------- optimizer
class Optimizer:
    """Base class of all optimizers.

    ``params`` is an iterable of Tensors or of dicts (param groups: ``params``
    plus per-group hyperparameters overriding ``defaults``). A subclass declares
    its state in ``_state_keys`` (``_state_spec(group)`` where it depends on the
    group) and writes one whole-buffer ``_update(group, arrays)``; the base does grouping, flat buffers, skipping
    parameters without gradients, lazy state, state dicts and hooks.

    ``lr`` may be a schedule, a callable ``step -> lr`` (``optim.schedules``): the
    group then keeps it as ``lr_schedule`` and its step count as
    ``schedule_step``, and ``group["lr"]`` is set before and after every step;
    ``state_dict`` saves ``schedule_step`` (not the callable), so a resume is exact.
    """

    # the state names of this optimizer, in PyTorch's key order (what its state dict
    # may carry per parameter), and which of them are per-parameter scalars
    _state_keys: tuple = ()
    _scalar_keys: tuple = ()

    def __init__(self, params: Any, defaults: dict) -> None:
        self.defaults = defaults
        self._step_pre_hooks: OrderedDict = OrderedDict()
        self._step_post_hooks: OrderedDict = OrderedDict()
        self._in_step = False
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or "
                            f"dicts, but got {_typename(params)}")
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        self._buckets: list[list[_Bucket]] = []  # per param group, one bucket per dtype
        self._where: dict = {}  # param -> (bucket, index in bucket)
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _hooked(step)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group (``{"params": [...], "lr": ...}``); its parameters get their own flat buffers."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs. Please use a list "
                            "instead.")
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names "
                                 "are missing")
            param_group["param_names"] = names
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{_typename(p)}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        if len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            param_group.setdefault(name, default)
        if callable(param_group.get("lr")):  # lr=schedule: evaluated at each step (_apply_lr_schedules)
            param_group["lr_schedule"] = param_group["lr"]
            param_group.setdefault("schedule_step", 0)
            param_group["lr"] = float(param_group["lr_schedule"](param_group["schedule_step"]))
        if len({id(p) for p in params}) != len(params):
            # PyTorch warns and keeps both; two views of one parameter in a flat
            # buffer would silently lose one update, so this is an error here
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        if any(p in self._where for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        for g in self.param_groups:
            if ("param_names" in g) != ("param_names" in param_group):
                raise ValueError("all optimizer param groups should be with/without names.")
        buckets = _Bucket.attach(params)
        for b in buckets:
            for i, p in enumerate(b.params):
                self._where[p] = (b, i)
        self.param_groups.append(param_group)
        self._buckets.append(buckets)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: to None (default), or to zeros where they exist."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g._node = None
                    g.requires_grad = False
                    g._array[...] = 0

    def flat_grads(self) -> list[np.ndarray]:
        """The flat gradient buffers, one per (param group, dtype), made current:
        gradients assigned by hand are copied in and ``.grad`` becomes a view of
        the buffer, so that changing the buffer (an allreduce) changes the
        gradients the next ``step`` uses. Parameters without a gradient read as
        zeros in the buffer and stay without one."""
        return [b.sync_grads(type(self).__name__) for buckets in self._buckets for b in buckets]

    def flat_params(self) -> list[np.ndarray]:
        """The flat parameter buffers, one per (param group, dtype)."""
        return [b._array for buckets in self._buckets for b in buckets]

    # ------------------------------------------------------------------ step
    def _state_spec(self, group: dict) -> list[tuple[str, str, float]]:
        """The state a parameter of ``group`` gets at its first step, in PyTorch's
        key order: ``(name, "scalar" | "buffer", initial value)``. By default
        every name of ``_state_keys``, starting at zero; an optimizer whose state
        depends on the group, or starts elsewhere, overrides this."""
        return [(name, "scalar" if name in self._scalar_keys else "buffer", 0.0) for name in self._state_keys]

    def _update(self, group: dict, u: StepArrays) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement step")

    @_hooked
    def step(self, closure: Callable | None = None) -> Any:
        """One update of every parameter that has a gradient. ``closure`` (optional)
        re-evaluates the model and returns the loss; it runs with grad enabled."""
        loss = None if closure is None else _closure_loss(closure)
        for group, buckets in zip(self.param_groups, self._buckets):
            for b in buckets:
                self._step_bucket(group, b)
        return loss

    def _step_bucket(self, group: dict, b: _Bucket) -> None:
        has = b.sync(type(self).__name__)
        if has is False:
            return
        spec = self._state_spec(group)
        bufs, scal = {}, {}  # (a loop, not two comprehensions: their frames cost more than the few entries)
        for name, kind, fill in spec:
            if kind == "buffer":
                bufs[name] = b.buffer(name, fill)
            elif kind == "scalar":
                scal[name] = b.scalar(name, fill)
        fresh = None
        if not b.all_initialized:
            sel = b._full if has is None else has
            new = sel & ~b.initialized
            if new.any():
                self._initialize(b, np.flatnonzero(new), spec)
                newsel = new[sel]
                fresh = True if newsel.all() else np.repeat(newsel, b.sizes[sel])
        if has is None:
            u = StepArrays(b._array, b.grad, bufs, scal, fresh, b.sizes, [v.shape for v in b.views])
            self._update_in_dtype(group, u)
            b.write_back()
            return
        # some parameters have no gradient: update gathered copies of the others
        em = np.repeat(has, b.sizes)
        u = StepArrays(b._array[em], b.grad[em], {k: v[em] for k, v in bufs.items()},
                       {k: v[has] for k, v in scal.items()}, fresh, b.sizes[has],
                       [v.shape for v, h in zip(b.views, has) if h])
        self._update_in_dtype(group, u)
        b._array[em] = u.param
        for k, v in bufs.items():
            v[em] = u.state[k]
        for k, v in scal.items():
            v[has] = u.scalars[k]
        b.write_back()

    def _update_in_dtype(self, group: dict, u: StepArrays) -> None:
        """``_update``; for bfloat16 parameters PyTorch steps with bfloat16 ops, each computed in float32
        and rounded once. An optimizer with ``_update_bfloat16(group, arrays) -> bool`` (SGD, Adam,
        AdamW) replays those ops on float32 arrays, rounding where PyTorch does (``bf16``, ``bf16_alpha``);
        any other runs its whole update in float32 and rounds parameters and state once at the end
        (within a bfloat16 rounding of PyTorch per step)."""
        if u.dtype != B.bfloat16:
            self._update(group, u)
            return
        up = StepArrays(u.param.astype(np.float32), u.grad.astype(np.float32),
                        {k: v.astype(np.float32) for k, v in u.state.items()}, u.scalars, u.fresh, u.sizes, u.shapes)
        if not getattr(self, "_update_bfloat16", lambda group, u: False)(group, up):
            self._update(group, up)
        np.copyto(u.param, up.param.astype(B.bfloat16))
        for k, v in u.state.items():
            np.copyto(v, up.state[k].astype(B.bfloat16))

    def _initialize(self, b: _Bucket, idx: Iterable[int], spec: list) -> None:
        """Create the state of bucket ``b``'s parameters ``idx``; their slices
        already hold the initial values."""
        for i in idx:
            b.initialized[i] = True
            if spec:
                p = b.params[i]
                self.state[p] = {name: b.state_view(name, i) for name, _, _ in spec}
        b.all_initialized = bool(b.initialized.all())

    def _initialize_all(self) -> None:
        """Create every parameter's state now (Adagrad does so at construction)."""
        for group, buckets in zip(self.param_groups, self._buckets):
            spec = self._state_spec(group)
            for b in buckets:
                for name, kind, fill in spec:
                    (b.buffer if kind == "buffer" else b.scalar)(name, fill)
                self._initialize(b, np.flatnonzero(~b.initialized), spec)

    # ------------------------------------------------------------------ hooks
    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)`` runs before each step."""
        return add_hook(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None`` runs after each step."""
        return add_hook(self._step_post_hooks, hook)

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict:
        """``{"state": {index: {name: Tensor}}, "param_groups": [{..., "params": [indices]}]}``
        as PyTorch: parameters are numbered across groups in order, and the state
        Tensors are views of the live buffers (copy them to keep a snapshot)."""
        index: dict[int, int] = {}
        groups = []
        start = 0
        for g in self.param_groups:
            # a schedule is code, not state (as LambdaLR's lambdas): its step, schedule_step, is saved
            packed = {k: v for k, v in g.items() if k not in ("params", "lr_schedule")}
            for i, p in enumerate(g["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in g["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict from ``state_dict()`` or from a PyTorch optimizer of the
        same kind (its tensors as NumPy arrays, rg Tensors or anything
        ``np.asarray`` reads). Values are copied into this optimizer's buffers."""
        who = type(self).__name__
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        required_keys = set(self.defaults) - _OPTIONAL_KEYS
        for i, s in enumerate(saved_groups):
            missing = sorted(required_keys - set(s))
            if missing:
                raise ValueError(f"load_state_dict: the loaded state dict is not one of {who}: its parameter "
                                 f"group {i} lacks the hyperparameters {missing}")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        known = set(self._state_keys)
        values: dict = {}
        for key, st in saved_state.items():
            p = id_map.get(key)
            if p is None:
                continue  # PyTorch ignores state of unknown parameters too
            vals = {}
            for name, v in st.items():
                if name not in known:
                    raise ValueError(f"load_state_dict: the loaded state dict is not one of {who}: parameter "
                                     f"{key} has state {name!r}, and {who} keeps only {sorted(known)}")
                arr = v._array if isinstance(v, Tensor) else np.asarray(v)
                want = () if name in self._scalar_keys else p.shape
                if (arr.size != 1) if want == () else (arr.shape != want):
                    raise ValueError(f"load_state_dict: state {name!r} of parameter {key} has shape "
                                     f"{arr.shape}, expected {tuple(want)}")
                vals[name] = arr
            values[p] = vals
        # all checks passed: apply
        new_groups = []
        for g, s in zip(groups, saved_groups):
            ng = {k: v for k, v in s.items() if k != "params"}
            for k, v in self.defaults.items():
                ng.setdefault(k, v)
            ng["params"] = g["params"]
            if "param_names" in g and "param_names" not in s:
                ng["param_names"] = g["param_names"]
            if "lr_schedule" in g:  # keep this optimizer's schedule; resume at the saved step
                ng["lr_schedule"] = g["lr_schedule"]
                ng.setdefault("schedule_step", g["schedule_step"])
                ng["lr"] = float(g["lr_schedule"](ng["schedule_step"]))
            self._fix_group(ng)
            new_groups.append(ng)
        self.param_groups = new_groups
        self.state = defaultdict(dict)
        for group, buckets in zip(self.param_groups, self._buckets):
            spec = self._state_spec(group)
            fills = {name: fill for name, _, fill in spec}
            for b in buckets:
                for i, p in enumerate(b.params):
                    b.reset(i)
                    vals = values.get(p)
                    if not vals:  # no state, or an empty dict: PyTorch starts it afresh too
                        continue
                    names = [n for n, _, _ in spec] + [n for n in vals if n not in fills]
                    for name in names:
                        fill = fills.get(name, 0.0)
                        if name in self._scalar_keys:
                            arr = b.scalar(name, fill)
                            if name in vals:
                                arr[i] = vals[name].reshape(()).item()
                        else:
                            buf = b.buffer(name, fill)
                            if name in vals:
                                np.copyto(buf[b.segment(i)], vals[name].reshape(-1), casting="unsafe")
                    b.initialized[i] = True
                    self.state[p] = {name: b.state_view(name, i) for name in names}
                b.all_initialized = bool(b.initialized.all())

    def _fix_group(self, group: dict) -> None:
        """Adjust a loaded param group (AdamW forces ``decoupled_weight_decay``)."""

    # ------------------------------------------------------------------ misc
    def __repr__(self) -> str:
        s = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _check_betas(who: str, betas: Any, *, closed: bool = False) -> tuple:
    """``betas`` as a tuple, checked to be a pair in [0, 1) ([0, 1] when ``closed``)."""
    betas = tuple(betas)
    _check(len(betas) == 2, f"{who}: betas must be a pair (beta1, beta2), got {betas}")
    for i, b in enumerate(betas):
        _check(_finite_nonneg(b) and (float(b) <= 1.0 if closed else float(b) < 1.0),
               f"{who}: invalid beta parameter at index {i}: {b!r}, expected 0 <= beta {'<=' if closed else '<'} 1")
    return betas


def _no_differentiable(name: str, differentiable: bool) -> None:
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True is not supported")


def _closure_loss(closure: Callable | None) -> Any:
    """What ``closure()`` returns, evaluated with grad enabled; None without a closure."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def _finite_nonneg(x: Any) -> bool:
    """``0 <= x``, false for NaN (PyTorch's ``not 0.0 <= x`` checks); a schedule
    (a callable of the step, given as ``lr``) is checked at step 0."""
    if callable(x):
        x = x(0)
    try:
        return 0.0 <= float(x) and not math.isnan(float(x))
    except TypeError:
        return False
