"""``summary(model, input_size)``: a model's layers, output shapes and parameter counts, as
torchinfo's ``summary`` and Keras' ``model.summary()`` show them.

    >>> print(rg.train.summary(model, (32, 784)))       # or input_data=an example batch
    Layer (type)              Output shape     Param #
    ==================================================
    MLP                       [32, 10]         --
    ├─Sequential: net         [32, 10]         --
    │ ├─Linear: 0             [32, 256]        200,960
    ...
    Total params: 203,530 (0.81 MB)
    Trainable params: 203,530
    Non-trainable params: 0

The output shapes come from one forward pass of the example in eval mode without grad (forward
hooks on every module, removed afterwards); the model's train/eval flags and rg's random state are
restored, so a summary before training changes nothing about the training. Runs of identical
siblings (the blocks of a transformer, the ``Linear, ReLU`` pairs of a deep MLP) are collapsed
into one row after their first occurrence. A row's ``Param #`` counts the parameters the module
owns plus those of its children that are not shown (``depth``, collapsed rows), so the column adds
up to the total (parameters shared between modules are counted once, where they first appear).
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import Any, Sequence

import numpy as np

from .. import random as rg_random
from ..data.collate import default_collate
from ..engine import no_grad
from ..tensor import Tensor
from .formatting import plural
from .step import unpack_batch

__all__ = ["summary", "ModelSummary", "SummaryRow", "example_inputs"]

# the longest repeated pattern of sibling modules that is collapsed (Linear, BatchNorm, ReLU, Dropout: 4)
_MAX_PERIOD = 4


@dataclasses.dataclass
class SummaryRow:
    """One row: ``depth`` (0 is the model), ``name`` (the attribute name, or ``a-b`` for a collapsed
    run), ``path`` (the dotted name of ``named_modules``, ``""`` for the model; for a collapsed run
    its parent's, then ``a-b``), ``type`` (the class name, or the pattern of a collapsed run), ``output_shape`` (a list of
    ints; a list of them for a module returning several tensors; None when not run), ``params``
    (see the module docstring), and for a collapsed row ``repeats`` (how many times the pattern
    repeats in it) and ``same_as`` (the names of its first copy, shown above it)."""
    depth: int
    name: str
    path: str
    type: str
    output_shape: Any
    params: int
    repeats: int = 0
    same_as: str = ""


@dataclasses.dataclass
class ModelSummary:
    """What ``summary`` found; ``str()`` is the table."""
    rows: list[SummaryRow]
    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_values: int
    buffer_bytes: int
    input_shape: Any = None

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def param_mb(self) -> float:
        """The parameters' size in MB (10**6 bytes, as torchinfo counts)."""
        return self.param_bytes / 1e6

    def __str__(self) -> str:
        return format_summary(self)

    def __repr__(self) -> str:
        return str(self)


# ---------------------------------------------------------------------- the module tree
@dataclasses.dataclass
class _Node:
    name: str
    path: str
    module: Any
    depth: int
    children: list
    shape: Any = None
    sig: Any = None


def _tree(module: Any, name: str, prefix: str, depth: int, above: set) -> _Node:
    above = above | {id(module)}  # a module containing itself (a cycle) is not walked again
    kids = [_tree(m, n, f"{prefix}.{n}" if prefix else n, depth + 1, above)
            for n, m in module.named_children() if id(m) not in above]
    return _Node(name, prefix, module, depth, kids)


def _shapes(out: Any) -> Any:
    """``[d0, d1, ...]`` for a tensor, a list of those for a tuple/list/dict of tensors, None otherwise."""
    if hasattr(out, "shape") and hasattr(out, "dtype"):
        return [int(d) for d in out.shape]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        found = [s for s in (_shapes(o) for o in out) if s is not None]
        flat: list = []
        for s in found:
            flat.extend(s if s and isinstance(s[0], list) else [s])
        return flat or None
    return None


def _signature(node: _Node) -> Any:
    if node.sig is None:
        own = tuple(tuple(p.shape) for p in node.module._parameters.values() if p is not None)
        node.sig = (type(node.module).__name__, own, repr(node.shape), tuple(_signature(c) for c in node.children))
    return node.sig


