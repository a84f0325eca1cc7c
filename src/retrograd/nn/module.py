"""``Module`` and ``Parameter``: PyTorch's ``torch.nn.Module`` API on retrograd tensors.

Attributes that are Parameters, Modules or registered buffers are tracked in
``_parameters``, ``_modules`` and ``_buffers`` (in assignment order), which is
what ``named_parameters()``, ``state_dict()`` and friends walk; names and order
match PyTorch's for the same model, so state dicts move between the two.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator

import numpy as np

from .. import backend as B
from .. import devices
from ..engine import no_grad
from ..hooks import RemovableHandle, add_hook
from ..ops import Rule
from ..tensor import Tensor, _to_array, wrap_array
from ..versions import bump, counter


class Parameter(Tensor):
    """A Tensor that a Module registers as a parameter when assigned as an attribute."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            arr = np.empty((0,), dtype=B.defaults.float_dtype)
        elif isinstance(data, Tensor):
            arr = data._array  # shares memory, as torch.nn.Parameter does
        else:
            arr = _to_array(data)
        self._array = arr
        self.grad = None
        self.requires_grad = False
        self._node = None
        self._vc = counter(data) if isinstance(data, Tensor) else [0]
        self._hooks = None
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo: dict) -> "Parameter":
        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(wrap_array(self._array.copy()), self.requires_grad)
        if self.grad is not None:
            p.grad = wrap_array(self.grad._array.copy())
        memo[id(self)] = p
        return p

    def __reduce_ex__(self, protocol: int) -> tuple:
        return (_rebuild_parameter, (self._array, self.requires_grad))


def _rebuild_parameter(data: np.ndarray, requires_grad: bool) -> Parameter:
    return Parameter(wrap_array(data), requires_grad)


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(s: str, n: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value._array
    if hasattr(value, "detach") and hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.detach().numpy())  # a torch.Tensor
    return np.asarray(value)


def _hook_identity_b(g, out, ins, kw, needs):
    return (g,)


# an identity op whose node carries a module's full backward hook (grad_input / grad_output)
BACKWARD_HOOK = Rule("backward_hook_function", lambda ins, kw: ins[0].view(), _hook_identity_b,
                     needs_inputs=False, lowp="native")


