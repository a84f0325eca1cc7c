"""Invertible elementwise maps for ``TransformedDistribution`` (``torch.distributions.transforms`` names).

``TanhTransform``:   y = tanh(x),  log|dy/dx| = 2 (log 2 - x - softplus(-2x))   (stable form of
                      log(1 - tanh(x)^2)); inverse x = atanh(y), clipped just inside (-1, 1).
``AffineTransform``: y = loc + scale x,  log|dy/dx| = log|scale|.
With ``cache_size=1`` a transform remembers its last (x, y) pair, so ``log_prob`` of a value it just produced
uses the exact pre-image instead of ``atanh`` (as in PyTorch).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..nn.functional import softplus
from ..tensor import Tensor, wrap_array

__all__ = ["Transform", "TanhTransform", "AffineTransform", "ComposeTransform"]


class Transform:
    event_dim = 0
    bijective = True

    def __init__(self, cache_size: int = 0) -> None:
        if cache_size not in (0, 1):
            raise ValueError(f"cache_size must be 0 or 1, got {cache_size!r}")
        self._cache_size = cache_size
        self._cached: tuple | None = None

    def __call__(self, x: Tensor) -> Tensor:
        y = self._call(x)
        if self._cache_size:
            self._cached = (x, y)
        return y

    def inv(self, y: Tensor) -> Tensor:
        if self._cached is not None and self._cached[1] is y:
            return self._cached[0]
        x = self._inverse(y)
        if self._cache_size:
            self._cached = (x, y)
        return x

    def _call(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TanhTransform(Transform):
    def _call(self, x: Tensor) -> Tensor:
        return x.tanh()

    def _inverse(self, y: Tensor) -> Tensor:
        eps = float(np.finfo(y._array.dtype).eps)
        y = y.clamp(-1 + eps, 1 - eps)
        return 0.5 * (y.log1p() - (-y).log1p())

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return 2.0 * (math.log(2.0) - x - softplus(-2.0 * x))


class AffineTransform(Transform):
    def __init__(self, loc: Any, scale: Any, event_dim: int = 0, cache_size: int = 0) -> None:
        super().__init__(cache_size)
        self.loc, self.scale, self.event_dim = loc, scale, event_dim

    def _call(self, x: Tensor) -> Tensor:
        return self.loc + self.scale * x

    def _inverse(self, y: Tensor) -> Tensor:
        return (y - self.loc) / self.scale

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        scale = self.scale
        if isinstance(scale, Tensor):
            result = scale.abs().log()
        else:
            result = wrap_array(np.log(np.abs(np.asarray(scale, dtype=x._array.dtype))))
        shape = x.shape
        if self.event_dim:
            result = result.expand(*shape) if result.shape != shape else result
            result = result.sum(tuple(range(-self.event_dim, 0)))
            shape = shape[:-self.event_dim]
        return result.expand(*shape) if result.shape != shape else result


class ComposeTransform(Transform):
    def __init__(self, parts: list, cache_size: int = 0) -> None:
        super().__init__(cache_size)
        self.parts = list(parts)

    def _call(self, x: Tensor) -> Tensor:
        for t in self.parts:
            x = t(x)
        return x

    def _inverse(self, y: Tensor) -> Tensor:
        for t in reversed(self.parts):
            y = t.inv(y)
        return y

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        total = None
        for t in self.parts:
            nxt = t(x)
            term = t.log_abs_det_jacobian(x, nxt)
            total = term if total is None else total + term
            x = nxt
        return total
