"""Dense (fully connected) maps: ``linear`` (one fused node) and ``bilinear``."""
from __future__ import annotations

import numpy as np

from ... import ops as O
from ... import ops_linalg as OL
from ...amp.autocast_mode import cast_rule_inputs, outside_autocast, state as _autocast
from ...kernels import conv as _conv_kernels
from ...ops import Rule
from ...tensor import Tensor


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight.T + bias``: input ``(*, in)``, weight ``(out, in)``, bias ``(out,)``."""
    if _autocast.cpu_enabled:  # all three in the autocast dtype before the dtype test below
        input, weight = cast_rule_inputs("linear", (input, weight))  # noqa: A001
        bias = None if bias is None else cast_rule_inputs("linear", (bias,))[0]
    try:  # the arrays' own attributes: the Tensor properties cost a Python frame each
        a, w, b = input._array, weight._array, None if bias is None else bias._array
    except AttributeError:  # not Tensors: the general path below
        a = None
    if a is not None and w.ndim == 2 and a.ndim >= 1 and a.dtype == w.dtype and (
            bias is None or (b.dtype == w.dtype and b.shape == (w.shape[0],))):
        if a.shape[-1] != w.shape[1]:
            raise RuntimeError(f"linear: input shape {tuple(input.shape)} and weight shape "
                               f"{tuple(weight.shape)} do not align ({input.shape[-1]} != {weight.shape[1]})")
        # one fused node: the graph never holds the bare product input @ weight.T
        return Tensor._apply(OL.LINEAR, (input, weight) if bias is None else (input, weight, bias))
    out = input @ weight.t() if weight.ndim == 2 else input @ weight
    return out if bias is None else out + bias


def _linear_relu_f(ins, kw):
    # the product (the linear rule's forward) is a fresh array of this node's own: rectified in place, small
    # ones by NumPy here (what kernels.conv.relu runs for them, less its frame)
    y = OL._folded_matmul(ins[0], ins[1].T, ins[2] if len(ins) == 3 else None)
    return np.maximum(y, 0, out=y) if y.size < _RELU_MIN else _conv_kernels.relu(y, inplace=True)


def _linear_relu_b(g, out, ins, kw, needs):
    # ReLU's input gradient from the saved output (its rule's, small ones inline), then the linear's
    small = type(out) is np.ndarray and out.size < _RELU_MIN
    gr = g * (out > 0) if small else O.RELU.backward(g, out, (), kw, _NEED1)[0]
    return OL.LINEAR.backward(gr, None, ins, kw, needs)
LINEAR_RELU = Rule("linear_relu", _linear_relu_f, _linear_relu_b, save_out=True)
_RELU_MIN = _conv_kernels.MIN_KERNEL
_NEED1 = (True,)

_FUSED_DTYPES = (np.float32, np.float64)


def linear_relu(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``relu(linear(input, weight, bias))`` as one node (what ``Sequential`` runs for a ``Linear``
    followed by a ``ReLU``): no separate ReLU output, no second node; the same numbers, forward and
    backward. Inputs the fused node does not take (autocast, mixed or other dtypes) run the two ops."""
    try:  # the arrays' own attributes: the Tensor properties cost a Python frame each
        a, w, b = input._array, weight._array, None if bias is None else bias._array
    except AttributeError:  # not Tensors: the two ops
        a = None
    if (a is not None and not _autocast.cpu_enabled and w.ndim == 2 and a.ndim >= 1 and a.dtype == w.dtype
            and a.dtype in _FUSED_DTYPES and a.shape[-1] == w.shape[1]
            and (bias is None or (b.dtype == w.dtype and b.shape == (w.shape[0],)))):
        return Tensor._apply(LINEAR_RELU, (input, weight) if bias is None else (input, weight, bias))
    return linear(input, weight, bias).relu()


@outside_autocast  # one kernel in PyTorch, on no autocast list
def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y_k = x1 W_k x2 + b_k``: inputs ``(*, in1)`` and ``(*, in2)``, weight ``(out, in1, in2)``."""
    lead = input1.shape[:-1]
    if input2.shape[:-1] != lead:
        raise RuntimeError(f"bilinear: input1 of shape {tuple(input1.shape)} and input2 of shape "
                           f"{tuple(input2.shape)} must have the same leading dimensions")
    x1 = input1.reshape(-1, input1.shape[-1])
    x2 = input2.reshape(-1, input2.shape[-1])
    from ...tensor_functions import einsum
    out = einsum("bi,oij,bj->bo", x1, weight, x2)
    if bias is not None:
        out = out + bias
    return out.reshape(lead + (weight.shape[0],))
