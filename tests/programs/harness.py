"""Run one PyTorch-style program twice, with torch and with retrograd imported in its place, and
compare what it computed.

Porting (``port``)
    Only the program's import lines change: ``import torch`` becomes ``import retrograd as torch``,
    and in every other ``import``/``from`` line that names a ``torch`` package the package prefix
    ``torch`` becomes ``retrograd`` (``import torch.nn as nn`` -> ``import retrograd.nn as nn``,
    ``from torch.utils.data import DataLoader`` -> ``from retrograd.utils.data import DataLoader``).
    Any other line is left alone; ``port`` refuses a program that mentions retrograd itself.

Float64
    Both runs use float64 as the default dtype (``set_default_dtype``), so the two libraries agree to
    ~1e-12 instead of float32 noise. The programs are otherwise written as their authors would.

The random bridge (``bridge``)
    The libraries draw from different generators (torch: mt19937 and Philox; retrograd: NumPy's
    PCG64 behind ``rg.Generator``), so the same seed gives different weights, batches and dropout
    masks. retrograd's draws are the reference and it runs unpatched: under the bridge its
    default generator is reseeded (state saved and restored afterwards), and every draw it makes is
    a NumPy call on ``default_generator.np`` (``rg.manual_seed(s)`` makes that ``PCG64(s)``).
    The bridge makes torch draw the *same NumPy calls, in the same order, from a NumPy stream
    seeded the same way*, by patching torch for the duration of the run:

    ====================================  =============================================
    torch (patched)                        NumPy call (as retrograd makes it)
    ====================================  =============================================
    ``torch.manual_seed(s)``               reseed the stream: ``Generator(PCG64(s))``
    ``torch.randn/rand`` and ``_like``     ``standard_normal(shape)`` / ``random(shape)``
    ``torch.randint(low, high, size)``     ``integers(low, high, size)``
    ``torch.randperm(n)``                  ``permutation(n)``
    ``torch.multinomial(p, k, repl)``      per row ``choice(n, k, replace, p=row/row.sum())``
    ``torch.bernoulli(p)``                 ``random(p.shape) < p``
    ``Tensor.uniform_(a, b)``              ``uniform(a, b, shape)`` (all of ``nn.init``'s uniform
                                           and kaiming/xavier draws go through it, as in torch)
    ``Tensor.normal_(m, s)``               ``normal(m, s, shape)`` (``nn.init.normal_`` etc.)
    ``Tensor.random_()`` (int64)           ``integers(2**63 - 1, size=shape)``: the seed that
                                           ``RandomSampler`` draws for its epoch, as retrograd's
    ``torch.Generator`` (a subclass)       ``manual_seed(s)`` also makes ``PCG64(s)``, which the
                                           patched functions use when given ``generator=``;
                                           ``RandomSampler`` shuffles with one, as retrograd
    ``F.dropout(x, p, training)``          ``random(x.shape) >= p`` keeps, scaled by ``1/(1-p)``
    DataLoader iterator's base seed       a throwaway number: torch draws a worker base seed
                                           on every ``iter(loader)`` even with ``num_workers=0``;
                                           retrograd draws none, so this draw must not take a
                                           number from the shared stream
    ====================================  =============================================

    Every bridged value is converted with ``torch.from_numpy(...).to(dtype)``, as retrograd's
    ``astype(dtype)``. Draws the bridge does not know would come from torch's own generator, so
    the bridge checks torch's generator state at the end of the run (and after each
    ``manual_seed``): a changed state means an unbridged draw and fails the run instead of letting
    the two runs silently use different numbers. ``scaled_dot_product_attention`` with
    ``dropout_p > 0`` is such a draw (its mask is made inside ATen); the programs use no
    attention dropout.

What is compared (``Record``)
    ``items``: every ``Tensor.item()`` the program itself calls (losses, accuracies), in order, with
    its Python type (float, int, bool);
    ``stdout``: the printed text, numbers to the digits printed; ``globals``: the program's
    module-level tensors, modules (their ``state_dict``), numbers and lists of them; ``files``: each
    file the program wrote in its working directory, loaded back with the same library's ``load``.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as torch_F
import torch.utils.data.dataloader as torch_dataloader

import retrograd as rg
import retrograd.random as rg_random

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------- porting
_IMPORT = re.compile(r"^(\s*)(import|from)\s+torch\b(.*)$")


def port(source: str) -> str:
    """The program with its torch imports replaced by retrograd's (no other line changes)."""
    if "retrograd" in source:
        raise ValueError("port: the program already mentions retrograd; it must be written for torch")
    out = []
    for line in source.splitlines(keepends=True):
        m = _IMPORT.match(line.rstrip("\n"))
        if m:
            indent, kw, rest = m.groups()
            if kw == "import" and rest.strip() == "":
                line = f"{indent}import retrograd as torch\n"
            else:
                line = f"{indent}{kw} retrograd{rest}\n"
        out.append(line)
    return "".join(out)


