"""What A2C and PPO share: ``num_envs`` vectorised envs, an actor-critic, and the rollout of
``num_steps`` steps per env that their updates consume.

A truncated episode (time limit) is not a failure: its last reward gets ``gamma * V(s_final)`` added
(the value of the state it was cut at), and the step then counts as a terminal one for GAE, so the
advantage does not leak across the reset into the next episode.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import no_grad
from ..optim import RMSprop, Adam
from ..tensor import Tensor
from .base import Algorithm, check_range
from .state import load_module_state, module_state
from .envs import VecEnvs
from .policies import ActorCritic, policy_act

__all__ = ["OnPolicyAlgorithm", "Rollout"]

ON_POLICY_DEFAULTS: dict[str, Any] = {
    "total_timesteps": 100_000, "num_envs": 8, "num_steps": 32, "gamma": 0.99, "gae_lambda": 0.95,
    "learning_rate": 7e-4, "lr_schedule": "constant", "optimizer": "adam", "adam_eps": 1e-5,
    "hidden_sizes": [64, 64], "activation": "tanh", "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5,
    "normalize_obs": False, "normalize_reward": False, "squash": False, "log_std_init": 0.0,
}


class Rollout:
    """Time-major arrays of one rollout: obs (T, N, obs_dim), actions, log_probs, rewards, dones, values
    (T, N), and last_value (N,) = V(s_T)."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self.__dict__.update(arrays)


class OnPolicyAlgorithm(Algorithm):
    CHOICES = {"lr_schedule": ("constant", "linear"), "optimizer": ("adam", "rmsprop"),
               "activation": ("tanh", "relu")}

    def __init__(self, env_id: str, *, seed: int = 0, **hyper: Any) -> None:
        super().__init__(env_id, seed=seed, **hyper)
        hp = self.hp
        self.envs = VecEnvs(self.env_id, hp["num_envs"], self.seed, gamma=hp["gamma"],
                            normalize_obs=hp["normalize_obs"], normalize_reward=hp["normalize_reward"])
        self.policy = ActorCritic(self.envs.single_observation_space, self.envs.single_action_space,
                                  hp["hidden_sizes"], hp["activation"], self.generator, squash=hp["squash"],
                                  log_std_init=hp["log_std_init"])
        if hp["optimizer"] == "adam":
            self.optimizer = Adam(self.policy.parameters(), lr=hp["learning_rate"], eps=hp["adam_eps"])
        else:  # A2C's original optimiser (alpha 0.99, eps 1e-5 as in SB3)
            self.optimizer = RMSprop(self.policy.parameters(), lr=hp["learning_rate"], alpha=0.99, eps=1e-5)

    def check_hyperparameters(self, hp: dict) -> None:
        super().check_hyperparameters(hp)

    # --- rollout ---------------------------------------------------------------------------------------
    def current_lr(self) -> float:
        lr = self.hp["learning_rate"]
        if self.hp["lr_schedule"] == "linear":
            lr *= max(1.0 - self.env_steps / self.hp["total_timesteps"], 0.0)
        return lr

    def collect_rollout(self) -> tuple[Rollout, list, list]:
        T, N, gamma = self.hp["num_steps"], self.envs.num_envs, self.hp["gamma"]
        obs = self.envs.obs
        obs_buf = np.zeros((T, N) + obs.shape[1:], np.float32)
        act_buf: np.ndarray | None = None
        logp_buf = np.zeros((T, N), np.float32)
        rew_buf = np.zeros((T, N), np.float32)
        done_buf = np.zeros((T, N), np.float32)
        val_buf = np.zeros((T, N), np.float32)
        returns, lengths = [], []
        with no_grad():
            for t in range(T):
                o = Tensor(obs)
                dist = self.policy.distribution(o)
                action = dist.sample(generator=self.generator)
                logp_buf[t] = dist.log_prob(action)._array
                val_buf[t] = self.policy.value(o)._array
                a = action._array
                if act_buf is None:
                    act_buf = np.zeros((T,) + a.shape, a.dtype)
                act_buf[t] = a
                obs_buf[t] = obs
                step = self.envs.step(self.policy.env_action(a))
                reward = step["reward"]
                cut = step["truncated"] & ~step["terminated"]
                if cut.any():  # bootstrap a time-limit cut with the value of the state it stopped in
                    reward = reward + gamma * np.where(cut, self.policy.value(Tensor(step["final_obs"]))._array, 0)
                rew_buf[t] = reward
                done_buf[t] = step["terminated"] | step["truncated"]
                returns += step["returns"]
                lengths += step["lengths"]
                obs = step["obs"]
            last_value = self.policy.value(Tensor(obs))._array.copy()
        self.env_steps += T * N
        return (Rollout(obs=obs_buf, actions=act_buf, log_probs=logp_buf, rewards=rew_buf, dones=done_buf,
                        values=val_buf, last_value=last_value), returns, lengths)

    # --- interface -------------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return policy_act(self.policy, self.envs.normalize(np.asarray(obs)), deterministic, self.act_generator)

    def state_dict(self) -> dict:
        return {**self._base_state(), "policy": module_state(self.policy), "envs": self.envs.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._load_base_state(state)
        load_module_state(self.policy, state["policy"])
        self.envs.load_state_dict(state["envs"])

    def close(self) -> None:
        self.envs.close()

    def _finish(self, returns: list, lengths: list, metrics: dict) -> dict:
        self.iteration += 1
        return {"env_steps": self.env_steps, "episode_returns": [float(r) for r in returns],
                "episode_lengths": [int(n) for n in lengths],
                "metrics": {k: float(v) for k, v in metrics.items()}}


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    var = np.var(target)
    return float("nan") if var == 0 else float(1 - np.var(target - pred) / var)


__all__ += ["ON_POLICY_DEFAULTS", "explained_variance", "check_range"]
