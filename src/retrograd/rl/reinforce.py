"""REINFORCE with a learned baseline (Williams, 1992; Sutton & Barto, 2018, section 13.4).

Each iteration plays one complete episode in each of ``num_envs`` environments with the current policy,
then takes one gradient step on

    G_t      = sum_{k>=t} gamma^(k-t) r_k                         (Monte Carlo return to the episode's end)
    A_t      = G_t - b(s_t)                                        (b = V_phi, a learned state-value baseline)
    L        = -mean_t A_t log pi_theta(a_t|s_t) + c_V mean_t (G_t - V_phi(s_t))^2
               - c_ent mean_t H[pi_theta(.|s_t)]

(the baseline does not bias the gradient; it lowers its variance). An episode cut by a time limit gets
``gamma * V(s_final)`` added to its last reward, its bootstrap value. The mean over all steps of the batch
replaces the textbook's per-step gamma^t factor, as every practical implementation does.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ..engine import no_grad
from ..nn.utils import clip_grad_norm_
from ..optim import Adam
from ..tensor import Tensor
from .base import Algorithm
from .state import load_module_state, module_state
from .a2c import a2c_loss
from .envs import env_state, load_env_state
from .policies import ActorCritic, policy_act
from .returns import discounted_returns

__all__ = ["REINFORCE", "reinforce_loss"]


def reinforce_loss(log_prob: Tensor, returns: np.ndarray, value: Tensor, entropy: Tensor, *, vf_coef: float,
                   ent_coef: float, norm_adv: bool = False) -> tuple[Tensor, dict]:
    """A2C's loss with the Monte Carlo advantage G_t - V(s_t) (no gradient through the baseline there)."""
    return a2c_loss(log_prob, returns - value._array, value, returns, entropy, vf_coef=vf_coef,
                    ent_coef=ent_coef, norm_adv=norm_adv)


class REINFORCE(Algorithm):
    name = "reinforce"
    HYPERPARAMETERS: dict[str, Any] = {
        "total_timesteps": 100_000, "num_envs": 8, "gamma": 0.99, "learning_rate": 1e-3, "adam_eps": 1e-5,
        "hidden_sizes": [64, 64], "activation": "tanh", "vf_coef": 0.5, "ent_coef": 0.0, "max_grad_norm": 0.5,
        "norm_adv": True, "lr_schedule": "constant", "squash": False, "log_std_init": 0.0}
    CHOICES = {"lr_schedule": ("constant", "linear"), "activation": ("tanh", "relu")}

    def __init__(self, env_id: str, *, seed: int = 0, **hyper: Any) -> None:
        super().__init__(env_id, seed=seed, **hyper)
        hp = self.hp
        self.envs = [gym.make(self.env_id) for _ in range(hp["num_envs"])]
        self.first_reset = True
        self.policy = ActorCritic(self.envs[0].observation_space, self.envs[0].action_space, hp["hidden_sizes"],
                                  hp["activation"], self.generator, squash=hp["squash"],
                                  log_std_init=hp["log_std_init"])
        self.optimizer = Adam(self.policy.parameters(), lr=hp["learning_rate"], eps=hp["adam_eps"])

    def _play_episodes(self) -> list[dict]:
        """One full episode in each env: its obs, actions, raw rewards, and the bootstrap value
        V(s_final) if a time limit cut it (else 0)."""
        n = len(self.envs)
        obs = []
        for i, env in enumerate(self.envs):
            o, _ = env.reset(seed=self.seed + i) if self.first_reset else env.reset()
            obs.append(np.asarray(o, np.float32))
        self.first_reset = False
        episodes = [{"obs": [], "actions": [], "rewards": [], "bootstrap": 0.0} for _ in range(n)]
        active = list(range(n))
        with no_grad():
            while active:
                batch = np.stack([obs[i] for i in active])
                action = self.policy.distribution(Tensor(batch)).sample(generator=self.generator)._array
                env_action = self.policy.env_action(action)
                still = []
                for j, i in enumerate(active):
                    ep = episodes[i]
                    ep["obs"].append(obs[i])
                    ep["actions"].append(action[j])
                    o, r, term, trunc, _ = self.envs[i].step(env_action[j])
                    obs[i] = np.asarray(o, np.float32)
                    ep["rewards"].append(float(r))
                    if trunc and not term:
                        ep["bootstrap"] = float(self.policy.value(Tensor(obs[i][None]))._array[0])
                    if not (term or trunc):
                        still.append(i)
                active = still
        return episodes

    def train_iteration(self) -> dict:
        hp = self.hp
        lr = hp["learning_rate"]
        if hp["lr_schedule"] == "linear":
            lr *= max(1.0 - self.env_steps / hp["total_timesteps"], 0.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        episodes = self._play_episodes()
        g_all = []
        for ep in episodes:
            rewards = np.array(ep["rewards"])
            rewards[-1] += hp["gamma"] * ep["bootstrap"]
            g_all.append(discounted_returns(rewards, hp["gamma"]))
        obs = Tensor(np.concatenate([np.stack(ep["obs"]) for ep in episodes]))
        actions = Tensor(np.concatenate([np.stack(ep["actions"]) for ep in episodes]))
        returns = np.concatenate(g_all)
        dist = self.policy.distribution(obs)
        loss, info = reinforce_loss(dist.log_prob(actions), returns, self.policy.value(obs),
                                    self.policy.entropy(dist), vf_coef=hp["vf_coef"], ent_coef=hp["ent_coef"],
                                    norm_adv=hp["norm_adv"])
        self.optimizer.zero_grad()
        loss.backward()
        info["grad_norm"] = float(clip_grad_norm_(self.policy.parameters(), hp["max_grad_norm"]))
        self.optimizer.step()
        self.env_steps += len(returns)
        self.iteration += 1
        info["learning_rate"] = lr
        return {"env_steps": self.env_steps, "episode_returns": [float(sum(ep["rewards"])) for ep in episodes],
                "episode_lengths": [len(ep["rewards"]) for ep in episodes],
                "metrics": {k: float(v) for k, v in info.items()}}

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return policy_act(self.policy, np.asarray(obs, np.float32), deterministic, self.act_generator)

    def state_dict(self) -> dict:
        return {**self._base_state(), "policy": module_state(self.policy),
                "envs": [env_state(e) for e in self.envs], "first_reset": self.first_reset}

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        if len(state["envs"]) != len(self.envs):
            raise ValueError(f"reinforce: state has {len(state['envs'])} envs, this run has num_envs={len(self.envs)}")
        self._load_base_state(state)
        load_module_state(self.policy, state["policy"])
        for e, s in zip(self.envs, state["envs"]):
            load_env_state(e, s)
        self.first_reset = bool(state["first_reset"])

    def close(self) -> None:
        for e in self.envs:
            e.close()