# ----------------------------------------------------------------------------- the random bridge
class _Stream:
    """The NumPy stream the bridged torch functions draw from (retrograd's draws come from
    ``rg.random.default_generator.np``, seeded identically)."""

    def __init__(self) -> None:
        self.rng = np.random.Generator(np.random.PCG64(0))
        self.torch_state: torch.Tensor | None = None

    def seed(self, s: int) -> None:
        self.rng = np.random.Generator(np.random.PCG64(int(s)))


class _BridgedGenerator(torch.Generator):
    """``torch.Generator`` whose ``manual_seed(s)`` also makes the NumPy ``PCG64(s)`` that
    ``rg.Generator(s)`` would hold."""

    def manual_seed(self, seed: int) -> "_BridgedGenerator":
        self.np = np.random.Generator(np.random.PCG64(int(seed)))
        return super().manual_seed(seed)


class UnbridgedDraw(RuntimeError):
    """torch drew a random number the bridge does not route through the shared stream."""


def _size(size: tuple) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        return tuple(size[0])
    return tuple(int(s) for s in size)


def _make(arr: np.ndarray, dtype: Any, requires_grad: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.array(arr))  # a copy; keeps 0-d shapes (ascontiguousarray would not)
    if dtype is not None:
        t = t.to(dtype)
    return t.requires_grad_(requires_grad) if requires_grad else t


