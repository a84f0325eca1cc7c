"""The graph node and the reverse-mode engine (grad mode and anomaly mode: ``grad_mode.py``).

A ``Node`` is created by every differentiable op whose inputs need grad. It
keeps the op's rule, its input Tensors (their arrays are what the rule reads;
their nodes are the graph's edges), the output array when the rule needs it,
and the op's keyword arguments. It never keeps its output Tensor, so a graph
holds no reference cycles and is freed as soon as the last Tensor that reaches
it goes away.

``run_backward`` walks the graph iteratively in reverse topological order,
calls one rule per node, undoes broadcasting in one place (``unbroadcast``),
accumulates into ``.grad`` of leaves only and frees each node's saved arrays
after use unless ``retain_graph`` is set. With ``create_graph`` the gradients
are Tensors and the rules run on Tensors, so the gradient is itself
differentiable.

``backward`` and ``grad`` are the public entry points (``Tensor.backward``,
``rg.grad`` and ``rg.autograd`` call them).

This module sits below ``tensor.py``: it never imports it. ``tensor.py``
registers its class in ``state.tensor_type`` so the engine can wrap arrays.
"""
from __future__ import annotations

import heapq
import itertools
import sys
from typing import Any, Callable, Sequence

import numpy as np

from . import backend as B
from .hooks import RemovableHandle, add_hook
from .scalars import _C32, _F32, const
from .versions import counter
# grad mode, anomaly mode and ``state`` live in grad_mode.py; imported from here by the rest of the tree
from .grad_mode import (AnomalyError, _GradModeContext, creation_site, detect_anomaly,  # noqa: F401
                        enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad, set_grad_enabled,
                        state)


# --------------------------------------------------------------------------- node
_sequence = itertools.count(0, -1)  # decreasing: the newest node pops first from a min-heap


def next_seq() -> int:
    """A number below every existing node's ``seq`` and above every later one's (a clock for
    telling which nodes an operation recorded)."""
    return next(_sequence)


class _NodeExtra:
    __slots__ = ("hooks", "retain", "site", "prev")

    def __init__(self) -> None:
        self.hooks = None
        self.retain = None
        self.site = None
        # set on the node of an in-place op (``tensor_inplace``): the node its tensor had before
        # (None: a tensor that did not require grad), for consumers recorded before the change
        self.prev = None


class Node:
    """One recorded op (PyTorch's ``grad_fn``).

    ``rule`` has ``name``, ``backward(g, out, ins, kw, needs)`` and ``forward``;
    ``inputs`` are the input Tensors; ``out`` the output array if the rule
    reads it; ``kw`` the op's keyword arguments and any arrays its forward
    saved; ``version`` the sum of the saved inputs' version counters at
    creation, checked at backward to catch in-place changes (set only for a
    rule that reads its inputs, ``rule.needs_inputs``); ``out_vc`` the
    saved output's version counter (a list shared with its Tensor) when ``out``
    is kept, and ``out_v`` its value then (set only with ``out_vc``).

    ``inputs`` is stored in ``_ins``: the tuple, or the input Tensor itself for a node with one input
    (``tensor._record1``: one object less per op for the allocator and the cyclic GC), or None once
    freed. The engine reads ``_ins``; ``inputs`` always gives a tuple.
    """

    # rarely used fields (hooks, retain_grad, anomaly site) live in ``extra`` so
    # that recording an op stores as few attributes as possible
    __slots__ = ("rule", "_ins", "out", "kw", "version", "seq", "out_vc", "out_v", "extra", "__weakref__")

    @property
    def inputs(self) -> tuple | None:
        ins = self._ins
        return ins if ins is None or type(ins) is tuple else (ins,)

    @inputs.setter
    def inputs(self, value: tuple | None) -> None:
        self._ins = value

    # no __init__: ``Node()`` runs no Python code (an op's path, ``tensor._apply``, stores the fields itself:
    # a class call with an ``__init__`` costs a fifth of a small op); ``new_node`` makes one elsewhere

    def _extra(self) -> "_NodeExtra":
        e = self.extra
        if e is None:
            e = self.extra = _NodeExtra()
        return e

    @property
    def hooks(self) -> dict | None:
        """Gradient hooks by handle id, in registration order (``register_hook``)."""
        return None if self.extra is None else self.extra.hooks

    @hooks.setter
    def hooks(self, value: dict | None) -> None:
        self._extra().hooks = value

    @property
    def retain(self) -> Any:
        return None if self.extra is None else self.extra.retain

    @retain.setter
    def retain(self, value: Any) -> None:
        self._extra().retain = value

    @property
    def site(self) -> str | None:
        return None if self.extra is None else self.extra.site

    @site.setter
    def site(self, value: str | None) -> None:
        self._extra().site = value

    def name(self) -> str:
        return self.rule.node_name

    @property
    def next_functions(self) -> tuple:
        if self.inputs is None:
            return ()
        out = []
        for t in self.inputs:
            if t is None:
                out.append((None, 0))
            elif t._node is not None:  # the input's node when this one recorded it
                out.append((t._node if t._node.seq > self.seq else _history(t._node, self.seq), 0))
            else:
                out.append(("AccumulateGrad" if t.requires_grad else None, 0))
        return tuple(out)

    def register_hook(self, fn: Callable) -> RemovableHandle:
        """``fn(grad) -> Tensor or None`` runs on the gradient flowing into this node's output."""
        if self.hooks is None:
            self.hooks = {}
        return add_hook(self.hooks, fn)

    def __repr__(self) -> str:
        return f"<{self.rule.node_name} object at {hex(id(self))}>"


