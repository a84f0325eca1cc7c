"""``TransformedDistribution(base, transforms)``: y = f_k(...f_1(x)), x ~ base, with density

    log p(y) = log p_base(x) - sum_i log|d f_i / d x_{i-1}|   (each term summed over the base's event dims)

``Independent(TransformedDistribution(Normal(mu, sigma), [TanhTransform()]), 1)`` is the tanh-squashed
diagonal Gaussian of SAC and of bounded-action PPO. Its entropy has no closed form; ``entropy()`` raises
``NotImplementedError`` as PyTorch does (policies use the base Gaussian's entropy as an estimate).
"""
from __future__ import annotations

from typing import Any

from ..engine import no_grad
from ..tensor import Tensor
from .distribution import Distribution
from .independent import sum_rightmost
from .transforms import Transform

__all__ = ["TransformedDistribution"]


class TransformedDistribution(Distribution):
    def __init__(self, base_distribution: Distribution, transforms: Any, validate_args: bool | None = None) -> None:
        if isinstance(transforms, Transform):
            transforms = [transforms]
        transforms = list(transforms)
        for t in transforms:
            if not isinstance(t, Transform):
                raise ValueError(f"transforms must be a Transform or a list of Transforms, got {type(t).__name__}")
            if t.event_dim != 0:
                raise NotImplementedError("TransformedDistribution: only elementwise transforms (event_dim 0)")
        self.base_dist, self.transforms = base_distribution, transforms
        super().__init__(base_distribution.batch_shape, base_distribution.event_shape,
                         validate_args=False if validate_args is None else validate_args)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    def rsample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        x = self.base_dist.rsample(sample_shape, generator=generator)
        for t in self.transforms:
            x = t(x)
        return x

    def sample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        with no_grad():
            x = self.base_dist.sample(sample_shape, generator=generator)
            for t in self.transforms:
                x = t(x)
        return x

    def log_prob(self, value: Tensor) -> Tensor:
        event_dims = len(self.event_shape)
        y, log_prob = value, None
        for t in reversed(self.transforms):
            x = t.inv(y)
            term = sum_rightmost(t.log_abs_det_jacobian(x, y), event_dims)
            log_prob = -term if log_prob is None else log_prob - term
            y = x
        base = self.base_dist.log_prob(y)
        return base if log_prob is None else base + log_prob

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError("TransformedDistribution has no closed-form mean")

    def __repr__(self) -> str:
        return f"TransformedDistribution({self.base_dist!r}, {self.transforms})"
