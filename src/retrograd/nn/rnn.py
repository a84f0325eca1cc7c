"""Recurrent layers with PyTorch's parameter names, gate order and shapes, so state dicts move
between the two: ``RNN`` (tanh/relu), ``LSTM`` (gates i, f, g, o), ``GRU`` (gates r, z, n with
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``) and the single-step cells.

Each layer and direction runs as one graph node (``nn.functional.rnn.rnn_layer``: the input
projection of all time steps in one GEMM, then a loop over time with one GEMM and one fused
elementwise step each, forward and backward). With ``proj_size``, or inputs of other or mixed
dtypes, a layer is recorded op by op (``F.rnn.cell``), as are the single-step cells."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import functional as F
from .functional.rnn import cell as _cell, rnn_layer
from ..creation import empty
from ..tensor import Tensor, wrap_array
from ..tensor_functions import cat, stack
from . import init
from .layers import _shape_error
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _zeros(shape: tuple, like: Tensor) -> Tensor:
    return wrap_array(np.zeros(shape, dtype=like.dtype))


class RNNBase(Module):
    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"hidden_size and num_layers must be greater than 0, got {hidden_size} and {num_layers}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        ng = _GATES[mode] * hidden_size
        dirs = 2 if bidirectional else 1
        real_h = proj_size or hidden_size  # the size of h: projected from hidden_size with proj_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                isz = input_size if layer == 0 else real_h * dirs
                shapes = {f"weight_ih{sfx}": (ng, isz), f"weight_hh{sfx}": (ng, real_h)}
                if bias:
                    shapes |= {f"bias_ih{sfx}": (ng,), f"bias_hh{sfx}": (ng,)}
                if proj_size:
                    shapes[f"weight_hr{sfx}"] = (proj_size, hidden_size)
                for name, shape in shapes.items():
                    setattr(self, name, Parameter(empty(*shape, dtype=dtype, device=device)))
                self._flat_weights_names += list(shapes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """No-op: PyTorch packs cuDNN weights here; retrograd's weights need no packing."""

    @property
    def _per_direction(self) -> int:
        """Parameters per (layer, direction): weight_ih, weight_hh[, biases][, weight_hr]."""
        return (4 if self.bias else 2) + (1 if self.proj_size else 0)

    @property
    def all_weights(self) -> list:
        dirs = 2 if self.bidirectional else 1
        per = self._per_direction
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i * per:(i + 1) * per]] for i in range(self.num_layers * dirs)]

    def _fused(self, x: Tensor, h: Tensor, c: Tensor | None, ws: list) -> bool:
        """Whether one layer and direction runs as one graph node (``F.rnn.rnn_layer``): no
        ``proj_size``, every array float32 or every array float64, a non-empty sequence."""
        if self.proj_size or x.shape[0] == 0 or x.dtype not in (np.float32, np.float64):
            return False
        return all(t.dtype == x.dtype for t in (h, *ws) + ((c,) if c is not None else ()))

    def _run(self, input: Tensor, hx: Any) -> tuple:  # noqa: A002
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (2, 3):
            raise _shape_error(self, "a 2-D (unbatched) or 3-D (batched) input", input)
        if input.shape[-1] != self.input_size:
            raise _shape_error(self, f"input with last dimension input_size={self.input_size}", input)
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)  # time-major inside
        dirs = 2 if self.bidirectional else 1
        T, N = x.shape[0], x.shape[1]
        H = self.hidden_size
        lstm = self.mode == "LSTM"
        want_c = (self.num_layers * dirs, N, H)
        want_h = (self.num_layers * dirs, N, self.proj_size or H)
        if hx is None:
            h0 = _zeros(want_h, x)
            c0 = _zeros(want_c, x) if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
            if not batched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
            for t, what, want in ((h0, "h0", want_h), (c0, "c0", want_c)):
                if t is not None and tuple(t.shape) != want:
                    shown = want if batched else (want[0], want[2])
                    raise RuntimeError(f"{name}: expected hidden state {what} of shape {shown}, got "
                                       f"{tuple(t.shape if batched else (t.shape[0], t.shape[2]))}")
        hs, cs = [], []
        layer_in = x
        per = self._per_direction
        names = self._flat_weights_names
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                ws = [getattr(self, n) for n in names[k * per:(k + 1) * per]]
                w_ih, w_hh = ws[0], ws[1]
                b_ih, b_hh = (ws[2], ws[3]) if self.bias else (None, None)
                w_hr = ws[-1] if self.proj_size else None
                h, c = h0[k], (c0[k] if lstm else None)
                if self._fused(layer_in, h, c, ws):
                    seq_out, h, c = rnn_layer(self.mode, layer_in, h, c, w_ih, w_hh, b_ih, b_hh, reverse=bool(d))
                    outs.append(seq_out)
                    hs.append(h)
                    if lstm:
                        cs.append(c)
                    continue
                gi = F.linear(layer_in, w_ih, b_ih)  # (T, N, G*H): all time steps in one GEMM
                seq = [None] * T
                for t in (range(T - 1, -1, -1) if d else range(T)):
                    h, c = _cell(self.mode, gi[t], h, c, w_hh, b_hh, w_hr)
                    seq[t] = h
                outs.append(stack(seq, 0))
                hs.append(h)
                if lstm:
                    cs.append(c)
            layer_in = outs[0] if dirs == 1 else cat(outs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        out = layer_in
        h_n = stack(hs, 0)
        c_n = stack(cs, 0) if lstm else None
        if batched and self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return out, ((h_n, c_n) if lstm else h_n)

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        return s.format(**self.__dict__)


class RNN(RNNBase):
    """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or relu). Input
    ``(L, N, H_in)`` (``(N, L, H_in)`` with ``batch_first``); returns ``(output, h_n)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if len(args) > 3:  # torch's positional order: input_size, hidden_size, num_layers, nonlinearity, ...
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, **kwargs)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:  # noqa: A002
        return self._run(input, hx)


class LSTM(RNNBase):
    """Long short-term memory; gates ``i, f, g, o`` stacked in that order in ``weight_ih``/``weight_hh``.
    Returns ``(output, (h_n, c_n))``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:  # noqa: A002
        return self._run(input, hx)


class GRU(RNNBase):
    """Gated recurrent unit; gates ``r, z, n`` stacked in that order. Returns ``(output, h_n)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:  # noqa: A002
        return self._run(input, hx)


class RNNCellBase(Module):
    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, num_chunks: int = 1,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def _step(self, input: Tensor, hx: Any) -> tuple:  # noqa: A002
        if not isinstance(input, Tensor) or input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise _shape_error(self, f"a 1-D or 2-D input with last dimension input_size={self.input_size}", input)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        lstm = self._mode == "LSTM"
        if hx is None:
            h = _zeros((x.shape[0], self.hidden_size), x)
            c = _zeros((x.shape[0], self.hidden_size), x) if lstm else None
        else:
            h, c = hx if lstm else (hx, None)
            if not batched:
                h = h.unsqueeze(0)
                c = c.unsqueeze(0) if c is not None else None
            if tuple(h.shape) != (x.shape[0], self.hidden_size):
                raise RuntimeError(f"{type(self).__name__}: expected hidden state of shape "
                                   f"{(x.shape[0], self.hidden_size) if batched else (self.hidden_size,)}, got "
                                   f"{tuple(hx[0].shape if lstm else hx.shape)}")
        h, c = _cell(self._mode, F.linear(x, self.weight_ih, self.bias_ih), h, c, self.weight_hh, self.bias_hh)
        if not batched:
            h = h.squeeze(0)
            c = c.squeeze(0) if c is not None else None
        return h, c

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.bias is not True:
            s += ", bias={bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)


class RNNCell(RNNCellBase):
    """One Elman step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        return self._step(input, hx)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step; returns ``(h', c')``."""

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:  # noqa: A002
        return self._step(input, hx)


class GRUCell(RNNCellBase):
    """One GRU step; returns ``h'``."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        return self._step(input, hx)[0]


__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