def new_node(rule: Any, inputs: tuple, out: Any, kw: Any, version: int) -> Node:
    """A node with its fields set (``out`` kept without a version counter)."""
    node = Node()
    # creation order: a node's consumers are always created after it, so
    # processing nodes by decreasing ``seq`` is a topological order
    node.seq = next(_sequence)
    node.rule = rule
    node._ins = inputs
    node.out = out
    node.kw = kw
    node.version = version
    node.out_vc = None
    node.extra = None
    return node


# --------------------------------------------------------------------------- helpers
_BF16 = B.bfloat16


def unbroadcast(g: Any, shape: tuple) -> Any:
    """Sum ``g`` back to ``shape``: the one place broadcasting is undone."""
    gshape = g.shape
    if gshape == shape:
        return g
    nd = len(gshape) - len(shape)
    if nd < 0:
        return np.broadcast_to(g, shape)
    axes = tuple(range(nd)) + tuple(i + nd for i, s in enumerate(shape) if s == 1 and gshape[i + nd] != 1)
    if axes:
        if getattr(g, "dtype", None) == _BF16:  # PyTorch sums bfloat16 in float32, rounds once
            g = np.sum(g.astype(np.float32), axis=axes).astype(_BF16)
        else:
            g = np.sum(g, axis=axes)
    if g.shape != shape:
        g = np.reshape(g, shape)
    return g


def _version_sum(inputs: Sequence) -> int:
    return sum(t._vc[0] for t in inputs if t is not None)


def _shapes(inputs: Sequence) -> str:
    return ", ".join(str(tuple(t._array.shape)) if t is not None else "None" for t in inputs)


def _has_inf_fill(node: Node) -> bool:
    """``masked_fill(mask, -inf)`` (and ``fill_``/``index_fill`` built on it) writes an attention mask."""
    if node.rule.name != "masked_fill" or not node.kw:
        return False
    try:
        return bool(np.isinf(node.kw.get("value")))
    except TypeError:
        return False


def _inf_is_a_mask(node: Node, inputs: Sequence) -> bool:
    """An inf in a forward output is a mask, not an anomaly, when the op carried it in from an
    input (``scores + attn_mask``, ``softmax``/``exp``/``log_softmax`` of a masked row) or wrote it
    as a fill value (``masked_fill(mask, -inf)``; ``where`` takes its fill value as an input)."""
    if _has_inf_fill(node):
        return True
    for t in inputs:
        a = getattr(t, "_array", None)
        if isinstance(a, np.ndarray) and a.dtype.kind in "fV" and not np.isfinite(a).all():
            return True
    return False


