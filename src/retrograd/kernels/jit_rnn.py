"""The Numba loops behind ``retrograd.kernels.rnn`` (imported only when ``accel.available()``).

Each loop performs its NumPy twin's float operations in the twin's order (no fast-math), so the
results are the twin's bits; ``exp`` and ``tanh`` are not here (the callers run NumPy's between
two loops). Arrays are 2-D ``(N, G*H)`` gate blocks and ``(N, H)`` states of one time step;
``one`` is 1 in the arrays' dtype (a literal 1 would make the arithmetic float64).
"""
from __future__ import annotations

from ..accel import njit


@njit
def add_neg_abs(p, gi, e):
    """``p[:, :m] += gi[:, :m]``; ``e = -|p[:, :m]|`` (the argument of the sigmoids' ``exp``), for
    ``e`` of shape ``(N, m)`` (LSTM: all four gates; GRU: r and z)."""
    n, m = e.shape
    for r in range(n):
        for j in range(m):
            x = p[r, j] + gi[r, j]
            p[r, j] = x
            e[r, j] = -abs(x)


@njit
def lstm_cell(p, e, c_prev, gates, c, one):
    """Gates i, f, o from ``p`` and ``e = exp(-|p|)`` (g is already ``tanh``'d in ``gates``);
    ``c = f c_prev + i g``."""
    n, h = c.shape
    for r in range(n):
        for j in range(4 * h):
            if j >= 2 * h and j < 3 * h:  # g: tanh'd already
                continue
            x = p[r, j]
            ej = e[r, j]
            d = ej + one
            gates[r, j] = one / d if x >= 0 else ej / d
        for j in range(h):
            cj = gates[r, h + j] * c_prev[r, j]
            cj += gates[r, j] * gates[r, 2 * h + j]
            c[r, j] = cj


@njit
def lstm_cell_backward(dy, dhr, dc, gates, c_prev, tc, dg, dc_prev, one):
    n, h = dc.shape
    for r in range(n):
        for j in range(h):
            i = gates[r, j]
            f = gates[r, h + j]
            g = gates[r, 2 * h + j]
            o = gates[r, 3 * h + j]
            t = tc[r, j]
            dh = dy[r, j] + dhr[r, j]
            dg[r, 3 * h + j] = dh * t * o * (one - o)
            dcc = dc[r, j] + dh * o * (one - t * t)
            dg[r, j] = dcc * g * i * (one - i)
            dg[r, h + j] = dcc * c_prev[r, j] * f * (one - f)
            dg[r, 2 * h + j] = dcc * i * (one - g * g)
            dc_prev[r, j] = dcc * f


@njit
def gru_rn(p, gi, e, gates, one):
    """Gates r, z (sigmoids from ``p`` and ``e``), the saved ``p_n`` and ``n``'s argument
    ``r p_n + gi_n`` (``tanh`` follows in NumPy)."""
    n, m = e.shape
    h = m // 2
    for r in range(n):
        for j in range(m):
            x = p[r, j]
            ej = e[r, j]
            d = ej + one
            gates[r, j] = one / d if x >= 0 else ej / d
        for j in range(h):
            pn = p[r, 2 * h + j]
            gates[r, 3 * h + j] = pn
            gates[r, 2 * h + j] = gates[r, j] * pn + gi[r, 2 * h + j]


@njit
def gru_h(gates, h_prev, hout):
    """``h = (h_prev - n) z + n``."""
    n, h = hout.shape
    for r in range(n):
        for j in range(h):
            nj = gates[r, 2 * h + j]
            hj = h_prev[r, j] - nj
            hj *= gates[r, h + j]
            hout[r, j] = hj + nj


@njit
def gru_cell_backward(dy, dhr, gates, h_prev, dgi, dgh, dh_direct, one):
    n, h = h_prev.shape
    for r in range(n):
        for j in range(h):
            rr = gates[r, j]
            z = gates[r, h + j]
            nn = gates[r, 2 * h + j]
            hn = gates[r, 3 * h + j]
            dh = dy[r, j] + dhr[r, j]
            dn = dh * (one - z) * (one - nn * nn)
            dgi[r, 2 * h + j] = dn
            dgh[r, 2 * h + j] = dn * rr
            a = dn * hn * rr * (one - rr)
            b = dh * (h_prev[r, j] - nn) * z * (one - z)
            dgi[r, j] = a
            dgi[r, h + j] = b
            dgh[r, j] = a
            dgh[r, h + j] = b
            dh_direct[r, j] = dh * z


@njit
def rnn_cell_backward(dy, dhr, hs, dg, one, relu):
    n, h = hs.shape
    zero = one - one
    for r in range(n):
        for j in range(h):
            dh = dy[r, j] + dhr[r, j]
            x = hs[r, j]
            if relu:
                dg[r, j] = dh * (one if x > 0 else zero)
            else:
                dg[r, j] = dh * (one - x * x)
