"""Recurrent layers as one graph node per layer and direction: ``rnn_layer`` runs a whole sequence of
an LSTM, GRU or Elman RNN (tanh / relu) layer in one ``Rule`` that loops over time in its forward
and in its backward.

Forward: the input projection ``x W_ih^T + b`` of all time steps in one GEMM, then per step one
GEMM ``h W_hh^T`` and one fused elementwise step (``kernels.rnn``: gates, cell, new ``h``).
Backward: per step (in reverse) one fused step for the gates' gradient and one GEMM for the
recurrent ``dh``; then the weight gradients of the whole sequence in one GEMM each (``dG^T X``,
``dG^T H_prev``), the input's gradient ``dG W_ih`` and the biases' as one row sum. What the
backward reads is saved by the forward (LSTM: the activated gates, ``c`` and ``tanh(c)``; GRU: r,
z, n and ``W_hn h + b_hn``; RNN: nothing but the outputs) and nothing else. Every GEMM goes through
``kernels.matmul`` (large ones split on retrograd's threads) with OpenBLAS held to one thread
(``_blas_hold``), so that its busy-waiting worker does not take the second core after each step.

The node's output packs the layer's outputs ``h_1 .. h_T`` (time order) and, for an LSTM, the last
cell state as row ``T``: ``(T [+1], N, H)``; ``rnn_layer`` returns views of it, so gradients reach
the rule through one accumulator.

Second-order gradients: a backward with ``create_graph=True`` reaching the node records the layer
again op by op (``cell``: the graph PyTorch's own autograd formula would give) from the node's
inputs and backpropagates the incoming gradient through that graph, so the gradients it returns
are differentiable in the incoming gradient and in every input (``_differentiable_backward``).
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ... import accel, engine, kernels
from ...engine import state
from ...kernels import rnn as K
from ...ops import Rule
from ...tensor import Tensor, wrap_array
from ...tensor_functions import stack
from ...versions import counter
from .dense import linear

__all__ = ["rnn_layer", "cell"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _order(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _blas_hold(ins: tuple, kw: dict) -> Any:
    """OpenBLAS on one thread while a layer's rule runs, unless its per-step GEMMs are float64 and
    large. OpenBLAS threads a GEMM as small as a step's ``h W_hh^T`` (20 x 200 x 800 in PyTorch's
    word-language-model example) and its worker then busy-waits after each one, on the core that
    the other half of every step needs (and retrograd's pool after the layer): on a 2-core machine
    the 2-layer LSTM's forward + backward took 3-10x its 1-thread time. Held to one thread, the
    steps' GEMMs run whole (or split on retrograd's pool, ``kernels.matmul``, when a float32 one is
    large enough) and the sequence-wide ones split there too; a float32 product then has the bits
    of one single-threaded call whatever the thread count."""
    w_hh = ins[4] if kw["mode"] == "LSTM" else ins[3]
    per_step = ins[0].shape[1] * w_hh.shape[0] * w_hh.shape[1]
    if w_hh.dtype == np.float32 or per_step < 2 * kernels.MIN_GEMM_PER_THREAD:
        return accel.single_threaded_blas()
    return contextlib.nullcontext()


def _forward(ins: tuple, kw: dict) -> np.ndarray:
    with _blas_hold(ins, kw):
        return _forward_held(ins, kw)


def _forward_held(ins: tuple, kw: dict) -> np.ndarray:
    mode, reverse, save = kw["mode"], kw["reverse"], kw["save"]
    lstm, gru = mode == "LSTM", mode == "GRU"
    x, h0 = ins[0], ins[1]
    c0 = ins[2] if lstm else None
    w_ih, w_hh, *bias = ins[3:] if lstm else ins[2:]
    T, N = x.shape[0], x.shape[1]
    H = w_hh.shape[1]
    G = _GATES[mode] * H
    dt = x.dtype
    gi = kernels.matmul(x.reshape(T * N, x.shape[2]), w_ih.T)  # all time steps' input projections in one GEMM
    if bias:
        gi += bias[0] if gru else bias[0] + bias[1]  # GRU keeps b_hh in the recurrent part (n gate)
    gi = gi.reshape(T, N, G)
    out = np.empty((T + 1 if lstm else T, N, H), dtype=dt)
    whT = np.ascontiguousarray(w_hh.T)  # the small per-step GEMMs run ~1.7x faster on a copy than on a view
    p = np.empty((N, G), dtype=dt)
    h = h0
    if save:
        kw["out"] = out  # what the backward reads (not the rule's save_out: see RNN_LAYER)
    if lstm:
        gates = gi if save else np.empty((1, N, G), dtype=dt)  # step t turns gi[t] into its gates in place
        cs = np.empty((T if save else 2, N, H), dtype=dt)
        tcs = np.empty((T if save else 1, N, H), dtype=dt)
        e = np.empty((N, G), dtype=dt)
        c = c0
        for k, t in enumerate(_order(T, reverse)):
            s = t if save else 0
            cs_t = cs[t] if save else cs[k % 2]
            kernels.matmul(h, whT, out=p)
            K.lstm_step(p, gi[t], c, gates[s], cs_t, tcs[s], out[t], e)
            h, c = out[t], cs_t
        out[T] = c
        if save:
            kw["saved"] = (gates, cs, tcs)
    elif gru:
        gates = np.empty((T if save else 1, N, 4 * H), dtype=dt)
        e = np.empty((N, 2 * H), dtype=dt)
        for t in _order(T, reverse):
            kernels.matmul(h, whT, out=p)
            if bias:
                p += bias[1]
            K.gru_step(p, gi[t], h, gates[t if save else 0], out[t], e)
            h = out[t]
        if save:
            kw["saved"] = (gates,)
    else:
        for t in _order(T, reverse):
            o = out[t]
            kernels.matmul(h, whT, out=o)
            o += gi[t]
            if mode == "RNN_TANH":
                np.tanh(o, out=o)
            else:
                np.maximum(o, 0, out=o)
            h = o
        kw["saved"] = ()
    return out


def cell(mode: str, gi: Tensor, h: Tensor, c: Tensor | None, w_hh: Tensor, b_hh: Tensor | None,
         w_hr: Tensor | None = None) -> tuple:
    """One time step recorded op by op from the input projection ``gi`` ``(N, G*H)``: returns
    ``(h', c')`` (``c'`` None but for an LSTM; an LSTM with ``proj_size`` projects ``h'`` by ``w_hr``
    ``(P, H)``)."""
    gh = linear(h, w_hh, b_hh)
    if mode == "LSTM":
        g = gi + gh
        i, f, gg, o = g.chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * gg.tanh()
        h = o.sigmoid() * c.tanh()
        return (h if w_hr is None else linear(h, w_hr)), c
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r = (ir + hr).sigmoid()
        z = (iz + hz).sigmoid()
        n = (in_ + r * hn).tanh()
        return n + z * (h - n), None  # (1 - z) n + z h
    pre = gi + gh
    return (pre.tanh() if mode == "RNN_TANH" else pre.relu()), None


def _differentiable_backward(g: Tensor, ins: tuple, kw: dict, needs: tuple) -> tuple:
    """The rule's backward under ``create_graph``: the layer recorded op by op (``cell``) from
    stand-ins of the inputs, the incoming gradient ``g`` (a Tensor) backpropagated through it with
    ``create_graph``, and the stand-ins then given their inputs' histories, so that the returned
    gradients are functions of ``g`` and of the inputs as a graph.

    A stand-in shares its input's array and version counter but starts as a leaf: the inner
    backward then stops there (it would otherwise run on into the rest of the outer graph) and
    captures the gradient. Setting its node to the input's afterwards makes the recorded graph
    continue into the input's history, as if the recomputation had read the input itself."""
    mode, reverse = kw["mode"], kw["reverse"]
    lstm = mode == "LSTM"
    stand = []
    for t, need in zip(ins, needs):
        if t is None or not need or t._node is None:
            stand.append(t)  # a leaf is captured as itself; an input without grad needs no stand-in
            continue
        s = wrap_array(t._array)
        s._vc = counter(t)
        s.requires_grad = True
        stand.append(s)
    x, h = stand[0], stand[1]
    c = stand[2] if lstm else None
    w_ih, w_hh, *bias = stand[3:] if lstm else stand[2:]
    b_ih, b_hh = bias if bias else (None, None)
    T = x.shape[0]
    gi = linear(x, w_ih, b_ih)
    seq: list = [None] * T
    for t in _order(T, reverse):
        h, c = cell(mode, gi[t], h, c, w_hh, b_hh)
        seq[t] = h
    y = stack(seq + [c] if lstm else seq, 0)
    wrt = [s for s, need in zip(stand, needs) if need]
    # a leaf's hooks run once, in the outer backward; the outer backward's final callbacks run when it ends
    hooked = [(s, s._hooks) for s in wrt if s._hooks]
    callbacks, state.final_callbacks = state.final_callbacks, []
    try:
        for s, _ in hooked:
            s._hooks = None
        got = iter(engine.grad([y], wrt, [g], create_graph=True, allow_unused=True))
    finally:
        state.final_callbacks = callbacks
        for s, hooks in hooked:
            s._hooks = hooks
    for s, t in zip(stand, ins):
        if s is not t:
            s._node = t._node
    return tuple(next(got) if need else None for need in needs)


