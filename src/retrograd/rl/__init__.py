"""Reinforcement learning on gymnasium: REINFORCE with a baseline, A2C, PPO and DQN, written as plain
retrograd code next to their papers' equations (see each module's docstring).

``make_algorithm(name, env_id, seed=0, **hyper)`` builds one (``ALGORITHMS`` maps the names to classes,
each with ``HYPERPARAMETERS``: name -> default); ``evaluate(algo, episodes, seed)`` plays it. The
interface every algorithm implements is documented on ``Algorithm`` (rl/base.py). Needs the ``rl`` extra
(gymnasium).
"""
try:
    import gymnasium  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("retrograd.rl needs gymnasium: pip install 'retrograd[rl]'") from e

from typing import Any

from .a2c import A2C
from .base import Algorithm
from .dqn import DQN
from .envs import VecEnvs, check_env_id, make_env
from .evaluation import evaluate
from .ppo import PPO
from .reinforce import REINFORCE
from .returns import discounted_returns, gae

ALGORITHMS: dict[str, type] = {"reinforce": REINFORCE, "a2c": A2C, "ppo": PPO, "dqn": DQN}


def make_algorithm(name: str, env_id: str, *, seed: int = 0, **hyper: Any) -> Algorithm:
    """The algorithm ``name`` (one of ``ALGORITHMS``) on ``env_id``; bad values raise ValueError naming the
    key (``algorithm``, ``env_id``, or the hyperparameter)."""
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm: unknown algorithm {name!r} (expected one of {', '.join(ALGORITHMS)})")
    return ALGORITHMS[name](env_id, seed=seed, **hyper)


__all__ = ["ALGORITHMS", "make_algorithm", "evaluate", "Algorithm", "REINFORCE", "A2C", "PPO", "DQN",
           "VecEnvs", "make_env", "check_env_id", "gae", "discounted_returns"]
