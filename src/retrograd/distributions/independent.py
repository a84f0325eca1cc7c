"""``Independent(base, n)``: the last ``n`` batch dimensions of ``base`` become event dimensions, so
``log_prob`` and ``entropy`` sum over them. ``Independent(Normal(loc, scale), 1)`` is a Gaussian with
diagonal covariance: log p(x) = sum_i log N(x_i; loc_i, scale_i)."""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from .distribution import Distribution

__all__ = ["Independent", "sum_rightmost"]


def sum_rightmost(t: Tensor, n: int) -> Tensor:
    """``t`` summed over its last ``n`` dimensions."""
    return t.sum(tuple(range(-n, 0))) if n > 0 else t


class Independent(Distribution):
    def __init__(self, base_distribution: Distribution, reinterpreted_batch_ndims: int,
                 validate_args: bool | None = None) -> None:
        n = int(reinterpreted_batch_ndims)
        if n < 0 or n > len(base_distribution.batch_shape):
            raise ValueError(f"Expected reinterpreted_batch_ndims <= len(base_distribution.batch_shape), actual "
                             f"{n} vs {len(base_distribution.batch_shape)}")
        self.base_dist = base_distribution
        self.reinterpreted_batch_ndims = n
        shape = base_distribution.batch_shape + base_distribution.event_shape
        cut = len(base_distribution.batch_shape) - n
        super().__init__(shape[:cut], shape[cut:], validate_args=False if validate_args is None else validate_args)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    @property
    def mean(self) -> Tensor:
        return self.base_dist.mean

    @property
    def mode(self) -> Tensor:
        return self.base_dist.mode

    @property
    def variance(self) -> Tensor:
        return self.base_dist.variance

    @property
    def stddev(self) -> Tensor:
        return self.base_dist.stddev

    def sample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        return self.base_dist.sample(sample_shape, generator=generator)

    def rsample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        return self.base_dist.rsample(sample_shape, generator=generator)

    def log_prob(self, value: Any) -> Tensor:
        return sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self) -> Tensor:
        return sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)

    def __repr__(self) -> str:
        return f"Independent({self.base_dist!r}, {self.reinterpreted_batch_ndims})"
