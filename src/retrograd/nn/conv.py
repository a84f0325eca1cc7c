"""Convolution layers with PyTorch's names, parameter shapes and default initialisation:
``Conv1d``, ``Conv2d`` (``(C_out, C_in/groups, *kernel)`` weights), ``ConvTranspose1d``,
``ConvTranspose2d`` (``(C_in, C_out/groups, *kernel)`` weights)."""
from __future__ import annotations

import math
from typing import Any

from . import functional as F
from .functional._args import _tuple
from ..creation import empty
from ..tensor import Tensor
from ..tensor_functions import pad
from . import init
from .layers import _shape_error
from .module import Module, Parameter

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None, output_padding: Any = 0) -> None:
        super().__init__()
        nd, name = self._nd, type(self).__name__
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, but got padding_mode='{padding_mode}'")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple(kernel_size, nd, "kernel_size", name)
        self.stride = _tuple(stride, nd, "stride", name)
        self.dilation = _tuple(dilation, nd, "dilation", name)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _tuple(padding, nd, "padding", name)
        self.transposed = self._transposed
        self.output_padding = _tuple(output_padding, nd, "output_padding", name)
        self.groups = groups
        self.padding_mode = padding_mode
        # F.pad's (left, right) pairs, last dim first; 'same' puts the odd extra on the right
        rev = []
        for d, k, i in reversed(list(zip(self.dilation, self.kernel_size, range(nd)))):
            if self.padding == "valid":
                rev += [0, 0]
            elif self.padding == "same":
                total = d * (k - 1)
                rev += [total // 2, total - total // 2]
            else:
                rev += [self.padding[i]] * 2
        self._reversed_padding_repeated_twice = rev
        if self._transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(empty(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def _check_input(self, input: Tensor) -> None:  # noqa: A002
        nd, c = self._nd, self.in_channels
        dims = f"(N, {c}, L) or ({c}, L)" if nd == 1 else f"(N, {c}, H, W) or ({c}, H, W)"
        if not isinstance(input, Tensor) or input.ndim not in (nd + 1, nd + 2):
            raise _shape_error(self, f"a {nd + 2}-D (or unbatched {nd + 1}-D) input of shape {dims}", input)
        if input.shape[-nd - 1] != c:
            raise _shape_error(self, f"input of shape {dims} ({c} channels, not {input.shape[-nd - 1]})", input)

    def extra_repr(self) -> str:
        s = "{in_channels}, {out_channels}, kernel_size={kernel_size}, stride={stride}"
        if self.padding != (0,) * len(self.kernel_size):
            s += ", padding={padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += ", dilation={dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += ", output_padding={output_padding}"
        if self.groups != 1:
            s += ", groups={groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += ", padding_mode={padding_mode}"
        return s.format(**self.__dict__)

    def _padded(self, input: Tensor) -> tuple[Tensor, Any]:  # noqa: A002
        if self.padding_mode == "zeros":
            return input, self.padding
        return pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0


class Conv1d(_ConvNd):
    """1-D convolution: input ``(N, C_in, L)``, weight ``(C_out, C_in/groups, k)``."""

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check_input(input)
        x, p = self._padded(input)
        return F.conv1d(x, self.weight, self.bias, self.stride, p, self.dilation, self.groups)


class Conv2d(_ConvNd):
    """2-D convolution: input ``(N, C_in, H, W)``, weight ``(C_out, C_in/groups, kH, kW)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check_input(input)
        x, p = self._padded(input)
        return F.conv2d(x, self.weight, self.bias, self.stride, p, self.dilation, self.groups)


class _ConvTransposeNd(_ConvNd):
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: int = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, output_padding)

    def _output_padding(self, input: Tensor, output_size: Any) -> tuple:  # noqa: A002
        if output_size is None:
            return self.output_padding
        nd = self._nd
        want = tuple(int(v) for v in output_size)[-nd:]
        out = []
        for d in range(nd):
            lo = ((input.shape[d - nd] - 1) * self.stride[d] - 2 * self.padding[d]
                  + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            if not lo <= want[d] < lo + max(self.stride[d], self.dilation[d]):
                raise ValueError(f"{self!r}: requested an output size of {want}, but valid sizes for input of "
                                 f"shape {tuple(input.shape)} start at {lo} in spatial dim {d}")
            out.append(want[d] - lo)
        return tuple(out)


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-D convolution (the adjoint of ``Conv1d``): weight ``(C_in, C_out/groups, k)``."""

    _nd = 1

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:  # noqa: A002
        self._check_input(input)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups, self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution (the adjoint of ``Conv2d``): weight ``(C_in, C_out/groups, kH, kW)``;
    output ``(H - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1``."""

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:  # noqa: A002
        self._check_input(input)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups, self.dilation)


__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]
