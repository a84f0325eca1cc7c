"""Probability distributions with ``torch.distributions``' names: ``Categorical``, ``Normal``,
``Independent``, ``TransformedDistribution`` with ``TanhTransform``/``AffineTransform``.

``log_prob``, ``entropy`` and ``rsample`` are built from differentiable Tensor ops, so policy-gradient
and reparameterised losses backpropagate into the parameters. ``sample``/``rsample`` accept
``generator=`` (an ``rg.Generator``) for seeded draws.
"""
from .categorical import Categorical
from .distribution import Distribution
from .independent import Independent
from .normal import Normal
from .transformed import TransformedDistribution
from .transforms import AffineTransform, ComposeTransform, TanhTransform, Transform
from . import transforms

__all__ = ["Distribution", "Categorical", "Normal", "Independent", "TransformedDistribution", "Transform",
           "TanhTransform", "AffineTransform", "ComposeTransform", "transforms"]
