"""``CNN``: convolution blocks then a classifier, by default the standard small
Fashion-MNIST network ``conv3x3(32)-ReLU-maxpool2-conv3x3(64)-ReLU-maxpool2-linear(10)``."""
from __future__ import annotations

from typing import Sequence

from .. import nn
from ..nn import init as nn_init
from .mlp import ACTIVATIONS, INITS, _one_of, init_weight

POOLS = ("max", "avg", "none")


class CNN(nn.Module):
    """``[Conv2d(k) -> (BatchNorm2d) -> activation -> pool(2)] per entry of channels -> Flatten
    -> [Linear -> activation -> (Dropout)] per entry of hidden -> Linear(num_classes)``.

    Input ``(batch, in_channels, H, W)`` with ``(H, W) = input_size``; output
    ``(batch, num_classes)``. ``padding``: an int, or "same" (``kernel_size // 2``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (32, 64),
                 kernel_size: int = 3, pool: str = "max", hidden: Sequence[int] = (),
                 input_size: int | Sequence[int] = 28, padding: int | str = 0, activation: str = "relu",
                 batchnorm: bool = False, dropout: float = 0.0, init: str | None = None) -> None:
        super().__init__()
        _one_of("CNN: pool", pool, POOLS)
        _one_of("CNN: activation", activation, tuple(ACTIVATIONS))
        if init is not None:
            _one_of("CNN: init", init, INITS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CNN: dropout must be in [0, 1), got {dropout}")
        pad = kernel_size // 2 if padding == "same" else int(padding)
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
        make_act, nonlinearity = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            conv = nn.Conv2d(c_in, int(c), kernel_size, padding=pad)
            if init is not None:
                init_weight(conv.weight, init, nonlinearity)
                nn_init.zeros_(conv.bias)
            layers.append(conv)
            if batchnorm:
                layers.append(nn.BatchNorm2d(int(c)))
            layers.append(make_act())
            h, w = h + 2 * pad - kernel_size + 1, w + 2 * pad - kernel_size + 1
            if pool != "none":
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                h, w = h // 2, w // 2
            if h <= 0 or w <= 0:
                raise ValueError(f"CNN: input_size {input_size} is too small for {len(channels)} conv blocks "
                                 f"with kernel {kernel_size}, padding {pad} and pool {pool!r}")
            c_in = int(c)
        layers.append(nn.Flatten())
        n = c_in * h * w
        for k in hidden:
            lin = nn.Linear(n, int(k))
            if init is not None:
                init_weight(lin.weight, init, nonlinearity)
                nn_init.zeros_(lin.bias)
            layers += [lin, make_act()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            n = int(k)
        layers.append(nn.Linear(n, num_classes))
        self.features_out = c_in * h * w
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
