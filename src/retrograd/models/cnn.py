"""``CNN``: convolution blocks then a classifier, by default the standard small
Fashion-MNIST network ``conv3x3(32)-ReLU-maxpool2-conv3x3(64)-ReLU-maxpool2-linear(10)``."""
from __future__ import annotations

from typing import Sequence

from .. import nn
from ..engine import is_grad_enabled
from ..nn import init as nn_init
from ..tensor_functions import cat
from .mlp import ACTIVATIONS, INITS, _one_of, init_weight

POOLS = ("max", "avg", "none")
# evaluation without grad runs the conv blocks on chunks of about this many elements in their
# largest array (im2col columns or a block's output) per chunk: 8 MiB in float32
CHUNK_ELEMENTS = 1 << 21
# the layers that map each sample on its own in eval mode (BatchNorm2d: with running statistics)
_PER_SAMPLE = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, *(a for a, _ in ACTIVATIONS.values()))


class CNN(nn.Module):
    """``[Conv2d(k) -> (BatchNorm2d) -> activation -> pool(2)] per entry of channels -> Flatten
    -> [Linear -> activation -> (Dropout)] per entry of hidden -> Linear(num_classes)``.

    Input ``(batch, in_channels, H, W)`` with ``(H, W) = input_size``; output
    ``(batch, num_classes)``. ``padding``: an int, or "same" (``kernel_size // 2``).
    In eval mode without grad, a batch of more than ``eval_chunk`` samples goes through the conv
    blocks in chunks of that many (the same outputs, bit for bit, in a fraction of the memory).
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
        sample = 1  # elements per sample of the largest array of a conv block (im2col columns or output)
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
            sample = max(sample, max(int(c), c_in * kernel_size * kernel_size) * max(h, 1) * max(w, 1))
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
        self.eval_chunk = max(1, CHUNK_ELEMENTS // sample)  # samples per chunk (see forward)
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        n = x.shape[0] if x.ndim == 4 else 0
        if self.training or is_grad_enabled() or type(n) is not int or n <= self.eval_chunk:
            return self.net(x)
        layers = self._per_sample_blocks()
        if layers is None:
            return self.net(x)
        # Evaluation without grad of a large batch (the CLI evaluates 500 at a time): the conv blocks
        # run on chunks of samples, so their im2col columns and outputs are chunk-sized, not 500
        # samples' (the peak resident set of `retrograd train` on Fashion-MNIST). Each block maps
        # samples on their own and its GEMMs give a row the same bits in any batch, so the outputs are
        # those of one pass (tests/models/test_cnn_chunks.py).
        k = len(layers)
        rest = list(self.net)[k:]
        c = self.eval_chunk
        parts = []
        for i in range(0, n, c):
            h = x[i:i + c]
            for layer in layers:
                h = layer(h)
            parts.append(h)
        h = cat(parts, 0)
        for layer in rest:
            h = layer(h)
        return h

    def _per_sample_blocks(self) -> list | None:
        """The layers of ``net`` up to its ``Flatten`` when each maps samples on their own and none
        has a hook (a hook sees the whole batch once); else None."""
        net = self.net
        if net._forward_pre_hooks or net._forward_hooks or net._backward_hooks or net._backward_pre_hooks:
            return None
        out = []
        for layer in net:
            if any(m._forward_pre_hooks or m._forward_hooks or m._backward_hooks or m._backward_pre_hooks
                   for m in layer.modules()):
                return None
            out.append(layer)
            if type(layer) is nn.Flatten:
                return out if layer.start_dim == 1 else None
            if type(layer) is nn.BatchNorm2d:
                if layer.running_mean is None or layer.running_var is None:
                    return None
            elif type(layer) not in _PER_SAMPLE:
                return None
        return None