def _backward(g: Any, out: Any, ins: tuple, kw: dict, needs: tuple) -> tuple:
    if not isinstance(g, np.ndarray):
        return _differentiable_backward(g, ins, kw, needs)
    if "saved" not in kw:
        raise RuntimeError(f"{kw['name']}: the layer ran without saving what its backward reads")
    with _blas_hold(ins, kw):
        return _backward_held(g, ins, kw, needs)


def _backward_held(g: np.ndarray, ins: tuple, kw: dict, needs: tuple) -> tuple:
    out = kw["out"]
    mode, reverse = kw["mode"], kw["reverse"]
    lstm, gru = mode == "LSTM", mode == "GRU"
    x, h0 = ins[0], ins[1]
    c0 = ins[2] if lstm else None
    w_ih, w_hh, *bias = ins[3:] if lstm else ins[2:]
    T, N, I = x.shape
    H = w_hh.shape[1]
    G = _GATES[mode] * H
    dt = out.dtype
    g = np.ascontiguousarray(g, dtype=dt)
    saved = kw["saved"]
    dgi = np.empty((T, N, G), dtype=dt)  # pre-activation gradients, input side
    dgh = np.empty((T, N, G), dtype=dt) if gru else dgi  # hidden side (GRU: n gate differs)
    dhr = np.zeros((N, H), dtype=dt)  # dh reaching step t from step t+1 through W_hh
    order = _order(T, not reverse)  # the forward's steps, last first
    if lstm:
        gates, cs, tcs = saved
        dc = np.array(g[T], copy=True)
        for t in order:
            cp = c0 if t == (T - 1 if reverse else 0) else cs[t + 1 if reverse else t - 1]
            K.lstm_step_backward(g[t], dhr, dc, gates[t], cp, tcs[t], dgi[t], dc)
            kernels.matmul(dgi[t], w_hh, out=dhr)
    elif gru:
        (gates,) = saved
        direct = np.empty((N, H), dtype=dt)
        for t in order:
            hp = h0 if t == (T - 1 if reverse else 0) else out[t + 1 if reverse else t - 1]
            K.gru_step_backward(g[t], dhr, gates[t], hp, dgi[t], dgh[t], direct)
            kernels.matmul(dgh[t], w_hh, out=dhr)
            dhr += direct
    else:
        relu = mode == "RNN_RELU"
        for t in order:
            K.rnn_step_backward(g[t], dhr, out[t], relu, dgi[t])
            kernels.matmul(dgi[t], w_hh, out=dhr)
    dgi2 = dgi.reshape(T * N, G)
    dgh2 = dgh.reshape(T * N, G)
    gx = kernels.matmul(dgi2, w_ih).reshape(T, N, I) if needs[0] else None
    n_state = 2 if lstm else 1
    w_at = 1 + n_state
    gw_ih = kernels.matmul(dgi2.T, x.reshape(T * N, I)) if needs[w_at] else None
    gw_hh = None
    if needs[w_at + 1]:
        hs = out[:T]
        hprev = np.concatenate([hs[1:], h0[None]] if reverse else [h0[None], hs[:T - 1]], axis=0)
        gw_hh = kernels.matmul(dgh2.T, hprev.reshape(T * N, H))
    grads = [gx, dhr] + ([dc] if lstm else []) + [gw_ih, gw_hh]
    if bias:
        b_ih = kernels.sum_rows(dgi2) if needs[w_at + 2] else None
        b_hh = None
        if needs[w_at + 3]:
            b_hh = kernels.sum_rows(dgh2) if gru or b_ih is None else b_ih.copy()
        grads += [b_ih, b_hh]
    return tuple(grads)