def _check_finite(arr: Any, what: str, node: Node, inputs: Sequence | None = None) -> None:
    """Anomaly mode's check of one op's result.

    ``what == "backward"``: NaN only, as PyTorch's anomaly mode (an inf gradient, e.g. of ``sqrt``
    at 0, is not flagged). ``"forward"`` (retrograd's own addition, naming the op that first made a
    bad value): NaN always; inf only when the op created it from finite inputs and it is not a
    mask fill, so that additive ``-inf`` attention masks and ``masked_fill(-inf)`` pass."""
    # not getattr(arr, "data"): an ndarray's .data is its memoryview, which would skip the check
    data = arr._array if isinstance(arr, state.tensor_type) else arr
    if not (isinstance(data, np.ndarray) and data.dtype.kind in "fV") or np.isfinite(data).all():
        return
    ins = node.inputs if inputs is None else inputs
    if np.isnan(data).any():
        kind = "nan"
    elif what == "backward" or _inf_is_a_mask(node, ins or ()):
        return
    else:
        kind = "inf"
    raise AnomalyError(
        f"{what} of op '{node.rule.name}' produced {kind} values "
        f"(input shapes: {_shapes(ins)}); the op was created at:\n  {node.site or '<unknown>'}")


# --------------------------------------------------------------------------- engine
def run_backward(roots: Sequence, grad_roots: Sequence, *, retain_graph: bool, create_graph: bool,
                 capture: Sequence | None = None, accumulate: bool = True,
                 only: Sequence | None = None) -> list | None:
    """Backpropagate ``grad_roots`` (arrays, or Tensors when ``create_graph``)
    from the Tensors ``roots``.

    With ``capture`` (a list of Tensors) the gradients with respect to those
    Tensors are returned (``rg.grad``); leaves' ``.grad`` is only written when
    ``accumulate`` is true, and then, with ``only``, just for those leaves.
    """
    Tensor = state.tensor_type
    wrap = Tensor._wrap
    grads: dict[Node, Any] = {}
    heap: list[tuple[int, Node]] = []
    leaf_seeds: list[tuple[Any, Any]] = []
    for r, g in zip(roots, grad_roots):
        n = r._node
        if n is None:
            leaf_seeds.append((r, g))
            continue
        prev = grads.get(n)
        if prev is None:
            grads[n] = g
            heapq.heappush(heap, (n.seq, n))
        else:
            grads[n] = prev + g

    captured: dict[int, Any] = {}
    cap_leaf: dict[int, int] = {}
    cap_node: dict[Node, int] = {}
    if capture is not None:
        for i, t in enumerate(capture):
            if t._node is None:
                cap_leaf[id(t)] = i
            else:
                cap_node[t._node] = i
    only_ids = None if only is None else {id(t) for t in only}
    anomaly = state.anomaly

    def to_leaf(t: Any, gi: Any, fresh: bool) -> None:
        if t._hooks:
            for h in tuple(t._hooks.values()):
                r = h(gi if create_graph else wrap(gi))
                if r is not None:
                    gi = r if create_graph else r._array
                    fresh = False
        key = id(t)
        if key in cap_leaf:
            prev = captured.get(key)
            captured[key] = gi if prev is None else prev + gi
        if not accumulate or (only_ids is not None and key not in only_ids):
            return
        if create_graph:
            if getattr(t, "_gslot", None) is NO_GRAD_SLOT:
                return
            gt = gi if isinstance(gi, Tensor) else wrap(gi)
            t.grad = gt if t.grad is None else t.grad + gt
            return
        if t.grad is None:
            slot = getattr(t, "_gslot", None)
            if slot is NO_GRAD_SLOT:
                return
            if slot is not None and slot.shape == gi.shape:
                slot[...] = gi  # np.copyto(casting="unsafe"), without its dispatcher's cost
                gi = slot
            elif not fresh or gi.dtype != t._array.dtype:
                gi = np.array(gi, dtype=t._array.dtype, copy=True)
            t.grad = wrap(gi)
        else:
            gd = t.grad._array
            if gd.shape != gi.shape:
                raise RuntimeError(f"backward: existing .grad of shape {gd.shape} cannot accumulate a "
                                   f"gradient of shape {gi.shape}")
            if gd.dtype is gi.dtype:
                gd += gi  # the same loop as np.add(out=gd), without parsing keywords
            else:
                np.add(gd, gi, out=gd, casting="unsafe")

    observers = state.grad_observers if accumulate and only is None else None
    if observers:
        accumulate_into = to_leaf

        def to_leaf(t: Any, gi: Any, fresh: bool) -> None:  # noqa: F811  the observed variant
            accumulate_into(t, gi, fresh)
            seen = observers.get(id(t))
            if seen is not None:
                seen(t)

    for r, g in leaf_seeds:
        to_leaf(r, g, False)

    prev_mode = state.enabled
    state.enabled = create_graph
    done: Sequence = ()
    heappop, heappush = heapq.heappop, heapq.heappush
    try:
        # nodes in decreasing creation order: each is reached only after all its consumers
        fast = not create_graph and not anomaly and not cap_node
        # leaves whose gradient only accumulates into ``.grad`` (no capture, observer or ``inputs=``)
        plain_leaves = fast and accumulate and only is None and not cap_leaf and not observers
        # ids of accumulators the engine allocated itself and may update in place;
        # an id leaves the set when its array is popped (ids of live arrays are unique)
        owned: set[int] = set()
        keep = retain_graph
        # a node whose only pending successor is one child (a chain) hands it over instead of the heap:
        # the one-input path below sets ``node`` (and ``g``, its gradient, which never enters ``grads``)
        # for the next iteration; the general path sets ``nxt`` (its gradient in ``grads``), only while
        # the heap is empty, and the next push puts it back there. Otherwise ``node`` is None at the top
        node = nxt = None
        while True:
            if node is None:
                if nxt is not None:
                    node = nxt
                    nxt = None
                elif heap:
                    node = heappop(heap)[1]
                else:
                    break
                g = grads.pop(node)
            ins = node._ins
            rule = node.rule
            if ins is None:
                raise RuntimeError(
                    f"Trying to backward through the graph a second time (op '{rule.name}'): its saved "
                    "arrays were freed after the first backward. Pass retain_graph=True to the first "
                    "backward() (or rg.grad) if you need to backward through it again.")
            if owned:
                owned.discard(id(g))
            if type(ins) is tuple:
                n_in = len(ins)
                t0 = ins[0] if n_in == 1 else None
            else:  # one input, stored as itself (the tuple made only where the slow paths read it)
                n_in = 1
                t0 = ins
                if not fast:
                    ins = (t0,)
            if fast and node.extra is None and n_in <= 3:
                # the common cases, kept lean: one or two tensor inputs, arrays only. ``hand``: the one child
                # that gets this node's only remaining gradient ``gi`` (the tail below), else ``pairs``
                hand = None
                if n_in == 1:
                    if rule.needs_inputs and t0._vc[0] != node.version or (
                            node.out_vc is not None and node.out_vc[0] != node.out_v):
                        _raise_modified(rule, (t0,))
                    child = t0._node
                    if child is not None and child.seq > node.seq and rule.scatter is None and len(t0._vc) == 1:
                        # the plainest edge (one input with a history, unchanged in place since): the pair
                        # loop below, inline
                        if rule.passes_grad:
                            gi = g
                        elif rule.scalar_grad is not None:  # const(s, g), its float32 hit inline
                            s = node.kw
                            c = _C32.get(s) if g.dtype is _F32 and type(s) is float and type(g) is _ndarray else None
                            gi = rule.scalar_grad(g, const(s, g) if c is None else c)
                        elif rule.out_grad is not None:
                            gi = rule.out_grad(g, node.out)
                        else:
                            gi = rule.backward(g, node.out, (t0._array,), node.kw, _NEED1)[0]
                        if gi is not None and not rule.keeps_shape:
                            shape = t0._array.shape
                            if gi.shape != shape:
                                gi = unbroadcast(gi, shape)
                        hand = child
                    else:
                        if len(t0._vc) > 1:  # its storage changed in place: the general edge below
                            child = None
                        elif child is not None and child.seq < node.seq:  # t0 changed in place since
                            child = _history(child, node.seq)
                            if child is None:
                                if not keep:
                                    node._ins = node.out = node.kw = None
                                node = None
                                continue
                        if child is not None and rule.scatter is not None:
                            # add straight into the input's accumulator: O(size of this op's output)
                            acc = grads.get(child)
                            if acc is None:
                                acc = np.zeros(t0._array.shape, dtype=g.dtype)
                                grads[child] = acc
                                heappush(heap, (child.seq, child))  # (nxt is None here: taken above)
                                owned.add(id(acc))
                            elif id(acc) not in owned:
                                acc = np.array(acc, dtype=np.result_type(acc, g), copy=True)
                                grads[child] = acc
                                owned.add(id(acc))
                            rule.scatter(acc, g, node.kw)
                            if not keep:
                                node._ins = node.out = node.kw = None
                            node = None
                            continue
                        pairs = ((t0, rule.backward(g, node.out, (t0._array,), node.kw, _NEED1)[0]),)
                elif n_in == 2 and ins[0] is not None and ins[1] is not None:
                    a, b = ins
                    if rule.needs_inputs and a._vc[0] + b._vc[0] != node.version or (
                            node.out_vc is not None and node.out_vc[0] != node.out_v):
                        _raise_modified(rule, ins)
                    ra, rb = a.requires_grad, b.requires_grad
                    if rule.passes_grad:
                        ga = gb = g
                    else:
                        ga, gb = rule.backward(g, node.out, (a._array, b._array), node.kw, (ra, rb))
                    if ra and rb and plain_leaves and ga is not None and gb is not None:
                        # a leaf whose .grad takes its gradient with ``+=`` (the pair loop's commonest leaf,
                        # inline) and a plain edge, handed over as a one-input node's (``y + x`` in a chain)
                        if a._node is None:
                            t0, gi, leaf, gl = b, gb, a, ga
                        else:
                            t0, gi, leaf, gl = a, ga, b, gb
                        child = t0._node
                        tg = leaf.grad
                        if tg is not None and leaf._node is None and leaf._hooks is None and len(leaf._vc) == 1 \
                                and child is not None and child.seq > node.seq and len(t0._vc) == 1:
                            gd = tg._array
                            shape = gi.shape
                            if gd.dtype is gl.dtype and (gl is gi or gl.shape == shape) \
                                    and gd.shape == shape == leaf._array.shape == t0._array.shape:
                                gd += gl
                                hand = child
                                ga = gb = gl = None  # (the locals would keep them alive through the next rule)
                    if hand is None:
                        pairs = ((a, ga), (b, gb)) if ra and rb else ((a, ga),) if ra else ((b, gb),)
                elif n_in == 3 and ins[0] is not None and ins[1] is not None and ins[2] is not None:
                    a, b, c = ins  # e.g. linear with a bias
                    if rule.needs_inputs and a._vc[0] + b._vc[0] + c._vc[0] != node.version or (
                            node.out_vc is not None and node.out_vc[0] != node.out_v):
                        _raise_modified(rule, ins)
                    ra, rb, rc = a.requires_grad, b.requires_grad, c.requires_grad
                    ga, gb, gc = rule.backward(g, node.out, (a._array, b._array, c._array), node.kw, (ra, rb, rc))
                    if rb and rc:  # the weight and bias of a layer, with its input or (the first layer) without
                        pairs = ((a, ga), (b, gb), (c, gc)) if ra else ((b, gb), (c, gc))
                    else:
                        pairs = tuple([(t, gi) for t, gi, need in zip(ins, (ga, gb, gc), (ra, rb, rc)) if need])
                else:
                    pairs = None
                if hand is not None:
                    if not keep:
                        node._ins = node.out = node.kw = None
                    if gi is not None:
                        prev = grads.get(hand) if grads else None  # (a chain's walk leaves the dict empty)
                        if prev is None:
                            if not heap:  # hand the child over (nxt is None here: taken at the top)
                                node = hand
                                g = gi
                                continue
                            grads[hand] = gi
                            heappush(heap, (hand.seq, hand))
                        else:
                            grads[hand] = _accumulate(prev, gi, owned)
                    node = g = prev = gi = None
                    continue
            else:
                pairs = None
            if pairs is None:
                pairs = _general_step(node, g, create_graph, wrap, Tensor, captured, cap_node)
                g = pairs[0]
                pairs = pairs[1]
            if not keep:
                node._ins = node.out = node.kw = None
            for t, gi in pairs:
                if gi is None:
                    continue
                if anomaly:
                    _check_finite(gi, "backward", node, ins)
                shape = t._array.shape
                if gi.shape != shape:
                    gi = unbroadcast(gi, shape)
                child = t._node
                if len(t._vc) > 1:  # its storage changed in place: a view may read its base's new history
                    child, gi = state.view_history(t, gi, node.seq)
                    if child is None and t._node is not None:
                        continue
                elif child is not None and child.seq < node.seq:  # t changed in place since
                    child = _history(child, node.seq)
                    if child is None:
                        continue
                if child is None:
                    tg = t.grad
                    if plain_leaves and t._hooks is None:  # to_leaf's commonest cases, inline
                        if tg is not None:
                            gd = tg._array
                            if gd.dtype is gi.dtype and gd.shape == gi.shape:
                                gd += gi
                                continue
                        else:  # an optimizer's parameter after zero_grad(): into its slot of the flat buffer
                            slot = getattr(t, "_gslot", None)
                            if slot is not None and slot is not NO_GRAD_SLOT and slot.shape == gi.shape:
                                slot[...] = gi
                                t.grad = wrap(slot)
                                continue
                    to_leaf(t, gi, not create_graph and gi is not g and gi.flags.writeable
                            and (gi.base is None or _sole(gi)))
                else:
                    prev = grads.get(child)
                    if prev is None:
                        grads[child] = gi
                        if nxt is None and not heap:
                            nxt = child
                        else:
                            if nxt is not None:
                                heappush(heap, (nxt.seq, nxt))
                                nxt = None
                            heappush(heap, (child.seq, child))
                    elif create_graph:
                        grads[child] = prev + gi
                    else:
                        grads[child] = _accumulate(prev, gi, owned)
            # drop this node's gradients before the next rule runs: one summed into an accumulator
            # (or added out of place) is garbage now, and the locals would keep it alive through it
            node = g = prev = gi = pairs = ga = gb = gc = None
    finally:
        state.enabled = prev_mode
        if state.final_callbacks:
            done, state.final_callbacks = state.final_callbacks, []
    for cb in done:  # only after a backward that finished
        cb()

    if capture is None:
        return None
    out_list = []
    for t in capture:
        key = id(t) if t._node is None else id(t._node)
        out_list.append(captured.get(key))
    return out_list


