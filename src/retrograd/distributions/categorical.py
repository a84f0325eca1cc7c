"""``Categorical(probs=... | logits=...)``: a distribution over ``{0, ..., K-1}``, batched over all but the
last dimension of its parameter.

    logits are normalised: logits <- logits - logsumexp(logits)   (so log p(k) = logits[k])
    probs  = exp(logits)                 (or probs / sum(probs) when given probs)
    H      = -sum_k p(k) log p(k)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..random import resolve
from ..tensor import Tensor, wrap_array
from .distribution import Distribution, as_float_tensor

__all__ = ["Categorical"]


class Categorical(Distribution):
    """As ``torch.distributions.Categorical``: give exactly one of ``probs`` (non-negative, normalised
    along the last dimension) or ``logits`` (unnormalised log probabilities)."""

    has_enumerate_support = True
    arg_constraints = {"probs": "Simplex()", "logits": "IndependentConstraint(Real(), 1)"}

    def __init__(self, probs: Any = None, logits: Any = None, validate_args: bool | None = None) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        if probs is not None:
            p = as_float_tensor(probs, "probs")
            if p.ndim < 1:
                raise ValueError("`probs` parameter must be at least one-dimensional.")
            self._param, self._given = p, "probs"
            self._probs = p / p.sum(-1, keepdim=True)
            eps = np.finfo(self._probs._array.dtype).eps
            self.logits = self._probs.clamp(eps, 1 - eps).log()
        else:
            lg = as_float_tensor(logits, "logits")
            if lg.ndim < 1:
                raise ValueError("`logits` parameter must be at least one-dimensional.")
            self._param, self._given = lg, "logits"
            self.logits = lg.log_softmax(-1)  # = lg - logsumexp(lg), in one op
            self._probs = None  # exp(logits), made on first use (as PyTorch's lazy property)
        self._num_events = self._param.shape[-1]
        super().__init__(self._param.shape[:-1], (), validate_args)
        if self._validate_args:
            if self._given == "probs":
                arr = self._param._array
                self._check_param("probs", arr, (arr >= 0).all(-1) & np.isfinite(self._probs._array).all(-1),
                                  self.arg_constraints["probs"])
            else:
                arr = self._param._array
                self._check_param("logits", arr, ~np.isnan(arr), self.arg_constraints["logits"])

    @property
    def probs(self) -> Tensor:
        if self._probs is None:
            self._probs = self.logits.exp()
        return self._probs

    @property
    def param_shape(self) -> tuple:
        return self._param.shape

    @property
    def mean(self) -> Tensor:
        return wrap_array(np.full(self.batch_shape, np.nan, dtype=self.logits._array.dtype))

    @property
    def mode(self) -> Tensor:
        return wrap_array(self.logits._array.argmax(-1).astype(np.int64))

    @property
    def variance(self) -> Tensor:
        return wrap_array(np.full(self.batch_shape, np.nan, dtype=self.logits._array.dtype))

    def sample(self, sample_shape: Any = (), *, generator: Any = None) -> Tensor:
        """Integer draws (int64) of shape ``sample_shape + batch_shape`` by inverting the CDF."""
        shape = self._extended_shape(sample_shape)
        probs = self._probs._array if self._probs is not None else np.exp(self.logits._array.astype(np.float64))
        cdf = np.cumsum(probs, axis=-1, dtype=np.float64)
        u = resolve(generator).random(shape)[..., None] * cdf[..., -1:]
        idx = (np.broadcast_to(cdf, shape + (self._num_events,)) <= u).sum(-1)
        return wrap_array(np.minimum(idx, self._num_events - 1).astype(np.int64))

    def log_prob(self, value: Any) -> Tensor:
        v = value._array if isinstance(value, Tensor) else np.asarray(value)
        if self._validate_args:
            ok = (v == np.round(v)) & (v >= 0) & (v < self._num_events)
            self._check_value(v, ok, f"IntegerInterval(lower_bound=0, upper_bound={self._num_events - 1})")
        v = v.astype(np.int64)
        shape = np.broadcast_shapes(v.shape, self.batch_shape)
        logits = self.logits
        if logits.shape[:-1] != shape:
            logits = logits.expand(*shape, self._num_events)
        index = np.broadcast_to(v, shape)[..., None]
        return logits.gather(-1, wrap_array(np.ascontiguousarray(index))).squeeze(-1)

    def entropy(self) -> Tensor:
        min_real = float(np.finfo(self.logits._array.dtype).min)
        return -(self.logits.clamp(min=min_real) * self.probs).sum(-1)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        values = np.arange(self._num_events, dtype=np.int64).reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = np.broadcast_to(values, (self._num_events,) + self.batch_shape).copy()
        return wrap_array(values)

    def __repr__(self) -> str:
        return f"Categorical({self._given}: {self._param.shape})"