# The output is saved in ``kw["out"]`` by the forward, not through ``save_out``: under create_graph the
# engine recomputes a save_out rule's output differentiably before calling its backward, and this
# backward records the layer op by op instead (``_differentiable_backward``), so that recomputation
# (the whole fused forward) would be thrown away. ``rnn_layer`` sets the node's ``out_vc`` itself, so an
# in-place change of the output is still caught at backward.
RNN_LAYER = Rule("rnn_layer", _forward, _backward)


def rnn_layer(mode: str, x: Tensor, h0: Tensor, c0: Tensor | None, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None = None, b_hh: Tensor | None = None, reverse: bool = False) -> tuple:
    """One direction of one recurrent layer over a whole time-major sequence ``x`` ``(T, N, I)``
    from ``h0`` (and an LSTM's ``c0``) ``(N, H)``, in one graph node. ``mode``: ``"LSTM"``,
    ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"`` (weights in PyTorch's gate order and shapes);
    ``reverse`` runs from the last step to the first. Returns ``(output (T, N, H), h_n, c_n)``
    (``c_n`` None but for an LSTM); every input must have ``x``'s dtype (float32 or float64)."""
    if mode not in _GATES:
        raise ValueError(f"rnn_layer: mode must be one of {sorted(_GATES)}, got {mode!r}")
    lstm = mode == "LSTM"
    if (b_ih is None) != (b_hh is None):
        raise ValueError("rnn_layer: pass both b_ih and b_hh, or neither")
    states = (h0, c0) if lstm else (h0,)
    ts = (x, *states, w_ih, w_hh) + ((b_ih, b_hh) if b_ih is not None else ())
    dts = {t.dtype for t in ts}
    if len(dts) != 1 or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"rnn_layer: expected every input of one dtype, float32 or float64, got "
                        f"{sorted(str(d) for d in dts)}")
    T, N = x.shape[0], x.shape[1]
    H = w_hh.shape[1]
    if x.ndim != 3 or h0.shape != (N, H) or w_hh.shape != (_GATES[mode] * H, H) \
            or w_ih.shape != (_GATES[mode] * H, x.shape[2]) or (lstm and c0.shape != (N, H)):
        raise RuntimeError(f"rnn_layer: shapes do not fit: x {tuple(x.shape)}, h0 {tuple(h0.shape)}, "
                           f"w_ih {tuple(w_ih.shape)}, w_hh {tuple(w_hh.shape)}")
    save = state.enabled and any(t.requires_grad for t in ts)
    name = {"LSTM": "lstm", "GRU": "gru"}.get(mode, "rnn")
    y = Tensor._apply(RNN_LAYER, ts, {"mode": mode, "reverse": reverse, "save": save, "name": name})
    if y._node is not None:
        y._node.out_vc = counter(y)  # the backward reads the output: an in-place change of it is an error
        y._node.out_v = 0
    outputs = y[:T] if lstm else y
    h_n = y[0] if reverse else y[T - 1]
    return outputs, h_n, (y[T] if lstm else None)