_NEED1 = (True,)
_ndarray = np.ndarray
# the ``_gslot`` of an edge: the stand-in a node keeps for an input whose values its backward never reads
EDGE_ONLY = np.empty(0)
EDGE_MIN_BYTES = 1 << 16  # smaller inputs are kept as they are (a stand-in costs more than it frees)
_NAN: dict = {}


def edges(ins: tuple) -> tuple:
    """The inputs a node keeps when its rule's backward reads none of their values (``needs_inputs``
    false; PyTorch's graph keeps only edges there, not the tensors). An input with a history (not a
    leaf) whose storage has had no in-place change is replaced by a stand-in Tensor that has what
    the engine reads (its node at this moment, its version counter, ``requires_grad``, and an array
    of its shape and dtype that occupies no memory: a broadcast NaN, so that a rule that did read it
    would show). The input's own array is then freed as soon as nothing else uses it (the
    projection's output a residual ``add`` took, the logits a ``view`` reshaped), not only at
    backward. Leaves, small arrays and bfloat16 are kept: the stand-in would save little there.

    The stand-in's node is the input's history as this node read it, which is what the engine
    would look up later (``_history``); an in-place change before this moment would make it read
    a newer history (``view_history``), so such inputs are kept."""
    out = None
    for i, t in enumerate(ins):
        if t is None or t._node is None or len(t._vc) > 1:
            continue
        a = t._array
        if a.nbytes < EDGE_MIN_BYTES or a.dtype.kind not in "fc":
            continue
        nan = _NAN.get(a.dtype)
        if nan is None:
            nan = _NAN[a.dtype] = np.full((), np.nan, dtype=a.dtype)
        e = object.__new__(state.tensor_type)
        e._array = np.broadcast_to(nan, a.shape)
        e.grad = None
        e.requires_grad = t.requires_grad
        e._node = t._node
        e._vc = counter(t)
        e._hooks = None
        e._gslot = EDGE_ONLY
        if out is None:
            out = list(ins)
        out[i] = e
    return ins if out is None else tuple(out)


