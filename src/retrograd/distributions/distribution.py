"""The ``Distribution`` base class (``torch.distributions.Distribution``'s names and shape rules).

A distribution has a ``batch_shape`` (independent copies with different
parameters) and an ``event_shape`` (the shape of one draw). ``sample(sample_shape)``
returns ``sample_shape + batch_shape + event_shape`` without a gradient;
``rsample`` does the same through the reparameterisation trick, so gradients
reach the parameters; ``log_prob(value)`` returns ``batch_shape``-shaped log
densities (or masses) and is differentiable in the parameters.

Randomness: PyTorch draws from its global generator; here ``sample`` and
``rsample`` take an optional keyword ``generator=`` (an ``rg.Generator``) and
otherwise use retrograd's default one (``rg.manual_seed``), so a seeded run is
reproducible bit for bit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import no_grad
from ..tensor import Tensor, wrap_array

__all__ = ["Distribution"]


def as_float_tensor(value: Any, name: str) -> Tensor:
    """A parameter as a floating Tensor: Tensors and float arrays keep their dtype, Python numbers and
    integer data become float32 (PyTorch's default dtype)."""
    if isinstance(value, Tensor):
        return value if value._array.dtype.kind == "f" else wrap_array(value._array.astype(np.float32))
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a Tensor, an array or a number, got {type(value).__name__}")
    keep = isinstance(value, np.ndarray) and arr.dtype.kind == "f"
    return wrap_array(np.array(arr, dtype=arr.dtype if keep else np.float32))


def shape_of(size: Any) -> tuple:
    if isinstance(size, (int, np.integer)):
        return (int(size),)
    return tuple(int(s) for s in size)


class Distribution:
    """Base class. Subclasses set ``batch_shape``/``event_shape`` through ``__init__`` and implement
    ``rsample`` (or ``sample``), ``log_prob``, ``entropy``, ``mean``, ``mode`` and ``variance``."""

    has_rsample = False
    has_enumerate_support = False
    _validate_args_default = True

    def __init__(self, batch_shape: Any = (), event_shape: Any = (), validate_args: bool | None = None) -> None:
        self._batch_shape = shape_of(batch_shape)
        self._event_shape = shape_of(event_shape)
        self._validate_args = self._validate_args_default if validate_args is None else bool(validate_args)

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        if value not in (True, False):
            raise ValueError(f"set_default_validate_args: expected True or False, got {value!r}")
        Distribution._validate_args_default = value

    @property
    def batch_shape(self) -> tuple:
        return self._batch_shape

    @property
    def event_shape(self) -> tuple:
        return self._event_shape

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement mean")

    @property
    def mode(self) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement mode")

    @property
    def variance(self) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement variance")

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    def _extended_shape(self, sample_shape: Any = ()) -> tuple:
        return shape_of(sample_shape) + self._batch_shape + self._event_shape

    def sample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        """A draw of shape ``sample_shape + batch_shape + event_shape``, with no gradient."""
        with no_grad():
            return self.rsample(sample_shape, generator=generator).detach()

    def rsample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no reparameterised sampler (rsample)")

    def sample_n(self, n: int, *, generator: Any = None) -> Tensor:
        return self.sample((n,), generator=generator)

    def log_prob(self, value: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement log_prob")

    def entropy(self) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement entropy")

    def perplexity(self) -> Tensor:
        return self.entropy().exp()

    def _check_param(self, name: str, arr: np.ndarray, ok: np.ndarray, constraint: str) -> None:
        if self._validate_args and not bool(np.all(ok)):
            raise ValueError(f"Expected parameter {name} ({type(arr).__name__} of shape {tuple(arr.shape)}) of "
                             f"distribution {self!r} to satisfy the constraint {constraint}, but found invalid "
                             f"values:\n{arr}")

    def _check_value(self, arr: np.ndarray, ok: np.ndarray, support: str) -> None:
        if self._validate_args and not bool(np.all(ok)):
            raise ValueError(f"Expected value argument (of shape {tuple(arr.shape)}) to be within the support "
                             f"({support}) of the distribution {self!r}, but found invalid values:\n{arr}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
