"""Networks: an MLP actor-critic for Discrete (Categorical) and Box (diagonal Gaussian, state-independent
log std, optional tanh squashing) action spaces, and a Q-network for DQN.

Initialisation follows the PPO implementation details (Huang et al., 2022): orthogonal weights with gain
sqrt(2) in hidden layers, 0.01 for the policy head and 1 for the value head, zero biases, all drawn from
the algorithm's seeded ``rg.Generator``.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from .. import nn
from ..engine import no_grad
from ..distributions import (AffineTransform, Categorical, Independent, Normal, TanhTransform,
                             TransformedDistribution)
from ..nn import init
from ..random import Generator
from ..tensor import Tensor

__all__ = ["mlp", "ActorCritic", "QNetwork", "policy_act"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(sizes: list, activation: str, generator: Generator, out_gain: float) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them."""
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        last = i == len(sizes) - 2
        init.orthogonal_(lin.weight, out_gain if last else math.sqrt(2), generator=generator)
        init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def obs_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"observation space {space}: only flat Box observations are supported")
    return int(space.shape[0])


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs. ``distribution(obs)`` is the policy pi(.|s); ``value(obs)`` is V(s)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden_sizes: list, activation: str,
                 generator: Generator, *, squash: bool = False, log_std_init: float = 0.0) -> None:
        super().__init__()
        n_in = obs_dim(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            n_out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            n_out = int(action_space.shape[0])
            self.low = action_space.low.astype(np.float32)
            self.high = action_space.high.astype(np.float32)
            if squash and not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
                raise ValueError("squash: tanh squashing needs finite action bounds")
        else:
            raise ValueError(f"action space {action_space}: only Discrete and flat Box spaces are supported")
        self.squash = squash and not self.discrete
        self.actor = mlp([n_in, *hidden_sizes, n_out], activation, generator, 0.01)
        self.critic = mlp([n_in, *hidden_sizes, 1], activation, generator, 1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(Tensor(np.full(n_out, log_std_init, np.float32)))

    def value(self, obs: Tensor) -> Tensor:
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: Tensor) -> Any:
        out = self.actor(obs)
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        base = Normal(out, self.log_std.exp().expand(*out.shape), validate_args=False)
        if not self.squash:
            return Independent(base, 1)
        centre, half = Tensor((self.high + self.low) / 2), Tensor((self.high - self.low) / 2)
        return Independent(TransformedDistribution(base, [TanhTransform(), AffineTransform(centre, half)]), 1)

    def entropy(self, dist: Any) -> Tensor:
        """H[pi(.|s)]; for the squashed Gaussian (no closed form) the entropy of the Gaussian before tanh."""
        if self.squash:
            return dist.base_dist.base_dist.entropy().sum(-1)
        return dist.entropy()

    def mode(self, obs: Tensor) -> np.ndarray:
        out = self.actor(obs)._array
        if self.discrete:
            return out.argmax(-1)
        if self.squash:
            return (self.high + self.low) / 2 + (self.high - self.low) / 2 * np.tanh(out)
        return out

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """What the env receives: Gaussian actions are clipped to the bounds (the unclipped draw is what
        log_prob scores)."""
        if self.discrete or self.squash:
            return action
        return np.clip(action, self.low, self.high)


def policy_act(policy: ActorCritic, obs: np.ndarray, deterministic: bool, generator: Generator) -> np.ndarray:
    """Env actions for a batch of (already normalised) observations: the mode, or a draw."""
    with no_grad():
        o = Tensor(obs)
        if deterministic:
            return policy.env_action(policy.mode(o))
        return policy.env_action(policy.distribution(o).sample(generator=generator)._array)


class QNetwork(nn.Module):
    """Q(s, .): an MLP from the observation to one value per discrete action."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden_sizes: list, activation: str,
                 generator: Generator) -> None:
        super().__init__()
        self.net = mlp([obs_dim(observation_space), *hidden_sizes, int(action_space.n)], activation, generator, 1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)
