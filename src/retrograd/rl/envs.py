"""Environments: gymnasium ids checked, one env or a ``gymnasium.vector.SyncVectorEnv`` of several,
running observation/return normalisation, episode statistics, and the env state a bitwise resume needs.

``VecEnvs`` steps ``num_envs`` copies in lockstep with same-step autoreset: when an episode ends, the
observation returned for that env is already the next episode's first one, and the last observation
of the finished episode is kept in ``final_obs`` (for bootstrapping a truncated episode's value).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .state import generator_state, load_generator_state

__all__ = ["check_env_id", "make_env", "VecEnvs", "RunningMeanStd", "env_state", "load_env_state"]

_PLAIN = (bool, int, float, str, type(None), np.ndarray, np.generic)


def check_env_id(env_id: Any) -> str:
    if not isinstance(env_id, str) or env_id not in gym.envs.registry:
        close = sorted(k for k in gym.envs.registry if isinstance(env_id, str)
                       and env_id.split("-")[0].lower() in k.lower())[:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else " (e.g. CartPole-v1, Acrobot-v1, Pendulum-v1)"
        raise ValueError(f"env_id: unknown environment {env_id!r}: not in gymnasium.envs.registry{hint}")
    return env_id


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
    env = gym.make(env_id, render_mode=render_mode)
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
    return env


# --- env state for a bitwise resume ----------------------------------------------------------------
def _layers(env: gym.Env) -> list:
    out = [env]
    while isinstance(out[-1], gym.Wrapper):
        out.append(out[-1].env)
    return out


def _plain_attrs(obj: Any) -> dict:
    """The attributes of one wrapper layer or of the bare env that are plain data (numbers, strings,
    arrays: the physics state, step counters, ``steps_beyond_terminated``)."""
    out = {}
    for k, v in vars(obj).items():
        if isinstance(v, _PLAIN) and not (isinstance(v, np.ndarray) and v.dtype == object):
            out[k] = np.array(v) if isinstance(v, np.ndarray) else (v.item() if isinstance(v, np.generic) else v)
    return out


def env_state(env: gym.Env) -> dict:
    """Everything that decides an env's future: each layer's plain attributes (classic control's
    ``state``, TimeLimit's ``_elapsed_steps``, OrderEnforcing's ``_has_reset``) and the bit-generator
    state of ``np_random``. Enough for gymnasium's classic-control and toy-text tasks; environments
    holding state in other objects (Box2D, MuJoCo) are not covered."""
    layers = _layers(env)
    return {"layers": [_plain_attrs(layer) for layer in layers],
            "np_random": generator_state(env.unwrapped.np_random)}


def load_env_state(env: gym.Env, state: dict) -> None:
    layers = _layers(env)
    if len(layers) != len(state["layers"]):
        raise ValueError(f"env state has {len(state['layers'])} wrapper layers, this env has {len(layers)}")
    # first: an env never reset makes its generator on first access (and records a fresh seed)
    load_generator_state(env.unwrapped.np_random, state["np_random"])
    for layer, attrs in zip(layers, state["layers"]):
        for k, v in attrs.items():
            setattr(layer, k, np.array(v) if isinstance(v, np.ndarray) else v)


# --- normalisation -------------------------------------------------------------------------------------
class RunningMeanStd:
    """Running mean and variance over batches (Chan et al.'s parallel update), as in SB3's VecNormalize."""

    def __init__(self, shape: tuple = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        b_mean, b_var, n = batch.mean(0), batch.var(0), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + b_var * n + delta ** 2 * self.count * n / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, st: dict) -> None:
        self.mean, self.var, self.count = np.array(st["mean"]), np.array(st["var"]), float(st["count"])


class VecEnvs:
    """``num_envs`` copies of ``env_id`` seeded ``seed, seed+1, ...`` with episode statistics and optional
    observation normalisation (``(obs - mean) / sqrt(var + 1e-8)`` clipped to +-``clip_obs``) and reward
    scaling (divided by the running std of the discounted return, clipped to +-``clip_reward``)."""

    def __init__(self, env_id: str, num_envs: int, seed: int, *, gamma: float = 0.99, normalize_obs: bool = False,
                 normalize_reward: bool = False, clip_obs: float = 10.0, clip_reward: float = 10.0) -> None:
        self.vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)],
                                            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.num_envs = num_envs
        self.single_observation_space = self.vec.single_observation_space
        self.single_action_space = self.vec.single_action_space
        self.gamma, self.clip_obs, self.clip_reward = gamma, clip_obs, clip_reward
        obs_shape = self.single_observation_space.shape
        self.obs_rms = RunningMeanStd(obs_shape) if normalize_obs else None
        self.ret_rms = RunningMeanStd(()) if normalize_reward else None
        self.discounted = np.zeros(num_envs)
        self.episode_return = np.zeros(num_envs)
        self.episode_length = np.zeros(num_envs, np.int64)
        raw, _ = self.vec.reset(seed=[seed + i for i in range(num_envs)])
        for i, env in enumerate(self.vec.envs):
            env.action_space.seed(seed + i)
        self.raw_obs = np.asarray(raw)
        if self.obs_rms is not None:
            self.obs_rms.update(self.raw_obs)

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        if self.obs_rms is None:
            return raw.astype(np.float32)
        out = (raw - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(out, -self.clip_obs, self.clip_obs).astype(np.float32)

    @property
    def obs(self) -> np.ndarray:
        return self.normalize(self.raw_obs)

    def step(self, actions: np.ndarray) -> dict:
        """One step of every env. Returns normalised ``obs`` (the next observation, after autoreset),
        ``final_obs`` (normalised; the last observation of an episode that ended, else == obs),
        ``reward`` (scaled if asked), ``terminated``, ``truncated``, and the ``returns``/``lengths``
        of the episodes that ended (raw rewards)."""
        raw, reward, terminated, truncated, info = self.vec.step(actions)
        raw = np.asarray(raw)
        reward = np.asarray(reward, np.float64)
        done = terminated | truncated
        final_raw = raw.copy()
        if done.any():
            for i in np.flatnonzero(done):
                final_raw[i] = info["final_obs"][i]
        self.episode_return += reward
        self.episode_length += 1
        returns = self.episode_return[done].tolist()
        lengths = self.episode_length[done].tolist()
        self.episode_return[done] = 0.0
        self.episode_length[done] = 0
        if self.obs_rms is not None:
            self.obs_rms.update(raw)
        if self.ret_rms is not None:
            self.discounted = self.discounted * self.gamma + reward
            self.ret_rms.update(self.discounted)
            reward = np.clip(reward / np.sqrt(self.ret_rms.var + 1e-8), -self.clip_reward, self.clip_reward)
            self.discounted[done] = 0.0
        self.raw_obs = raw
        return {"obs": self.normalize(raw), "final_obs": self.normalize(final_raw), "reward": reward.astype(np.float32),
                "terminated": terminated, "truncated": truncated, "returns": returns, "lengths": lengths}

    def state_dict(self) -> dict:
        return {"envs": [env_state(e) for e in self.vec.envs], "raw_obs": self.raw_obs.copy(),
                "episode_return": self.episode_return.copy(), "episode_length": self.episode_length.copy(),
                "discounted": self.discounted.copy(),
                "obs_rms": None if self.obs_rms is None else self.obs_rms.state_dict(),
                "ret_rms": None if self.ret_rms is None else self.ret_rms.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        if len(st["envs"]) != self.num_envs:
            raise ValueError(f"state has {len(st['envs'])} envs, this run has num_envs={self.num_envs}")
        for e, s in zip(self.vec.envs, st["envs"]):
            load_env_state(e, s)
        self.raw_obs = np.array(st["raw_obs"])
        self.episode_return = np.array(st["episode_return"])
        self.episode_length = np.array(st["episode_length"])
        self.discounted = np.array(st["discounted"])
        for name in ("obs_rms", "ret_rms"):
            rms = getattr(self, name)
            if (rms is None) != (st[name] is None):
                raise ValueError(f"state's {name} does not match this run's normalisation settings")
            if rms is not None:
                rms.load_state_dict(st[name])

    def close(self) -> None:
        self.vec.close()