class Module:
    """Base class of all layers and models: subclasses set attributes in ``__init__``
    (after ``super().__init__()``) and define ``forward``."""

    training: bool
    _version = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments {args} {kwargs}")
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = {}
        d["_forward_pre_hooks"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_backward_hooks"] = OrderedDict()
        d["_backward_pre_hooks"] = OrderedDict()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # ------------------------------------------------------------------ registration
    def _check_init(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_init("parameter")
        if not isinstance(name, str):
            raise TypeError(f"parameter name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f'parameter name can\'t contain "." and can\'t be empty, got {name!r}')
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(rg.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        self._check_init("buffer")
        if not isinstance(name, str):
            raise TypeError(f"buffer name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f'buffer name can\'t contain "." and can\'t be empty, got {name!r}')
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(rg.Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string, got {type(name).__name__}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name or name == "":
            raise KeyError(f'module name can\'t contain "." and can\'t be empty, got {name!r}')
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            for k in ("_buffers", "_modules"):
                d[k].pop(name, None)
            d.pop(name, None)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(rg.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            params.pop(name, None)
            d["_buffers"].pop(name, None)
            d.pop(name, None)
            d["_modules"][name] = value
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(rg.nn.Module or None expected)")
            d["_modules"][name] = None
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(rg.Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            store = d.get(k)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            if name in d.get(k, ()):
                del d[k][name]
                d["_non_persistent_buffers_set"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list:
        keys = list(super().__dir__()) + list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(k for k in set(keys) if not k[0].isdigit())

    def get_submodule(self, target: str) -> "Module":
        mod = self
        if target == "":
            return mod
        for item in target.split("."):
            if item not in mod._modules:
                raise AttributeError(f"{mod._get_name()} has no attribute `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{mod._get_name()} has no parameter `{name}`")
        return mod._parameters[name]

    # ------------------------------------------------------------------ iteration
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, "Module"]]:
        if memo is None:
            memo = set()
        if self in memo and remove_duplicate:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and m not in seen:
                seen.add(m)
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, getter: Callable, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Any]]:
        memo: set = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_prefix, mod in mods:
            for k, v in getter(mod):
                if v is None or (remove_duplicate and id(v) in memo):
                    continue
                if remove_duplicate:
                    memo.add(id(v))
                yield mod_prefix + ("." if mod_prefix else "") + k, v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        return self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for m in self.children():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._array[...] = 0

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ dtype conversion
    def _apply(self, fn: Callable[[np.ndarray], np.ndarray]) -> "Module":
        """Replace every parameter's and buffer's array by ``fn(array)``, keeping the objects."""
        for m in self.children():
            m._apply(fn)
        for p in self._parameters.values():
            if p is None:
                continue
            new = fn(p._array)
            if new is not p._array:
                p._array = new
                bump(p)
                if p.grad is not None:
                    p.grad = wrap_array(fn(p.grad._array))
        for k, b in self._buffers.items():
            if b is not None:
                new = fn(b._array)
                if new is not b._array:
                    b._array = new
                    bump(b)
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Module":
        """``to(dtype)``, ``to(tensor)``, ``to(device)`` or ``to(device, dtype)``; the device must be the CPU
        (retrograd runs on the CPU: any other raises)."""
        dtype = kwargs.get("dtype")
        devices.check(kwargs.get("device"), "Module.to")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, bool):  # non_blocking
                continue
            elif isinstance(a, int) or devices.is_device(a):
                devices.check(a, "Module.to")
            elif a is not None:
                dtype = a
        if dtype is None:
            return self
        d = B.as_dtype(dtype)
        if d.kind not in "fV":
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype="
                            f"{B.dtype_name(d)}")
        return self._apply(lambda a: B.astype(a, d) if a.dtype.kind in "fV" and a.dtype != d else a)

    def float(self) -> "Module":
        return self.to(B.float32)

    def double(self) -> "Module":
        return self.to(B.float64)

    def half(self) -> "Module":
        return self.to(B.float16)

    def bfloat16(self) -> "Module":
        return self.to(B.bfloat16)

    def cpu(self) -> "Module":
        return self

    def cuda(self, device: Any = None) -> "Module":
        """Raises: retrograd runs on the CPU (write ``model.to(device)`` with ``device = "cpu"``)."""
        raise devices.unavailable("cuda", "Module.cuda")

    # ------------------------------------------------------------------ hooks
    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False) -> RemovableHandle:
        """``hook(module, args) -> None or new args`` runs before ``forward``."""
        return self._add_hook(self._forward_pre_hooks, hook, prepend)

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False) -> RemovableHandle:
        """``hook(module, args, output) -> None or new output`` runs after ``forward``."""
        return self._add_hook(self._forward_hooks, hook, prepend)

    def register_full_backward_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_input, grad_output) -> None or new grad_input`` runs once the gradient
        with respect to the module's input is computed (tuples of Tensors, None where no gradient)."""
        return self._add_hook(self._backward_hooks, hook, prepend)

    def register_full_backward_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_output) -> None or new grad_output`` runs before the module's backward."""
        return self._add_hook(self._backward_pre_hooks, hook, prepend)

    @staticmethod
    def _add_hook(store: OrderedDict, hook: Callable, prepend: bool) -> RemovableHandle:
        h = add_hook(store, hook)
        if prepend:
            store.move_to_end(h.id, last=False)
        return h

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks
                or self._backward_pre_hooks):
            return self.forward(*args, **kwargs)  # no hooks: the common case, kept lean
        for hook in list(self._forward_pre_hooks.values()):
            r = hook(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        bw = bool(self._backward_hooks or self._backward_pre_hooks)
        if bw:
            args, state = self._wrap_backward_inputs(args)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            r = hook(self, args, out)
            if r is not None:
                out = r
        if bw:
            out = self._wrap_backward_output(out, state)
        return out

    # full backward hooks: identity ops on the input and the output whose node hooks see
    # grad_output and grad_input (PyTorch's BackwardHook, for one tensor input and output)
    def _wrap_backward_inputs(self, args: tuple) -> tuple[tuple, dict]:
        state: dict = {"grad_output": None, "n_inputs": 0}
        tensor_pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        needing = [i for i in tensor_pos if args[i].requires_grad]
        state["n_inputs"] = len(tensor_pos)
        if len(needing) > 1:
            raise NotImplementedError(f"{self._get_name()}: full backward hooks support modules with at most "
                                      f"one input that requires grad, got {len(needing)}")
        if not needing:
            return args, state
        i = needing[0]
        wrapped = Tensor._apply(BACKWARD_HOOK, (args[i],))
        pos = tensor_pos.index(i)

        def on_grad_input(g: Tensor) -> Tensor | None:
            grad_input = tuple(g if k == pos else None for k in range(len(tensor_pos)))
            res = self._run_backward_hooks(grad_input, state["grad_output"])
            return None if res is None else res[pos]

        wrapped._node.register_hook(on_grad_input)
        state["has_input"] = True
        return args[:i] + (wrapped,) + args[i + 1:], state

    def _run_backward_hooks(self, grad_input: tuple, grad_output: tuple) -> tuple | None:
        result = None
        for hook in list(self._backward_hooks.values()):
            r = hook(self, grad_input if result is None else result, grad_output)
            if r is not None:
                r = tuple(r)
                if len(r) != len(grad_input):
                    raise RuntimeError(f"backward hook returned {len(r)} gradients, expected {len(grad_input)}")
                result = r
        return result

    def _wrap_backward_output(self, out: Any, state: dict) -> Any:
        if not isinstance(out, Tensor) or not out.requires_grad:
            return out
        wrapped = Tensor._apply(BACKWARD_HOOK, (out,))

        def on_grad_output(g: Tensor) -> Tensor | None:
            go = (g,)
            for hook in list(self._backward_pre_hooks.values()):
                r = hook(self, go)
                if r is not None:
                    go = tuple(r) if isinstance(r, (tuple, list)) else (r,)
            state["grad_output"] = go
            if not state.get("has_input") and self._backward_hooks:
                warnings.warn("Full backward hook is firing when gradients are computed with respect to module "
                              "outputs since no inputs require gradients.", UserWarning, stacklevel=2)
                self._run_backward_hooks((None,) * state["n_inputs"], go)
            return go[0] if go[0] is not g else None

        wrapped._node.register_hook(on_grad_output)
        return wrapped

    # ------------------------------------------------------------------ state dict
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name (``layers.0.weight``), PyTorch's order."""
        if args:  # legacy positional form state_dict(destination, prefix, keep_vars)
            destination = args[0]
            if len(args) > 1:
                prefix = args[1]
            if len(args) > 2:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _load_from_state_dict(self, state_dict: dict, prefix: str, strict: bool, missing: list,
                              unexpected: list, errors: list, assign: bool) -> None:
        local = {k: v for k, v in self._parameters.items() if v is not None}
        local.update({k: v for k, v in self._buffers.items()
                      if v is not None and k not in self._non_persistent_buffers_set})
        for name, t in local.items():
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing.append(key)
                continue
            value = state_dict[key]
            try:
                arr = _as_array(value)
            except Exception as e:  # noqa: BLE001
                errors.append(f'While copying the parameter named "{key}", whose dimensions in the model '
                              f"are {tuple(t.shape)}, an exception occurred: {e}")
                continue
            if arr.shape != t.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape {tuple(arr.shape)} from "
                              f"checkpoint, the shape in current model is {tuple(t.shape)}.")
                continue
            if assign:
                t._array = np.array(arr, dtype=t.dtype if not isinstance(value, Tensor) else arr.dtype)
                bump(t)
            else:
                with no_grad():
                    t.copy_(arr)
        if strict:
            for key in state_dict:
                if not key.startswith(prefix):
                    continue
                head = key[len(prefix):].split(".", 1)[0]
                if head not in self._modules and head not in local:
                    unexpected.append(key)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> _IncompatibleKeys:
        """Copy values (rg Tensors, NumPy arrays or torch tensors) into this module's parameters and
        buffers in place. ``strict``: every key must match. Returns ``(missing_keys, unexpected_keys)``."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        missing: list = []
        unexpected: list = []
        errors: list = []
        state_dict = OrderedDict(state_dict)  # layers may add defaults for keys old checkpoints lack

        def load(module: Module, prefix: str) -> None:
            module._load_from_state_dict(state_dict, prefix, True, missing, unexpected, errors, assign)
            for name, child in module._modules.items():
                if child is not None:
                    load(child, prefix + name + ".")

        load(self, "")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                self._get_name(), "\n\t".join(errors)))
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): " + _addindent(repr(m), 2) for k, m in self._modules.items()]
        lines = extra_lines + child_lines
        s = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                s += extra_lines[0]
            else:
                s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"

    def __getstate__(self) -> dict:
        return self.__dict__.copy()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
