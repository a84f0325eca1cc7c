"""Pictures of the autograd graph: ``draw_graph(loss, params=dict(model.named_parameters()))``.

The picture is drawn from the engine's own nodes (``tensor.grad_fn`` and its inputs), in the
forward direction: parameters and other leaves that require grad at the top, one box per recorded
op (its ``grad_fn`` name and the arrays its backward keeps), the output at the bottom. Each edge
carries the shape and dtype of the tensor that flows along it; with ``show_grads=True`` also the
norm of the gradient of the output with respect to that tensor (the gradient the backward walk
sends back along the edge).

Ops are grouped into clusters by module: a parameter named ``blocks.0.attn.qkv.weight`` puts the
op that uses it into cluster ``blocks.0`` (the prefix up to the first number; without a number
its module, ``fc1`` for ``fc1.weight``), and an op that uses no parameter joins the latest cluster
among its inputs. Consecutive numbered clusters with the same ops, shapes and wiring (a GPT's
blocks) are drawn once, labelled ``x N``.

graphviz (the Python package, ``pip install graphviz``, and the ``dot`` program) is imported only
when a picture is drawn.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from retrograd import engine
from retrograd.tensor import Tensor

FORMATS = ("svg", "png", "pdf", "jpg", "dot")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


class _Op:
    __slots__ = ("node", "key", "ins", "group", "rank")

    def __init__(self, node: Any, key: str) -> None:
        self.node = node
        self.key = key
        self.ins: list[tuple[str, Any]] = []  # (key of what produced it, the input Tensor)
        self.group: str | None = None
        self.rank = 0


def _shape(t: Any) -> str:
    return str(tuple(int(d) for d in t.shape))


def _tdesc(t: Any) -> str:
    return f"{_shape(t)} {np.dtype(t._array.dtype).name}"


def _group_of(name: str) -> str | None:
    """``blocks.0.attn.qkv.weight`` -> ``blocks.0``; ``fc1.weight`` -> ``fc1``; ``w`` -> None."""
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or None


def _walk(root: Tensor) -> tuple[dict[str, _Op], dict[str, Tensor]]:
    """Every op node behind ``root`` (by key) and every leaf that requires grad (by key)."""
    ops: dict[str, _Op] = {}
    leaves: dict[str, Tensor] = {}
    stack = [root._node]
    ops[f"n{id(root._node)}"] = _Op(root._node, f"n{id(root._node)}")
    while stack:
        node = stack.pop()
        op = ops[f"n{id(node)}"]
        if node.inputs is None:
            raise RuntimeError(
                f"draw_graph: the graph behind this tensor was freed by an earlier backward() (op "
                f"{node.name()} has no inputs left); draw it before backward, or call "
                "backward(retain_graph=True) first")
        for t in node.inputs:
            if t is None or not t.requires_grad:
                continue
            child = t._node
            if child is not None and child.seq < node.seq:  # changed in place after this op read it
                child = engine._history(child, node.seq)
            if child is None:
                if t._node is not None:  # did not require grad when this op read it
                    continue
                key = f"l{id(t)}"
                leaves[key] = t
            else:
                key = f"n{id(child)}"
                if key not in ops:
                    ops[key] = _Op(child, key)
                    stack.append(child)
            op.ins.append((key, t))
    # creation order: a node recorded later has a smaller ``seq``
    for rank, op in enumerate(sorted(ops.values(), key=lambda o: -o.node.seq)):
        op.rank = rank
    return ops, leaves


def _saved(node: Any) -> list[str]:
    """What the node's backward keeps: its inputs' values (rules that read them), its output
    (rules that reuse it) and any arrays its forward stored."""
    out = []
    if node.rule.needs_inputs:
        for i, t in enumerate(node.inputs):
            if t is not None and getattr(t, "_gslot", None) is not engine.EDGE_ONLY:
                out.append(f"input{i} {_shape(t)}")
    if node.out is not None and getattr(node.out, "shape", None) is not None:
        out.append(f"result {_shape(node.out)}")
    if isinstance(node.kw, Mapping):
        for k, v in node.kw.items():
            if isinstance(v, np.ndarray) and v.ndim > 0:
                out.append(f"{k} {_shape(v)}")
    return out


def _grad_norms(root: Tensor, ops: dict[str, _Op], leaves: dict[str, Tensor]) -> dict[str, float]:
    """The norm of d(sum of root)/d(tensor) for every tensor in the graph, by producer key; computed
    with ``grad`` (``retain_graph=True``), so leaves' ``.grad`` is left as it is."""
    reps: dict[str, Tensor] = dict(leaves)
    for op in ops.values():
        for key, t in op.ins:
            if key.startswith("n") and key not in reps and t._node is ops[key].node:
                reps[key] = t
    keys = list(reps)
    seed = None if root.ndim == 0 else Tensor._wrap(np.ones(root.shape, dtype=root._array.dtype))
    gs = engine.grad([root], [reps[k] for k in keys], grad_outputs=None if seed is None else [seed],
                     retain_graph=True, allow_unused=True)
    norms = {k: (0.0 if g is None else float(np.linalg.norm(np.asarray(g._array, dtype=np.float64))))
             for k, g in zip(keys, gs)}
    norms["root"] = float(np.sqrt(np.prod(root.shape))) if root.ndim else 1.0
    return norms


