"""The ``Algorithm`` interface every agent implements, and the hyperparameter checks they share.

Contract (what ``retrograd rl`` and ``rl.evaluate`` rely on)::

    algo = make_algorithm("ppo", "CartPole-v1", seed=0, **hyper)   # ValueError naming the key if bad
    while algo.env_steps < budget:
        info = algo.train_iteration()
        # {"env_steps": int (total so far), "episode_returns": [float, ...] (episodes finished in this
        #  iteration), "episode_lengths": [int, ...], "metrics": {name: float}}
    actions = algo.act(obs_batch, deterministic=True)   # (n, *obs_shape) -> (n, *action_shape); applies the
                                                        # frozen observation normalisation itself
    env = algo.make_env(seed, render_mode="rgb_array") # one gymnasium env, same wrappers as training
    state = algo.state_dict()     # numpy arrays, Python scalars, strings, lists and dicts only (no pickle)
    fresh = make_algorithm("ppo", "CartPole-v1", seed=0, **hyper); fresh.load_state_dict(state)
    # fresh.train_iteration() now gives bit for bit what algo.train_iteration() gives
    algo.close()

``HYPERPARAMETERS`` (a class attribute) maps every accepted keyword to its default; its type is the
type the value must have (an int is accepted for a float; a list/tuple default means a list of
positive ints). ``total_timesteps`` is the training budget the schedules are stretched over (linear
learning-rate annealing, PPO's clip range, DQN's epsilon): pass the same budget you train for.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..random import Generator
from .envs import check_env_id, make_env
from .state import generator_state, load_generator_state, load_optimizer_state, optimizer_state

__all__ = ["Algorithm", "check_range"]


def check_range(algo: str, key: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """ValueError naming ``key`` unless ``lo (<|<=) value (<|<=) hi``."""
    bad = (not math.isfinite(float(value))
           or (lo is not None and (value <= lo if lo_open else value < lo))
           or (hi is not None and (value >= hi if hi_open else value > hi)))
    if bad:
        left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
        right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
        raise ValueError(f"{algo}: hyperparameter {key} must satisfy {left}{key}{right}, got {value!r}")


def _checked_type(algo: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{algo}: hyperparameter {key} must be true or false, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{algo}: hyperparameter {key} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{algo}: hyperparameter {key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{algo}: hyperparameter {key} must be a string, got {value!r}")
        return value
    if isinstance(default, (list, tuple)):
        if (not isinstance(value, (list, tuple)) or not value
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)):
            raise ValueError(f"{algo}: hyperparameter {key} must be a non-empty list of positive integers, "
                             f"got {value!r}")
        return [int(v) for v in value]
    return value


class Algorithm:
    """Base class: holds the environment id, the seed, the checked hyperparameters (``self.hp``), the
    seeded generator (``self.generator``: initialisation and action sampling) and ``env_steps``."""

    name = "algorithm"
    HYPERPARAMETERS: dict[str, Any] = {}
    CHOICES: dict[str, tuple] = {}

    def __init__(self, env_id: str, *, seed: int = 0, **hyper: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{self.name}: seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.hp = self._resolve(hyper)
        self.env_id = check_env_id(env_id)
        self.generator = Generator(self.seed)
        # act(deterministic=False) draws from its own stream, so evaluating never shifts training's
        self.act_generator = Generator(self.seed + 1_000_003)
        self.env_steps = 0
        self.iteration = 0

    def _resolve(self, hyper: dict) -> dict:
        unknown = sorted(set(hyper) - set(self.HYPERPARAMETERS))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter {unknown[0]!r} (known: "
                             f"{', '.join(sorted(self.HYPERPARAMETERS))})")
        hp = {}
        for key, default in self.HYPERPARAMETERS.items():
            hp[key] = _checked_type(self.name, key, hyper.get(key, default), default)
            if key in self.CHOICES and hp[key] not in self.CHOICES[key]:
                raise ValueError(f"{self.name}: hyperparameter {key} must be one of "
                                 f"{', '.join(map(repr, self.CHOICES[key]))}, got {hp[key]!r}")
        self.check_hyperparameters(hp)
        return hp

    def check_hyperparameters(self, hp: dict) -> None:
        """Range checks; subclasses extend (call super)."""
        for key in ("gamma", "gae_lambda"):
            if key in hp:
                check_range(self.name, key, hp[key], 0.0, 1.0)
        for key in ("learning_rate", "total_timesteps", "num_envs", "num_steps"):
            if key in hp:
                check_range(self.name, key, hp[key], 0, None, lo_open=True)
        for key in ("max_grad_norm", "ent_coef", "vf_coef"):
            if key in hp:
                check_range(self.name, key, hp[key], 0, None)

    # --- the interface ---------------------------------------------------------------------------
    def train_iteration(self) -> dict:
        raise NotImplementedError

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        raise NotImplementedError

    def make_env(self, seed: int, render_mode: str | None = None):
        """One gymnasium environment as the agent sees it in training (no training-only wrappers),
        reset once with ``seed``."""
        return make_env(self.env_id, seed, render_mode)

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _check_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("algorithm") != self.name:
            got = state.get("algorithm") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{self.name}: load_state_dict expects a {self.name} state, got {got!r}")
        if state.get("env_id") != self.env_id:
            raise ValueError(f"{self.name}: state is for env_id {state.get('env_id')!r}, this algorithm "
                             f"runs {self.env_id!r}")

    def _base_state(self) -> dict:
        """What every algorithm saves: counters, both generators (training's and act()'s), the optimizer."""
        return {"algorithm": self.name, "env_id": self.env_id, "seed": self.seed, "env_steps": self.env_steps,
                "iteration": self.iteration, "generator": generator_state(self.generator),
                "act_generator": generator_state(self.act_generator), "optimizer": optimizer_state(self.optimizer)}

    def _load_base_state(self, state: dict) -> None:
        self._check_state(state)
        self.env_steps = int(state["env_steps"])
        self.iteration = int(state["iteration"])
        load_generator_state(self.generator, state["generator"])
        load_generator_state(self.act_generator, state["act_generator"])
        load_optimizer_state(self.optimizer, state["optimizer"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r}, seed={self.seed})"