def _size(node: _Node) -> int:
    return 1 + sum(_size(c) for c in node.children)


def _runs(children: list) -> list[tuple[int, int, int]]:
    """``(start, period, repeats)`` groups covering ``children`` in order: a run of ``repeats`` >= 2
    copies of a ``period``-long pattern is collapsed into one row after its first copy when that
    saves rows (the copies' subtrees included: two transformer blocks collapse, two Linears do not)."""
    sigs = [_signature(c) for c in children]
    sizes = [_size(c) for c in children]
    out, i = [], 0
    while i < len(sigs):
        best, saved = (1, 1), 0
        for k in range(1, _MAX_PERIOD + 1):
            r = 1
            while i + (r + 1) * k <= len(sigs) and sigs[i + r * k:i + (r + 1) * k] == sigs[i:i + k]:
                r += 1
            hidden = sum(sizes[i + k:i + k * r]) - 1
            if r >= 2 and hidden >= 1 and hidden > saved:
                best, saved = (k, r), hidden
        k, r = best
        out.append((i, k, r))
        i += k * r
    return out


# ---------------------------------------------------------------------- counting
def _count(module: Any, seen: set, recurse: bool) -> int:
    """Parameters of ``module`` (and its descendants when ``recurse``) not already ``seen``."""
    mods = [m for _, m in module.named_modules()] if recurse else [module]
    n = 0
    for m in mods:
        for p in m._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                n += int(p.numel())
    return n


def _rows(node: _Node, depth_limit: int | None, seen: set, out: list[SummaryRow]) -> None:
    show_children = bool(node.children) and (depth_limit is None or node.depth < depth_limit)
    params = _count(node.module, seen, recurse=not show_children)
    out.append(SummaryRow(node.depth, node.name, node.path, type(node.module).__name__, node.shape, params))
    if not show_children:
        return
    for start, k, r in _runs(node.children):
        for c in node.children[start:start + k]:
            _rows(c, depth_limit, seen, out)
        if r > 1:
            hidden = node.children[start + k:start + k * r]
            types = [type(c.module).__name__ for c in node.children[start:start + k]]
            span = hidden[0].name if len(hidden) == 1 else f"{hidden[0].name}-{hidden[-1].name}"
            first = node.children[start:start + k]
            like = first[0].name if k == 1 else f"{first[0].name}-{first[-1].name}"
            out.append(SummaryRow(node.depth + 1, span, f"{node.path}.{span}" if node.path else span,
                                  types[0] if k == 1 else "(" + ", ".join(types) + ")", hidden[-1].shape,
                                  sum(_count(c.module, seen, recurse=True) for c in hidden), repeats=r - 1,
                                  same_as=like))


# ---------------------------------------------------------------------- the forward pass
def _example(input_size: Any, dtypes: Sequence | None) -> tuple:
    """Inputs for ``input_size`` (one shape, or a list of shapes for several inputs): standard
    normal floats from a fixed seed of a private generator, zeros for integer dtypes (token 0)."""
    sizes = [input_size] if input_size and all(isinstance(d, (int, np.integer)) for d in input_size) \
        else list(input_size)
    for s in sizes:
        if not isinstance(s, (tuple, list)) or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in s):
            raise ValueError(f"summary: input_size must be a shape such as (32, 784), or a list of shapes for "
                             f"several inputs, got {input_size!r}")
    dts = list(dtypes) if dtypes is not None else [np.float32] * len(sizes)
    if len(dts) != len(sizes):
        raise ValueError(f"summary: {len(dts)} dtypes for {plural(len(sizes), 'input')}")
    rng = np.random.default_rng(0)
    out = []
    for s, dt in zip(sizes, dts):
        dt = np.dtype(dt)
        a = rng.standard_normal(tuple(s)).astype(dt) if dt.kind == "f" else np.zeros(tuple(s), dt)
        out.append(Tensor(a))
    return tuple(out)


