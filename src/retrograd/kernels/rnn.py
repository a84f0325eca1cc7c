"""Fused time steps of the recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``): each a NumPy twin
and a compiled loop of ``retrograd.kernels.jit_rnn``, with the same bits.

A layer's rule (``nn/functional/rnn.py``) runs the recurrent GEMM ``h W_hh^T`` of a step itself and
hands its result ``p`` (``(N, G*H)``, G gates) with the step's input projection ``gi`` to one
function here, which does everything elementwise the step needs: gate activations, the cell and
the new ``h``; the backward functions take the step's gradient and give the gates' gradient (and
an LSTM's cell gradient) in one pass. The arrays are small (one time step), so nothing is threaded.

The rules of ``retrograd.kernels`` hold: the loops perform the twin's float operations in the
twin's order (no fast-math), and ``exp``/``tanh`` are NumPy's in both paths (called between two
loops). Sigmoid is ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` otherwise, ``e = exp(-|x|)``
(no overflow), as ``Tensor.sigmoid``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import accel

__all__ = ["lstm_step", "lstm_step_backward", "gru_step", "gru_step_backward", "rnn_step_backward"]


def _jit() -> Any:
    from . import jit_rnn
    return jit_rnn


def _sigmoid_into(x: np.ndarray, e: np.ndarray, out: np.ndarray, one: Any) -> None:
    """``out = sigmoid(x)`` given ``e = exp(-|x|)`` (the twin of the loops' select)."""
    d = e + one
    out[...] = np.where(x >= 0, one / d, e / d)


# ====================================================================== LSTM
def lstm_step(p: np.ndarray, gi: np.ndarray, c_prev: np.ndarray, gates: np.ndarray, c: np.ndarray,
              tc: np.ndarray, h: np.ndarray, e: np.ndarray) -> None:
    """One LSTM step. ``p = h_prev W_hh^T`` and ``gi`` (the input projection with both biases) are
    ``(N, 4H)`` (gates i, f, g, o); ``p`` is overwritten with the pre-activations. Writes the
    activated gates into ``gates`` ``(N, 4H)``, ``c = f c_prev + i g``, ``tc = tanh(c)`` and
    ``h = o tc`` (``(N, H)`` each); ``e`` ``(N, 4H)`` is scratch."""
    H = c.shape[1]
    one = p.dtype.type(1)
    fast = accel.handles(p, gi, c_prev, gates, c, tc, h, e)
    if fast:
        _jit().add_neg_abs(p, gi, e)
    else:
        np.add(p, gi, out=p)
        np.abs(p, out=e)
        np.negative(e, out=e)
    np.exp(e[:, :2 * H], out=e[:, :2 * H])
    np.exp(e[:, 3 * H:], out=e[:, 3 * H:])
    np.tanh(p[:, 2 * H:3 * H], out=gates[:, 2 * H:3 * H])
    if fast:
        _jit().lstm_cell(p, e, c_prev, gates, c, one)
    else:
        _sigmoid_into(p[:, :2 * H], e[:, :2 * H], gates[:, :2 * H], one)
        _sigmoid_into(p[:, 3 * H:], e[:, 3 * H:], gates[:, 3 * H:], one)
        np.multiply(gates[:, H:2 * H], c_prev, out=c)
        c += gates[:, :H] * gates[:, 2 * H:3 * H]
    np.tanh(c, out=tc)
    np.multiply(gates[:, 3 * H:], tc, out=h)


def lstm_step_backward(dy: np.ndarray, dhr: np.ndarray, dc: np.ndarray, gates: np.ndarray, c_prev: np.ndarray,
                       tc: np.ndarray, dg: np.ndarray, dc_prev: np.ndarray) -> None:
    """The gradient of one LSTM step: ``dh = dy + dhr`` (the output's gradient and the next step's
    recurrent one), ``dc`` the cell's gradient from the next step; writes the pre-activation
    gradients ``dg`` ``(N, 4H)`` and the previous cell's gradient ``dc_prev`` (may be ``dc``)."""
    one = dg.dtype.type(1)
    if accel.handles(dy, dhr, dc, gates, c_prev, tc, dg, dc_prev):
        _jit().lstm_cell_backward(dy, dhr, dc, gates, c_prev, tc, dg, dc_prev, one)
        return
    H = dc.shape[1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dh = dy + dhr
    dg[:, 3 * H:] = dh * tc * o * (one - o)
    dcc = dc + dh * o * (one - tc * tc)
    dg[:, :H] = dcc * g * i * (one - i)
    dg[:, H:2 * H] = dcc * c_prev * f * (one - f)
    dg[:, 2 * H:3 * H] = dcc * i * (one - g * g)
    np.multiply(dcc, f, out=dc_prev)


# ====================================================================== GRU
def gru_step(p: np.ndarray, gi: np.ndarray, h_prev: np.ndarray, gates: np.ndarray, h: np.ndarray,
             e: np.ndarray) -> None:
    """One GRU step. ``p = h_prev W_hh^T + b_hh`` and ``gi = x W_ih^T + b_ih`` are ``(N, 3H)`` (gates
    r, z, n); writes ``gates`` ``(N, 4H)``: ``r, z, n`` and ``p``'s n part (``W_hn h + b_hn``, which
    the backward needs), and ``h = n + z (h_prev - n)``, ``n = tanh(gi_n + r p_n)``; ``e`` ``(N, 2H)``
    is scratch."""
    H = h.shape[1]
    one = p.dtype.type(1)
    fast = accel.handles(p, gi, h_prev, gates, h, e)
    if fast:
        _jit().add_neg_abs(p, gi, e)
    else:
        np.add(p[:, :2 * H], gi[:, :2 * H], out=p[:, :2 * H])
        np.abs(p[:, :2 * H], out=e)
        np.negative(e, out=e)
    np.exp(e, out=e)
    n = gates[:, 2 * H:3 * H]
    if fast:
        _jit().gru_rn(p, gi, e, gates, one)
    else:
        _sigmoid_into(p[:, :2 * H], e, gates[:, :2 * H], one)
        gates[:, 3 * H:] = p[:, 2 * H:]
        np.multiply(gates[:, :H], p[:, 2 * H:], out=n)
        n += gi[:, 2 * H:]
    np.tanh(n, out=n)
    if fast:
        _jit().gru_h(gates, h_prev, h)
    else:
        np.subtract(h_prev, n, out=h)
        h *= gates[:, H:2 * H]
        h += n


def gru_step_backward(dy: np.ndarray, dhr: np.ndarray, gates: np.ndarray, h_prev: np.ndarray,
                      dgi: np.ndarray, dgh: np.ndarray, dh_direct: np.ndarray) -> None:
    """The gradient of one GRU step, ``dh = dy + dhr``: writes the input-side pre-activation
    gradients ``dgi`` and the hidden-side ones ``dgh`` (``(N, 3H)``; they differ in the n part:
    ``dgh_n = dgi_n r``) and ``dh_direct = dh z`` (the part of ``dh_prev`` not through ``W_hh``)."""
    one = dgi.dtype.type(1)
    if accel.handles(dy, dhr, gates, h_prev, dgi, dgh, dh_direct):
        _jit().gru_cell_backward(dy, dhr, gates, h_prev, dgi, dgh, dh_direct, one)
        return
    H = h_prev.shape[1]
    r, z, n, hn = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dh = dy + dhr
    dn = dh * (one - z) * (one - n * n)
    dgi[:, 2 * H:] = dn
    dgh[:, 2 * H:] = dn * r
    dgi[:, :H] = dn * hn * r * (one - r)
    dgi[:, H:2 * H] = dh * (h_prev - n) * z * (one - z)
    dgh[:, :2 * H] = dgi[:, :2 * H]
    np.multiply(dh, z, out=dh_direct)


# ====================================================================== Elman RNN
def rnn_step_backward(dy: np.ndarray, dhr: np.ndarray, h: np.ndarray, relu: bool, dg: np.ndarray) -> None:
    """The gradient of one Elman step ``h = act(pre)``: ``dg = (dy + dhr) act'``, from ``h``
    (tanh: ``1 - h^2``; relu: ``h > 0``)."""
    one = dg.dtype.type(1)
    if accel.handles(dy, dhr, h, dg):
        _jit().rnn_cell_backward(dy, dhr, h, dg, one, relu)
        return
    dh = dy + dhr
    if relu:
        np.multiply(dh, h > 0, out=dg)
    else:
        np.multiply(dh, one - h * h, out=dg)
