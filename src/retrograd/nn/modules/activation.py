"""``retrograd.nn.modules.activation``: PyTorch's import path (``torch.nn.modules.activation``) to the same classes
as ``retrograd.nn``."""
from ..activation import Hardsigmoid, Hardswish, LogSigmoid, Threshold
from ..activation import (CELU, ELU, GELU, SELU, Hardtanh, LeakyReLU, LogSoftmax, Mish, PReLU, ReLU, ReLU6,
                          Sigmoid, SiLU, Softmax, Softplus, Softsign, Tanh)
from ..transformer import MultiheadAttention

__all__ = [
    "CELU", "ELU", "GELU", "SELU", "Hardtanh", "LeakyReLU", "LogSoftmax", "Mish", "PReLU", "ReLU", "ReLU6",
    "Sigmoid", "SiLU", "Softmax", "Softplus", "Softsign", "Tanh", "MultiheadAttention", "Hardsigmoid",
    "Hardswish", "Threshold", "LogSigmoid",
]