def _as_inputs(input_data: Any) -> tuple:
    if isinstance(input_data, np.ndarray):
        return (Tensor(input_data),)
    if isinstance(input_data, (tuple, list)):
        return tuple(Tensor(x) if isinstance(x, np.ndarray) else x for x in input_data)
    return (input_data,)


def _record_shapes(root: _Node, inputs: tuple) -> None:
    nodes, stack = [], [root]
    while stack:
        n = stack.pop()
        nodes.append(n)
        stack.extend(n.children)
    by_module: dict[int, list[_Node]] = {}
    for n in nodes:
        by_module.setdefault(id(n.module), []).append(n)

    def hook(module: Any, args: Any, out: Any) -> None:
        for n in by_module[id(module)]:
            if n.shape is None:  # a module called twice keeps its first output's shape
                n.shape = _shapes(out)

    model = root.module
    modes = [(m, m.training) for _, m in model.named_modules()]
    handles = [n.module.register_forward_hook(hook) for n in nodes if by_module[id(n.module)][0] is n]
    rng_state = rg_random.default_generator.get_state()
    try:
        model.eval()
        with no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
        rg_random.default_generator.set_state(rng_state)


def example_inputs(loader: Any, n: int | None = None) -> tuple | None:
    """The inputs of a batch of the first ``n`` samples (default: the loader's batch size) of a
    map-style ``loader``'s dataset, read without iterating the loader, so its shuffling generator
    and position stay as they were; None for a dataset without ``len``."""
    ds = getattr(loader, "dataset", None)
    try:
        size = len(ds)
    except TypeError:
        return None
    n = min(n or getattr(loader, "batch_size", None) or 1, size)
    if n < 1:
        return None
    idx = np.arange(n, dtype=np.int64)
    get_batch = getattr(ds, "get_batch", None)
    collate = getattr(loader, "collate_fn", default_collate)
    batch = get_batch(idx) if get_batch is not None and collate is default_collate else \
        collate([ds[int(i)] for i in idx])
    return unpack_batch(batch, "summary")[0]


# ---------------------------------------------------------------------- the public function
def summary(model: Any, input_size: Sequence | None = None, *, input_data: Any = None,
            dtypes: Sequence | None = None, depth: int | None = None) -> ModelSummary:
    """The layers of ``model`` (an ``rg.nn.Module``) with their output shapes and parameter counts.

    ``input_size``: the shape of one input batch, batch dimension included (``(32, 784)``), or a
    list of shapes for a model of several inputs; ``dtypes`` their dtypes (default float32; an
    integer dtype gives zeros, e.g. token ids). Or ``input_data``: an example batch (a Tensor, an
    array, or a tuple of them for several inputs). With neither, no forward pass runs and the output
    shapes are left empty. ``depth``: the deepest level shown (the model is 0; default: all),
    deeper modules counted in their parent's row. ``str()`` of the result is the table.
    """
    if depth is not None and (not isinstance(depth, int) or depth < 0):
        raise ValueError(f"summary: depth must be a non-negative int or None, got {depth!r}")
    if input_size is not None and input_data is not None:
        raise ValueError("summary: give input_size or input_data, not both")
    root = _tree(model, "", "", 0, set())
    inputs = None
    if input_data is not None:
        inputs = _as_inputs(input_data)
    elif input_size is not None:
        inputs = _example(input_size, dtypes)
    if inputs is not None:
        _record_shapes(root, inputs)
    rows: list[SummaryRow] = []
    _rows(root, depth, set(), rows)
    params, buffers = list(model.parameters()), list(model.buffers())
    return ModelSummary(
        rows=rows, total_params=sum(int(p.numel()) for p in params),
        trainable_params=sum(int(p.numel()) for p in params if p.requires_grad),
        param_bytes=sum(int(p._array.nbytes) for p in params),
        buffer_values=sum(int(b.numel()) for b in buffers), buffer_bytes=sum(int(b._array.nbytes) for b in buffers),
        input_shape=_shapes(inputs) if inputs is not None else None)


# ---------------------------------------------------------------------- the table
def _shape_text(shape: Any) -> str:
    if shape is None:
        return "--"
    if shape and isinstance(shape[0], list):
        return ", ".join(str(s) for s in shape)
    return str(shape)