def _assign_groups(ops: dict[str, _Op], names: dict[str, str]) -> dict[str, int]:
    """Each op's cluster (see the module docstring); returns the clusters in order of appearance."""
    order: dict[str, int] = {}
    for op in sorted(ops.values(), key=lambda o: o.rank):
        direct = [_group_of(names[k]) for k, _ in op.ins if k in names]
        direct = [g for g in direct if g is not None]
        if direct:
            op.group = direct[0]
        else:
            inherited = [ops[k].group for k, _ in op.ins if k in ops and ops[k].group is not None]
            op.group = max(inherited, key=order.__getitem__) if inherited else None
        if op.group is not None and op.group not in order:
            order[op.group] = len(order)
    return order


def _signature(members: list[_Op], names: dict[str, str], group: str) -> tuple:
    pos = {op.key: i for i, op in enumerate(members)}
    sig = []
    for op in members:
        ins = []
        for key, t in op.ins:
            if key in pos:
                src = ("in", pos[key])
            elif key in names:
                src = ("param", names[key][len(group):] if names[key].startswith(group + ".") else names[key])
            else:
                src = ("ext",)
            ins.append((src, tuple(t.shape), str(t._array.dtype)))
        sig.append((op.node.name(), tuple(ins)))
    return tuple(sig)