def _saved_output(node: Node, Tensor: Any) -> Any:
    """The node's saved output as a Tensor whose history is the node itself (PyTorch's saved
    ``result``): a differentiable backward (create_graph) of a node whose inputs are edges
    (``edges``) uses it instead of recomputing the output from the inputs' values."""
    t = Tensor._wrap(node.out)
    t.requires_grad = True
    t._node = node
    return t
# the ``_gslot`` of a view made under no_grad of a tensor that requires grad: it requires grad but,
# as in PyTorch, never accumulates a ``.grad``
NO_GRAD_SLOT = np.empty(0)


def _history(child: Node, seq: int) -> Node | None:
    """The node a tensor had when the node numbered ``seq`` recorded it as an input.

    A tensor changed by an in-place op gets a new node (PyTorch's history rebase) whose
    ``extra.prev`` is its previous one; a consumer recorded before the change (a larger
    ``seq``) backpropagates into that previous node. None: the tensor did not require grad then.
    """
    while child is not None and child.seq < seq:
        child = child.extra.prev
    return child


def _general_step(node: Node, g: Any, create_graph: bool, wrap: Callable, Tensor: Any, captured: dict,
                  cap_node: dict) -> tuple[Any, tuple]:
    """One node the general way (hooks, retain_grad, captures, create_graph, 3+ inputs):
    returns the (possibly hooked) incoming gradient and the (input, gradient) pairs."""
    if node.hooks:
        for h in tuple(node.hooks.values()):
            r = h(g if create_graph else wrap(g))
            if r is not None:
                g = r if create_graph else r._array
    if node.retain is not None:
        t = node.retain()
        if t is not None:
            if create_graph:
                t.grad = g if t.grad is None else t.grad + g
            elif t.grad is None:
                t.grad = wrap(np.array(g, copy=True))
            else:
                t.grad._array += g
    if cap_node and node in cap_node:
        captured[id(node)] = g
    rule, ins = node.rule, node.inputs
    version = 0
    needs = []
    vals = []
    for t in ins:
        if t is None:
            needs.append(False)
            vals.append(None)
        else:
            needs.append(t.requires_grad)
            vals.append(t._array)
            version += t._vc[0]
    if rule.needs_inputs and version != node.version or (
            node.out_vc is not None and node.out_vc[0] != node.out_v):
        _raise_modified(rule, ins)
    if create_graph:
        vals = ins
        out = None
        if rule.save_out:
            if any(t is not None and getattr(t, "_gslot", None) is EDGE_ONLY for t in ins):
                out = _saved_output(node, Tensor)  # the inputs' values are gone: the output's history
            else:
                out = Tensor._apply(rule, ins, node.kw)  # differentiable recomputation
        if not isinstance(g, Tensor):
            g = wrap(g)
    else:
        out = node.out
    gin = rule.backward(g, out, vals, node.kw, needs)
    return g, tuple((t, gi) for t, gi, need in zip(ins, gin, needs) if need and gi is not None)