def _torch_patches(stream: _Stream, real_seed: Callable) -> dict[tuple[Any, str], Any]:
    """(owner, name) -> replacement for every torch draw the bridge routes."""
    throwaway = np.random.Generator(np.random.PCG64(12345))
    quiet = {"on": False}  # True while a DataLoader iterator draws its (unused) base seed

    def rng_of(generator: Any) -> np.random.Generator:
        if generator is None:
            return throwaway if quiet["on"] else stream.rng
        if isinstance(generator, _BridgedGenerator) and hasattr(generator, "np"):
            return generator.np
        raise UnbridgedDraw(f"bridge: a draw with an unseeded or foreign generator {generator!r}")

    def manual_seed(seed: int) -> Any:
        out = real_seed(seed)
        stream.seed(seed)
        stream.torch_state = torch.get_rng_state()
        return out

    def float_dtype(dtype: Any) -> Any:
        return torch.get_default_dtype() if dtype is None else dtype

    def randn(*size: Any, generator: Any = None, dtype: Any = None, requires_grad: bool = False,
              **_: Any) -> torch.Tensor:
        return _make(rng_of(generator).standard_normal(_size(size)), float_dtype(dtype), requires_grad)

    def rand(*size: Any, generator: Any = None, dtype: Any = None, requires_grad: bool = False,
             **_: Any) -> torch.Tensor:
        return _make(rng_of(generator).random(_size(size)), float_dtype(dtype), requires_grad)

    def randn_like(t: torch.Tensor, *, dtype: Any = None, **_: Any) -> torch.Tensor:
        return _make(stream.rng.standard_normal(tuple(t.shape)), dtype or t.dtype)

    def rand_like(t: torch.Tensor, *, dtype: Any = None, **_: Any) -> torch.Tensor:
        return _make(stream.rng.random(tuple(t.shape)), dtype or t.dtype)

    def randint(*args: Any, size: Any = None, generator: Any = None, dtype: Any = None,
                **_: Any) -> torch.Tensor:
        args = list(args)
        if size is None:
            size = args.pop()
        low, high = (0, args[0]) if len(args) == 1 else args
        return _make(rng_of(generator).integers(int(low), int(high), tuple(size)), dtype or torch.int64)

    def randperm(n: int, *, generator: Any = None, dtype: Any = None, **_: Any) -> torch.Tensor:
        return _make(rng_of(generator).permutation(int(n)), dtype or torch.int64)

    def multinomial(probs: torch.Tensor, num_samples: int, replacement: bool = False, *,
                    generator: Any = None) -> torch.Tensor:
        g = rng_of(generator)
        p = np.atleast_2d(probs.detach().numpy().astype(np.float64))
        out = np.stack([g.choice(row.shape[0], num_samples, replace=replacement, p=row / row.sum())
                        for row in p]).astype(np.int64)
        return torch.from_numpy(out if probs.ndim == 2 else out[0])

    def bernoulli(p: torch.Tensor, *, generator: Any = None, **_: Any) -> torch.Tensor:
        pa = p.detach().numpy()
        return _make(rng_of(generator).random(pa.shape) < pa, p.dtype)

    def uniform_(self: torch.Tensor, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> torch.Tensor:
        return self.copy_(_make(rng_of(generator).uniform(a, b, tuple(self.shape)), self.dtype))

    def normal_(self: torch.Tensor, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> torch.Tensor:
        return self.copy_(_make(rng_of(generator).normal(mean, std, tuple(self.shape)), self.dtype))

    def random_(self: torch.Tensor, *args: Any, generator: Any = None, **kw: Any) -> torch.Tensor:
        if args or kw or self.dtype != torch.int64:
            raise UnbridgedDraw(f"bridge: Tensor.random_{args} on {self.dtype} is not bridged")
        return self.copy_(_make(rng_of(generator).integers(2**63 - 1, size=tuple(self.shape)), self.dtype))

    def dropout(input: torch.Tensor, p: float = 0.5, training: bool = True,  # noqa: A002
                inplace: bool = False) -> torch.Tensor:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        if not training or p == 0.0:
            return input
        if p == 1.0:
            mask = torch.zeros_like(input)
        else:
            keep = stream.rng.random(tuple(input.shape)) >= p
            mask = _make(keep.astype(np.float64) * (1.0 / (1.0 - p)), input.dtype)
        return input.mul_(mask) if inplace else input * mask

    base_init = torch_dataloader._BaseDataLoaderIter.__init__

    def loader_iter_init(self: Any, loader: Any) -> None:
        quiet["on"] = True
        try:
            base_init(self, loader)
        finally:
            quiet["on"] = False

    return {
        (torch, "manual_seed"): manual_seed, (torch.random, "manual_seed"): manual_seed,
        (torch, "randn"): randn, (torch, "rand"): rand, (torch, "randn_like"): randn_like,
        (torch, "rand_like"): rand_like, (torch, "randint"): randint, (torch, "randperm"): randperm,
        (torch, "multinomial"): multinomial, (torch, "bernoulli"): bernoulli,
        (torch, "Generator"): _BridgedGenerator,
        (torch.Tensor, "uniform_"): uniform_, (torch.Tensor, "normal_"): normal_,
        (torch.Tensor, "random_"): random_, (torch_F, "dropout"): dropout,
        (torch_dataloader._BaseDataLoaderIter, "__init__"): loader_iter_init,
    }


_MISSING = object()


@contextlib.contextmanager
def _patched(patches: dict[tuple[Any, str], Any]) -> Iterator[None]:
    saved = [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name in patches]
    try:
        for (owner, name), value in patches.items():
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, old in reversed(saved):
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)


@contextlib.contextmanager
def bridge(lib: str, seed: int = 0) -> Iterator[None]:
    """Route ``lib``'s draws ("torch" or "retrograd") through a NumPy stream seeded with ``seed``
    (see the module docstring); restores every patched name and generator state afterwards."""
    if lib == "retrograd":
        saved = rg_random.default_generator.get_state()
        rg_random.default_generator.manual_seed(seed)
        try:
            yield
        finally:
            rg_random.default_generator.set_state(saved)
        return
    if lib != "torch":
        raise ValueError(f"bridge: lib must be 'torch' or 'retrograd', got {lib!r}")
    stream = _Stream()
    saved_state = torch.get_rng_state()
    real_seed = torch.manual_seed
    try:
        with _patched(_torch_patches(stream, real_seed)):
            torch.manual_seed(seed)
            yield
            if not torch.equal(torch.get_rng_state(), stream.torch_state):
                raise UnbridgedDraw("bridge: torch drew from its own generator; a draw is not bridged")
    finally:
        torch.set_rng_state(saved_state)


# ----------------------------------------------------------------------------- running
@dataclass
class Record:
    items: list = field(default_factory=list)
    stdout: str = ""
    globals: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def _plain(obj: Any, lib: types.ModuleType, depth: int = 0) -> Any:
    """Numbers, arrays and containers of them (``None`` for anything else)."""
    if depth > 4:
        return None
    if isinstance(obj, lib.Tensor):
        return np.array(obj.detach().numpy(), copy=True)
    if isinstance(obj, lib.nn.Module):
        return {k: _plain(v, lib, depth + 1) for k, v in obj.state_dict().items()}
    if isinstance(obj, (bool, int, float, np.floating, np.integer, np.ndarray)):
        return obj
    if isinstance(obj, (list, tuple)):
        vals = [_plain(v, lib, depth + 1) for v in obj]
        return vals if vals and all(v is not None for v in vals) else None
    if isinstance(obj, dict):
        vals = {k: _plain(v, lib, depth + 1) for k, v in obj.items() if isinstance(k, (str, int))}
        vals = {k: v for k, v in vals.items() if v is not None}
        return vals or None
    return None


@contextlib.contextmanager
def _recording_items(lib: types.ModuleType, program: str, items: list) -> Iterator[None]:
    real = lib.Tensor.item

    def item(self: Any) -> Any:
        v = real(self)
        if sys._getframe(1).f_code.co_filename == program:  # the program's own calls only
            items.append(v)
        return v

    with _patched({(lib.Tensor, "item"): item}):
        yield


_FLAGS = (("backends.cuda.matmul", "allow_tf32"), ("backends.cudnn", "allow_tf32"),
          ("backends.cudnn", "benchmark"), ("backends.cudnn", "deterministic"))


def _owner(lib: types.ModuleType, dotted: str) -> Any:
    for part in dotted.split("."):
        lib = getattr(lib, part)
    return lib


@contextlib.contextmanager
def _process_state(lib: types.ModuleType) -> Iterator[None]:
    """float64 as the default dtype; torch also on one thread (its OpenMP pool spins for seconds per
    op on a loaded 2-core machine; one thread also fixes its summation order). Process-wide settings a
    program changes (``allow_tf32``, ``cudnn.benchmark``; in torch ``allow_tf32 = True`` also sets the
    float32 matmul precision to "high") are put back afterwards, so no later test sees them."""
    old = lib.get_default_dtype()
    threads = torch.get_num_threads()
    flags = [(owner, name, getattr(owner, name)) for owner, name in
             ((_owner(lib, dotted), name) for dotted, name in _FLAGS)]
    precision = lib.get_float32_matmul_precision()
    lib.set_default_dtype(lib.float64)
    if lib is torch:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        lib.set_default_dtype(old)
        torch.set_num_threads(threads)
        for owner, name, value in flags:
            setattr(owner, name, value)
        if lib.get_float32_matmul_precision() != precision:
            lib.set_float32_matmul_precision(precision)


def run(path: Path, lib_name: str, seed: int = 0) -> Record:
    """Run the program at ``path`` with ``lib_name`` ("torch" or "retrograd") and record it."""
    lib = torch if lib_name == "torch" else rg
    source = path.read_text()
    if lib_name == "retrograd":
        source = port(source)
    code = compile(source, str(path), "exec")
    rec = Record()
    out = io.StringIO()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            ns: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
            with _process_state(lib), bridge(lib_name, seed), _recording_items(lib, str(path), rec.items), \
                    contextlib.redirect_stdout(out):
                exec(code, ns)
            for folder, _, names in sorted(os.walk(tmp)):
                for name in sorted(names):
                    rel = os.path.relpath(os.path.join(folder, name), tmp)
                    rec.files[rel] = _plain(lib.load(os.path.join(tmp, rel)), lib)
        finally:
            os.chdir(cwd)
    rec.stdout = out.getvalue()
    rec.globals = {k: v for k, v in ((k, _plain(v, lib)) for k, v in ns.items() if not k.startswith("_"))
                   if v is not None}
    return rec


# ----------------------------------------------------------------------------- comparing
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf")


def _last_place(token: str) -> float:
    """One unit in the last printed digit of a number token."""
    mant, _, exp = token.lower().partition("e")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return 10.0 ** (-decimals + (int(exp) if exp else 0))


def compare_text(a: str, b: str, rtol: float) -> list[str]:
    """Differences between two printed outputs: the text must match, each number to ``rtol`` or
    to one unit in its last printed digit (a value near a rounding boundary may print either way)."""
    problems = []
    la, lb = a.splitlines(), b.splitlines()
    if len(la) != len(lb):
        return [f"stdout: {len(la)} lines vs {len(lb)}"]
    for i, (x, y) in enumerate(zip(la, lb)):
        if _NUMBER.sub("#", x) != _NUMBER.sub("#", y):
            problems.append(f"stdout line {i}: {x!r} vs {y!r}")
            continue
        for s, t in zip(_NUMBER.findall(x), _NUMBER.findall(y)):
            u, v = float(s), float(t)
            if s != t and not abs(u - v) <= max(rtol * abs(u), 1.01 * max(_last_place(s), _last_place(t))):
                problems.append(f"stdout line {i}: {x!r} vs {y!r}")
                break
    return problems


def compare(a: Any, b: Any, rtol: float, atol: float, where: str = "") -> list[str]:
    """Differences between two ``_plain`` structures (``a`` is torch's)."""
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return [f"{where}: {type(a).__name__} vs {type(b).__name__}"]
        if set(a) != set(b):
            return [f"{where}: keys differ: only torch {sorted(set(a) - set(b))}, "
                    f"only retrograd {sorted(set(b) - set(a))}"]
        return [p for k in a for p in compare(a[k], b[k], rtol, atol, f"{where}.{k}")]
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
            return [f"{where}: {a!r:.80} vs {b!r:.80}"]
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in compare(x, y, rtol, atol, f"{where}[{i}]")]
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return [f"{where}: shape {x.shape} vs {y.shape}"]
    if x.dtype.kind != y.dtype.kind and not {x.dtype.kind, y.dtype.kind} <= {"i", "u", "b"}:
        return [f"{where}: dtype {x.dtype} vs {y.dtype}"]
    if x.dtype.kind in "iub":
        return [] if np.array_equal(x, y) else [f"{where}: integers differ: {x!r:.120} vs {y!r:.120}"]
    if not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
        err = np.max(np.abs(x - y) / (atol + rtol * np.abs(x)))
        return [f"{where}: differ (worst |diff|/(atol+rtol|x|) = {err:.3g}): {x!r:.120} vs {y!r:.120}"]
    return []


