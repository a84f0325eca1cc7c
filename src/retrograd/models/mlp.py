"""``MLP``: a stack of ``Linear`` layers with a chosen activation, optional
BatchNorm and dropout, and a chosen weight initialisation."""
from __future__ import annotations

from typing import Sequence

from .. import nn
from ..nn import init as nn_init

# name -> (module factory, nonlinearity name for the init gains)
ACTIVATIONS = {
    "relu": (nn.ReLU, "relu"), "leaky_relu": (nn.LeakyReLU, "leaky_relu"), "gelu": (nn.GELU, "relu"),
    "silu": (nn.SiLU, "relu"), "elu": (nn.ELU, "relu"), "selu": (nn.SELU, "selu"), "mish": (nn.Mish, "relu"),
    "tanh": (nn.Tanh, "tanh"), "sigmoid": (nn.Sigmoid, "sigmoid"), "softplus": (nn.Softplus, "relu"),
    "identity": (nn.Identity, "linear"),
}
# None: PyTorch's default (kaiming_uniform with a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
INITS = ("he", "he_uniform", "xavier", "xavier_uniform", "lecun", "orthogonal", "normal")


def _one_of(what: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{what}: {value!r} is not one of: {', '.join(allowed)}")


def init_weight(weight, init: str | None, nonlinearity: str) -> None:
    """Re-initialise a Linear/Conv ``weight`` in place by the named scheme (None keeps PyTorch's)."""
    if init is None:
        return
    _one_of("init", init, INITS)
    nl = "relu" if nonlinearity in ("leaky_relu",) else nonlinearity
    if init == "he":
        nn_init.kaiming_normal_(weight, nonlinearity=nl if nl in ("relu", "leaky_relu") else "relu")
    elif init == "he_uniform":
        nn_init.kaiming_uniform_(weight, nonlinearity=nl if nl in ("relu", "leaky_relu") else "relu")
    elif init == "xavier":
        nn_init.xavier_normal_(weight, gain=nn_init.calculate_gain(nl) if nl != "selu" else 1.0)
    elif init == "xavier_uniform":
        nn_init.xavier_uniform_(weight, gain=nn_init.calculate_gain(nl) if nl != "selu" else 1.0)
    elif init == "lecun":
        nn_init.kaiming_normal_(weight, nonlinearity="linear")
    elif init == "orthogonal":
        nn_init.orthogonal_(weight, gain=nn_init.calculate_gain(nl) if nl != "selu" else 1.0)
    elif init == "normal":
        nn_init.normal_(weight, 0.0, 0.01)


class MLP(nn.Module):
    """``Flatten -> [Linear -> (BatchNorm1d) -> activation -> (Dropout)] * (len(sizes) - 2) -> Linear``.

    ``sizes``: ``[in_features, hidden..., out_features]`` (at least two numbers).
    Inputs ``(batch, *)`` are flattened to ``(batch, in_features)``; output ``(batch, out_features)``.
    ``activation``: one of ``ACTIVATIONS``; ``init``: None (PyTorch's default) or one of ``INITS``
    ("he" = Kaiming normal for ReLU); biases start at zero when ``init`` is given.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", batchnorm: bool = False,
                 dropout: float = 0.0, init: str | None = None) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(f"MLP: sizes must be at least two positive ints [in, ..., out], got {sizes}")
        _one_of("MLP: activation", activation, tuple(ACTIVATIONS))
        if init is not None:
            _one_of("MLP: init", init, INITS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
        self.sizes, self.activation, self.init = sizes, activation, init
        make_act, nonlinearity = ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = nn.Linear(n_in, n_out)
            last = i == len(sizes) - 2
            if init is not None:
                init_weight(lin.weight, init, "linear" if last else nonlinearity)
                nn_init.zeros_(lin.bias)
            layers.append(lin)
            if last:
                break
            if batchnorm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(make_act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