def _accumulate(prev: Any, gi: Any, owned: set) -> Any:
    """prev + gi, in place when the engine owns ``prev`` (never a rule's or user's array)."""
    if id(prev) in owned and prev.shape == np.broadcast_shapes(prev.shape, gi.shape) \
            and np.can_cast(gi.dtype, prev.dtype, "same_kind"):
        np.add(prev, gi, out=prev)
        return prev
    out = prev + gi
    if type(out) is np.ndarray:  # 0-d sums come back as NumPy scalars: not updatable
        owned.add(id(out))
    return out


def _base_refs(a: np.ndarray) -> int:
    b = a.base
    return sys.getrefcount(b)


# what _base_refs reports for the base of a view that nothing else references (measured, not assumed:
# the count getrefcount sees for a local differs between Python versions)
_SOLE_BASE_REFS = _base_refs(np.empty(2).reshape(1, 2))


def _sole(gi: np.ndarray) -> bool:
    """Whether ``gi``'s memory can become a leaf's ``.grad`` without a copy: ``gi`` owns it, or ``gi``
    is a view of all of an array that nothing else references (a rule's ``out.reshape(shape)``)."""
    b = gi.base
    if b is None:
        return True
    if type(b) is not np.ndarray or b.base is not None or b.nbytes != gi.nbytes:
        return False
    del b  # counted otherwise
    return _base_refs(gi) == _SOLE_BASE_REFS