def _mb(n: int) -> str:
    """A size in bytes as people read it: ``104 B``, ``19.24 KB``, ``3.25 MB`` (powers of 10, as torchinfo)."""
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e3:,.2f} KB" if n < 10**6 else f"{n / 1e6:,.2f} MB"


def format_summary(s: ModelSummary) -> str:
    """The table ``str(ModelSummary)`` is: tree, output shape, parameters; then the totals."""
    names = []
    for i, r in enumerate(s.rows):
        if r.depth == 0:
            names.append(r.type)
            continue
        # box drawing as torchinfo: "│ " for each open ancestor, "├─" before the row, "└─" for a last child
        nxt = next((x for x in s.rows[i + 1:] if x.depth <= r.depth), None)
        last = nxt is None or nxt.depth < r.depth
        bars = "".join("│ " if _open(s.rows, i, d) else "  " for d in range(1, r.depth))
        label = f"{r.type}: {r.name}" if not r.repeats else \
            f"{r.type}{f' x {r.repeats}' if r.repeats > 1 else ''}: {r.name} (same as {r.same_as})"
        names.append(bars + ("└─" if last else "├─") + label)
    shapes = [_shape_text(r.output_shape) for r in s.rows]
    params = [f"{r.params:,}" if r.params else "--" for r in s.rows]
    w0 = max(len("Layer (type)"), *(len(n) for n in names)) + 2
    w1 = max(len("Output shape"), *(len(x) for x in shapes)) + 2
    w2 = max(len("Param #"), *(len(x) for x in params))
    rule = "=" * (w0 + w1 + w2)
    lines = [f"{'Layer (type)':<{w0}}{'Output shape':<{w1}}{'Param #':>{w2}}", rule]
    lines += [f"{n:<{w0}}{x:<{w1}}{p:>{w2}}" for n, x, p in zip(names, shapes, params)]
    lines += [rule, f"Total params: {s.total_params:,} ({_mb(s.param_bytes)})",
              f"Trainable params: {s.trainable_params:,}", f"Non-trainable params: {s.non_trainable_params:,}"]
    if s.buffer_values:
        lines.append(f"Buffers (running statistics and other state): {s.buffer_values:,} ({_mb(s.buffer_bytes)})")
    if s.input_shape is not None:
        lines.append(f"Input shape: {_shape_text(s.input_shape)}")
    return "\n".join(lines)


def _open(rows: list[SummaryRow], i: int, d: int) -> bool:
    """Whether the ancestor of row ``i`` at depth ``d`` has more children after row ``i``'s subtree
    (its vertical line continues past row ``i``)."""
    for r in rows[i + 1:]:
        if r.depth < d:
            return False
        if r.depth == d:
            return True
    return False


def show_model(setup: Any, *, quiet: bool = False, run_dir: Any = None, file: Any = None) -> ModelSummary:
    """The summary of a recipe ``Setup``'s model on a batch (``data.batch_size`` samples) of its
    validation data (else its test data; not the training data, whose augmentation draws from a
    generator training uses), printed unless ``quiet`` and written to ``run_dir/model_summary.txt``.
    A model the example batch does not suit still gets its parameter counts (and a note why no shapes)."""
    loader = setup.val_loader if setup.val_loader is not None else setup.test_loader
    note = "" if loader is not None else "(no output shapes: the run has no validation or test data to run)"
    result = None
    if loader is not None:
        try:
            result = summary(setup.model, input_data=example_inputs(loader, setup.cfg["data"]["batch_size"]))
        except Exception as e:  # noqa: BLE001 - a summary must never stop a run
            note = f"(no output shapes: the forward pass on an example batch failed: {type(e).__name__}: {e})"
    if result is None:
        result = summary(setup.model)
    text = str(result) + (f"\n{note}" if note else "")
    if run_dir is not None:
        (pathlib.Path(run_dir) / "model_summary.txt").write_text(text + "\n")
    if not quiet:
        print(text, file=file or sys.stdout, flush=True)
    return result