def _collapse(ops: dict[str, _Op], names: dict[str, str], order: dict[str, int]):
    """Runs of consecutive numbered clusters with equal signatures. Returns (rep: key -> key of the
    drawn node standing for it, runs: drawn group -> (label, member groups))."""
    by_group: dict[str, list[_Op]] = {}
    for op in sorted(ops.values(), key=lambda o: o.rank):
        if op.group is not None:
            by_group.setdefault(op.group, []).append(op)
    numbered: dict[str, list[tuple[int, str]]] = {}
    for g in order:
        m = _NUMBERED.match(g)
        if m and m.group(1).endswith("."):
            numbered.setdefault(m.group(1), []).append((int(m.group(2)), g))
    rep: dict[str, str] = {}
    runs: dict[str, tuple[str, list[str]]] = {}
    for base, items in numbered.items():
        items.sort()
        i = 0
        while i < len(items):
            j = i + 1
            sig = _signature(by_group[items[i][1]], names, items[i][1])
            while (j < len(items) and items[j][0] == items[j - 1][0] + 1
                   and _signature(by_group[items[j][1]], names, items[j][1]) == sig):
                j += 1
            if j - i >= 2:
                first = items[i][1]
                members = [g for _, g in items[i:j]]
                label = f"{base}{items[i][0]}..{items[j - 1][0]}  (x {j - i})"
                runs[first] = (label, members)
                for g in members:
                    for a, b in zip(by_group[g], by_group[first]):
                        rep[a.key] = b.key
                        # the parameters the copies use map to the first copy's
                        pa = {names[k]: k for k, _ in a.ins if k in names}
                        pb = {names[k]: k for k, _ in b.ins if k in names}
                        for n, k in pa.items():
                            rel = n[len(g):]
                            match = pb.get(first + rel)
                            if match is not None:
                                rep[k] = match
            i = j
    return rep, runs


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def draw_graph(tensor: Tensor, params: Mapping[str, Tensor] | None = None, show_grads: bool = False,
               collapse: bool = True, format: str = "svg") -> Any:
    """Draw the autograd graph behind ``tensor`` as a ``graphviz.Digraph``.

    ``params``: names for leaves, e.g. ``dict(model.named_parameters())``; they label the
    parameter nodes and group ops into clusters by module. ``show_grads``: add the norm of the
    gradient of ``tensor`` (summed, if not a scalar) on every edge and parameter, computed here
    with ``retrograd.grad(..., retain_graph=True)`` (``.grad`` is not touched; it equals
    ``p.grad``'s norm after one ``backward``). The graph must still be alive: draw before
    ``backward()`` or after ``backward(retain_graph=True)``. ``collapse``: draw consecutive
    identical numbered blocks (``blocks.0``, ``blocks.1``, ...) once, labelled ``x N``.
    ``format``: what ``.pipe()``/``.render()`` produce (``svg``, ``png``, ``pdf``, ``jpg``, ``dot``).

    The result shows inline in Jupyter; ``.pipe()`` gives the image's bytes, ``.render(path)``
    writes it (both need graphviz's ``dot`` program).
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: expected a retrograd Tensor, got {type(tensor).__name__}")
    if format not in FORMATS:
        raise ValueError(f"draw_graph: format must be one of {', '.join(FORMATS)}, got {format!r}")
    if tensor._node is None:
        raise ValueError(
            f"draw_graph: this tensor (shape {_shape(tensor)}) has no autograd graph: it is a leaf"
            f"{'' if tensor.requires_grad else ' that does not require grad'}; draw a tensor computed "
            "from tensors with requires_grad=True outside no_grad()")
    if params is not None and not isinstance(params, Mapping):
        raise TypeError("draw_graph: params must be a mapping of names to Tensors, e.g. "
                        f"dict(model.named_parameters()), got {type(params).__name__}")
    try:
        import graphviz
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("draw_graph needs the graphviz package: pip install 'retrograd[viz]' "
                          "(and the graphviz 'dot' program, e.g. apt-get install graphviz)") from exc

    ops, leaves = _walk(tensor)
    by_id = {id(t): n for n, t in (params or {}).items()}
    names = {k: by_id[id(t)] for k, t in leaves.items() if id(t) in by_id}
    norms = _grad_norms(tensor, ops, leaves) if show_grads else {}
    order = _assign_groups(ops, names)
    rep, runs = _collapse(ops, names, order) if collapse else ({}, {})
    collapsed_groups = {g: first for first, (_, ms) in runs.items() for g in ms}

    def drawn(key: str) -> str:
        return rep.get(key, key)

    # gradient norms of all copies a drawn edge or node stands for
    copies: dict[str, list[float]] = {}
    if show_grads:
        for key, v in norms.items():
            copies.setdefault(drawn(key), []).append(v)

    def grad_text(key: str) -> str:
        vals = copies.get(key)
        if not vals:
            return ""
        lo, hi = min(vals), max(vals)
        return f"|grad|={_fmt(lo)}" if len(vals) == 1 or _fmt(lo) == _fmt(hi) else f"|grad|={_fmt(lo)}..{_fmt(hi)}"

    dot = graphviz.Digraph("autograd", format=format)
    dot.attr(rankdir="TB", fontname="Helvetica", fontsize="11")
    dot.attr("node", fontname="Helvetica", fontsize="10")
    dot.attr("edge", fontname="Helvetica", fontsize="9", color="#555555")
    bodies: dict[str | None, list[tuple[str, str, dict]]] = {}

    def add_node(group: str | None, key: str, label: str, **attrs: str) -> None:
        if group in collapsed_groups:
            group = collapsed_groups[group]
        bodies.setdefault(group, []).append((key, label, attrs))

    for key, t in leaves.items():
        if key in rep and rep[key] != key:
            continue
        name = names.get(key)
        if name is None:
            label, group = f"leaf {_tdesc(t)}", None
        else:
            group = _group_of(name)
            if group in collapsed_groups:
                name = name.replace(group, re.sub(r"\d+$", "*", group), 1)
            label = f"{name}\n{_tdesc(t)}"
        g = grad_text(key)
        add_node(group, key, label + (f"\n{g}" if g else ""), shape="box", style="filled",
                 fillcolor="#cfe8cf" if name else "#e8e8e8")
    for key, op in ops.items():
        if key in rep and rep[key] != key:
            continue
        saved = _saved(op.node)
        label = op.node.name()
        if saved:
            label += "\nsaved: " + ", ".join(saved[:4]) + (f", +{len(saved) - 4}" if len(saved) > 4 else "")
        add_node(op.group, key, label, shape="box", style="rounded,filled", fillcolor="#dde7f7")
    root_label = f"output {_tdesc(tensor)}"
    add_node(None, "root", root_label, shape="ellipse", style="filled", fillcolor="#f7e3c8")

    for group, items in bodies.items():
        target = dot
        if group is not None:
            sub = graphviz.Digraph(f"cluster_{group}")
            label = runs[group][0] if group in runs else group
            sub.attr(label=label, style="rounded,dashed" if group in runs else "rounded",
                     color="#7f7f7f", fontname="Helvetica", fontsize="11")
            target = sub
        for key, label, attrs in items:
            target.node(key, label, **attrs)
        if group is not None:
            dot.subgraph(sub)

    seen = set()
    group_of_key = {k: o.group for k, o in ops.items()}
    for key, op in ops.items():
        for src, t in op.ins:
            a, b = drawn(src), drawn(key)
            ga = collapsed_groups.get(group_of_key.get(src)), collapsed_groups.get(op.group)
            if ga[0] is not None and ga[0] == ga[1] and group_of_key.get(src) != op.group:
                continue  # copy k feeding copy k+1 of a collapsed run
            if (a, b) in seen:
                continue
            seen.add((a, b))
            label = _tdesc(t)
            g = grad_text(a)
            dot.edge(a, b, label=label + (f"\n{g}" if g else ""))
    g = grad_text("root")
    dot.edge(drawn(f"n{id(tensor._node)}"), "root", label=_tdesc(tensor) + (f"\n{g}" if g else ""))
    return dot