def _raise_modified(rule: Any, ins: Sequence) -> None:
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: an input or the output of op '{rule.name}' (input shapes: {_shapes(ins)}) has been "
        "modified by an in-place operation after it was used; clone it before modifying it in place")


def _free(node: Node) -> None:
    node._ins = None
    node.out = None
    node.kw = None


# --------------------------------------------------------------------------- backward / grad
def _grad_seed(out: Any, g: Any, create_graph: bool, what: str) -> Any:
    """The gradient a backward starts from: ones for a scalar ``out``, else ``g`` checked against it."""
    Tensor = state.tensor_type
    if g is None:
        if out._array.size != 1:
            raise RuntimeError(f"{what}: grad can be implicitly created only for scalar outputs, but the output "
                               f"has shape {tuple(out.shape)}; pass gradient= (a tensor of that shape, e.g. "
                               "rg.ones_like(out)) or reduce the output to a scalar first (out.sum())")
        arr = np.empty_like(out._array)
        arr.fill(1)  # np.ones_like's bits, without its two Python-level wrappers
        return Tensor._wrap(arr) if create_graph else arr
    gt = g if isinstance(g, Tensor) else Tensor(g)
    if gt.shape != out.shape:
        raise RuntimeError(f"{what}: mismatch in shape: grad_output has shape {tuple(gt.shape)} and output "
                           f"has shape {tuple(out.shape)}")
    if gt.dtype != out.dtype:
        gt = gt._cast(out.dtype)
    return gt if create_graph else gt._array