def max_rel_diff(a: Any, b: Any) -> float:
    """The largest relative difference over all numbers of two matching ``_plain`` structures."""
    if isinstance(a, dict):
        return max([max_rel_diff(a[k], b[k]) for k in a], default=0.0)
    if isinstance(a, list):
        return max([max_rel_diff(x, y) for x, y in zip(a, b)], default=0.0)
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        d = np.abs(x - y) / np.maximum(np.abs(x), 1e-6)  # values under 1e-6 count absolutely
    d = d[np.isfinite(d)]
    return float(d.max()) if d.size else 0.0


def check_program(path: Path, *, rtol: float = 1e-10, atol: float = 1e-12, seed: int = 0,
                  ignore: tuple[str, ...] = ()) -> dict:
    """Run ``path`` with both libraries; raise AssertionError listing every difference.
    ``ignore``: module-level names not compared (wall-clock times).
    Returns what it compared (counts and the worst relative difference) for reports."""
    ref = run(path, "torch", seed)
    got = run(path, "retrograd", seed)
    for rec in (ref, got):
        rec.globals = {k: v for k, v in rec.globals.items() if k not in ignore}
    problems = compare(ref.items, got.items, rtol, atol, "items")
    kinds = [(i, type(a).__name__, type(b).__name__) for i, (a, b) in enumerate(zip(ref.items, got.items))
             if type(a) is not type(b)]
    problems += [f"items[{i}]: .item() returned {a} in torch, {b} in retrograd" for i, a, b in kinds[:3]]
    problems += compare(ref.globals, got.globals, rtol, atol, "globals")
    problems += compare(ref.files, got.files, rtol, atol, "files")
    problems += compare_text(ref.stdout, got.stdout, rtol)
    if problems:
        raise AssertionError(f"{path.name}: retrograd differs from torch:\n  " + "\n  ".join(problems[:20]))
    return {"items": len(ref.items), "globals": sorted(ref.globals), "files": sorted(ref.files),
            "stdout_lines": len(ref.stdout.splitlines()),
            "worst_rel": max(max_rel_diff(ref.items, got.items), max_rel_diff(ref.globals, got.globals))}


__all__ = ["port", "bridge", "run", "check_program", "compare", "compare_text", "Record", "UnbridgedDraw",
           "HERE"]
