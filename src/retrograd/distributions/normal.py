"""``Normal(loc, scale)``: the univariate Gaussian, batched over the broadcast shape of its parameters.

    log p(x) = -(x - loc)^2 / (2 scale^2) - log(scale) - log(sqrt(2 pi))
    H = 1/2 + 1/2 log(2 pi) + log(scale)
    rsample: x = loc + scale * eps,  eps ~ N(0, 1)   (the reparameterisation trick)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..random import resolve
from ..tensor import Tensor, wrap_array
from .distribution import Distribution, as_float_tensor

__all__ = ["Normal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(Distribution):
    """Gaussian with mean ``loc`` and standard deviation ``scale`` (> 0), as ``torch.distributions.Normal``."""

    has_rsample = True
    arg_constraints = {"loc": "Real()", "scale": "GreaterThan(lower_bound=0.0)"}
    support = "Real()"

    def __init__(self, loc: Any, scale: Any, validate_args: bool | None = None) -> None:
        loc, scale = as_float_tensor(loc, "loc"), as_float_tensor(scale, "scale")
        shape = np.broadcast_shapes(loc.shape, scale.shape)
        self.loc = loc if loc.shape == shape else loc.expand(*shape)
        self.scale = scale if scale.shape == shape else scale.expand(*shape)
        super().__init__(shape, (), validate_args)
        if self._validate_args:
            la, sa = self.loc._array, self.scale._array
            self._check_param("loc", la, ~np.isnan(la), self.arg_constraints["loc"])
            self._check_param("scale", sa, sa > 0, self.arg_constraints["scale"])

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def stddev(self) -> Tensor:
        return self.scale

    @property
    def variance(self) -> Tensor:
        return self.scale.square()

    def rsample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = resolve(generator).standard_normal(shape).astype(self.loc._array.dtype, copy=False)
        return self.loc + wrap_array(eps) * self.scale

    def log_prob(self, value: Any) -> Tensor:
        value = value if isinstance(value, Tensor) else as_float_tensor(value, "value")
        if self._validate_args:
            self._check_value(value._array, ~np.isnan(value._array), self.support)
        var = self.scale.square()
        return -((value - self.loc).square()) / (2 * var) - self.scale.log() - _HALF_LOG_2PI

    def entropy(self) -> Tensor:
        return 0.5 + _HALF_LOG_2PI + self.scale.log()

    def cdf(self, value: Any) -> Tensor:
        value = value if isinstance(value, Tensor) else as_float_tensor(value, "value")
        return 0.5 * (1 + ((value - self.loc) / (self.scale * math.sqrt(2))).erf())

    def __repr__(self) -> str:
        return f"Normal(loc: {self.loc.shape}, scale: {self.scale.shape})"