def queue_callback(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once the backward now running has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``); data-parallel training waits
    for its gradient all-reduces there."""
    state.final_callbacks.append(fn)


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs: Sequence | None = None) -> None:
    """``rg.autograd.backward``: accumulate gradients of ``tensors`` into leaves' ``.grad``."""
    Tensor = state.tensor_type
    ts = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    gs = [grad_tensors] if grad_tensors is None or isinstance(grad_tensors, Tensor) and len(ts) == 1 \
        else list(grad_tensors)
    if len(gs) == 1 and len(ts) > 1 and gs[0] is None:
        gs = [None] * len(ts)
    for t in ts:
        if not t.requires_grad:
            raise RuntimeError("backward: element 0 of tensors does not require grad and does not have a "
                               "grad_fn; did you forget requires_grad=True on a leaf, or compute it under "
                               "rg.no_grad()?")
    if len(ts) == 1 and len(gs) == 1:  # loss.backward(): no comprehension's frame
        seeds = [_grad_seed(ts[0], gs[0], create_graph, "backward")]
    else:
        seeds = [_grad_seed(t, g, create_graph, "backward") for t, g in zip(ts, gs)]
    if retain_graph is None:
        retain_graph = create_graph
    only = None
    if inputs is not None:
        only = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    run_backward(ts, seeds, retain_graph=retain_graph, create_graph=create_graph, only=only)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """Gradients of ``outputs`` with respect to ``inputs``, returned rather than
    accumulated into ``.grad``. With ``create_graph=True`` they are differentiable."""
    Tensor = state.tensor_type
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        gos = [grad_outputs] * len(outs) if grad_outputs is None else [grad_outputs]
    else:
        gos = list(grad_outputs)
    if len(gos) != len(outs):
        raise RuntimeError(f"grad: got {len(gos)} grad_outputs for {len(outs)} outputs")
    for o in outs:
        if not o.requires_grad:
            raise RuntimeError("grad: one of the differentiated Tensors does not require grad")
    for i in ins:
        if not isinstance(i, Tensor) or not i.requires_grad:
            raise RuntimeError("grad: one of the differentiated Tensors does not require grad (inputs must "
                               "be tensors with requires_grad=True)")
    seeds = [_grad_seed(o, g, create_graph, "grad") for o, g in zip(outs, gos)]
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(outs, seeds, retain_graph=retain_graph, create_graph=create_graph,
                       capture=ins, accumulate=False)
    out = []
    for i, (t, g) in enumerate(zip(ins, res)):
        if g is None:
            if not allow_unused:
                raise RuntimeError(f"grad: input {i} (shape {tuple(t.shape)}) was not used in the graph; pass "
                                   "allow_unused=True to get None for it")
            out.append(None)
        elif isinstance(g, Tensor):
            out.append(g)
        else:
            arr = g if g.dtype == t.dtype else g.astype(t.dtype)
            out.append(Tensor._wrap(np.array(arr, copy=True) if arr.base is not None else arr))
    return tuple(out)
